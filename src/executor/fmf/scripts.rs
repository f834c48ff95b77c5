//! Bash scripts the FMF executor runs on the system under test (bash + coreutils + the
//! system's package manager; no Python).

use crate::connection::shell_quote;

/// The remote test wrapper (see executors.md §5.6), a bash re-implementation.
pub const WRAPPER: &str = include_str!("wrapper.sh");

/// Whether packages must be installed (failure fails the script) or only when available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Installation failure is an error.
    Required,
    /// Unavailable packages are skipped.
    Recommended,
}

/// A bash function `atex_install MODE PKG...` that installs the packages that are not yet
/// installed with whichever package manager the system has (dnf5, dnf, yum, apt-get,
/// zypper, apk). Emitted once per script, before any [`install_call`].
pub const INSTALL_FUNCTION: &str = r#"atex_install() {
    local mode=$1 p; shift
    local missing=()
    for p in "$@"; do
        if command -v rpm >/dev/null 2>&1 && ! command -v dpkg-query >/dev/null 2>&1; then
            rpm -q --quiet --whatprovides "$p" >/dev/null 2>&1 || missing+=("$p")
        elif command -v dpkg-query >/dev/null 2>&1; then
            dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        elif command -v apk >/dev/null 2>&1; then
            apk info -e "$p" >/dev/null 2>&1 || missing+=("$p")
        else
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if command -v dnf5 >/dev/null 2>&1; then
        if [ "$mode" = required ]; then
            dnf5 -q -y --setopt=install_weak_deps=False install "${missing[@]}"
        else
            dnf5 -q -y --setopt=install_weak_deps=False --skip-broken --skip-unavailable install "${missing[@]}"
        fi
    elif command -v dnf >/dev/null 2>&1; then
        if [ "$mode" = required ]; then
            dnf -q -y --setopt=install_weak_deps=False install "${missing[@]}"
        else
            dnf -q -y --setopt=install_weak_deps=False --skip-broken install "${missing[@]}"
        fi
    elif command -v yum >/dev/null 2>&1; then
        if [ "$mode" = required ]; then
            yum -q -y install "${missing[@]}"
        else
            yum -q -y --skip-broken install "${missing[@]}" filesystem
        fi
    elif command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        if [ "$mode" = required ]; then
            apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
        else
            apt-get install -y -qq --no-install-recommends "${missing[@]}" || {
                apt-get update -qq || true
                for p in "${missing[@]}"; do apt-get install -y -qq --no-install-recommends "$p" || true; done
            }
        fi
    elif command -v zypper >/dev/null 2>&1; then
        if [ "$mode" = required ]; then
            zypper -n -q install "${missing[@]}"
        else
            for p in "${missing[@]}"; do zypper -n -q install "$p" || true; done
        fi
    elif command -v apk >/dev/null 2>&1; then
        if [ "$mode" = required ]; then
            apk add -q "${missing[@]}"
        else
            for p in "${missing[@]}"; do apk add -q "$p" || true; done
        fi
    else
        echo "atex: no supported package manager (dnf, yum, apt-get, zypper, apk) to install: ${missing[*]}" >&2
        [ "$mode" = required ] && return 1
        return 0
    fi
}
"#;

/// A call of the install function for `packages` (empty when there are none).
pub fn install_call(packages: &[String], need: Need) -> String {
    if packages.is_empty() {
        return String::new();
    }
    let mode = match need {
        Need::Required => "required",
        Need::Recommended => "recommended",
    };
    let quoted: Vec<String> = packages.iter().map(|p| shell_quote(p)).collect();
    format!("atex_install {mode} {}\n", quoted.join(" "))
}

/// A script for a plan `install` step.
pub fn plan_install(packages: &[String]) -> String {
    format!(
        "set -xe\n{INSTALL_FUNCTION}{}",
        install_call(packages, Need::Required)
    )
}

/// A plan `shell` step: run `script` in `tree` with the plan environment file sourced.
pub fn plan_shell(tree: &str, script: &str) -> String {
    format!(
        "cd {} || exit 1\n{}set -e -o pipefail\n{script}\n",
        shell_quote(tree),
        SOURCE_PLAN_ENV
    )
}

/// Sources `$TMT_PLAN_ENVIRONMENT_FILE` with allexport when it is a file.
const SOURCE_PLAN_ENV: &str = "if [ -f \"$TMT_PLAN_ENVIRONMENT_FILE\" ]; then set -a; . \"$TMT_PLAN_ENVIRONMENT_FILE\"; set +a; fi\n";

/// The directories the work directory may be created in: `base`, else `/var/tmp`, `$HOME`
/// and `/tmp` (shell words).
fn work_dir_bases(base: Option<&str>) -> String {
    match base {
        Some(base) => shell_quote(base),
        None => "/var/tmp \"$HOME\" /tmp".to_owned(),
    }
}

