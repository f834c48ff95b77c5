//! The plan part of discovery: which steps atex can run, the plan environment and
//! its `environment-file`s, and keeping plan paths inside the tree.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map as JsonMap, Value as Json};

use super::json::{env_from, json_strings, listlike, py_str};
use crate::fmf::error::{FmfError, UnsupportedStep};
use crate::fmf::value::Value;

/// One step of plan `prepare`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareStep {
    /// `how: install` — packages to install.
    Install {
        /// Package names.
        packages: Vec<String>,
    },
    /// `how: shell` — scripts run with bash in the uploaded tree root.
    Shell {
        /// Script texts.
        scripts: Vec<String>,
    },
}

/// One step of plan `finish` (only `how: shell` is supported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishStep {
    /// `how: shell` — scripts run with bash in the uploaded tree root.
    Shell {
        /// Script texts.
        scripts: Vec<String>,
    },
}

/// The plan part of a discovery result.
#[derive(Clone, Debug, Default)]
pub struct PlanData {
    /// Plan node name (`None` for the default plan).
    pub name: Option<String>,
    /// The full adjusted plan data.
    pub data: JsonMap<String, Json>,
    /// Plan environment: `environment-file` entries, then `environment` (dict or
    /// list of dicts), later wins. Values stringified Python-style.
    pub environment: IndexMap<String, String>,
    /// `prepare` steps (`install`, `shell`; other `how`s are dropped).
    pub prepare: Vec<PrepareStep>,
    /// `finish` steps (`shell`).
    pub finish: Vec<FinishStep>,
    /// The plan's `context` mapping (values stringified; lists joined with `,`).
    pub context: IndexMap<String, String>,
    /// Steps skipped because atex cannot run them (only with
    /// [`DiscoverOptions::skip_unsupported_steps`](super::DiscoverOptions::skip_unsupported_steps); otherwise discovery fails).
    pub skipped_steps: Vec<UnsupportedStep>,
}

/// The steps atex looks at, in tmt's order: name, the `how` of a phase without one,
/// the `how`s atex can run.
const STEPS: [(&str, &str, &[&str]); 4] = [
    ("discover", "fmf", &["fmf"]),
    ("prepare", "shell", &["install", "shell"]),
    ("execute", "tmt", &["tmt"]),
    ("finish", "shell", &["shell"]),
];

/// How errors and warnings name a plan (`None` is the default plan).
pub(super) fn display_name(name: Option<&str>) -> String {
    name.unwrap_or("(default plan)").to_string()
}

/// An error about one key of the plan (or of one of its phases).
pub(super) fn key_err(plan: &str, key: &str, value: &str, message: impl Into<String>) -> FmfError {
    FmfError::PlanKey {
        plan: plan.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        message: message.into(),
        source: None,
    }
}

/// [`key_err`] with the cause of the problem.
pub(super) fn key_err_from(
    plan: &str,
    key: &str,
    value: &str,
    message: impl Into<String>,
    source: impl Into<crate::error::BoxError>,
) -> FmfError {
    FmfError::PlanKey {
        plan: plan.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        message: message.into(),
        source: Some(source.into()),
    }
}

/// A path of the plan that is not inside its tree.
#[derive(Debug, thiserror::Error)]
pub(super) enum OutsideError {
    /// The path (or the tree) cannot be resolved.
    #[error("cannot resolve {}", .0.display())]
    Resolve(PathBuf, #[source] std::io::Error),
    /// The path resolves outside the tree.
    #[error("resolves to {}, outside the tree {}; a plan may only use files of its own tree", real.display(), root.display())]
    Outside {
        /// Where the path leads.
        real: PathBuf,
        /// The tree.
        root: PathBuf,
    },
}

impl OutsideError {
    /// The [`FmfError::PlanKey`] of `key` = `value` in `plan`.
    pub(super) fn into_key_err(self, plan: &str, key: &str, value: &str) -> FmfError {
        match self {
            OutsideError::Resolve(path, e) => key_err_from(
                plan,
                key,
                value,
                format!("cannot resolve {}", path.display()),
                e,
            ),
            outside @ OutsideError::Outside { .. } => {
                key_err(plan, key, value, outside.to_string())
            }
        }
    }
}

/// The phases of `step` (a mapping or a list of mappings).
fn phases<'a>(
    plan: &str,
    data: &'a JsonMap<String, Json>,
    step: &str,
) -> Result<Vec<&'a JsonMap<String, Json>>, FmfError> {
    listlike(data.get(step))
        .into_iter()
        .map(|p| match p {
            Json::Object(m) => Ok(m),
            other => Err(key_err(
                plan,
                step,
                &other.to_string(),
                "every phase must be a mapping",
            )),
        })
        .collect()
}

/// A phase's `how`, or the step's default.
pub(super) fn how_of(phase: &JsonMap<String, Json>, default: &str) -> String {
    match phase.get("how") {
        None | Some(Json::Null) => default.to_string(),
        Some(v) => py_str(v),
    }
}

/// Checks that `path` stays inside `root` once symlinks are followed; returns its
/// canonical form.
pub(super) fn inside(root: &Path, path: &Path) -> Result<PathBuf, OutsideError> {
    let root = root
        .canonicalize()
        .map_err(|e| OutsideError::Resolve(root.to_path_buf(), e))?;
    let real = path
        .canonicalize()
        .map_err(|e| OutsideError::Resolve(path.to_path_buf(), e))?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(OutsideError::Outside { real, root })
    }
}

