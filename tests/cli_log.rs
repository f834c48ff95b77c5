//! The `atex` program's log on stderr: plain text when stderr is not a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

#[test]
fn log_lines_carry_no_colour_codes_on_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join(".fmf")).unwrap();
    std::fs::write(tree.join(".fmf/version"), "1\n").unwrap();
    std::fs::write(tree.join("main.fmf"), "/a:\n    test: echo a\n").unwrap();
    // Debug logging of a whole run, stderr to a pipe; nothing in the environment asks for
    // or against colour.
    let out = Command::new(env!("CARGO_BIN_EXE_atex"))
        .args(["-vv", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("out"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("DEBUG")),
        "the run logs at debug level: {stderr}"
    );
    assert!(
        !out.stderr.contains(&0x1b),
        "escape sequences in a piped log: {stderr:?}"
    );
}