/// The script that creates the work directory `W` = `BASE/name` in the first usable base
/// (with `W/tests`, `W/test`, `W/plan_env`), installs the wrapper as `W/test/wrapper.sh`
/// and an executable `W/test/test.sh` that every test overwrites; prints the path of `W`
/// on its last line. `name` is chosen by the caller (unpredictable, see
/// [`remove_unfinished_work_dir`]); `mkdir` fails on anything already there, a symlink
/// included.
pub fn make_work_dir(base: Option<&str>, name: &str) -> String {
    let candidates = work_dir_bases(base);
    let eof = terminator(&[WRAPPER]);
    format!(
        "set -e\nfor base in {candidates}; do\n    \
         d=\"$base\"/{name}\n    \
         if [ -d \"$base\" ] && [ -w \"$base\" ] && mkdir -m 0755 -- \"$d\" 2>/dev/null; then\n        \
         mkdir \"$d/tests\" \"$d/test\"; : > \"$d/plan_env\"\n        \
         cat > \"$d/test/wrapper.sh\" <<'{eof}'\n{WRAPPER}{nl}{eof}\n        \
         : > \"$d/test/test.sh\"; chmod 0755 \"$d/test/wrapper.sh\" \"$d/test/test.sh\"\n        \
         if [ \"$(id -u)\" = 0 ] && unshare --pid --fork --kill-child true 2>/dev/null; then : > \"$d/test/pidns\"; fi\n        \
         printf '%s\\n' \"$d\"; exit 0\n    \
         fi\ndone\necho 'atex: cannot create a work directory in: '{} >&2\nexit 1\n",
        shell_quote(&candidates),
        name = shell_quote(name),
        nl = if WRAPPER.ends_with('\n') { "" } else { "\n" },
    )
}

/// The script that removes the work directory named `name` (see [`make_work_dir`]) from
/// whichever base it was created in: for a start interrupted before it learned where.
/// A symlink of that name is left alone.
pub fn remove_unfinished_work_dir(base: Option<&str>, name: &str) -> String {
    format!(
        "for base in {}; do\n    d=\"$base\"/{}\n    \
         if [ -d \"$d\" ] && [ ! -L \"$d\" ]; then rm -rf -- \"$d\"; fi\ndone\nexit 0\n",
        work_dir_bases(base),
        shell_quote(name)
    )
}

/// Picks a heredoc terminator that does not occur in any of `texts`.
pub(crate) fn terminator(texts: &[&str]) -> String {
    let mut n: u64 = 0;
    loop {
        let candidate = format!("ATEX_EOF_{n:x}");
        if !texts.iter().any(|t| t.contains(&candidate)) {
            return candidate;
        }
        n += 1;
    }
}

/// Everything the per-test setup script needs.
#[derive(Debug)]
pub struct TestSetup<'a> {
    /// The work directory.
    pub work_dir: &'a str,
    /// Required packages.
    pub require: &'a [String],
    /// Recommended packages.
    pub recommend: &'a [String],
    /// The metadata document (JSON, which is valid YAML).
    pub metadata: &'a str,
    /// The test's script.
    pub script: &'a str,
    /// The first lines of `test.sh` (see [`test_sh`]).
    pub prologue: &'a str,
}

/// The contents of `W/test/test.sh` for a test whose `test` key is `script`: sources the
/// plan environment file, puts `W/bin` on `PATH`, sets `-e -o pipefail`, runs the script.
/// `prologue` comes first, right after the `#!` line (empty for a test started through the
/// wrapper).
pub fn test_sh(work_dir: &str, prologue: &str, script: &str) -> String {
    let bin_dir = format!("{work_dir}/bin");
    format!(
        "#!/bin/bash\n{prologue}{SOURCE_PLAN_ENV}if [ -d {bin} ]; then PATH={bin}:$PATH; fi\nset -e -o pipefail\n{script}\n",
        bin = shell_quote(&bin_dir),
    )
}

/// The per-test setup script (executors.md §5.5 "Setup", without Python): installs
/// packages, then writes `W/test/metadata.yaml` and `W/test/test.sh`.
///
/// Everything but the package installation uses bash builtins only (no `cat`, `rm`,
/// `mkdir` or `chmod` per test: the wrapper and an executable `test.sh` were created with
/// the work directory, and overwriting a file keeps its mode), so a test costs one short
/// bash process for its setup.
pub fn test_setup(setup: &TestSetup<'_>) -> String {
    let test_dir = format!("{}/test", setup.work_dir);
    let test_sh = test_sh(setup.work_dir, setup.prologue, setup.script);
    let eof = terminator(&[setup.metadata, &test_sh]);
    let q = shell_quote(&test_dir);
    let mut out = String::from("set -e\n");
    if !setup.require.is_empty() || !setup.recommend.is_empty() {
        out.push_str(INSTALL_FUNCTION);
        out.push_str("set -x\n");
        out.push_str(&install_call(setup.require, Need::Required));
        out.push_str(&install_call(setup.recommend, Need::Recommended));
        out.push_str("set +x\n");
    }
    for (name, text) in [
        ("metadata.yaml", setup.metadata),
        ("test.sh", test_sh.as_str()),
    ] {
        // `read -d ''` reads the whole here-document (it has no NUL) and returns 1 at its
        // end; `IFS=` and `-r` keep every byte.
        out.push_str(&format!(
            "IFS= read -r -d '' atex_data <<'{eof}' || true\n{text}{}{eof}\nprintf '%s' \"$atex_data\" > {q}/{name}\n",
            if text.ends_with('\n') { "" } else { "\n" }
        ));
    }
    out.push_str("exit 0\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminator_avoids_content() {
        assert_eq!(terminator(&["abc"]), "ATEX_EOF_0");
        assert_eq!(terminator(&["ATEX_EOF_0 ATEX_EOF_1"]), "ATEX_EOF_2");
    }

    #[test]
    fn install_call_quotes() {
        assert_eq!(install_call(&[], Need::Required), "");
        assert_eq!(
            install_call(&["a b".into(), "library(x/y)".into()], Need::Recommended),
            "atex_install recommended 'a b' 'library(x/y)'\n"
        );
    }
}
