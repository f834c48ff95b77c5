//! JSONL (plain, gzip, xz) and Multi aggregators against real files and the real `gzip`/`xz`
//! tools.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atex::aggregator::{
    Aggregator, AggregatorError, Compression, JsonlAggregator, JsonlOptions, MultiAggregator,
};

struct Out {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Out {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Self { _dir: dir, root }
    }
    fn agg(&self, name: &str, options: JsonlOptions) -> JsonlAggregator {
        JsonlAggregator::create(self.root.join(name), self.root.join("files"), options).unwrap()
    }
}

/// An artifacts directory with the given results text and files.
fn artifacts(results: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("results"), results).unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    for (name, data) in files {
        let path = dir.path().join("files").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    dir
}

fn decompress(tool: &str, path: &Path) -> Vec<u8> {
    let out = std::process::Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn jsonl_lines_are_byte_exact() {
    let out = Out::new();
    let agg = out.agg("results.jsonl", JsonlOptions::default());
    let a = artifacts("{\"status\": \"pass\"}\n", &[]);
    agg.ingest("9.8@x86_64", "/some/test", a.path())
        .await
        .unwrap();
    let b = artifacts(
        concat!(
            "{\"status\": \"fail\", \"name\": \"sub1\"}\n",
            "{\"name\": \"sub2\"}\n",
            "{\"status\": \"infra\", \"note\": \"TestAbortedError(timeout)\", \"files\": [\"output.txt\"]}\n",
            "{\"status\": \"pass\", \"note\": \"\u{17e}lu\u{165}ou\u{10d}k\u{fd}\"}\n",
        ),
        &[("output.txt", b"out\n")],
    );
    agg.ingest("platform1", "/test1", b.path()).await.unwrap();
    agg.finish().await.unwrap();
    let text = std::fs::read_to_string(out.root.join("results.jsonl")).unwrap();
    assert_eq!(
        text,
        concat!(
            "[\"9.8@x86_64\", \"pass\", \"/some/test\", null, [], null]\n",
            "[\"platform1\", \"fail\", \"/test1\", \"sub1\", [], null]\n",
            "[\"platform1\", null, \"/test1\", \"sub2\", [], null]\n",
            "[\"platform1\", \"infra\", \"/test1\", null, [\"output.txt\"], \"TestAbortedError(timeout)\"]\n",
            "[\"platform1\", \"pass\", \"/test1\", null, [], \"\\u017elu\\u0165ou\\u010dk\\u00fd\"]\n",
        )
    );
    // Results consumed; no files -> no directory for the first test.
    assert!(!a.path().join("results").exists());
    assert!(!out.root.join("files/9.8@x86_64").exists());
    assert_eq!(
        std::fs::read(out.root.join("files/platform1/test1/output.txt")).unwrap(),
        b"out\n"
    );
}

#[tokio::test]
async fn jsonl_files_duplicates_and_missing_results() {
    let out = Out::new();
    let agg = out.agg("results.jsonl", JsonlOptions::default());
    let a = artifacts(
        "{\"status\": \"pass\", \"files\": [\"data.bin\", \"sub/dir/data.bin\"]}\n",
        &[("data.bin", &[0, 1, 2, 3]), ("sub/dir/data.bin", &[4, 5])],
    );
    agg.ingest("platform1", "/test1", a.path()).await.unwrap();
    assert_eq!(
        std::fs::read(out.root.join("files/platform1/test1/data.bin")).unwrap(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        std::fs::read(out.root.join("files/platform1/test1/sub/dir/data.bin")).unwrap(),
        [4, 5]
    );
    let again = artifacts("{\"status\": \"pass\"}\n", &[]);
    let err = agg
        .ingest("platform1", "/test1", again.path())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "'/test1' was already ingested once for 'platform1'"
    );
    let missing = tempfile::tempdir().unwrap();
    let err = agg
        .ingest("platform1", "/test2", missing.path())
        .await
        .unwrap_err();
    assert!(matches!(err, AggregatorError::MissingResults(_)), "{err}");

    let out2 = Out::new();
    let agg = out2.agg(
        "results.jsonl",
        JsonlOptions {
            allow_duplicate: true,
            ..JsonlOptions::default()
        },
    );
    for _ in 0..3 {
        let a = artifacts("{\"status\": \"pass\"}\n", &[("f", b"x")]);
        agg.ingest("platform1", "/test1", a.path()).await.unwrap();
    }
    agg.finish().await.unwrap();
    assert!(out2.root.join("files/platform1/test1/f").exists());
    assert!(out2.root.join("files/platform1/test1 (1)/f").exists());
    assert!(out2.root.join("files/platform1/test1 (2)/f").exists());
    let text = std::fs::read_to_string(out2.root.join("results.jsonl")).unwrap();
    assert!(text.contains("\"/test1 (2)\""));
}

#[tokio::test]
async fn jsonl_invalid_line_writes_nothing_and_can_be_retried() {
    let out = Out::new();
    let agg = out.agg("results.jsonl", JsonlOptions::default());
    let a = artifacts("{\"status\": \"pass\"}\n{not json\n", &[("f", b"data")]);
    let err = agg.ingest("p", "/t", a.path()).await.unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.root.join("results.jsonl")).unwrap(),
        ""
    );
    assert!(a.path().join("files/f").exists(), "files stay for a retry");
    // Fix the results and retry: the pair was not burnt by the failure.
    std::fs::write(a.path().join("results"), "{\"status\": \"pass\"}\n").unwrap();
    agg.ingest("p", "/t", a.path()).await.unwrap();
    let a2 = artifacts("[1, 2]\n", &[]);
    let err = agg.ingest("p", "/t2", a2.path()).await.unwrap_err();
    assert!(
        atex::error::chain(&err).to_string().contains("JSON object"),
        "{err}"
    );
    agg.finish().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(out.root.join("results.jsonl")).unwrap(),
        "[\"p\", \"pass\", \"/t\", null, [], null]\n"
    );
    let after = artifacts("{}\n", &[]);
    assert!(matches!(
        agg.ingest("p", "/late", after.path()).await,
        Err(AggregatorError::Finished)
    ));
}

