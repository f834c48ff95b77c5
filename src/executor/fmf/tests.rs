//! Tests of the test-control parser and the reporter together: the byte-exact examples of
//! test-control.md §9, the acceptance list items that need no remote, hostile names, and a
//! property test.

use super::control::{ControlError, ControlEvent, ControlParser};
use super::reporter::{Outcome, Reporter, TESTOUT_TEMP};
use crate::duration::{Deadline, DurationControl};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What a simulated run produced.
struct Run {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    exit_code: Option<i32>,
    error: Option<String>,
}

impl Run {
    fn results(&self) -> String {
        std::fs::read_to_string(self.dir.join("results")).expect("results file")
    }
    fn file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("files").join(rel)).expect(rel)
    }
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        list(&self.dir.join("files"), Path::new(""), &mut out);
        out.sort();
        out
    }
}

fn list(dir: &Path, rel: &Path, out: &mut Vec<String>) {
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
fn res(json: &str) -> String {
    format!("result {}\n{}", json.len(), json)
}

/// Feeds `stream` through the parser into a fresh reporter, like the executor does: the
/// test printed `OUT\n`; an error aborts the run with `<kind>(<message>)`.
async fn run_stream(stream: &[u8]) -> Run {
    run_stream_with(stream, |_| {}).await
}

async fn run_stream_with(stream: &[u8], prepare: impl FnOnce(&Path)) -> Run {
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

async fn drive(stream: &[u8], reporter: &mut Reporter) -> (Option<i32>, Option<(String, String)>) {
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

// ---------------------------------------------------------------- §9 byte-exact examples

#[tokio::test]
async fn ex_9_1_single_own_result() {
    let run = run_stream(b"result 18\n{\"status\": \"pass\"}exitcode 0\n").await;
    assert_eq!(run.results(), "{\"status\": \"pass\"}\n");
    assert!(run.files().is_empty());
    assert_eq!(run.exit_code, Some(0));
}

#[tokio::test]
async fn ex_9_2_subtest_with_file_then_own() {
    let run = run_stream(b"result 78\n{\"name\": \"sub/one\", \"status\": \"fail\", \"files\": [{\"name\": \"log\", \"length\": 6}]}hello\nresult 18\n{\"status\": \"pass\"}exitcode 0\n").await;
    assert_eq!(
        run.results(),
        "{\"name\": \"sub/one\", \"status\": \"fail\", \"files\": [\"log\"]}\n{\"status\": \"pass\"}\n"
    );
    assert_eq!(run.file("sub/one/log"), b"hello\n");
    assert_eq!(run.files(), ["sub/one/log"]);
}

#[tokio::test]
async fn ex_9_3_two_files_fallback_added() {
    let run = run_stream(b"result 108\n{\"status\": \"pass\", \"name\": \"some/test\", \"files\": [{\"name\": \"A\", \"length\": 13}, {\"name\": \"B\", \"length\": 13}]}contents of Acontents of Bexitcode 0\n").await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"name\": \"some/test\", \"files\": [\"A\", \"B\"]}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(run.file("some/test/A"), b"contents of A");
    assert_eq!(run.file("some/test/B"), b"contents of B");
    assert_eq!(run.file("output.txt"), b"OUT\n");
}

#[tokio::test]
async fn ex_9_4_partial_nameless_with_file_status_from_exit() {
    let run = run_stream(b"result 60\n{\"partial\": true, \"files\": [{\"name\": \"a.log\", \"length\": 3}]}abcexitcode 1\n").await;
    assert_eq!(
        run.results(),
        "{\"files\": [\"output.txt\", \"a.log\"], \"status\": \"fail\"}\n"
    );
    assert_eq!(run.file("a.log"), b"abc");
    assert_eq!(run.file("output.txt"), b"OUT\n");
}

#[tokio::test]
async fn ex_9_5_repeated_unsorted_names() {
    let run = run_stream(b"result 95\n{\"files\": [{\"name\": \"b\", \"length\": 2}, {\"name\": \"a\", \"length\": 1}, {\"name\": \"b\", \"length\": 1}]}BBAbexitcode 3\n").await;
    assert_eq!(run.results(), "{\"files\": [\"a\", \"b\"]}\n");
    assert_eq!(run.file("b"), b"BBb");
    assert_eq!(run.file("a"), b"A");
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.files(), ["a", "b"]);
}

#[tokio::test]
async fn ex_9_6_partial_merge() {
    let first = b"result 100\n{\"name\": \"x\", \"status\": \"error\", \"partial\": true, \"note\": \"setup\", \"tags\": [\"a\"], \"meta\": {\"k1\": 1}}";
    let second = b"result 79\n{\"name\": \"x\", \"status\": \"pass\", \"note\": null, \"tags\": [\"b\"], \"meta\": {\"k2\": 2}}";
    let run = run_stream(&[&first[..], &second[..], b"exitcode 0\n"].concat()).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"x\", \"status\": \"pass\", \"tags\": [\"a\", \"b\"], \"meta\": {\"k1\": 1, \"k2\": 2}}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    let run = run_stream(&[&first[..], b"exitcode 0\n"].concat()).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"x\", \"status\": \"error\", \"note\": \"setup\", \"tags\": [\"a\"], \"meta\": {\"k1\": 1}}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
}

#[tokio::test]
async fn ex_9_7_testout() {
    let one = b"result 41\n{\"status\": \"pass\", \"testout\": \"here.txt\"}";
    let run = run_stream(&[&one[..], b"exitcode 0\n"].concat()).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"files\": [\"here.txt\"]}\n"
    );
    assert_eq!(run.file("here.txt"), b"OUT\n");
    assert_eq!(run.files(), ["here.txt"]);

    // the same testout again: error, the first line stays, the abort is recorded
    let run = run_stream(&[&one[..], &one[..], b"exitcode 0\n"].concat()).await;
    assert_eq!(run.error.as_deref(), Some("file 'here.txt' already exists"));
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"files\": [\"here.txt\"]}\n{\"status\": \"infra\", \"note\": \"BadReportJSONError(file 'here.txt' already exists)\"}\n"
    );
}

