//! Submit a Testing Farm request, wait until it runs, cancel it: the Testing Farm API client
//! used directly, as a CI script would.
//!
//! ```text
//! export TESTING_FARM_API_TOKEN=...                           # required
//! export TESTING_FARM_API_URL=https://api.testing-farm.io     # optional (this is the default)
//! cargo run --features testingfarm --example testingfarm_api -- Fedora-42 x86_64
//! ```
//!
//! It submits upstream's reservation request (the reserve test on COMPOSE/ARCH), prints the
//! request id, waits (at most `WAIT_SECS`, default 1800) until the request is `running`,
//! prints its artifacts URL, and cancels it. Ctrl-C at any point still cancels the request,
//! also one whose create was in flight (it is found by its idempotency marker). Requests are
//! polled every 30 s (`TESTING_FARM_WATCH_TICK` changes that; keep it at 30 s or more
//! against the real service).
//!
//! Exit status: 0 when the request ran and was cancelled, 1 when it ended otherwise or did
//! not run in time, 2 on an API error, 130 when interrupted.

use std::process::ExitCode;
use std::time::Duration;

use atex::scope::{Scope, ShutdownOptions};
use atex::testingfarm::{Client, NewRequest, State, TfError, Timestamp};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let compose = args
        .next()
        .or_else(|| std::env::var("TESTING_FARM_COMPOSE").ok())
        .unwrap_or_else(|| "Fedora-Rawhide".to_string());
    let arch = args.next().unwrap_or_else(|| "x86_64".to_string());
    let wait = std::env::var("WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);

    // The root of the task tree; Ctrl-C cancels it (once: gracefully, twice: forcibly).
    let scope = Scope::root("testingfarm-example");
    let signals = match atex::signal::install(&scope) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match run(&scope, &compose, &arch, wait).await {
        Ok(code) => code,
        Err(e) if e.is_cancelled() => 130,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    };
    let _ = scope.shutdown(ShutdownOptions::default()).await;
    ExitCode::from(if signals.interrupted() { 130 } else { code })
}

async fn run(scope: &Scope, compose: &str, arch: &str, wait: Duration) -> Result<u8, TfError> {
    // Token and URL from TESTING_FARM_API_TOKEN / TESTING_FARM_API_URL. `with_scope`: Ctrl-C
    // stops ordinary calls and waits, but not the cancel below (a second Ctrl-C does).
    let client = Client::builder().build()?.with_scope(scope);
    let request = NewRequest::reserve(compose, arch).timeout_minutes(30);
    let started = Timestamp::now();
    println!("submitting a reservation of {compose} on {arch}");
    let mut submitted = match client.create(&request).await {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => {
            // The POST may have reached the server: find it by its marker and cancel it.
            for found in client.find_created(request.marker(), started).await? {
                let outcome = client.cancel(found.id()).await?;
                println!("request {}: {outcome}", found.id());
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    println!("request {} submitted", submitted.id());

    let waited =
        tokio::time::timeout(wait, submitted.wait_for_state(&[State::Running], scope)).await;
    let code = match waited {
        Ok(Ok(state)) => {
            let artifacts = submitted
                .info()
                .and_then(|i| i.artifacts_url())
                .unwrap_or("(none yet)");
            println!(
                "request {} is {state}; artifacts: {artifacts}",
                submitted.id()
            );
            0
        }
        Ok(Err(e)) if e.is_cancelled() => 130,
        Ok(Err(e)) => {
            println!("request {}: {e}", submitted.id());
            1
        }
        Err(_) => {
            println!("request {} did not run within {wait:?}", submitted.id());
            1
        }
    };

    // Always release the machine, also after Ctrl-C.
    let outcome = submitted.cancel().await?;
    println!("request {}: {outcome}", submitted.id());
    Ok(code)
}
