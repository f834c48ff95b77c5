//! `atex run --run-file FILE`: several platforms in one run, read from a YAML file.
//!
//! ```yaml
//! platforms:
//!   - name: fedora-41            # required, unique: the platform of its results
//!     context: {distro: fedora-41, arch: x86_64}   # or a list of "K=V" (like -c)
//!     provisioner: local         # or a list of specs, as --provisioner (default local)
//!     remotes: 2                 # pool size, as --remotes (default 1)
//!     reruns: 1                  # optional, overrides --reruns
//!     env: {DEBUG: "1"}          # optional, added to --env (wins over it)
//! ```
//!
//! Everything else comes from the command line and applies to every platform. Any other
//! key is an error naming the file and the key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// One platform of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Recorded with its results.
    pub name: String,
    /// `K=V` context pairs.
    pub context: Vec<String>,
    /// Provisioner specs (`--provisioner` syntax).
    pub provisioners: Vec<String>,
    /// Pool size.
    pub remotes: u32,
    /// Reruns (`None`: the command line's).
    pub reruns: Option<u32>,
    /// Extra `K=V` environment pairs.
    pub env: Vec<String>,
    /// Where it came from (`platforms[N]`), for errors.
    pub key: String,
}

/// A run file that cannot be used: the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// The file cannot be read.
    #[error("cannot read the run file {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    /// Not YAML.
    #[error("{}: not valid YAML", .0.display())]
    Yaml(PathBuf, #[source] yaml_rust2::ScanError),
    /// A key is missing, unknown or has a bad value.
    #[error("{}: {key}: {problem}", file.display())]
    Key {
        /// The run file.
        file: PathBuf,
        /// The key (`platforms[1].remotes`).
        key: String,
        /// What is wrong.
        problem: String,
    },
}

const PLATFORM_KEYS: &[&str] = &["name", "context", "provisioner", "remotes", "reruns", "env"];

/// Reads and checks a run file.
pub fn load(file: &Path) -> Result<Vec<Platform>, RunFileError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| RunFileError::Read(file.to_path_buf(), e))?;
    parse(file, &text)
}

