//! Helpers shared by the integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes a minimal FMF tree at `root`: `.fmf/version` and `tests/main.fmf` holding
/// `main_fmf` (so every test is named `/tests/…`).
pub fn write_tree(root: &Path, main_fmf: &str) {
    std::fs::create_dir_all(root.join(".fmf")).unwrap();
    std::fs::write(root.join(".fmf/version"), "1\n").unwrap();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::write(root.join("tests/main.fmf"), main_fmf).unwrap();
}

/// The rows of `results/results.jsonl` (plain), each as JSON.
pub fn result_rows(results: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(results.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A unique marker for processes started by one test (put into their environment).
pub fn marker(test: &str) -> String {
    format!(
        "{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// PIDs of live (non-zombie) processes whose environment contains `ATEX_TEST_MARKER=<marker>`.
pub fn processes_with_marker(marker: &str) -> Vec<u32> {
    let needle = format!("ATEX_TEST_MARKER={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if !zombie {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `limit` until no process carries `marker`; returns the survivors otherwise.
pub fn wait_no_processes(marker: &str, limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_with_marker(marker);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of a binary cargo built next to the test executable (`examples/NAME` or `NAME`).
pub fn built_binary(rel: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    dir.join(rel)
}

/// A private sshd and network-namespace hosts for the SSH tests.
#[cfg(feature = "ssh")]
pub mod sshd;

/// A fake Testing Farm API and artifacts server.
#[cfg(feature = "testingfarm")]
pub mod fake_tf;

/// Polls `cond` (every 10 ms) until it holds; panics naming `what` when `limit` passes
/// first. For waiting on an event (a line, a file, a process) instead of sleeping.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`wait_until`] for async tests: polls without blocking the runtime.
pub async fn wait_until_async(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
/// A fake ReportPortal API.
#[cfg(feature = "reportportal")]
pub mod fake_rp;
/// A private libvirt (session daemon of the test user) and the test guest.
#[cfg(all(feature = "libvirt", feature = "ssh"))]
pub mod virt;

/// Environment variable naming the JUnit schema file (`junit-10.xsd`) the report tests
/// validate against; `scripts/run-tests.sh` fetches it and exports this.
pub const JUNIT_XSD_ENV: &str = "ATEX_JUNIT_XSD";

/// The Jenkins xUnit plugin's JUnit schema: `$ATEX_JUNIT_XSD`, else
/// `target/third-party/junit-10.xsd`. It is third-party and not kept in the repository;
/// `scripts/run-tests.sh` fetches it (from pytest's source distribution on PyPI). Panics
/// with how to get it when the file is missing: the tests must not pass without it.
pub fn junit_xsd() -> PathBuf {
    let path = match std::env::var_os(JUNIT_XSD_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/third-party/junit-10.xsd"),
    };
    assert!(
        path.is_file(),
        "the JUnit schema {} is missing: run ./scripts/run-tests.sh (it downloads pytest's \
         sdist from PyPI and extracts testing/example_scripts/junit-10.xsd to \
         target/third-party/junit-10.xsd), or point {JUNIT_XSD_ENV} at a copy of the Jenkins \
         xUnit plugin's junit-10.xsd",
        path.display()
    );
    path
}

/// The real BeakerLib (the unchanged upstream archive) for the BeakerLib tests.
pub mod beakerlib;
