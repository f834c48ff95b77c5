//! JSONL ingest when the results file itself cannot be written: a write that fails half-way
//! (here at the process's file size limit, `RLIMIT_FSIZE`, as on a full disk) leaves no torn
//! line and no broken compressed stream, other ingests go on, and the failed one can be
//! retried. One test in its own binary, because the limit applies to the whole process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use atex::aggregator::{Aggregator, AggregatorError, Compression, JsonlAggregator, JsonlOptions};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::signal::unix::{SignalKind, signal};

fn artifacts(results: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("results"), results).unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join("files").join(name), data).unwrap();
    }
    dir
}

fn decode(tool: Option<&str>, path: &Path) -> String {
    let Some(tool) = tool else {
        return std::fs::read_to_string(path).unwrap();
    };
    let out = std::process::Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Text that compresses badly (hex digits of a 64-bit LCG).
fn noise(len: usize) -> String {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from_digit(((x >> 59) & 0xf) as u32, 16).unwrap()
        })
        .collect()
}

/// Runs `f` with regular files limited to `bytes`.
async fn with_file_size_limit<T>(bytes: u64, f: impl AsyncFnOnce() -> T) -> T {
    let (soft, hard) = getrlimit(Resource::RLIMIT_FSIZE).unwrap();
    setrlimit(Resource::RLIMIT_FSIZE, bytes, hard).unwrap();
    let out = f().await;
    setrlimit(Resource::RLIMIT_FSIZE, soft, hard).unwrap();
    out
}

async fn case(compression: Compression, tool: Option<&str>) {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("results");
    let agg = JsonlAggregator::create(
        &target,
        out.path().join("files"),
        JsonlOptions {
            compression,
            compress_files: false,
            ..JsonlOptions::default()
        },
    )
    .unwrap();
    let one = artifacts("{\"status\": \"pass\"}\n", &[]);
    agg.ingest("p", "/one", one.path()).await.unwrap();
    let note = noise(8000);
    let big = artifacts(
        &format!("{{\"status\": \"fail\", \"note\": \"{note}\", \"files\": [\"f\"]}}\n"),
        &[("f", b"file of big")],
    );
    let small = artifacts("{\"status\": \"pass\"}\n", &[]);
    let size = std::fs::metadata(&target).unwrap().len();

    // Room for a few hundred bytes more: the big test's line does not fit, the small one's
    // does.
    let (failed, small_ok) = with_file_size_limit(size + 400, async || {
        let failed = agg.ingest("p", "/big", big.path()).await;
        let after_failure = std::fs::metadata(&target).unwrap().len();
        let small_ok = agg.ingest("p", "/small", small.path()).await;
        (failed.map(|()| after_failure), small_ok)
    })
    .await;
    let err = failed.expect_err("the big line cannot be written");
    let AggregatorError::Io { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.raw_os_error(), Some(nix::libc::EFBIG), "{err}");
    small_ok.expect("a small test still fits");
    // The failed ingest left its artifacts and no files.
    assert!(big.path().join("results").exists());
    assert_eq!(
        std::fs::read(big.path().join("files/f")).unwrap(),
        b"file of big"
    );
    assert!(!out.path().join("files/p/big").exists());
    if tool.is_none() {
        // Plain: only whole lines, right now.
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "[\"p\", \"pass\", \"/one\", null, [], null]\n[\"p\", \"pass\", \"/small\", null, [], null]\n"
        );
    }

    // Retried without the limit: it lands, after the others.
    agg.ingest("p", "/big", big.path()).await.unwrap();
    agg.finish().await.unwrap();
    assert_eq!(
        decode(tool, &target),
        format!(
            "[\"p\", \"pass\", \"/one\", null, [], null]\n\
             [\"p\", \"pass\", \"/small\", null, [], null]\n\
             [\"p\", \"fail\", \"/big\", null, [\"f\"], \"{note}\"]\n"
        )
    );
    assert_eq!(
        std::fs::read(out.path().join("files/p/big/f")).unwrap(),
        b"file of big"
    );
}

#[tokio::test]
async fn failed_results_write_leaves_no_torn_line_and_can_be_retried() {
    // The kernel signals SIGXFSZ at the limit; with a handler installed the write fails
    // with EFBIG instead of killing the process.
    let _xfsz = signal(SignalKind::from_raw(nix::libc::SIGXFSZ)).unwrap();
    case(Compression::None, None).await;
    case(Compression::Gzip(9), Some("gzip")).await;
    case(Compression::Xz(9), Some("xz")).await;
}
