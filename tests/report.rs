//! Reports: JUnit XML against the Jenkins schema (real `xmllint`), `atex report` over plain,
//! gzip and xz results with old runs, line-numbered errors, the YAML aggregator in
//! upstream's format, the live report aggregator, and Multi keeping outputs going.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use atex::aggregator::{
    Aggregator, AggregatorError, JsonlAggregator, JsonlOptions, MultiAggregator, ReportAggregator,
    ReportOutputs, YamlAggregator, YamlOptions,
};
use yaml_rust2::{Yaml, YamlLoader};

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

/// Validates `xml` with the real `xmllint --schema`; panics with its output otherwise.
fn assert_valid_junit(xml: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(support::junit_xsd())
        .arg(xml)
        .output()
        .expect("xmllint (libxml2-utils) runs");
    assert!(
        out.status.success(),
        "{} is not valid JUnit: {}{}\n{}",
        xml.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(xml).unwrap_or_default()
    );
}

/// A results directory with every status, subtests, reruns, awkward text and files.
fn rich_results(dir: &Path) {
    std::fs::create_dir_all(dir.join("files/9.6@x86_64/pass")).unwrap();
    std::fs::create_dir_all(dir.join("files/9.6@x86_64/sub/one")).unwrap();
    let rows = [
        r#"["9.6@x86_64", "pass", "/pass", null, ["output.txt"], null]"#,
        r#"["9.6@x86_64", "pass", "/sub", "one", ["one.log"], null]"#,
        r#"["9.6@x86_64", "fail", "/sub", "two & <three>", [], "it \"broke\"\nbadly"]"#,
        r#"["9.6@x86_64", null, "/sub", "none", [], null]"#,
        r#"["9.6@x86_64", "pass", "/sub", null, ["output.txt"], null]"#,
        r#"["9.6@x86_64", "error", "/error", null, [], "TestAbortedError(control)"]"#,
        r#"["9.6@x86_64", "infra", "/infra", null, [], "lost \u0001 remote"]"#,
        r#"["9.6@x86_64", "warn", "/warn", null, [], null]"#,
        r#"["9.6@x86_64", "skip", "/skip", null, [], "not here"]"#,
        r#"["9.6@x86_64", "info", "/info", null, [], null]"#,
        r#"["9.6@x86_64", "xfail", "/custom", null, [], null]"#,
        r#"["9.6@x86_64", null, "/nostatus", null, [], null]"#,
        r#"["9.6@x86_64", "fail", "/flaky", null, [], "first"]"#,
        r#"["9.6@x86_64", "pass", "/flaky (1)", null, [], null]"#,
        r#"["10@s390x", "fail", "/žluťoučký kůň", null, [], "ünïcödé"]"#,
        r#"["10@s390x", "fail", "/twice", null, [], null]"#,
        r#"["10@s390x", "fail", "/twice (1)", null, [], null]"#,
    ];
    std::fs::write(dir.join("results.jsonl"), rows.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("files/9.6@x86_64/pass/output.txt"), "all good\n").unwrap();
    std::fs::write(
        dir.join("files/9.6@x86_64/sub/output.txt"),
        b"ctrl \x01\x02\x1b[31mred\x1b[0m \xff\xfe invalid utf-8 ]]> </system-out>\n",
    )
    .unwrap();
    std::fs::write(dir.join("files/9.6@x86_64/sub/one/one.log"), "one\n").unwrap();
}

