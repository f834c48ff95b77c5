//! The byte-exact examples of test-control.md §9.

use super::support::*;

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
