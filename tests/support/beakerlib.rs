//! The real BeakerLib for the tests: the unchanged upstream archive in
//! `../shared/third-party/beakerlib` (see its README), found through
//! `ATEX_BEAKERLIB_TARBALL` (exported by `scripts/run-tests.sh`) or next to the checkout.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the BeakerLib tarball.
pub const TARBALL_VAR: &str = "ATEX_BEAKERLIB_TARBALL";

fn tarball_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("beakerlib-") && n.ends_with(".tar.gz"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The BeakerLib tarball; panics (naming where it looked) when there is none.
pub fn tarball() -> PathBuf {
    if let Some(path) = std::env::var_os(TARBALL_VAR) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{TARBALL_VAR}={} is not a file",
            path.display()
        );
        return path;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/third-party/beakerlib"),
        manifest.join("../../shared/third-party/beakerlib"),
    ];
    for dir in &candidates {
        if let Some(t) = tarball_in(dir) {
            return t;
        }
    }
    panic!(
        "no BeakerLib tarball: set {TARBALL_VAR} (scripts/run-tests.sh does) or put it in {candidates:?}"
    );
}

/// Unpacks BeakerLib's own example tests (`src/extradocs/examples/<name>/runtest.sh`)
/// into `dir`; returns the examples directory.
pub fn examples(dir: &Path) -> PathBuf {
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(tarball())
        .arg("-C")
        .arg(dir)
        .arg("--wildcards")
        .arg("*/src/extradocs/examples/*")
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = std::fs::read_dir(dir)
        .expect("read")
        .flatten()
        .find(|e| e.path().join("src/extradocs/examples").is_dir())
        .expect("examples in the tarball");
    top.path().join("src/extradocs/examples")
}

/// Whether `rpm -q PACKAGE` succeeds here (BeakerLib's examples assert RPMs).
pub fn rpm_installed(package: &str) -> bool {
    Command::new("rpm")
        .args(["-q", package])
        .output()
        .is_ok_and(|o| o.status.success())
}
