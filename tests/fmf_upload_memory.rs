//! A large upload through the test-control parser is streamed to disk in constant memory.
//! (Its own test binary, so that no other test disturbs the peak-RSS measurement.)

use atex::executor::fmf::control::{ControlEvent, ControlParser};
use atex::executor::fmf::reporter::{Outcome, Reporter};
use tokio::io::AsyncWriteExt;

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn one_gigabyte_upload_does_not_grow_rss() {
    const SIZE: u64 = 1024 * 1024 * 1024;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let before = peak_rss_kib();
    let json =
        format!("{{\"status\": \"pass\", \"files\": [{{\"name\": \"big\", \"length\": {SIZE}}}]}}");
    let header = format!("result {}\n{json}", json.len());
    let (mut tx, rx) = tokio::io::duplex(256 * 1024);
    let writer = async move {
        tx.write_all(header.as_bytes()).await.expect("write");
        let block = vec![0x5au8; 1 << 20];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            tx.write_all(&block[..n]).await.expect("write");
            left -= n as u64;
        }
        tx.write_all(b"exitcode 0\n").await.expect("write");
    };
    let reader = async {
        let mut parser = ControlParser::new(rx);
        let mut exit = None;
        while let Some(event) = parser.next(&mut reporter).await.expect("event") {
            match event {
                ControlEvent::Result(r) => reporter.record(r).expect("record"),
                ControlEvent::ExitCode(c) => exit = Some(c),
                _ => {}
            }
        }
        exit
    };
    let ((), exit) = tokio::join!(writer, reader);
    assert_eq!(exit, Some(0));
    reporter.finish(&Outcome::Exited(0));
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "peak RSS grew by {grown} KiB during a {SIZE}-byte upload"
    );
    let len = std::fs::metadata(tmp.path().join("files/big"))
        .expect("big")
        .len();
    assert_eq!(len, SIZE);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("results")).expect("results"),
        "{\"status\": \"pass\", \"files\": [\"big\"]}\n"
    );
}