#[tokio::test]
async fn jsonl_refuses_existing_outputs() {
    let out = Out::new();
    std::fs::write(out.root.join("results.jsonl"), "").unwrap();
    assert!(
        JsonlAggregator::create(
            out.root.join("results.jsonl"),
            out.root.join("files"),
            JsonlOptions::default()
        )
        .is_err()
    );
}

/// A test's files directory that already exists — an empty directory, which a plain
/// rename would silently replace, or a file — is refused: nothing is written, the
/// artifacts stay whole, and the ingest succeeds once the obstacle is gone. Moved files
/// (uncompressed) and copied ones (compressed) alike.
#[tokio::test]
async fn jsonl_refuses_an_existing_files_destination() {
    for compression in [Compression::None, Compression::Gzip(1)] {
        for obstacle_is_dir in [true, false] {
            let out = Out::new();
            let options = JsonlOptions {
                compression,
                ..JsonlOptions::default()
            };
            let agg = out.agg("results.jsonl", options);
            let dest = out.root.join("files/p1/t1");
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            if obstacle_is_dir {
                std::fs::create_dir(&dest).unwrap();
            } else {
                std::fs::write(&dest, "in the way").unwrap();
            }
            let a = artifacts(
                "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n",
                &[("output.txt", b"out\n")],
            );
            let err = agg.ingest("p1", "/t1", a.path()).await.unwrap_err();
            let case = format!("{compression:?}, directory in the way: {obstacle_is_dir}");
            assert!(
                matches!(&err, AggregatorError::DestinationExists(p) if p == &dest),
                "{case}: {err:?}"
            );
            assert!(a.path().join("results").exists(), "{case}");
            assert_eq!(
                std::fs::read(a.path().join("files/output.txt")).unwrap(),
                b"out\n",
                "{case}"
            );
            if obstacle_is_dir {
                assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "{case}");
                std::fs::remove_dir(&dest).unwrap();
            } else {
                assert_eq!(std::fs::read(&dest).unwrap(), b"in the way", "{case}");
                std::fs::remove_file(&dest).unwrap();
            }
            // A refused pair still counts as ingested (spec: registered before any
            // check), so the same artifacts go in again under another test name.
            agg.ingest("p1", "/t2", a.path()).await.unwrap();
            agg.finish().await.unwrap();
            assert!(out.root.join("files/p1/t2").is_dir(), "{case}");
            assert!(!a.path().join("results").exists(), "{case}");
        }
    }
}

