//! The conformance suite (`atex::testing::conformance`) on the backends that need no
//! machine: the in-memory provisioner, the command and FMF executors on the local machine,
//! and the JSONL, YAML and Multi aggregators. (Local and SSH connections and provisioners
//! run it in `tests/foundation.rs` and `tests/ssh.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atex::aggregator::{
    Aggregator, JsonlAggregator, JsonlOptions, MultiAggregator, YamlAggregator, YamlOptions,
};
use atex::connection::LocalConnection;
use atex::executor::fmf::{FmfExecutor, FmfOptions, FmfPlan, FmfTest};
use atex::executor::{CommandExecutor, Executor};
use atex::scope::Scope;
use atex::testing::MemoryProvisioner;
use atex::testing::conformance::aggregator::{AggregatorTarget, RecordedResult, RecordedTest};
use atex::testing::conformance::executor::ExecutorTarget;
use atex::testing::conformance::provisioner::ProvisionerTarget;
use atex::testing::conformance::{aggregator, executor, provisioner, remote};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_provisioner_conforms() {
    let scope = Scope::root("t");
    let target = ProvisionerTarget::new(|| Arc::new(MemoryProvisioner::new(3)), &scope)
        .limited(|| Arc::new(MemoryProvisioner::new(1)))
        .immediate(true)
        .commands(false);
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
}

/// A flag file the hanging test creates once it runs.
fn started_probe(flag: &Path) -> impl Fn() -> std::future::Ready<bool> + Send + Sync + 'static {
    let flag = flag.to_path_buf();
    move || std::future::ready(flag.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_executor_conforms() {
    let scope = Scope::root("t");
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("started");
    let hang = format!("touch '{}'; exec sleep 1000", flag.display());
    let target = ExecutorTarget::new(
        move || {
            Box::new(
                CommandExecutor::new(Arc::new(LocalConnection::new()))
                    .with_test("/pass", ["sh", "-c", "echo fine"])
                    .with_test("/fail", ["sh", "-c", "echo bad >&2; exit 3"])
                    .with_test("/hang", ["sh", "-c", hang.as_str()]),
            ) as Box<dyn Executor>
        },
        "/pass",
        ("/fail", 3),
        "/hang",
        &scope,
    )
    .hanging_started(started_probe(&flag));
    executor::all(&target).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fmf_executor_conforms() {
    let scope = Scope::root("t");
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("data.txt"), b"data\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let flag = work.path().join("started");
    let tests = vec![
        FmfTest::new("/pass", "cat data.txt"),
        FmfTest::new("/fail", "echo bad >&2; exit 3"),
        FmfTest::new("/hang", format!("touch '{}'; sleep 1000", flag.display())),
    ];
    let (tree_path, work_base) = (tree.path().to_path_buf(), work.path().display().to_string());
    let target = ExecutorTarget::new(
        move || {
            Box::new(
                FmfExecutor::new(
                    Arc::new(LocalConnection::new()),
                    &tree_path,
                    tests.clone(),
                    FmfPlan::default(),
                )
                .with_options(FmfOptions {
                    work_base: Some(work_base.clone()),
                    ..FmfOptions::default()
                }),
            ) as Box<dyn Executor>
        },
        "/pass",
        ("/fail", 3),
        "/hang",
        &scope,
    )
    .hanging_started(started_probe(&flag));
    executor::all(&target).await.assert_passed();
}

/// Reads `results.jsonl` back: one line per result, consecutive lines of one test grouped.
fn read_jsonl(dir: &Path) -> Result<Vec<RecordedTest>, String> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).map_err(|e| e.to_string())?;
    let mut tests: Vec<RecordedTest> = Vec::new();
    for line in text.lines() {
        let row: Vec<serde_json::Value> =
            serde_json::from_str(line).map_err(|e| format!("{line}: {e}"))?;
        let s = |i: usize| row.get(i).and_then(|v| v.as_str()).map(str::to_string);
        let files = row
            .get(4)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let result = RecordedResult {
            name: s(3),
            status: s(1),
            files,
            note: s(5),
        };
        let (platform, test) = (s(0).unwrap_or_default(), s(2).unwrap_or_default());
        match tests.last_mut() {
            Some(t) if t.platform == platform && t.test == test => t.results.push(result),
            _ => tests.push(RecordedTest {
                platform,
                test,
                results: vec![result],
            }),
        }
    }
    Ok(tests)
}

fn jsonl(dir: &Path, allow_duplicate: bool) -> JsonlAggregator {
    JsonlAggregator::create(
        dir.join("results.jsonl"),
        dir.join("files"),
        JsonlOptions {
            allow_duplicate,
            ..JsonlOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_aggregator_conforms() {
    let target = AggregatorTarget::new(
        |dir, allow| Ok(Arc::new(jsonl(dir, allow)) as Arc<dyn Aggregator>),
        read_jsonl,
    );
    aggregator::all(&target).await.assert_passed();
}

/// Reads `results.yaml` back: the document's own status/files/note as one nameless result,
/// then one result per subtest.
fn read_yaml(dir: &Path) -> Result<Vec<RecordedTest>, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = std::fs::read_to_string(dir.join("results.yaml")).map_err(|e| e.to_string())?;
    let docs = YamlLoader::load_from_str(&text).map_err(|e| e.to_string())?;
    let s = |y: &Yaml, k: &str| y[k].as_str().map(str::to_string);
    let files = |y: &Yaml| -> Vec<String> {
        y["files"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut tests = Vec::new();
    for doc in docs {
        let mut results = Vec::new();
        let own = RecordedResult {
            name: None,
            status: s(&doc, "status"),
            files: files(&doc),
            note: s(&doc, "note"),
        };
        if own != RecordedResult::default() {
            results.push(own);
        }
        for sub in doc["subtests"].as_vec().cloned().unwrap_or_default() {
            results.push(RecordedResult {
                name: s(&sub, "name"),
                status: s(&sub, "status"),
                files: files(&sub),
                note: s(&sub, "note"),
            });
        }
        tests.push(RecordedTest {
            platform: s(&doc, "platform").ok_or("a document without platform")?,
            test: s(&doc, "name").ok_or("a document without name")?,
            results,
        });
    }
    Ok(tests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_aggregator_conforms() {
    let target = AggregatorTarget::new(
        |dir, allow_duplicate| {
            let agg = YamlAggregator::create(
                dir.join("results.yaml"),
                dir.join("files"),
                YamlOptions { allow_duplicate },
            )?;
            Ok(Arc::new(agg) as Arc<dyn Aggregator>)
        },
        read_yaml,
    );
    aggregator::all(&target).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_aggregator_conforms() {
    // A JSONL copy elsewhere, and the JSONL output the suite reads last (it gets the
    // original artifacts, so its files land under `dir/files`).
    let target = AggregatorTarget::new(
        |dir, allow| {
            let side: PathBuf = dir.join("side");
            std::fs::create_dir_all(&side).map_err(|e| {
                atex::aggregator::AggregatorError::Config(format!("{}: {e}", side.display()))
            })?;
            let outputs: Vec<Arc<dyn Aggregator>> =
                vec![Arc::new(jsonl(&side, allow)), Arc::new(jsonl(dir, allow))];
            Ok(Arc::new(MultiAggregator::new(outputs)?) as Arc<dyn Aggregator>)
        },
        read_jsonl,
    );
    aggregator::all(&target).await.assert_passed();
}
