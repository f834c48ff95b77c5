//! The acceptance list items that need no remote (upstream `test_results.py`).

use super::super::reporter::{Outcome, Reporter, TESTOUT_TEMP};
use super::support::*;

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

/// In memory, a finished reporter hands its lines over and writes no `results` file,
/// not even when dropped afterwards.
#[tokio::test]
async fn in_memory_reporter_hands_its_lines_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let mut reporter = Reporter::create_in_memory(tmp.path()).expect("reporter");
        let (_, err) = drive(res("{\"status\": \"pass\"}").as_bytes(), &mut reporter).await;
        assert!(err.is_none());
        assert_eq!(reporter.take_lines(), None, "lines taken before finish");
        reporter.finish(&Outcome::Exited(0));
        let lines = reporter.take_lines().expect("lines");
        assert_eq!(String::from_utf8_lossy(&lines), "{\"status\": \"pass\"}\n");
        assert_eq!(reporter.take_lines(), None, "lines taken twice");
        assert!(!tmp.path().join("results").exists());
    }
    assert!(!tmp.path().join("results").exists());
    assert!(tmp.path().join("files").is_dir());
    assert!(!tmp.path().join(TESTOUT_TEMP).exists());
}

/// In memory, lines never handed over (the run failed, or was dropped) go to the file
/// when the reporter is dropped: none is lost.
#[tokio::test]
async fn in_memory_reporter_writes_lines_not_taken() {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let mut reporter = Reporter::create_in_memory(tmp.path()).expect("reporter");
        let (_, err) = drive(res("{\"status\": \"pass\"}").as_bytes(), &mut reporter).await;
        assert!(err.is_none());
        reporter.finish(&Outcome::aborted("TestAbortedError", "cancel requested"));
        assert!(!tmp.path().join("results").exists());
    }
    let results = std::fs::read_to_string(tmp.path().join("results")).expect("results");
    assert_eq!(
        results,
        "{\"status\": \"pass\"}\n{\"status\": \"infra\", \"note\": \"TestAbortedError(cancel requested)\"}\n"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let _reporter = Reporter::create_in_memory(tmp.path()).expect("reporter");
    }
    let results = std::fs::read_to_string(tmp.path().join("results")).expect("results");
    assert_eq!(
        results,
        "{\"status\": \"infra\", \"note\": \"TestAbortedError(test run was dropped before it finished)\", \"files\": [\"output.txt\"]}\n"
    );
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