#[test]
fn junit_output_validates_against_the_jenkins_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    rich_results(&run);
    let old = tmp.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join("results.jsonl"),
        "[\"10@s390x\", \"error\", \"/twice\", null, [], \"oldest\"]\n",
    )
    .unwrap();
    let junit = tmp.path().join("out/junit.xml");
    let out = atex()
        .arg("report")
        .arg(&run)
        .arg("--old")
        .arg(&old)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    // Counts: 12 tests on the first platform (pass, sub, error, infra, warn, skip, info,
    // custom, nostatus, flaky), failures = warn + sub, errors = error + infra + custom +
    // nostatus.
    assert!(
        xml.contains(
            r#"<testsuite name="9.6@x86_64" tests="10" failures="2" errors="4" skipped="1""#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testsuite name="10@s390x" tests="2" failures="2" errors="0" skipped="0""#)
    );
    assert!(xml.contains(r#"<testsuites name="atex" tests="12" failures="4" errors="4""#));
    // Reruns: the flaky test passed after a failure; /twice failed three times.
    assert!(xml.contains(r#"<flakyFailure type="fail" message="attempt 1 of 2: fail: first"/>"#));
    assert!(xml.contains(r#"<rerunError type="error" message="attempt 1 of 3: error: oldest"/>"#));
    assert!(xml.contains(r#"<rerunFailure type="fail" message="attempt 2 of 3: fail"/>"#));
    // Subtests listed, escaped; output attached with control characters replaced; links
    // relative to the XML file.
    assert!(xml.contains("[fail] two &amp; &lt;three&gt;: it &quot;broke&quot;\nbadly"));
    assert!(xml.contains("one: one.log -&gt; ../run/files/9.6@x86_64/sub/one/one.log"));
    assert!(xml.contains("ctrl \u{FFFD}\u{FFFD}\u{FFFD}[31mred"));
    assert!(xml.contains("message=\"lost \u{FFFD} remote\""));
    assert!(xml.contains("no result reported a status"));

    // The live aggregator's first (empty) file validates too.
    let live = tmp.path().join("live.xml");
    ReportAggregator::create(ReportOutputs {
        junit: Some(live.clone()),
        ..ReportOutputs::default()
    })
    .unwrap();
    assert_valid_junit(&live);
}

/// Compresses `path` with the real `gzip` or `xz`, keeping the original.
fn compress(tool: &str, path: &Path) -> PathBuf {
    let status = Command::new(tool)
        .args(["-k", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    let mut p = path.as_os_str().to_owned();
    p.push(if tool == "gzip" { ".gz" } else { ".xz" });
    PathBuf::from(p)
}

#[test]
fn report_reads_plain_gzip_and_xz_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    rich_results(&run);
    let plain = run.join("results.jsonl");
    let gz = compress("gzip", &plain);
    let xz = compress("xz", &plain);
    let mut outputs = Vec::new();
    for (i, input) in [&plain, &gz, &xz].into_iter().enumerate() {
        let y = tmp.path().join(format!("out{i}.yaml"));
        let j = tmp.path().join(format!("out{i}.xml"));
        let out = atex()
            .arg("report")
            .arg(input)
            .arg("--yaml")
            .arg(&y)
            .arg("--junit")
            .arg(&j)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((std::fs::read(&y).unwrap(), std::fs::read(&j).unwrap()));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    // A directory with two results files is ambiguous.
    let out = atex()
        .arg("report")
        .arg(&run)
        .arg("--yaml")
        .arg(tmp.path().join("x.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("several results files"));
    // The YAML of a report parses and has one document per attempt.
    let docs =
        YamlLoader::load_from_str(&String::from_utf8(outputs[0].0.clone()).unwrap()).unwrap();
    assert_eq!(docs.len(), 17 - 4 + 2 - 1, "one per attempt");
    let sub = docs
        .iter()
        .find(|d| d["name"].as_str() == Some("/sub"))
        .unwrap();
    assert_eq!(sub["subtests"][1]["name"].as_str(), Some("two & <three>"));
    assert_eq!(
        sub["subtests"][1]["note"].as_str(),
        Some("it \"broke\"\nbadly")
    );
    assert_eq!(
        sub["subtests"][2]["status"],
        Yaml::BadValue,
        "null status left out"
    );
}

#[test]
fn a_malformed_results_line_is_an_error_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("results.jsonl");
    std::fs::write(
        &file,
        "[\"p\", \"pass\", \"/a\", null, [], null]\n\n{\"status\": \"pass\"}\n[\"p\", \"pass\", \"/b\", null, [], null]\n",
    )
    .unwrap();
    let html = tmp.path().join("r.html");
    let out = atex()
        .arg("report")
        .arg(&dir)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: not a result row", file.display())),
        "{err}"
    );
    assert!(!html.exists(), "nothing written from a damaged file");
    // Cut compressed stream: an error too, not a silent short report.
    std::fs::write(
        &file,
        "[\"p\", \"pass\", \"/a\", null, [], null]\n".repeat(50),
    )
    .unwrap();
    let xz = compress("xz", &file);
    std::fs::remove_file(&file).unwrap();
    let bytes = std::fs::read(&xz).unwrap();
    std::fs::write(&xz, &bytes[..bytes.len() - 20]).unwrap();
    let out = atex()
        .arg("report")
        .arg(&xz)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("results.jsonl.xz"));
    // Missing inputs and no output at all are usage errors.
    let out = atex()
        .arg("report")
        .arg(tmp.path().join("nope"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = atex().arg("report").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to write"));
}

// ---- YAML aggregator (upstream's test_yamld.py) ----

struct YamlOut {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl YamlOut {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Self { _tmp: tmp, root }
    }

    fn agg(&self, allow_duplicate: bool) -> YamlAggregator {
        YamlAggregator::create(
            self.root.join("results.yaml"),
            self.root.join("files"),
            YamlOptions { allow_duplicate },
        )
        .unwrap()
    }

    fn docs(&self) -> Vec<Yaml> {
        YamlLoader::load_from_str(&std::fs::read_to_string(self.root.join("results.yaml")).unwrap())
            .unwrap()
    }

    fn artifacts(&self, name: &str, results: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.root.join("art").join(name);
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("results"), results).unwrap();
        for (p, data) in files {
            let path = dir.join("files").join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        dir
    }
}

fn keys(doc: &Yaml) -> Vec<String> {
    doc.as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn yaml_documents_in_upstream_format() {
    let o = YamlOut::new();
    let agg = o.agg(false);
    let a = o.artifacts(
        "a",
        "{\"status\": \"pass\", \"files\": [\"out.txt\"]}\n",
        &[("out.txt", b"x")],
    );
    agg.ingest("platform1", "/test1", &a).await.unwrap();
    let b = o.artifacts("b", "{\"status\": \"fail\", \"note\": \"why\"}\n", &[]);
    agg.ingest("platform1", "/test2", &b).await.unwrap();
    let c = o.artifacts(
        "c",
        "{\"name\": \"sub1\", \"status\": \"fail\"}\n{\"name\": \"sub2\", \"status\": \"pass\", \"files\": [\"s.txt\"], \"note\": null}\n{\"status\": \"pass\"}\n",
        &[("sub2/s.txt", b"s")],
    );
    agg.ingest("platform1", "/test3", &c).await.unwrap();
    let d = o.artifacts("d", "{}\n", &[]);
    agg.ingest("platform1", "/test4", &d).await.unwrap();
    let e = o.artifacts(
        "e",
        "{\"status\": \"pass\", \"note\": \"n1\", \"files\": [\"a\"]}\n{\"status\": \"fail\", \"files\": [\"b\"]}\n{\"note\": \"n2\", \"status\": null}\n{\"name\": \"\", \"status\": \"info\"}\n",
        &[("a", b"a"), ("b", b"b")],
    );
    agg.ingest("platform1", "/test5", &e).await.unwrap();
    agg.finish().await.unwrap();
    let docs = o.docs();
    assert_eq!(docs.len(), 5);
    assert_eq!(keys(&docs[0]), ["platform", "name", "status", "files"]);
    assert_eq!(docs[0]["platform"].as_str(), Some("platform1"));
    assert_eq!(docs[0]["files"][0].as_str(), Some("out.txt"));
    assert_eq!(keys(&docs[1]), ["platform", "name", "status", "note"]);
    assert_eq!(docs[1]["note"].as_str(), Some("why"));
    assert_eq!(keys(&docs[2]), ["platform", "name", "status", "subtests"]);
    assert_eq!(keys(&docs[2]["subtests"][0]), ["name", "status"]);
    assert_eq!(keys(&docs[2]["subtests"][1]), ["name", "status", "files"]);
    assert_eq!(docs[2]["subtests"][1]["files"][0].as_str(), Some("s.txt"));
    assert_eq!(keys(&docs[3]), ["platform", "name"]);
    // Last status and note win, files accumulate; an empty name counts as nameless.
    assert_eq!(docs[4]["status"].as_str(), Some("info"));
    assert_eq!(docs[4]["note"].as_str(), Some("n2"));
    assert_eq!(docs[4]["files"].as_vec().unwrap().len(), 2);
    // Block sequences are not indented under their key, as PyYAML writes them.
    let text = std::fs::read_to_string(o.root.join("results.yaml")).unwrap();
    assert!(text.contains("files:\n- out.txt\n"), "{text}");
    assert!(
        text.contains("subtests:\n- name: sub1\n  status: fail\n- name: sub2\n"),
        "{text}"
    );
    // Files moved as with JSONL; nothing created without files.
    assert_eq!(
        std::fs::read(o.root.join("files/platform1/test1/out.txt")).unwrap(),
        b"x"
    );
    assert_eq!(
        std::fs::read(o.root.join("files/platform1/test3/sub2/s.txt")).unwrap(),
        b"s"
    );
    assert!(!o.root.join("files/platform1/test2").exists());
    assert!(!a.join("results").exists());
}

#[tokio::test]
async fn yaml_duplicates_and_missing_results() {
    let o = YamlOut::new();
    let agg = o.agg(false);
    let a = o.artifacts("a", "{\"status\": \"pass\"}\n", &[]);
    agg.ingest("p", "/t", &a).await.unwrap();
    let b = o.artifacts("b", "{\"status\": \"pass\"}\n", &[]);
    let err = agg.ingest("p", "/t", &b).await.unwrap_err();
    assert!(matches!(err, AggregatorError::Duplicate { .. }), "{err}");
    let missing = o.root.join("art/none");
    std::fs::create_dir_all(&missing).unwrap();
    let err = agg.ingest("p", "/u", &missing).await.unwrap_err();
    assert!(matches!(err, AggregatorError::MissingResults(_)), "{err}");
    let bad = o.artifacts("bad", "{\"status\": \"pass\"}\nnot json\n", &[]);
    let err = agg.ingest("p", "/v", &bad).await.unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    agg.finish().await.unwrap();
    assert_eq!(o.docs().len(), 1, "nothing of a failed ingest is written");

    let o = YamlOut::new();
    let agg = o.agg(true);
    for (i, n) in ["a", "b"].iter().enumerate() {
        let art = o.artifacts(
            n,
            "{\"status\": \"pass\", \"files\": [\"f\"]}\n",
            &[("f", &[i as u8])],
        );
        agg.ingest("p", "/t", &art).await.unwrap();
    }
    agg.finish().await.unwrap();
    let docs = o.docs();
    assert_eq!(docs[1]["name"].as_str(), Some("/t (1)"));
    assert_eq!(std::fs::read(o.root.join("files/p/t (1)/f")).unwrap(), [1]);
}

// ---- live reports and Multi ----

fn live_artifacts(root: &Path, name: &str, results: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::write(dir.join("results"), results).unwrap();
    dir
}

#[tokio::test]
async fn live_reports_are_rewritten_atomically_as_results_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let html = tmp.path().join("out/report.html");
    let junit = tmp.path().join("out/junit.xml");
    let live = ReportAggregator::create(ReportOutputs {
        junit: Some(junit.clone()),
        html: Some(html.clone()),
        files_dir: Some(tmp.path().join("results/files")),
        min_interval: Duration::ZERO,
        ..ReportOutputs::default()
    })
    .unwrap();
    let page = || std::fs::read_to_string(&html).unwrap();
    assert!(page().contains("data-tests=\"0\""));
    assert!(
        page().contains("http-equiv=\"refresh\""),
        "reloads while running"
    );
    let a = live_artifacts(
        tmp.path(),
        "a",
        "{\"status\": \"fail\", \"note\": \"first\"}\n",
    );
    live.superseded().ingest("p", "/t", &a).await.unwrap();
    assert!(!a.join("results").exists(), "results consumed");
    let b = live_artifacts(
        tmp.path(),
        "b",
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n",
    );
    live.ingest("p", "/t", &b).await.unwrap();
    assert!(
        b.join("files").exists(),
        "files left for the aggregator that keeps them"
    );
    assert!(page().contains("data-tests=\"1\" data-passed=\"1\" data-reruns=\"1\""));
    let c = live_artifacts(tmp.path(), "c", "{\"status\": \"error\"}\n");
    live.ingest("q", "/u", &c).await.unwrap();
    assert!(page().contains("data-tests=\"2\""));
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("tests=\"2\"")
    );
    live.set_durations(
        "p",
        "/t",
        &[Duration::from_secs(3), Duration::from_millis(1500)],
    );
    live.finish().await.unwrap();
    let text = page();
    assert!(
        !text.contains("http-equiv=\"refresh\""),
        "final page does not reload"
    );
    assert!(text.contains("../results/files/p/t/output.txt"));
    assert!(
        text.contains("[[4,3.000,\"first\"]]"),
        "earlier attempt (fail) with its duration"
    );
    assert_valid_junit(&junit);
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("time=\"1.500\"")
    );
    // No temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["junit.xml", "report.html"]);
    let d = live_artifacts(tmp.path(), "d", "{\"status\": \"pass\"}\n");
    assert!(matches!(
        live.ingest("p", "/v", &d).await,
        Err(AggregatorError::Finished)
    ));

    // Throttled: within the interval the file is not rewritten, at finish it is.
    let slow_html = tmp.path().join("slow.html");
    let slow = ReportAggregator::create(ReportOutputs {
        html: Some(slow_html.clone()),
        min_interval: Duration::from_secs(3600),
        ..ReportOutputs::default()
    })
    .unwrap();
    let e = live_artifacts(tmp.path(), "e", "{\"status\": \"pass\"}\n");
    slow.ingest("p", "/t", &e).await.unwrap();
    assert!(
        std::fs::read_to_string(&slow_html)
            .unwrap()
            .contains("data-tests=\"0\"")
    );
    slow.finish().await.unwrap();
    assert!(
        std::fs::read_to_string(&slow_html)
            .unwrap()
            .contains("data-tests=\"1\"")
    );
}

/// An output that always fails.
#[derive(Debug)]
struct Broken;

#[async_trait]
impl Aggregator for Broken {
    async fn ingest(&self, _: &str, _: &str, _: &Path) -> Result<(), AggregatorError> {
        Err(AggregatorError::Remote("service unavailable".into()))
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        Ok(())
    }
}

#[tokio::test]
async fn multi_keeps_the_other_outputs_going_when_one_fails() {
    let tmp = tempfile::tempdir().unwrap();
    for broken_first in [true, false] {
        let out = tmp.path().join(format!("out-{broken_first}"));
        std::fs::create_dir_all(&out).unwrap();
        let jsonl: Arc<dyn Aggregator> = Arc::new(
            JsonlAggregator::create(
                out.join("results.jsonl"),
                out.join("files"),
                JsonlOptions::default(),
            )
            .unwrap(),
        );
        let broken: Arc<dyn Aggregator> = Arc::new(Broken);
        let children = if broken_first {
            vec![("rp".to_string(), broken), ("results".to_string(), jsonl)]
        } else {
            vec![("results".to_string(), jsonl), ("rp".to_string(), broken)]
        };
        let multi = MultiAggregator::named(children).unwrap();
        let art = tmp.path().join(format!("art-{broken_first}"));
        std::fs::create_dir_all(art.join("files")).unwrap();
        std::fs::write(
            art.join("results"),
            "{\"status\": \"pass\", \"files\": [\"f\"]}\n",
        )
        .unwrap();
        std::fs::write(art.join("files/f"), "data").unwrap();
        let err = multi.ingest("p", "/t", &art).await.unwrap_err();
        match &err {
            AggregatorError::Outputs { total, failures } => {
                assert_eq!(*total, 2);
                assert_eq!(failures.len(), 1);
                assert_eq!(failures[0].0, "rp");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("rp: service unavailable"), "{err}");
        multi.finish().await.unwrap();
        // The result and its file were recorded by the output that works.
        assert_eq!(
            std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
            "[\"p\", \"pass\", \"/t\", null, [\"f\"], null]\n"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("files/p/t/f")).unwrap(),
            "data"
        );
        let leftovers = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("atex-multi-"))
            .count();
        assert_eq!(leftovers, 0);
    }
}