async fn malformed(stream: &[u8], message: &str, kind: &str) -> Run {
    let run = run_stream(stream).await;
    assert_eq!(run.error.as_deref(), Some(message), "stream {stream:?}");
    assert_eq!(
        run.results(),
        format!(
            "{}\n",
            crate::jsonfmt::to_python_json(&serde_json::json!({
                "status": "infra",
                "note": format!("{kind}({message})"),
                "files": ["output.txt"],
            }))
        ),
        "stream {stream:?}"
    );
    assert_eq!(run.file("output.txt"), b"OUT\n");
    run
}

#[tokio::test]
async fn ex_9_8_malformed_input() {
    malformed(
        b"result abc\n",
        "reading json length: invalid literal for int() with base 10: 'abc'",
        "BadControlError",
    )
    .await;
    malformed(b"\n", "empty control line (just '\\n')", "BadControlError").await;
    malformed(
        b"noop\nduration +10\nfoo bar\n",
        "unknown control word: foo",
        "BadControlError",
    )
    .await;
    let run = malformed(
        b"result 78\n{\"name\": \"sub/one\", \"status\": \"fail\", \"files\": [{\"name\": \"log\", \"length\": 6}]}hel",
        "EOF when reading data",
        "BadControlError",
    )
    .await;
    assert_eq!(run.file("sub/one/log"), b"hel");
    malformed(
        b"duration 5x\n",
        "invalid duration '5x': unknown unit 'x' (use s, m, h or d) (expected parts like '30', '5m', '1.5h', '1h 30m', '5m *2'; units s, m, h, d)",
        "InvalidDurationError",
    )
    .await;
    malformed(
        b"exitcode x\n",
        "'x' is not an integer exit code",
        "BadControlError",
    )
    .await;
    malformed(b"exitcode\n", "exitcode argument empty", "BadControlError").await;
    malformed(b"exitcode \n", "exitcode argument empty", "BadControlError").await;
    malformed(b"duration\n", "duration argument empty", "BadControlError").await;
    malformed(
        b"result 0\n",
        "EOF when reading data, got so far: b''",
        "BadControlError",
    )
    .await;
    malformed(
        b"result 10\n{\"a\": 1",
        "EOF when reading data, got so far: b'{\"a\": 1'",
        "BadControlError",
    )
    .await;
    malformed(
        b"result -3\n",
        "reading json length: invalid literal for int() with base 10: '-3'",
        "BadControlError",
    )
    .await;
    malformed(
        b"result\n",
        "reading json length: invalid literal for int() with base 10: ''",
        "BadControlError",
    )
    .await;
    malformed(
        b"noop\nexit",
        "EOF in the middle of a control line: b'exit'",
        "BadControlError",
    )
    .await;
    malformed(
        b"noop \xc3\xa9\n",
        "non-ASCII byte 0xc3 in control line: b'noop \\xc3\\xa9'",
        "BadControlError",
    )
    .await;
}