async fn compressed_case(compression: Compression, tool: &str, suffix: &str) {
    // Compressed target, compressed files, subdirectories.
    let out = Out::new();
    let agg = out.agg(
        "results.jsonl.x",
        JsonlOptions {
            compression,
            ..JsonlOptions::default()
        },
    );
    let a = artifacts(
        "{\"status\": \"pass\", \"files\": [\"data.bin\", \"sub/dir/data.bin\"]}\n",
        &[("data.bin", &[0, 1, 2, 3]), ("sub/dir/data.bin", &[9, 9])],
    );
    agg.ingest("platform1", "/test1", a.path()).await.unwrap();
    let b = artifacts("{\"status\": \"fail\"}\n", &[]);
    agg.ingest("platform1", "/test2", b.path()).await.unwrap();
    agg.finish().await.unwrap();
    let text = decompress(tool, &out.root.join("results.jsonl.x"));
    assert_eq!(
        String::from_utf8(text).unwrap(),
        format!(
            "[\"platform1\", \"pass\", \"/test1\", null, [\"data.bin{suffix}\", \"sub/dir/data.bin{suffix}\"], null]\n\
             [\"platform1\", \"fail\", \"/test2\", null, [], null]\n"
        )
    );
    let f = out
        .root
        .join(format!("files/platform1/test1/data.bin{suffix}"));
    assert_eq!(decompress(tool, &f), [0, 1, 2, 3]);
    let f = out
        .root
        .join(format!("files/platform1/test1/sub/dir/data.bin{suffix}"));
    assert_eq!(decompress(tool, &f), [9, 9]);
    assert!(!out.root.join("files/platform1/test1/data.bin").exists());

    // compress_files = false: verbatim.
    let out = Out::new();
    let agg = out.agg(
        "r",
        JsonlOptions {
            compression,
            compress_files: false,
            ..JsonlOptions::default()
        },
    );
    let a = artifacts("{\"files\": [\"data.bin\"]}\n", &[("data.bin", &[1])]);
    agg.ingest("p", "/t", a.path()).await.unwrap();
    agg.finish().await.unwrap();
    assert_eq!(
        std::fs::read(out.root.join("files/p/t/data.bin")).unwrap(),
        [1]
    );
    assert_eq!(
        String::from_utf8(decompress(tool, &out.root.join("r"))).unwrap(),
        "[\"p\", null, \"/t\", null, [\"data.bin\"], null]\n"
    );

    // Exclusions and in-place compression.
    let out = Out::new();
    let agg = out.agg(
        "r",
        JsonlOptions {
            compression,
            compress_files_exclude: vec!["keep.txt".into()],
            ..JsonlOptions::default()
        },
    );
    let a = artifacts(
        "{\"files\": [\"keep.txt\", \"data.bin\"]}\n",
        &[("keep.txt", b"plain"), ("data.bin", &[7])],
    );
    agg.ingest("p", "/t", a.path()).await.unwrap();
    agg.finish().await.unwrap();
    assert_eq!(
        std::fs::read(out.root.join("files/p/t/keep.txt")).unwrap(),
        b"plain"
    );
    assert_eq!(
        decompress(tool, &out.root.join(format!("files/p/t/data.bin{suffix}"))),
        [7]
    );
    assert_eq!(
        String::from_utf8(decompress(tool, &out.root.join("r"))).unwrap(),
        format!("[\"p\", null, \"/t\", null, [\"keep.txt\", \"data.bin{suffix}\"], null]\n")
    );
    let out = Out::new();
    let agg = out.agg(
        "r",
        JsonlOptions {
            compression,
            compress_files_suffix: Some(String::new()),
            ..JsonlOptions::default()
        },
    );
    let a = artifacts("{\"files\": [\"data.bin\"]}\n", &[("data.bin", &[5, 6])]);
    agg.ingest("p", "/t", a.path()).await.unwrap();
    agg.finish().await.unwrap();
    assert_eq!(
        decompress(tool, &out.root.join("files/p/t/data.bin")),
        [5, 6]
    );
    assert_eq!(
        String::from_utf8(decompress(tool, &out.root.join("r"))).unwrap(),
        "[\"p\", null, \"/t\", null, [\"data.bin\"], null]\n"
    );
}