/// Phase keys that change what runs and that atex does not implement: refused rather
/// than ignored.
fn refuse_unhonoured_keys(
    plan: &str,
    step: &str,
    phase: &JsonMap<String, Json>,
) -> Result<(), FmfError> {
    let mut keys = vec![
        (
            "when",
            "conditional phases are not supported; use `adjust` in the plan",
        ),
        ("where", "multihost phases are not supported"),
    ];
    if step == "discover" {
        keys.push(("adjust-tests", "not supported; use `adjust` in the tests"));
        keys.push(("dist-git-source", "dist-git sources are not supported"));
    }
    for (key, why) in keys {
        match phase.get(key) {
            None | Some(Json::Null) | Some(Json::Bool(false)) => {}
            Some(v) => return Err(key_err(plan, &format!("{step} {key}"), &py_str(v), why)),
        }
    }
    Ok(())
}

/// Whether an `environment-file` entry is a URL (`scheme://…`).
fn is_url(entry: &str) -> bool {
    entry.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Reads the plan's `environment-file` entries (dotenv or YAML), each of which must
/// be a file inside the tree at `root`.
fn environment_files(
    plan: &str,
    data: &JsonMap<String, Json>,
    root: &Path,
) -> Result<IndexMap<String, String>, FmfError> {
    const KEY: &str = "environment-file";
    let mut environment = IndexMap::new();
    for file in json_strings(data.get(KEY)) {
        if is_url(&file) {
            return Err(key_err(
                plan,
                KEY,
                &file,
                "URL entries are not supported (atex does not download environment \
                 files); add the file to the tree and name it by its path",
            ));
        }
        // Relative to the tree; an absolute path must point into the tree too.
        let path = inside(root, &root.join(&file)).map_err(|e| e.into_key_err(plan, KEY, &file))?;
        let text = std::fs::read_to_string(&path).map_err(|e| FmfError::Io {
            path: path.clone(),
            source: e,
        })?;
        if file.ends_with(".yaml") || file.ends_with(".yml") {
            let v = crate::fmf::yaml::load(&text).map_err(|e| FmfError::Yaml {
                path: path.clone(),
                line: e.line,
                message: e.message,
            })?;
            if let Value::Map(m) = v {
                for (k, v) in m.iter() {
                    environment.insert(crate::fmf::value::key_text(&k.0), v.python_str());
                }
            }
        } else {
            for line in text.lines() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                let l = l.strip_prefix("export ").unwrap_or(l);
                if let Some((k, v)) = l.split_once('=') {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                        .unwrap_or(v);
                    environment.insert(k.trim().to_string(), v.to_string());
                }
            }
        }
    }
    Ok(environment)
}

/// The plan data: environment, the `prepare`/`finish` phases atex runs, context.
///
/// A phase atex cannot run refuses the plan ([`FmfError::UnsupportedSteps`], all
/// such phases listed), or with `skip_unsupported` is left out with one warning
/// each and listed in [`PlanData::skipped_steps`].
pub(super) fn plan_data(
    name: Option<String>,
    data: JsonMap<String, Json>,
    root: &Path,
    skip_unsupported: bool,
) -> Result<PlanData, FmfError> {
    let plan = display_name(name.as_deref());
    let mut unsupported = Vec::new();
    for (step, default, supported) in STEPS {
        for (i, phase) in phases(&plan, &data, step)?.into_iter().enumerate() {
            let how = how_of(phase, default);
            if supported.contains(&how.as_str()) {
                refuse_unhonoured_keys(&plan, step, phase)?;
            } else {
                unsupported.push(UnsupportedStep {
                    step: step.to_string(),
                    phase: phase
                        .get("name")
                        .map(py_str)
                        .unwrap_or_else(|| (i + 1).to_string()),
                    how,
                });
            }
        }
    }
    if !unsupported.is_empty() && !skip_unsupported {
        return Err(FmfError::UnsupportedSteps {
            plan,
            steps: unsupported,
        });
    }
    for s in &unsupported {
        tracing::warn!(
            "plan '{plan}': skipping plan step {} '{}' (how: {}): atex cannot run it",
            s.step,
            s.phase,
            s.how
        );
    }

    let mut environment = environment_files(&plan, &data, root)?;
    environment.extend(env_from(data.get("environment")));
    let mut prepare = Vec::new();
    for phase in phases(&plan, &data, "prepare")? {
        match how_of(phase, "shell").as_str() {
            "install" => prepare.push(PrepareStep::Install {
                packages: json_strings(phase.get("package")),
            }),
            "shell" => prepare.push(PrepareStep::Shell {
                scripts: json_strings(phase.get("script")),
            }),
            _ => {}
        }
    }
    let mut finish = Vec::new();
    for phase in phases(&plan, &data, "finish")? {
        if how_of(phase, "shell") == "shell" {
            finish.push(FinishStep::Shell {
                scripts: json_strings(phase.get("script")),
            });
        }
    }
    let mut context = IndexMap::new();
    if let Some(Json::Object(c)) = data.get("context") {
        for (k, v) in c {
            context.insert(k.clone(), json_strings(Some(v)).join(","));
        }
    }
    Ok(PlanData {
        name,
        data,
        environment,
        prepare,
        finish,
        context,
        skipped_steps: unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised() {
        assert!(is_url("https://example.com/x.env"));
        assert!(is_url("git+ssh://host/x"));
        assert!(!is_url("vars.env"));
        assert!(!is_url("dir/with://colon"));
        assert!(!is_url("://x"));
    }
}