// ---------------------------------------------------------------- acceptance: test_results.py

#[tokio::test]
async fn no_report_exit_codes() {
    let run = run_stream(b"exitcode 0\n").await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(run.file("output.txt"), b"OUT\n");
    let run = run_stream(b"exitcode 1\n").await;
    assert_eq!(
        run.results(),
        "{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
}

#[tokio::test]
async fn exitcode_missing_is_an_infra_line() {
    let run = run_stream(b"").await;
    assert_eq!(
        run.results(),
        "{\"status\": \"infra\", \"note\": \"TestAbortedError(exitcode not reported, wrapper bug?)\", \"files\": [\"output.txt\"]}\n"
    );
}

#[tokio::test]
async fn multiline_json_and_two_nameless() {
    let stream = format!(
        "{}{}exitcode 0\n",
        res("\n  {\n \"status\":\n \"pass\"\n}\n "),
        res("{\"status\": \"fail\"}")
    );
    let run = run_stream(stream.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\"}\n{\"status\": \"fail\"}\n"
    );
}

#[tokio::test]
async fn reported_pass_with_exit_1_keeps_only_pass() {
    let run = run_stream(format!("{}exitcode 1\n", res("{\"status\": \"pass\"}")).as_bytes()).await;
    assert_eq!(run.results(), "{\"status\": \"pass\"}\n");
    assert!(run.files().is_empty());
}

#[tokio::test]
async fn pass_then_abort_still_records_the_abort() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let (_, err) = drive(res("{\"status\": \"pass\"}").as_bytes(), &mut reporter).await;
    assert!(err.is_none());
    reporter.finish(&Outcome::aborted(
        "TestAbortedError",
        "test duration timeout reached",
    ));
    let results = std::fs::read_to_string(tmp.path().join("results")).expect("results");
    assert_eq!(
        results,
        "{\"status\": \"pass\"}\n{\"status\": \"infra\", \"note\": \"TestAbortedError(test duration timeout reached)\"}\n"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("files"))
            .expect("files")
            .count(),
        0
    );
}

#[tokio::test]
async fn aborted_without_report_gets_infra_fallback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let (_, err) = drive(
        res("{\"status\": \"pass\", \"partial\": true, \"k\": 1}").as_bytes(),
        &mut reporter,
    )
    .await;
    assert!(err.is_none());
    reporter.finish(&Outcome::aborted("TestAbortedError", "cancel requested"));
    let results = std::fs::read_to_string(tmp.path().join("results")).expect("results");
    assert_eq!(
        results,
        "{\"status\": \"infra\", \"k\": 1, \"note\": \"TestAbortedError(cancel requested)\", \"files\": [\"output.txt\"]}\n"
    );
}

#[tokio::test]
async fn dropped_reporter_records_an_abort() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let _reporter = Reporter::create(tmp.path()).expect("reporter");
    }
    let results = std::fs::read_to_string(tmp.path().join("results")).expect("results");
    assert_eq!(
        results,
        "{\"status\": \"infra\", \"note\": \"TestAbortedError(test run was dropped before it finished)\", \"files\": [\"output.txt\"]}\n"
    );
    assert!(!tmp.path().join(TESTOUT_TEMP).exists());
}

#[tokio::test]
async fn setup_failure_has_single_infra_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let mut line = serde_json::Map::new();
    line.insert("status".into(), "infra".into());
    line.insert("note".into(), "TestSetupError(boom)".into());
    reporter.write(line).expect("write");
    reporter.finish(&Outcome::SetupFailed);
    let results = std::fs::read_to_string(tmp.path().join("results")).expect("results");
    assert_eq!(
        results,
        "{\"status\": \"infra\", \"note\": \"TestSetupError(boom)\"}\n"
    );
}