#[tokio::test]
async fn jsonl_gzip() {
    compressed_case(Compression::Gzip(9), "gzip", ".gz").await;
}

#[tokio::test]
async fn jsonl_xz() {
    compressed_case(Compression::Xz(9), "xz", ".xz").await;
}

#[tokio::test]
async fn multi_feeds_every_child_and_cleans_copies() {
    let (o1, o2) = (Out::new(), Out::new());
    let a1 = Arc::new(o1.agg("r", JsonlOptions::default()));
    let a2 = Arc::new(o2.agg("r", JsonlOptions::default()));
    let multi = MultiAggregator::new(vec![a1.clone(), a2.clone()]).unwrap();
    let parent = tempfile::tempdir().unwrap();
    let art = parent.path().join("art");
    std::fs::create_dir_all(art.join("files")).unwrap();
    std::fs::write(
        art.join("results"),
        "{\"status\": \"pass\", \"files\": [\"f\"]}\n",
    )
    .unwrap();
    std::fs::write(art.join("files/f"), [1, 2, 3]).unwrap();
    multi.ingest("p", "/t", &art).await.unwrap();
    // A child error propagates and leaves no copy behind.
    std::fs::create_dir_all(art.join("files")).unwrap();
    std::fs::write(art.join("results"), "{\"status\": \"pass\"}\n").unwrap();
    let err = multi.ingest("p", "/t", &art).await.unwrap_err();
    assert!(matches!(err, AggregatorError::Duplicate { .. }), "{err:?}");
    let leftovers: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("atex-multi-"))
        .collect();
    assert!(leftovers.is_empty());
    multi.finish().await.unwrap();
    for o in [&o1, &o2] {
        assert_eq!(
            std::fs::read_to_string(o.root.join("r")).unwrap(),
            "[\"p\", \"pass\", \"/t\", null, [\"f\"], null]\n"
        );
        assert_eq!(
            std::fs::read(o.root.join("files/p/t/f")).unwrap(),
            [1, 2, 3]
        );
    }
    assert!(MultiAggregator::new(vec![]).is_err());
}