fn parse(file: &Path, text: &str) -> Result<Vec<Platform>, RunFileError> {
    let bad = |key: &str, problem: String| RunFileError::Key {
        file: file.to_path_buf(),
        key: key.to_string(),
        problem,
    };
    let docs =
        YamlLoader::load_from_str(text).map_err(|e| RunFileError::Yaml(file.to_path_buf(), e))?;
    let top = match docs.as_slice() {
        [doc] => doc,
        _ => {
            return Err(bad(
                "(document)",
                "expected exactly one YAML document".into(),
            ));
        }
    };
    let Yaml::Hash(top) = top else {
        return Err(bad(
            "(document)",
            "expected a mapping with 'platforms'".into(),
        ));
    };
    for k in top.keys() {
        match k.as_str() {
            Some("platforms") => {}
            other => {
                return Err(bad(
                    &key_name(other, k),
                    "unknown key (known: platforms)".into(),
                ));
            }
        }
    }
    let Some(Yaml::Array(items)) = top.get(&Yaml::String("platforms".into())) else {
        return Err(bad("platforms", "missing, or not a list".into()));
    };
    if items.is_empty() {
        return Err(bad("platforms", "the list is empty".into()));
    }
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("platforms[{i}]");
        let Yaml::Hash(map) = item else {
            return Err(bad(&at, "expected a mapping".into()));
        };
        let mut p = Platform {
            name: String::new(),
            context: Vec::new(),
            provisioners: vec!["local".into()],
            remotes: 1,
            reruns: None,
            env: Vec::new(),
            key: at.clone(),
        };
        let mut has_name = false;
        for (k, v) in map {
            let name = k.as_str();
            let key = format!("{at}.{}", key_name(name, k));
            match name {
                Some("name") => {
                    p.name = scalar(v)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| bad(&key, "expected a non-empty string".into()))?;
                    has_name = true;
                }
                Some("context") => p.context = pairs(v).map_err(|m| bad(&key, m))?,
                Some("env") => p.env = pairs(v).map_err(|m| bad(&key, m))?,
                Some("provisioner") => {
                    p.provisioners = match v {
                        Yaml::Array(a) if !a.is_empty() => a
                            .iter()
                            .map(|s| s.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| bad(&key, "expected strings".into()))?,
                        Yaml::String(s) => vec![s.clone()],
                        _ => {
                            return Err(bad(&key, "expected a spec or a list of specs".into()));
                        }
                    }
                }
                Some("remotes") => {
                    p.remotes = count(v)
                        .filter(|n| (1..=4096).contains(n))
                        .ok_or_else(|| bad(&key, "expected a number from 1 to 4096".into()))?
                }
                Some("reruns") => {
                    p.reruns = Some(count(v).ok_or_else(|| bad(&key, "expected a number".into()))?)
                }
                _ => {
                    return Err(bad(
                        &key,
                        format!("unknown key (known: {})", PLATFORM_KEYS.join(", ")),
                    ));
                }
            }
        }
        if !has_name {
            return Err(bad(&format!("{at}.name"), "missing".into()));
        }
        if !names.insert(p.name.clone()) {
            return Err(bad(
                &format!("{at}.name"),
                format!("duplicate platform name '{}'", p.name),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

/// A key for messages: its text, or its YAML form when it is not a string.
fn key_name(name: Option<&str>, key: &Yaml) -> String {
    name.map(str::to_string)
        .unwrap_or_else(|| format!("{key:?}"))
}

/// A string, number or boolean as text.
fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn count(v: &Yaml) -> Option<u32> {
    match v {
        Yaml::Integer(i) => u32::try_from(*i).ok(),
        _ => None,
    }
}

/// `K=V` pairs from a mapping of scalars or a list of `K=V` strings.
fn pairs(v: &Yaml) -> Result<Vec<String>, String> {
    match v {
        Yaml::Hash(map) => map
            .iter()
            .map(|(k, v)| match (scalar(k), scalar(v)) {
                (Some(k), Some(v)) if !k.is_empty() => Ok(format!("{k}={v}")),
                _ => Err(format!("'{k:?}' is not a KEY: scalar entry")),
            })
            .collect(),
        Yaml::Array(items) => items
            .iter()
            .map(|i| match i.as_str() {
                Some(s) if s.split_once('=').is_some_and(|(k, _)| !k.is_empty()) => {
                    Ok(s.to_string())
                }
                _ => Err(format!("'{i:?}' is not KEY=VALUE")),
            })
            .collect(),
        _ => Err("expected a mapping or a list of KEY=VALUE".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("run.yaml"), text).unwrap_err().to_string()
    }

    #[test]
    fn platforms_are_read_with_defaults() {
        let p = parse(
            Path::new("run.yaml"),
            "platforms:\n  - name: a\n    context: {distro: x}\n    remotes: 2\n  - name: b\n    context: [distro=y]\n    provisioner: [local, local]\n    reruns: 1\n    env: {K: 1}\n",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), &p[0].context, p[0].remotes),
            ("a", &vec!["distro=x".to_string()], 2)
        );
        assert_eq!(p[0].provisioners, ["local"]);
        assert_eq!(p[1].provisioners, ["local", "local"]);
        assert_eq!(
            (p[1].reruns, &p[1].env),
            (Some(1), &vec!["K=1".to_string()])
        );
    }

    #[test]
    fn the_documented_example_is_valid() {
        let text = include_str!("../../../examples/run-file.yaml");
        let p = parse(Path::new("examples/run-file.yaml"), text).unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["fedora-42", "centos-stream-10", "local"]);
        assert_eq!(p[1].provisioners, ["ssh:hosts-c10s.txt"]);
        assert_eq!(p[2].provisioners, ["local"]);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        assert_eq!(
            err("platforms:\n  - name: a\n    contxt: {}\n"),
            "run.yaml: platforms[0].contxt: unknown key (known: name, context, provisioner, remotes, reruns, env)"
        );
        assert_eq!(
            err("platforms:\n  - name: a\n  - remotes: 1\n"),
            "run.yaml: platforms[1].name: missing"
        );
        assert_eq!(
            err("platforms:\n  - name: a\n  - name: a\n"),
            "run.yaml: platforms[1].name: duplicate platform name 'a'"
        );
        assert_eq!(
            err("platforms:\n  - name: a\n    remotes: 0\n"),
            "run.yaml: platforms[0].remotes: expected a number from 1 to 4096"
        );
        assert_eq!(
            err("platform: []\n"),
            "run.yaml: platform: unknown key (known: platforms)"
        );
        assert!(err("platforms: [").starts_with("run.yaml: not valid YAML"));
    }
}
