//! FMF conformance corpus (`tests/fixtures/fmf-corpus`, a copy of the project's shared
//! corpus; see its `PROVENANCE.md`): every case must produce the reference's output
//! byte for byte (and its exit status), through the library and, with the `cli`
//! feature, through `atex fmf dump`. The `when` rule truth table
//! (`context-matches.json`) is checked entry by entry.

use std::path::{Path, PathBuf};

use atex::fmf::{self, Context, FmfError, Outcome};
use serde_json::Value as Json;

fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fmf-corpus");
    assert!(
        dir.join("cases.json").is_file(),
        "FMF corpus missing at {}",
        dir.display()
    );
    dir
}

#[derive(Debug)]
struct Case {
    id: String,
    tree: String,
    expected: String,
    args: Vec<String>,
    exit: i64,
}

fn cases(corpus: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(corpus.join("cases.json")).expect("read cases.json");
    let json: Json = serde_json::from_str(&text).expect("parse cases.json");
    json.as_array()
        .expect("cases.json is an array")
        .iter()
        .map(|c| Case {
            id: c["id"].as_str().expect("id").to_string(),
            tree: c["tree"].as_str().expect("tree").to_string(),
            expected: c["expected"].as_str().expect("expected").to_string(),
            args: c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("arg").to_string())
                .collect(),
            exit: c["exit"].as_i64().expect("exit"),
        })
        .collect()
}

/// A `shared/` copy may turn the symlinks of a tree into small files holding the
/// link target (as git does without symlink support). Rebuild such a tree in a
/// temporary directory with real symlinks.
fn materialize_symlinks(tree: &Path) -> Option<tempfile::TempDir> {
    let placeholders = ["file-link.fmf", "linked", "loop/back", "loopy/inner/up"];
    let first = tree.join(placeholders[0]);
    let meta = std::fs::symlink_metadata(&first).ok()?;
    if meta.file_type().is_symlink() {
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(tree, tmp.path());
    for p in placeholders {
        let path = tmp.path().join(p);
        let target = std::fs::read_to_string(&path).expect("placeholder");
        std::fs::remove_file(&path).expect("remove placeholder");
        std::os::unix::fs::symlink(target.trim_end_matches('\n'), &path).expect("symlink");
    }
    Some(tmp)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
            let mut perm = std::fs::metadata(&target).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&target, perm).expect("chmod");
        }
    }
}

/// Run the dump pipeline through the library, rendering like the CLI does.
fn run_library(tree: &Path, args: &[String]) -> (String, i32) {
    let mut contexts = Vec::new();
    let mut filters = Vec::new();
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().expect("option value").clone();
        match a.as_str() {
            "--context" => contexts.push(v),
            "--filter" => filters.push(v),
            "--names" => names.push(v),
            other => panic!("unknown option {other}"),
        }
    }
    let result = Context::from_pairs(&contexts)
        .map_err(|bad| FmfError::Usage { message: bad.0 })
        .and_then(|ctx| fmf::dump(tree, &ctx, &filters, &names));
    match result {
        Ok(text) => (text, 0),
        Err(e) => (format!("{{\"error\":\"{}\"}}\n", e.kind()), 1),
    }
}

#[test]
fn corpus_cases_library() {
    let corpus = corpus_dir();
    let all = cases(&corpus);
    assert!(all.len() >= 100, "corpus has {} cases", all.len());
    let mut failures = Vec::new();
    for case in &all {
        let expected = std::fs::read_to_string(corpus.join(&case.expected)).expect("expected");
        let tree = corpus.join(&case.tree);
        let fixed = materialize_symlinks(&tree).filter(|_| case.id == "symlinks");
        let tree = fixed.as_ref().map_or(tree, |t| t.path().to_path_buf());
        let (out, code) = run_library(&tree, &case.args);
        if out != expected || i64::from(code) != case.exit {
            failures.push(format!(
                "{}: exit {code} (want {})\n  got:  {}  want: {}",
                case.id, case.exit, out, expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[cfg(feature = "cli")]
#[test]
fn corpus_cases_cli() {
    let corpus = corpus_dir();
    let all = cases(&corpus);
    let mut failures = Vec::new();
    for case in &all {
        let expected = std::fs::read(corpus.join(&case.expected)).expect("expected");
        let fixed =
            materialize_symlinks(&corpus.join(&case.tree)).filter(|_| case.id == "symlinks");
        let tree = fixed
            .as_ref()
            .map_or(PathBuf::from(&case.tree), |t| t.path().to_path_buf());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atex"))
            .arg("fmf")
            .arg("dump")
            .arg(&tree)
            .args(&case.args)
            .current_dir(&corpus)
            .output()
            .expect("run atex");
        let code = out.status.code().unwrap_or(-1);
        if out.stdout != expected || i64::from(code) != case.exit {
            failures.push(format!(
                "{}: exit {code} (want {})\n  got:  {}  want: {}",
                case.id,
                case.exit,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&expected)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases differ via the CLI:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn context_truth_table() {
    let corpus = corpus_dir();
    let text = std::fs::read_to_string(corpus.join("context-matches.json")).expect("read");
    let table: Json = serde_json::from_str(&text).expect("parse");
    let rows = table.as_array().expect("array");
    assert!(rows.len() > 1000);
    let mut failures = Vec::new();
    for row in rows {
        let mut ctx = Context::new().case_sensitive(row["case_sensitive"].as_bool().expect("cs"));
        for (dim, v) in row["context"].as_object().expect("context") {
            match v {
                Json::String(s) => ctx.set(dim, s),
                Json::Array(items) => {
                    let vals: Vec<&str> = items.iter().map(|i| i.as_str().expect("str")).collect();
                    ctx.set_many(dim, &vals);
                }
                other => panic!("unexpected context value {other}"),
            }
        }
        let got = match &row["rule"] {
            Json::Bool(b) => ctx.matches_value(&fmf::Value::Bool(*b)),
            Json::String(s) => ctx.matches(s),
            other => panic!("unexpected rule {other}"),
        };
        let got = match got {
            Ok(Outcome::True) => "true",
            Ok(Outcome::False) => "false",
            Ok(Outcome::Undecided) => "undecided",
            Err(_) => "invalid",
        };
        let want = row["outcome"].as_str().expect("outcome");
        if got != want {
            failures.push(format!("{row}: got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} truth-table rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
