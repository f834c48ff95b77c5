//! Framing and control words: line limits, event order, `duration`, chunked and
//! interrupted reads, streamed uploads.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::super::control::{ControlError, ControlEvent, ControlParser};
use super::super::reporter::{Outcome, Reporter};
use super::support::*;
use crate::duration::{Deadline, DurationControl};

#[tokio::test]
async fn line_limit() {
    let ok = format!("noop {}\nexitcode 0\n", "x".repeat(MAX - 6));
    assert_eq!(
        ok.find('\n'),
        Some(MAX - 1),
        "a 4096-byte line including \\n"
    );
    let run = run_stream(ok.as_bytes()).await;
    assert_eq!(run.error, None);
    let bad = format!("noop {}\nexitcode 0\n", "x".repeat(MAX - 5));
    let run = run_stream(bad.as_bytes()).await;
    assert_eq!(run.error.as_deref(), Some("line buffer reached 4096 bytes"));
    let endless = "x".repeat(100_000);
    let run = run_stream(endless.as_bytes()).await;
    assert_eq!(run.error.as_deref(), Some("line buffer reached 4096 bytes"));
}

const MAX: usize = super::super::control::MAX_LINE;

#[tokio::test]
async fn events_in_order() {
    let stream = b"noop\nnoop with args\nduration save\nduration +1m\nduration restore\nduration 5\nexitcode 7\nexitcode -1\ndisconnect\ngarbage that is never read\n";
    let mut parser = ControlParser::new(&stream[..]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let mut events = Vec::new();
    while let Some(event) = parser.next(&mut reporter).await.expect("event") {
        events.push(event);
    }
    use ControlEvent::*;
    let m = std::time::Duration::from_secs(60);
    assert_eq!(
        events,
        [
            Noop,
            Noop,
            Duration(DurationControl::Save),
            Duration(DurationControl::Extend(m)),
            Duration(DurationControl::Restore),
            Duration(DurationControl::Set(std::time::Duration::from_secs(5))),
            ExitCode(7),
            ExitCode(-1),
            Disconnect,
        ]
    );
    assert!(parser.is_finished());
    reporter.finish(&Outcome::Exited(0));
}

#[tokio::test(start_paused = true)]
async fn duration_words_move_the_deadline() {
    let start = tokio::time::Instant::now();
    let mut deadline = Deadline::new(Duration::from_secs(300));
    let stream = b"duration 1m\nduration +30\nduration -10s\nduration save\nduration save\nduration restore\nduration restore\n";
    let mut parser = ControlParser::new(&stream[..]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let mut seen = 0;
    while let Some(event) = parser.next(&mut reporter).await.expect("event") {
        if let ControlEvent::Duration(d) = event {
            deadline.apply(d);
            seen += 1;
            if seen == 4 {
                // time passes between save and restore: it does not count
                tokio::time::advance(Duration::from_secs(1000)).await;
            }
        }
    }
    assert_eq!(deadline.at(), start + Duration::from_secs(1000 + 80));
    reporter.finish(&Outcome::Exited(0));
}

/// A reader that hands out at most `chunk` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn byte_at_a_time_gives_identical_results() {
    let stream = b"result 78\n{\"name\": \"sub/one\", \"status\": \"fail\", \"files\": [{\"name\": \"log\", \"length\": 6}]}hello\nnoop\nresult 18\n{\"status\": \"pass\"}exitcode 0\n";
    for chunk in [1, 2, 3, 7, 64] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut reporter = Reporter::create(tmp.path()).expect("reporter");
        let mut parser = ControlParser::new(Trickle {
            data: stream,
            chunk,
        });
        while let Some(event) = parser.next(&mut reporter).await.expect("event") {
            if let ControlEvent::Result(r) = event {
                reporter.record(r).expect("record");
            }
        }
        reporter.finish(&Outcome::Exited(0));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("results")).expect("results"),
            "{\"name\": \"sub/one\", \"status\": \"fail\", \"files\": [\"log\"]}\n{\"status\": \"pass\"}\n"
        );
        assert_eq!(
            std::fs::read(tmp.path().join("files/sub/one/log")).expect("log"),
            b"hello\n"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_next_future_loses_nothing() {
    let (mut tx, rx) = tokio::io::duplex(4096);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let mut parser = ControlParser::new(rx);
    tx.write_all(
        b"result 60\n{\"partial\": true, \"files\": [{\"name\": \"a.log\", \"length\": 3}]}a",
    )
    .await
    .expect("write");
    for _ in 0..3 {
        // the deadline wins the race: the half-read payload must survive the drop
        tokio::select! {
            event = parser.next(&mut reporter) => panic!("unexpected {event:?}"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        assert_eq!(parser.in_progress(), Some("file payload reader"));
    }
    tx.write_all(b"bc").await.expect("write");
    let event = parser.next(&mut reporter).await.expect("event");
    assert!(matches!(event, Some(ControlEvent::Result(_))), "{event:?}");
    assert_eq!(parser.in_progress(), None);
    tx.write_all(b"exit").await.expect("write");
    tokio::select! {
        event = parser.next(&mut reporter) => panic!("unexpected {event:?}"),
        () = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    assert_eq!(parser.in_progress(), Some("control line reader"));
    tx.write_all(b"code 4\n").await.expect("write");
    drop(tx);
    assert_eq!(
        parser.next(&mut reporter).await.expect("event"),
        Some(ControlEvent::ExitCode(4))
    );
    assert_eq!(parser.next(&mut reporter).await.expect("eof"), None);
    assert_eq!(
        std::fs::read(tmp.path().join("files/a.log")).expect("log"),
        b"abc"
    );
    reporter.finish(&Outcome::Exited(0));
}

#[tokio::test]
async fn eof_error_names_the_interrupted_parser() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let mut stream = res("{\"files\": [{\"name\": \"x\", \"length\": 9}]}").into_bytes();
    stream.extend_from_slice(b"abc");
    let mut parser = ControlParser::new(&stream[..]);
    match parser.next(&mut reporter).await {
        Err(ControlError::UnexpectedEof { message, parser }) => {
            assert_eq!(message, "EOF when reading data");
            assert_eq!(parser, "file payload reader");
        }
        other => panic!("unexpected {other:?}"),
    }
    // the parser stays finished
    assert!(
        parser
            .next(&mut reporter)
            .await
            .expect("finished")
            .is_none()
    );
}

/// A large upload is streamed, not buffered: the parser's memory is its fixed buffer.
#[tokio::test]
async fn large_upload_streams_in_chunks() {
    const SIZE: u64 = 8 * 1024 * 1024 + 13;
    let header = res(&format!(
        "{{\"files\": [{{\"name\": \"big\", \"length\": {SIZE}}}]}}"
    ));
    let (mut tx, rx) = tokio::io::duplex(4096);
    let writer = async move {
        tx.write_all(header.as_bytes()).await.expect("write");
        let block = vec![0xa5u8; 1 << 16];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            tx.write_all(&block[..n]).await.expect("write");
            left -= n as u64;
        }
        tx.write_all(b"exitcode 0\n").await.expect("write");
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let reader = async {
        let mut parser = ControlParser::new(rx);
        let mut events = 0;
        while let Some(event) = parser.next(&mut reporter).await.expect("event") {
            if let ControlEvent::Result(r) = event {
                reporter.record(r).expect("record");
            }
            events += 1;
        }
        events
    };
    let ((), events) = tokio::join!(writer, reader);
    assert_eq!(events, 2);
    reporter.finish(&Outcome::Exited(0));
    let meta = std::fs::metadata(tmp.path().join("files/big")).expect("big");
    assert_eq!(meta.len(), SIZE);
}
