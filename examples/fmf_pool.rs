//! Embedding atex: discover the FMF tests of a tree and run them on a pool of local remotes.
//!
//! ```text
//! cargo run --example fmf_pool -- TREE [REMOTES]
//! ```
//!
//! Results go to `./fmf-pool-results/` (replaced on each run); run events are printed as
//! JSON lines on stderr as they happen.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::executor::fmf::FmfExecutorFactory;
use atex::fmf::{DiscoverOptions, discover};
use atex::orchestrator::AdHocOrchestrator;
use atex::orchestrator::adhoc::Policy;
use atex::provisioner::LocalProvisioner;
use atex::scope::{Scope, ShutdownOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(tree) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fmf_pool TREE [REMOTES]");
        return ExitCode::from(2);
    };
    let remotes: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    match run(tree, remotes).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fmf_pool: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(tree: PathBuf, remotes: usize) -> Result<bool, Box<dyn std::error::Error>> {
    let out = PathBuf::from("fmf-pool-results");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;

    let scope = Scope::root("fmf-pool");
    let signals = atex::signal::install(&scope)?; // Ctrl-C: cancel, again: kill
    let tests = discover(&DiscoverOptions::new(tree))?;
    let aggregator = Arc::new(JsonlAggregator::create(
        out.join("results.jsonl"),
        out.join("files"),
        JsonlOptions::default(),
    )?);
    let mut orchestrator = AdHocOrchestrator::builder("local")
        .tests(tests.names())
        .provisioner(Arc::new(LocalProvisioner::new().with_max_remotes(remotes)))
        .executor(Arc::new(FmfExecutorFactory::new(&tests)))
        .aggregator(aggregator.clone())
        .policy(Policy::limited_reruns(1))
        .policy(Policy::destructive_tag("destructive"))
        .build()?;
    let mut events = orchestrator.subscribe(1024);
    let printer = scope.spawn("events", async move {
        while let Some(event) = events.recv().await {
            if let Ok(line) = serde_json::to_string(&event) {
                eprintln!("{line}");
            }
        }
    });
    let summary = orchestrator.run(&scope).await;
    let _ = printer.await;
    aggregator.finish().await?;
    scope.shutdown(ShutdownOptions::default()).await;
    let summary = summary?;
    println!(
        "{} passed, {} failed, {} not run{}; results in {}",
        summary.passed(),
        summary.failed(),
        summary.not_run.len(),
        if signals.interrupted() {
            " (interrupted)"
        } else {
            ""
        },
        out.display()
    );
    Ok(summary.failed() == 0 && summary.not_run.is_empty())
}
