//! What the tests share: a simulated run of a control stream through the parser into a
//! reporter, and readers of its artifacts.

use std::path::{Path, PathBuf};

use super::super::control::{ControlEvent, ControlParser};
use super::super::reporter::{Outcome, Reporter, TESTOUT_TEMP};

/// What a simulated run produced.
pub(super) struct Run {
    _tmp: tempfile::TempDir,
    pub(super) dir: PathBuf,
    pub(super) exit_code: Option<i32>,
    pub(super) error: Option<String>,
}

impl Run {
    pub(super) fn results(&self) -> String {
        std::fs::read_to_string(self.dir.join("results")).expect("results file")
    }
    pub(super) fn file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("files").join(rel)).expect(rel)
    }
    pub(super) fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        list(&self.dir.join("files"), Path::new(""), &mut out);
        out.sort();
        out
    }
}

pub(super) fn list(dir: &Path, rel: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let rel = rel.join(entry.file_name());
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            list(&entry.path(), &rel, out);
        } else {
            out.push(rel.display().to_string());
        }
    }
}

/// `result N\n<json>` with N computed.
pub(super) fn res(json: &str) -> String {
    format!("result {}\n{}", json.len(), json)
}

/// Feeds `stream` through the parser into a fresh reporter, like the executor does: the
/// test printed `OUT\n`; an error aborts the run with `<kind>(<message>)`.
pub(super) async fn run_stream(stream: &[u8]) -> Run {
    run_stream_with(stream, |_| {}).await
}

pub(super) async fn run_stream_with(stream: &[u8], prepare: impl FnOnce(&Path)) -> Run {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("artifacts");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut reporter = Reporter::create(&dir).expect("reporter");
    std::fs::write(dir.join(TESTOUT_TEMP), b"OUT\n").expect("testout");
    prepare(&dir);
    let (exit_code, error) = drive(stream, &mut reporter).await;
    let outcome = match (&error, exit_code) {
        (Some((kind, message)), _) => Outcome::aborted(kind.clone(), message.clone()),
        (None, Some(code)) => Outcome::Exited(code),
        (None, None) => Outcome::aborted("TestAbortedError", "exitcode not reported, wrapper bug?"),
    };
    reporter.finish(&outcome);
    assert!(!dir.join(TESTOUT_TEMP).exists(), "testout.temp removed");
    Run {
        _tmp: tmp,
        dir,
        exit_code,
        error: error.map(|(_, m)| m),
    }
}

pub(super) async fn drive(
    stream: &[u8],
    reporter: &mut Reporter,
) -> (Option<i32>, Option<(String, String)>) {
    let mut parser = ControlParser::new(stream);
    let mut exit_code = None;
    loop {
        match parser.next(reporter).await {
            Ok(Some(ControlEvent::Result(result))) => {
                if let Err(e) = reporter.record(result) {
                    return (exit_code, Some((e.kind().to_owned(), e.to_string())));
                }
            }
            Ok(Some(ControlEvent::ExitCode(code))) => exit_code = Some(code),
            Ok(Some(ControlEvent::Duration(_) | ControlEvent::Noop)) => {}
            Ok(Some(ControlEvent::Disconnect)) | Ok(None) => return (exit_code, None),
            Err(e) => return (exit_code, Some((e.kind().to_owned(), e.to_string()))),
        }
    }
}