#[tokio::test]
async fn artifacts_must_be_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("results"), b"").expect("write");
    let err = Reporter::create(tmp.path()).expect_err("error");
    assert_eq!(err.kind(), "FileExistsError");
    assert!(err.to_string().contains("results already exists"), "{err}");
}

#[tokio::test]
async fn subtests_names_and_fallback() {
    let stream = format!(
        "{}{}exitcode 0\n",
        res("{\"name\": \"/some/sub/test\", \"status\": \"fail\"}"),
        res("{\"name\": \"no-status\"}"),
    );
    let run = run_stream(stream.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"/some/sub/test\", \"status\": \"fail\"}\n{\"name\": \"no-status\"}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
}

#[tokio::test]
async fn testout_on_subtest() {
    let stream = format!(
        "{}{}exitcode 0\n",
        res("{\"name\": \"subtest\", \"status\": \"pass\", \"testout\": \"out.txt\"}"),
        res("{\"status\": \"pass\"}"),
    );
    let run = run_stream(stream.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"subtest\", \"status\": \"pass\", \"files\": [\"out.txt\"]}\n{\"status\": \"pass\"}\n"
    );
    assert_eq!(run.files(), ["subtest/out.txt"]);
}

#[tokio::test]
async fn files_single_binary_slash_split_and_two_results() {
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let mut stream =
        res("{\"status\": \"pass\", \"files\": [{\"name\": \"some_file\", \"length\": 5}]}")
            .into_bytes();
    stream.extend_from_slice(b"12345");
    stream.extend(
        res("{\"name\": \"bin\", \"files\": [{\"name\": \"rand\", \"length\": 256}]}").into_bytes(),
    );
    stream.extend_from_slice(&binary);
    stream.extend(res("{\"name\": \"sl\", \"files\": [{\"name\": \"some/file\", \"length\": 2}, {\"name\": \"other\", \"length\": 3}]}").into_bytes());
    stream.extend_from_slice(b"ab");
    stream.extend_from_slice(b"cde");
    stream.extend(res("{\"name\": \"sub/res/ult\", \"files\": [{\"name\": \"same\", \"length\": 2}, {\"name\": \"same\", \"length\": 3}]}").into_bytes());
    stream.extend_from_slice(b"12345exitcode 0\n");
    let run = run_stream(&stream).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"files\": [\"some_file\"]}\n{\"name\": \"bin\", \"files\": [\"rand\"]}\n{\"name\": \"sl\", \"files\": [\"other\", \"some/file\"]}\n{\"name\": \"sub/res/ult\", \"files\": [\"same\"]}\n"
    );
    assert_eq!(run.file("some_file"), b"12345");
    assert_eq!(run.file("bin/rand"), binary);
    assert_eq!(run.file("sl/some/file"), b"ab");
    assert_eq!(run.file("sl/other"), b"cde");
    assert_eq!(run.file("sub/res/ult/same"), b"12345");
}

#[tokio::test]
async fn files_sorted_while_consumed_in_order_and_custom_keys() {
    let mut stream = res("{\"status\": \"pass\", \"s\": \"x\", \"n\": 1.5, \"l\": [1, {\"a\": null}], \"o\": {\"k\": \"\u{17e}\"}, \"files\": [{\"name\": \"B\", \"length\": 1}, {\"name\": \"C\", \"length\": 1}, {\"name\": \"A\", \"length\": 1}]}").into_bytes();
    stream.extend_from_slice(b"bcaexitcode 0\n");
    let run = run_stream(&stream).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"s\": \"x\", \"n\": 1.5, \"l\": [1, {\"a\": null}], \"o\": {\"k\": \"\\u017e\"}, \"files\": [\"A\", \"B\", \"C\"]}\n"
    );
    assert_eq!(run.file("A"), b"a");
    assert_eq!(run.file("B"), b"b");
    assert_eq!(run.file("C"), b"c");
}

