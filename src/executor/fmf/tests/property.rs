//! A property test: any valid stream, chunked any way, gives the same artifacts and
//! never writes outside them.

use super::super::reporter::{Outcome, Reporter};
use super::support::*;
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
