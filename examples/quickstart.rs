//! Quickstart: run 20 small shell commands as tests on 4 local remotes.
//!
//! ```text
//! cargo run --example quickstart [RESULTS_DIR]
//! ```
//!
//! Writes `RESULTS_DIR/results.jsonl` and `RESULTS_DIR/files/` (default `./atex-results`;
//! results of an earlier quickstart run there are replaced) and prints a summary.
//! Ctrl-C stops it gracefully: running tests are terminated, their error results and every
//! finished result stay in `results.jsonl`, and nothing is left running.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::executor::{CommandExecutor, Executor, ExecutorFactory};
use atex::orchestrator::{RunSummary, SimpleOrchestrator};
use atex::provisioner::{LocalProvisioner, Provisioner, Remote};
use atex::scope::{Scope, ShutdownOptions};

const REMOTES: usize = 4;

/// The tests: name -> shell snippet. Two of them fail on purpose.
fn tests() -> Vec<(String, String)> {
    let mut tests = Vec::new();
    for i in 1..=16 {
        let ms = 100 + (i * 37) % 400;
        tests.push((
            format!("/quickstart/work-{i:02}"),
            format!(
                "echo 'test {i} working for {ms} ms'; sleep {}.{:03}; echo done",
                ms / 1000,
                ms % 1000
            ),
        ));
    }
    tests.push(("/quickstart/kernel".into(), "uname -srm".into()));
    tests.push(("/quickstart/disk".into(), "df -h . | tail -n 1".into()));
    tests.push((
        "/quickstart/fails".into(),
        "echo 'this one fails' >&2; exit 3".into(),
    ));
    tests.push((
        "/quickstart/missing-file".into(),
        "cat /nonexistent/file".into(),
    ));
    tests
}

fn prepare_output(dir: &PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let results = dir.join("results.jsonl");
    if results.exists() {
        std::fs::remove_file(&results)?;
    }
    let files = dir.join("files");
    if files.exists() {
        std::fs::remove_dir_all(&files)?;
    }
    Ok(())
}

fn print_summary(summaries: &[RunSummary], elapsed: Duration, dir: &std::path::Path) {
    let tests: Vec<_> = summaries.iter().flat_map(|s| &s.tests).collect();
    let passed = tests.iter().filter(|t| t.passed()).count();
    println!(
        "{} tests in {:.2} s on {REMOTES} local remotes: {passed} passed, {} not passed",
        tests.len(),
        elapsed.as_secs_f64(),
        tests.len() - passed
    );
    for t in tests.iter().filter(|t| !t.passed()) {
        match (&t.error, t.exit_code) {
            (Some(e), _) => println!("  {}: {e}", t.name),
            (None, Some(code)) => println!("  {}: exit code {code}", t.name),
            (None, None) => println!("  {}: did not finish", t.name),
        }
    }
    for s in summaries {
        for e in &s.ingest_errors {
            println!("  ingest error: {e}");
        }
    }
    println!("results: {}", dir.join("results.jsonl").display());
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "atex-results".into()),
    );
    if let Err(e) = prepare_output(&dir) {
        eprintln!("cannot prepare {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let aggregator = match JsonlAggregator::create(
        dir.join("results.jsonl"),
        dir.join("files"),
        JsonlOptions::default(),
    ) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    let scope = Scope::root("quickstart");
    scope.set_kill_grace(Duration::from_secs(1));
    let signals = match atex::signal::install(&scope) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };

    let all = tests();
    let table: Arc<HashMap<String, Vec<String>>> = Arc::new(
        all.iter()
            .map(|(name, script)| (name.clone(), vec!["sh".into(), "-c".into(), script.clone()]))
            .collect(),
    );
    let factory: Arc<dyn ExecutorFactory> = Arc::new(move |remote: Arc<dyn Remote>| {
        Box::new(CommandExecutor::with_tests(remote, table.clone())) as Box<dyn Executor>
    });

    // Four lanes, each a sequential orchestrator on its own local remote.
    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..REMOTES {
        let names: Vec<String> = all
            .iter()
            .skip(lane)
            .step_by(REMOTES)
            .map(|(n, _)| n.clone())
            .collect();
        let provisioner: Arc<dyn Provisioner> = Arc::new(LocalProvisioner::new());
        let orchestrator = SimpleOrchestrator::new(
            provisioner,
            factory.clone(),
            aggregator.clone(),
            "local",
            names,
        );
        let lane_scope = scope.child(format!("lane-{lane}"));
        lanes.push(scope.spawn("lane", async move { orchestrator.run(&lane_scope).await }));
    }

    let mut summaries = Vec::new();
    let mut failed = false;
    for lane in lanes {
        match lane.await {
            Ok(Ok(summary)) => summaries.push(summary),
            Ok(Err(e)) => {
                eprintln!("run failed: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("lane crashed: {e}");
                failed = true;
            }
        }
    }
    if let Err(e) = aggregator.finish().await {
        eprintln!("{e}");
        failed = true;
    }
    let report = scope.shutdown(ShutdownOptions::default()).await;
    if !report.is_clean() {
        eprintln!("cleanup incomplete: {report:?}");
    }
    print_summary(&summaries, started.elapsed(), &dir);
    if signals.interrupted() {
        println!("interrupted");
        ExitCode::from(130)
    } else if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