#[tokio::test]
async fn partial_rules() {
    // partial fail then final pass -> one line
    let run = run_stream(
        format!(
            "{}{}exitcode 0\n",
            res("{\"status\": \"fail\", \"partial\": true}"),
            res("{\"status\": \"pass\"}")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(run.results(), "{\"status\": \"pass\"}\n");
    assert!(run.files().is_empty());
    // explicit partial false; partial null treated as false and dropped
    let run = run_stream(
        format!(
            "{}{}exitcode 0\n",
            res("{\"status\": \"pass\", \"partial\": false}"),
            res("{\"name\": \"n\", \"partial\": null}")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(run.results(), "{\"status\": \"pass\"}\n{\"name\": \"n\"}\n");
    // partial fail and exit 0 -> fail from the partial
    let run = run_stream(
        format!(
            "{}exitcode 0\n",
            res("{\"status\": \"fail\", \"partial\": true}")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        run.results(),
        "{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
    // partial without status + exit 1
    let run =
        run_stream(format!("{}exitcode 1\n", res("{\"partial\": true, \"a\": 1}")).as_bytes())
            .await;
    assert_eq!(
        run.results(),
        "{\"a\": 1, \"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
    // partial merges keep keys from both, final status wins
    let run = run_stream(
        format!(
            "{}{}exitcode 0\n",
            res("{\"status\": \"fail\", \"attr1\": 1, \"partial\": true}"),
            res("{\"status\": \"pass\", \"attr2\": 2}")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"attr1\": 1, \"attr2\": 2}\n"
    );
    // merge types: replace str/num, type change replaces, append lists, recurse objects
    let run = run_stream(format!("{}{}exitcode 0\n",
        res("{\"partial\": true, \"s\": \"a\", \"n\": 1, \"t\": 1, \"b\": true, \"l\": [1], \"o\": {\"x\": 1, \"y\": {\"z\": [1]}}}"),
        res("{\"s\": \"b\", \"n\": 2.5, \"t\": \"1\", \"b\": 0, \"l\": [2, 3], \"o\": {\"y\": {\"z\": [2], \"w\": null}, \"x\": null, \"v\": 1}}")).as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"s\": \"b\", \"n\": 2.5, \"t\": \"1\", \"b\": 0, \"l\": [1, 2, 3], \"o\": {\"y\": {\"z\": [1, 2]}, \"v\": 1}}\n"
    );
}

#[tokio::test]
async fn partial_subtests_order() {
    let stream = format!(
        "{}{}{}{}exitcode 0\n",
        res("{\"name\": \"sub1\", \"status\": \"error\", \"partial\": true}"),
        res("{\"name\": \"sub2\", \"status\": \"error\", \"partial\": true}"),
        res("{\"name\": \"sub1\", \"status\": \"pass\"}"),
        res("{\"status\": \"pass\"}"),
    );
    let run = run_stream(stream.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"sub1\", \"status\": \"pass\"}\n{\"status\": \"pass\"}\n{\"name\": \"sub2\", \"status\": \"error\"}\n"
    );
}

#[tokio::test]
async fn partial_files_union_and_append() {
    let mut s = res("{\"partial\": true, \"files\": [{\"name\": \"f1\", \"length\": 2}, {\"name\": \"same\", \"length\": 1}]}").into_bytes();
    s.extend_from_slice(b"aaX");
    s.extend(res("{\"status\": \"pass\", \"files\": [{\"name\": \"f2\", \"length\": 1}, {\"name\": \"same\", \"length\": 1}]}").into_bytes());
    s.extend_from_slice(b"bYexitcode 0\n");
    let run = run_stream(&s).await;
    assert_eq!(
        run.results(),
        "{\"files\": [\"f1\", \"f2\", \"same\"], \"status\": \"pass\"}\n"
    );
    assert_eq!(run.file("same"), b"XY");
}

#[tokio::test]
async fn fallback_and_uploaded_output_txt() {
    // partial with file output.txt -> no testout, status from partial, uploaded content
    let mut s = res("{\"status\": \"pass\", \"partial\": true, \"files\": [{\"name\": \"output.txt\", \"length\": 3}]}").into_bytes();
    s.extend_from_slice(b"upl");
    s.extend_from_slice(b"exitcode 1\n");
    let run = run_stream_with(&s, |_| {}).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(run.file("output.txt"), b"upl");
    // partial with custom.txt only + exit 1
    let mut s = res("{\"partial\": true, \"files\": [{\"name\": \"custom.txt\", \"length\": 3}]}")
        .into_bytes();
    s.extend_from_slice(b"cusexitcode 1\n");
    let run = run_stream(&s).await;
    assert_eq!(
        run.results(),
        "{\"files\": [\"output.txt\", \"custom.txt\"], \"status\": \"fail\"}\n"
    );
    assert_eq!(run.file("custom.txt"), b"cus");
    assert_eq!(run.file("output.txt"), b"OUT\n");
}

#[tokio::test]
async fn testout_variants() {
    // overridden by a later partial: only there.txt exists
    let s = format!(
        "{}{}exitcode 0\n",
        res("{\"status\": \"pass\", \"partial\": true, \"testout\": \"here.txt\"}"),
        res("{\"testout\": \"there.txt\"}")
    );
    let run = run_stream(s.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"pass\", \"files\": [\"there.txt\"]}\n"
    );
    assert_eq!(run.files(), ["there.txt"]);
    // two results with different testouts
    let s = format!(
        "{}{}exitcode 0\n",
        res("{\"name\": \"a\", \"testout\": \"one.txt\"}"),
        res("{\"status\": \"pass\", \"testout\": \"two.txt\"}")
    );
    let run = run_stream(s.as_bytes()).await;
    assert_eq!(run.file("a/one.txt"), b"OUT\n");
    assert_eq!(run.file("two.txt"), b"OUT\n");
    // partial with testout and exit 1
    let s = format!(
        "{}exitcode 1\n",
        res("{\"partial\": true, \"testout\": \"here.txt\"}")
    );
    let run = run_stream(s.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{\"status\": \"fail\", \"files\": [\"here.txt\"]}\n"
    );
    assert_eq!(run.files(), ["here.txt"]);
    // empty testout
    let s = format!(
        "{}exitcode 0\n",
        res("{\"status\": \"pass\", \"testout\": \"\"}")
    );
    let run = run_stream(s.as_bytes()).await;
    assert_eq!(run.error.as_deref(), Some("'testout' specified, but empty"));
}

#[tokio::test]
async fn testout_is_a_live_hard_link() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut reporter = Reporter::create(tmp.path()).expect("reporter");
    let mut out = reporter.open_testout().expect("testout");
    std::io::Write::write_all(&mut out, b"before\n").expect("write");
    let (_, err) = drive(
        res("{\"status\": \"pass\", \"testout\": \"here.txt\"}").as_bytes(),
        &mut reporter,
    )
    .await;
    assert!(err.is_none());
    std::io::Write::write_all(&mut out, b"after\n").expect("write");
    reporter.finish(&Outcome::Exited(0));
    assert_eq!(
        std::fs::read(tmp.path().join("files/here.txt")).expect("read"),
        b"before\nafter\n"
    );
}

#[tokio::test]
async fn degenerate_results() {
    let s = format!(
        "{}{}{}exitcode 0\n",
        res("{}"),
        res("{\"attr1\": \"value1\"}"),
        res("{\"status\": \"pass\", \"files\": []}")
    );
    let run = run_stream(s.as_bytes()).await;
    assert_eq!(
        run.results(),
        "{}\n{\"attr1\": \"value1\"}\n{\"status\": \"pass\", \"files\": []}\n"
    );
    assert!(run.files().is_empty());
}

#[tokio::test]
async fn bad_json_documents() {
    for (json, msg) in [
        ("{\"status\": ", "JSON decode: "),
        ("[1, 2]", "result JSON is not an object: b'[1, 2]'"),
        ("{\"a\": 1} {}", "JSON decode: trailing characters"),
        ("{\"name\": 5}", "'name' must be a string, got: 5"),
        ("{\"files\": {}}", "'files' must be a list, got: {}"),
        (
            "{\"files\": [{\"name\": \"x\"}]}",
            "file entry missing 'name' or 'length': {\"name\":\"x\"}",
        ),
        (
            "{\"files\": [{\"name\": \"\", \"length\": 1}]}",
            "file entry missing 'name' or 'length'",
        ),
        (
            "{\"files\": [{\"name\": \"x\", \"length\": -1}]}",
            "file entry x length: -1 is not a non-negative integer",
        ),
        (
            "{\"files\": [{\"name\": \"x\", \"length\": \"z\"}]}",
            "file entry x length: \"z\" is not a non-negative integer",
        ),
        (
            "{\"partial\": 1}",
            "'partial' must be true or false, got: 1",
        ),
        ("{\"testout\": 1}", "'testout' must be a string, got: 1"),
    ] {
        let run = run_stream(format!("{}exitcode 0\n", res(json)).as_bytes()).await;
        let err = run.error.clone().unwrap_or_default();
        assert!(err.starts_with(msg), "{json}: {err}");
        assert!(
            run.results()
                .contains("\"status\": \"infra\", \"note\": \"BadReportJSONError("),
            "{}",
            run.results()
        );
    }
    // a string length is accepted like Python's int()
    let mut s = res("{\"files\": [{\"name\": \"x\", \"length\": \"2\"}]}").into_bytes();
    s.extend_from_slice(b"okexitcode 0\n");
    assert_eq!(run_stream(&s).await.file("x"), b"ok");
}

// ---------------------------------------------------------------- framing and control words

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

const MAX: usize = super::control::MAX_LINE;

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

// ---------------------------------------------------------------- hostile names

#[tokio::test]
async fn hostile_names_stay_inside_files() {
    let mut s = res("{\"name\": \"../../up\", \"files\": [{\"name\": \"../../x\", \"length\": 1}, {\"name\": \"/etc/passwd\", \"length\": 1}, {\"name\": \"a\\nb\", \"length\": 1}]}").into_bytes();
    s.extend_from_slice(b"123exitcode 0\n");
    let run = run_stream(&s).await;
    assert_eq!(
        run.results(),
        "{\"name\": \"../../up\", \"files\": [\"../../x\", \"/etc/passwd\", \"a\\nb\"]}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(
        run.files(),
        ["output.txt", "up/a_b", "up/etc/passwd", "up/x"]
    );
    let parent = run.dir.parent().expect("parent");
    assert_eq!(
        std::fs::read_dir(parent).expect("ls").count(),
        1,
        "nothing beside artifacts/"
    );
}

#[tokio::test]
async fn nul_and_empty_names_are_refused_and_the_run_goes_on() {
    let mut s = res("{\"status\": \"pass\", \"name\": \"t\", \"files\": [{\"name\": \"ok\", \"length\": 2}, {\"name\": \"bad\\u0000name\", \"length\": 3}, {\"name\": \"..\", \"length\": 1}]}").into_bytes();
    s.extend_from_slice(b"okXXXY");
    s.extend(res("{\"status\": \"pass\"}").into_bytes());
    s.extend_from_slice(b"exitcode 0\n");
    let run = run_stream(&s).await;
    assert_eq!(run.error, None);
    assert_eq!(
        run.results(),
        "{\"status\": \"error\", \"name\": \"t\", \"files\": [\"ok\"], \"note\": \"refused to store uploaded files: 'bad\\u0000name' (the file name contains a NUL byte), '..' (the file name is empty once normalised)\"}\n{\"status\": \"pass\"}\n"
    );
    assert_eq!(run.files(), ["t/ok"]);
    assert_eq!(run.file("t/ok"), b"ok");
}

#[tokio::test]
async fn planted_symlinks_are_never_followed() {
    let tmp_outside = tempfile::tempdir().expect("tempdir");
    let outside = tmp_outside.path().to_path_buf();
    std::fs::write(outside.join("victim"), b"precious").expect("write");
    let target_dir = outside.clone();
    let mut s =
        res("{\"name\": \"evil\", \"files\": [{\"name\": \"x\", \"length\": 3}]}").into_bytes();
    s.extend_from_slice(b"AAA");
    s.extend(res("{\"files\": [{\"name\": \"victim\", \"length\": 3}, {\"name\": \"deep/evil/x\", \"length\": 3}, {\"name\": \"fine\", \"length\": 1}]}").into_bytes());
    s.extend_from_slice(b"BBBCCCD");
    s.extend_from_slice(b"exitcode 0\n");
    let run = run_stream_with(&s, move |dir| {
        let files = dir.join("files");
        std::os::unix::fs::symlink(&target_dir, files.join("evil")).expect("symlink");
        std::os::unix::fs::symlink(target_dir.join("victim"), files.join("victim"))
            .expect("symlink");
        std::fs::create_dir(files.join("deep")).expect("mkdir");
        std::os::unix::fs::symlink(&target_dir, files.join("deep/evil")).expect("symlink");
    })
    .await;
    assert_eq!(run.error, None);
    let results = run.results();
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(lines.len(), 2, "{results}");
    assert_eq!(
        lines[0],
        "{\"name\": \"evil\", \"files\": [], \"status\": \"error\", \"note\": \"refused to store uploaded files: 'x' ('evil' is a symbolic link or not a directory)\"}"
    );
    assert_eq!(
        lines[1],
        "{\"files\": [\"fine\"], \"status\": \"error\", \"note\": \"refused to store uploaded files: 'victim' ('victim' is a symbolic link), 'deep/evil/x' ('deep/evil' is a symbolic link or not a directory)\"}"
    );
    assert_eq!(
        std::fs::read(outside.join("victim")).expect("victim"),
        b"precious"
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        1,
        "nothing written outside"
    );
    assert_eq!(run.file("fine"), b"D");
}

#[tokio::test]
async fn file_then_directory_collision_is_refused() {
    let mut s =
        res("{\"files\": [{\"name\": \"a\", \"length\": 1}, {\"name\": \"a/b\", \"length\": 1}]}")
            .into_bytes();
    s.extend_from_slice(b"12exitcode 0\n");
    let run = run_stream(&s).await;
    assert!(run.results().starts_with("{\"files\": [\"a\"], \"status\": \"error\", \"note\": \"refused to store uploaded files: 'a/b' ('a' is a symbolic link or not a directory)\"}"), "{}", run.results());
    assert_eq!(run.file("a"), b"1");
}

// ---------------------------------------------------------------- property test

mod property {
    use super::*;
    use proptest::prelude::*;

    fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
        let name = proptest::sample::select(vec![
            "a",
            "b/c",
            "../../esc",
            "/abs",
            "link/x",
            "link",
            "..",
            "a\\u0000b",
            "sub/../x",
        ]);
        let piece = prop_oneof![
            (name.clone(), name, 0usize..40, any::<bool>()).prop_map(|(rn, fname, len, partial)| {
                let json = format!(
                    "{{\"name\": \"{rn}\", \"partial\": {partial}, \"status\": \"pass\", \"files\": [{{\"name\": \"{fname}\", \"length\": {len}}}]}}"
                );
                let mut v = format!("result {}\n{json}", json.len()).into_bytes();
                v.extend(std::iter::repeat_n(b'z', len));
                v
            }),
            Just(b"noop\n".to_vec()),
            Just(b"duration +5\n".to_vec()),
            Just(b"exitcode 0\n".to_vec()),
            Just(b"result 17\n{\"testout\": \"t\"}".to_vec()),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        (
            valid_stream(),
            proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
        )
            .prop_map(|(mut s, muts)| {
                for (i, b) in muts {
                    if !s.is_empty() {
                        let at = i.index(s.len());
                        s[at] = b;
                    }
                }
                s
            })
    }

    fn check(stream: &[u8]) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let tmp = tempfile::tempdir().expect("tempdir");
        let canary = tmp.path().join("canary");
        std::fs::create_dir(&canary).expect("mkdir");
        std::fs::write(canary.join("c"), b"c").expect("write");
        let art = tmp.path().join("art");
        std::fs::create_dir(&art).expect("mkdir");
        rt.block_on(async {
            let mut reporter = Reporter::create(&art).expect("reporter");
            std::os::unix::fs::symlink(&canary, art.join("files/link")).expect("symlink");
            let (code, err) = drive(stream, &mut reporter).await;
            let outcome = match err {
                Some((k, m)) => Outcome::aborted(k, m),
                None => Outcome::Exited(code.unwrap_or(1)),
            };
            reporter.finish(&outcome);
        });
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["art", "canary"]);
        let canary_entries: Vec<_> = std::fs::read_dir(&canary).expect("ls").collect();
        assert_eq!(canary_entries.len(), 1);
        assert_eq!(std::fs::read(canary.join("c")).expect("c"), b"c");
        let results = std::fs::read_to_string(art.join("results")).expect("results");
        for line in results.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
            assert!(v.is_object());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_escape(stream in proptest::collection::vec(any::<u8>(), 0..300)) {
            check(&stream);
        }

        #[test]
        fn mutated_streams_never_escape(stream in mutated()) {
            check(&stream);
        }
    }
}
