//! Upstream's nightly scheduling rules on local remotes with the FMF executor
//! ([`NightlyPolicy`]): destructive tests first, each on a fresh remote; tests sharing a
//! guest tag (the custom FMF key `extra-guest-tag`) kept together as a train on one remote;
//! a test whose exit code is neither 0 nor 2 destroys its remote (a fresh one replaces it);
//! failed tests rerun once; then priority (`extra-priority`) and duration ordering.
//!
//! ```text
//! cargo run --example nightly                # the built-in tree (tests/fixtures/nightly)
//! cargo run --example nightly -- TREE [REMOTES]
//! ```
//!
//! Without a tree the example writes its own small one into a temporary directory. Tests
//! get `NIGHTLY_STATE`, a scratch directory outside the tree that survives reruns. Each
//! test start, remote retirement and release is printed as it happens, then a summary:
//! which remote ran each attempt, and the verdicts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::executor::fmf::FmfExecutorFactory;
use atex::fmf::{DiscoverOptions, discover};
use atex::orchestrator::AdHocOrchestrator;
use atex::orchestrator::adhoc::{NightlyPolicy, TestInfo};
use atex::orchestrator::events::EventKind;
use atex::provisioner::LocalProvisioner;
use atex::scope::{Scope, ShutdownOptions};

/// The built-in tree (the same as `tests/fixtures/nightly`, which tests/nightly.rs runs).
const MAIN_FMF: &str = include_str!("../tests/fixtures/nightly/tests/main.fmf");

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let tree = args.next().map(PathBuf::from);
    let remotes: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    match run(tree, remotes).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("nightly: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes the built-in tree under `dir`.
fn write_tree(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join(".fmf"))?;
    std::fs::write(dir.join(".fmf/version"), "1\n")?;
    std::fs::create_dir_all(dir.join("tests"))?;
    std::fs::write(dir.join("tests/main.fmf"), MAIN_FMF)
}

async fn run(tree: Option<PathBuf>, remotes: usize) -> Result<bool, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let tree = match tree {
        Some(tree) => tree,
        None => {
            let dir = tmp.path().join("tree");
            write_tree(&dir)?;
            dir
        }
    };
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state)?;

    let scope = Scope::root("nightly");
    let signals = atex::signal::install(&scope)?; // Ctrl-C: cancel, again: kill
    let discovered = discover(&DiscoverOptions::new(tree))?;
    let tests = TestInfo::from_discovered(&discovered);
    let nightly = NightlyPolicy::new().reruns(1);
    nightly.check(&tests)?;
    let results = tmp.path().join("results.jsonl");
    let aggregator = Arc::new(JsonlAggregator::create(
        &results,
        tmp.path().join("files"),
        JsonlOptions::default(),
    )?);
    let old = Arc::new(JsonlAggregator::create(
        tmp.path().join("old.jsonl"),
        tmp.path().join("old-files"),
        JsonlOptions {
            allow_duplicate: true,
            ..JsonlOptions::default()
        },
    )?);
    let factory = FmfExecutorFactory::new(&discovered)
        .with_env("NIGHTLY_STATE", state.to_string_lossy().into_owned());
    let mut orchestrator = AdHocOrchestrator::builder("local")
        .tests(tests)
        .provisioner(Arc::new(LocalProvisioner::new().with_max_remotes(remotes)))
        .executor(Arc::new(factory))
        .aggregator(aggregator.clone())
        .old_aggregator(old.clone())
        .policies(nightly.policies())
        .build()?;
    let mut events = orchestrator.subscribe(4096);
    // Short remote names (r1, r2, …) in the order the remotes arrived.
    let printer = scope.spawn("events", async move {
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut ran: Vec<(String, u32, String)> = Vec::new();
        while let Some(event) = events.recv().await {
            match event.kind {
                EventKind::RemoteAcquired { remote, .. } => {
                    let short = format!("r{}", names.len() + 1);
                    println!("{short:>4} acquired ({remote})");
                    names.insert(remote, short);
                }
                EventKind::TestStarted {
                    test,
                    remote,
                    attempt,
                } => {
                    let short = names.get(&remote).cloned().unwrap_or(remote);
                    println!("{short:>4} runs {test} (attempt {attempt})");
                    ran.push((test, attempt, short));
                }
                EventKind::TestFinished {
                    test,
                    remote,
                    verdict,
                    exit_code,
                    rerun,
                    ..
                } => {
                    let short = names.get(&remote).map_or(remote.as_str(), String::as_str);
                    let code = exit_code.map_or("-".to_string(), |c| c.to_string());
                    let again = if rerun { ", rerun" } else { "" };
                    println!("{short:>4} {test}: {verdict} (exit {code}{again})");
                }
                EventKind::RemoteRetired { remote, test, .. } => {
                    let short = names.get(&remote).map_or(remote.as_str(), String::as_str);
                    println!("{short:>4} destroyed by {test}");
                }
                EventKind::RemoteReleased { remote, reason } => {
                    let short = names.get(&remote).map_or(remote.as_str(), String::as_str);
                    println!("{short:>4} released ({reason})");
                }
                _ => {}
            }
        }
        ran
    });
    let summary = orchestrator.run(&scope).await;
    let ran = printer.await.unwrap_or_default();
    aggregator.finish().await?;
    old.finish().await?;
    scope.shutdown(ShutdownOptions::default()).await;
    let summary = summary?;

    println!("\nattempts, in start order:");
    for (test, attempt, remote) in &ran {
        println!("  {remote:>4}  {test} #{attempt}");
    }
    println!("\nfinal verdicts:");
    for t in &summary.tests {
        println!("  {:<6} {}", t.verdict.to_string(), t.name);
    }
    println!(
        "\n{} passed, {} failed, {} reruns, {} remotes destroyed, {} not run{}",
        summary.passed(),
        summary.failed(),
        summary.reruns.len(),
        summary.retired.len(),
        summary.not_run.len(),
        if signals.interrupted() {
            " (interrupted)"
        } else {
            ""
        },
    );
    Ok(summary.failed() == 0 && summary.not_run.is_empty())
}