/// Every file under `dir` (relative path -> content), to compare trees before and after.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// A compressed ingest that fails half-way (one file cannot be compressed into place: its
/// name plus the suffix is too long for the filesystem) or on a bad results line changes
/// nothing: the artifacts stay whole, no file and no line appear, and once the cause is
/// fixed the same ingest succeeds and the results decode with the real tools.
async fn compressed_failures_are_all_or_nothing(
    compression: Compression,
    tool: &str,
    suffix: &str,
) {
    let out = Out::new();
    let agg = out.agg(
        "results.jsonl.x",
        JsonlOptions {
            compression,
            ..JsonlOptions::default()
        },
    );
    let first = artifacts("{\"status\": \"pass\"}\n", &[("first.txt", b"1")]);
    agg.ingest("p", "/first", first.path()).await.unwrap();

    let long = "x".repeat(254); // 254 + the suffix > NAME_MAX (255)
    let mut files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i:02}.txt"), format!("data {i}\n").into_bytes()))
        .collect();
    files.push(("sub/dir/deep.bin".into(), vec![9; 100]));
    files.push((long.clone(), b"long name".to_vec()));
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let results = "{\"status\": \"fail\", \"files\": [\"f00.txt\"]}\n{\"status\": \"pass\", \"name\": \"sub\"}\n";
    let a = artifacts(results, &borrowed);
    let before = tree(a.path());
    let files_before = tree(&out.root.join("files"));
    let err = agg.ingest("p", "/second", a.path()).await.unwrap_err();
    assert!(matches!(err, AggregatorError::Io { .. }), "{err:?}");
    assert_eq!(tree(a.path()), before, "the artifacts are untouched");
    assert_eq!(
        tree(&out.root.join("files")),
        files_before,
        "no file of the failed ingest is left behind"
    );
    assert!(
        std::fs::read_dir(out.root.join("files"))
            .unwrap()
            .all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".atex")),
        "no staging directory is left behind"
    );

    // A bad results line fails before anything moves, too.
    std::fs::write(a.path().join("results"), format!("{results}{{oops\n")).unwrap();
    let err = agg.ingest("p", "/second", a.path()).await.unwrap_err();
    assert!(err.to_string().contains("line 3"), "{err}");
    std::fs::write(a.path().join("results"), results).unwrap();
    let mut before = before;
    assert_eq!(tree(a.path()), before);

    // Another test meanwhile, then the retry once the file is renamed.
    let third = artifacts("{\"status\": \"pass\"}\n", &[]);
    agg.ingest("p", "/third", third.path()).await.unwrap();
    std::fs::rename(
        a.path().join("files").join(&long),
        a.path().join("files/short"),
    )
    .unwrap();
    let data = before.remove(&Path::new("files").join(&long)).unwrap();
    before.insert(PathBuf::from("files/short"), data);
    agg.ingest("p", "/second", a.path()).await.unwrap();
    agg.finish().await.unwrap();

    assert_eq!(
        String::from_utf8(decompress(tool, &out.root.join("results.jsonl.x"))).unwrap(),
        format!(
            "[\"p\", \"pass\", \"/first\", null, [], null]\n\
             [\"p\", \"pass\", \"/third\", null, [], null]\n\
             [\"p\", \"fail\", \"/second\", null, [\"f00.txt{suffix}\"], null]\n\
             [\"p\", \"pass\", \"/second\", \"sub\", [], null]\n"
        )
    );
    // Every file arrived, compressed, and the artifacts were consumed.
    for (rel, data) in &before {
        let Ok(rel) = rel.strip_prefix("files") else {
            continue;
        };
        let mut name = out.root.join("files/p/second").join(rel).into_os_string();
        name.push(suffix);
        assert_eq!(
            &decompress(tool, Path::new(&name)),
            data,
            "{}",
            rel.display()
        );
    }
    assert!(!a.path().join("files").exists());
    assert!(!a.path().join("results").exists());
}

#[tokio::test]
async fn jsonl_gzip_failed_ingest_is_all_or_nothing_and_retryable() {
    compressed_failures_are_all_or_nothing(Compression::Gzip(6), "gzip", ".gz").await;
}

#[tokio::test]
async fn jsonl_xz_failed_ingest_is_all_or_nothing_and_retryable() {
    compressed_failures_are_all_or_nothing(Compression::Xz(6), "xz", ".xz").await;
}

/// Past a megabyte of text the compressed results file continues in a new gzip member /
/// xz stream; the real tools read the whole as one text.
#[tokio::test]
async fn jsonl_compressed_results_past_a_member_decode_whole() {
    for (compression, tool) in [(Compression::Gzip(1), "gzip"), (Compression::Xz(0), "xz")] {
        let out = Out::new();
        let agg = out.agg(
            "r",
            JsonlOptions {
                compression,
                ..JsonlOptions::default()
            },
        );
        let mut expected = String::new();
        for t in 0..8 {
            let mut results = String::new();
            for i in 0..3000 {
                results.push_str(&format!(
                    "{{\"status\": \"pass\", \"name\": \"sub{i}\", \"note\": \"{t}-{i}-{}\"}}\n",
                    "n".repeat(i % 97)
                ));
                expected.push_str(&format!(
                    "[\"p\", \"pass\", \"/t{t}\", \"sub{i}\", [], \"{t}-{i}-{}\"]\n",
                    "n".repeat(i % 97)
                ));
            }
            let a = artifacts(&results, &[]);
            agg.ingest("p", &format!("/t{t}"), a.path()).await.unwrap();
        }
        agg.finish().await.unwrap();
        assert!(expected.len() > 2 << 20, "crosses two member boundaries");
        let text = String::from_utf8(decompress(tool, &out.root.join("r"))).unwrap();
        assert!(text == expected, "{tool}: the decoded text differs");
    }
}
