//! `atex tf`: the Testing Farm API from the command line.
//!
//! The token comes from `TESTING_FARM_API_TOKEN` only (a `--token` option would show it to
//! every user of the machine in the process list); the API root from `--url` or
//! `TESTING_FARM_API_URL`. Output is for people; `--json` prints JSON instead.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use atex::error::chain;
use atex::scope::{Scope, ShutdownOptions};
use atex::testingfarm::{
    CancelOutcome, Client, ClientBuilder, DEFAULT_JOURNAL, Journal, LineBuffer, LogChunk,
    RequestInfo, RetryPolicy, SearchQuery, State, TfError, Timestamp,
};
use serde_json::{Value, json};

use crate::errors::{self, CliError};

/// Exit code: a part of the work failed (some cancels, an incomplete cleanup).
const EXIT_PARTIAL: u8 = 1;
/// Exit code: the command could not run (usage, missing token, API error).
const EXIT_ERROR: u8 = 2;
/// Exit code: interrupted.
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `atex tf`.
#[derive(clap::Args, Debug)]
pub struct TfArgs {
    /// API root (default: $TESTING_FARM_API_URL, else https://api.testing-farm.io).
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Retries of a call failing with 408, 429, 5xx or a connection error (back-off from
    /// 2 s doubling to 120 s; the default rides out about four hours of outage).
    #[arg(long, value_name = "N", global = true, default_value_t = 130)]
    max_retries: u32,
    /// What to do.
    #[command(subcommand)]
    cmd: TfCommand,
}

/// `atex tf` subcommands.
#[derive(clap::Subcommand, Debug)]
enum TfCommand {
    /// Show which token and user TESTING_FARM_API_TOKEN is, and its ranch.
    Whoami,
    /// Show the server's version information.
    About,
    /// List compose names (of the token's ranch, or of RANCH).
    Composes {
        /// `public` or `redhat` (default: the token's ranch).
        ranch: Option<String>,
    },
    /// Show one request.
    #[command(visible_alias = "gr")]
    GetRequest {
        /// Request id.
        id: String,
    },
    /// Search requests: one line per request (created, state, id, test URL, platforms).
    #[command(visible_alias = "sr")]
    SearchRequests {
        /// State to list (repeatable; default: new, queued, running).
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<State>,
        /// Every state.
        #[arg(long, conflicts_with = "states")]
        all: bool,
        /// Created at or after: YYYY-MM-DD[THH:MM[:SS]] (UTC), or an age such as 2h, 3d.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        after: Option<Timestamp>,
        /// Created before: same forms as --after.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        before: Option<Timestamp>,
        /// Only the token's own requests.
        #[arg(long)]
        mine: bool,
        /// Only requests of this ranch.
        #[arg(long)]
        ranch: Option<String>,
        /// Only requests of this user id.
        #[arg(long, conflicts_with = "mine")]
        user_id: Option<String>,
        /// Only requests of this token id.
        #[arg(long, conflicts_with = "mine")]
        token_id: Option<String>,
        /// Width of one search window in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 43_200,
              value_parser = clap::value_parser!(u64).range(1..))]
        page: u64,
    },
    /// Cancel requests: the given ids, or every live request of the token (--mine).
    Cancel {
        /// Request ids.
        #[arg(required_unless_present = "mine", conflicts_with = "mine")]
        ids: Vec<String>,
        /// Every new, queued or running request of the token.
        #[arg(long)]
        mine: bool,
    },
    /// Print a request's pipeline.log as it grows, until the request ends.
    #[command(visible_alias = "wp")]
    WatchPipeline {
        /// Request id.
        id: String,
        /// Seconds between polls (default: $TESTING_FARM_WATCH_TICK, else 30).
        #[arg(long, value_name = "SECS")]
        interval: Option<f64>,
    },
    /// Reserve a machine, print the ssh command, hold it until Ctrl-C, then cancel it.
    #[cfg(feature = "ssh")]
    Reserve(crate::tf_reserve::ReserveArgs),
    /// Cancel every request a journal says is outstanding (after a crashed or killed run).
    Cleanup {
        /// The journal file.
        #[arg(default_value = DEFAULT_JOURNAL)]
        journal: PathBuf,
    },
}

/// A `--after`/`--before` value that is neither a timestamp nor an age. The timestamp's
/// error is part of the message: clap shows only the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}, or an age such as 90s, 30m, 2h, 7d")]
struct TimeArgError(atex::timestamp::TimestampError);

/// `--after`/`--before`: a timestamp, or an age (`90s`, `30m`, `2h`, `7d`) before now.
fn parse_time(s: &str) -> Result<Timestamp, TimeArgError> {
    let s = s.trim();
    let unit = match s.chars().last() {
        Some('s') => Some(1),
        Some('m') => Some(60),
        Some('h') => Some(3600),
        Some('d') => Some(86_400),
        _ => None,
    };
    if let Some(unit) = unit
        && let Ok(n) = s[..s.len() - 1].parse::<u64>()
    {
        return Ok(Timestamp::now().minus(Duration::from_secs(n.saturating_mul(unit))));
    }
    Timestamp::parse(s).map_err(TimeArgError)
}

/// Writes `text` to stdout; a closed pipe is not an error worth a message.
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}

fn out_json(v: &Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    ));
}

/// Runs `atex tf`.
pub fn run(args: TfArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errors::print(&CliError::failed("cannot start the async runtime", e));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    runtime.block_on(run_async(args))
}

async fn run_async(args: TfArgs) -> ExitCode {
    let scope = Scope::root("atex-tf");
    let signals = match atex::signal::install(&scope) {
        Ok(s) => s,
        Err(e) => {
            errors::print(&CliError::failed("cannot install signal handlers", e));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut builder = ClientBuilder::from_env().retry(RetryPolicy {
        max_retries: args.max_retries,
        ..RetryPolicy::default()
    });
    if let Some(url) = &args.url {
        builder = builder.url(url);
    }
    #[cfg(feature = "ssh")]
    let holds = matches!(args.cmd, TfCommand::Reserve(_));
    #[cfg(not(feature = "ssh"))]
    let holds = false;
    let code = match builder.build() {
        #[cfg(feature = "ssh")]
        Ok(client) if holds => {
            let TfCommand::Reserve(reserve) = args.cmd else {
                return ExitCode::from(EXIT_ERROR);
            };
            // Not tied to the scope: the reservation ties its own calls to it, and its
            // cancel must outlive Ctrl-C.
            crate::tf_reserve::run(&client, &scope, reserve, args.json).await
        }
        Ok(client) => {
            let client = client.with_scope(&scope);
            match command(&client, &scope, args.cmd, args.json).await {
                Ok(code) => code,
                Err(e) if e.is_cancelled() => EXIT_INTERRUPTED,
                Err(e) => {
                    errors::print(&e);
                    EXIT_ERROR
                }
            }
        }
        Err(e) => {
            errors::print(&e);
            EXIT_ERROR
        }
    };
    let report = scope.shutdown(ShutdownOptions::default()).await;
    if !report.is_clean() {
        errors::print_message(&format!("cleanup incomplete: {report:?}"));
    }
    // Ctrl-C is how a reservation normally ends.
    ExitCode::from(if signals.interrupted() && !(holds && code == 0) {
        EXIT_INTERRUPTED
    } else {
        code
    })
}

async fn command(
    client: &Client,
    scope: &Scope,
    cmd: TfCommand,
    json: bool,
) -> Result<u8, TfError> {
    match cmd {
        TfCommand::Whoami => {
            let me = client.whoami().await?;
            if json {
                out_json(me.json());
            } else {
                out(&format!(
                    "token: {} ({})\nranch: {}\nuser:  {} ({})\n",
                    me.token_name().unwrap_or("-"),
                    me.token_id(),
                    me.ranch(),
                    me.user_name().unwrap_or("-"),
                    me.user_id()
                ));
            }
        }
        TfCommand::About => {
            let about = client.about().await?;
            if json {
                out_json(&about);
            } else if let Some(obj) = about.as_object() {
                for (k, v) in obj {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    out(&format!("{k}: {v}\n"));
                }
            } else {
                out_json(&about);
            }
        }
        TfCommand::Composes { ranch } => {
            let list = client.composes(ranch.as_deref()).await?;
            if json {
                out_json(&json!(list));
            } else {
                let mut text = String::new();
                for c in list.iter().filter(|c| c.is_name()) {
                    text.push_str(&c.name);
                    text.push('\n');
                }
                out(&text);
            }
        }
        TfCommand::GetRequest { id } => {
            let r = client.get(&id).await?;
            let Some(info) = r.info() else {
                return Ok(EXIT_ERROR);
            };
            if json {
                out_json(info.json());
            } else {
                out(&describe(info));
            }
        }
        TfCommand::SearchRequests {
            states,
            all,
            after,
            before,
            mine,
            ranch,
            user_id,
            token_id,
            page,
        } => {
            let mut q = SearchQuery::new()
                .only_mine(mine)
                .page(Duration::from_secs(page))
                .states(if all { State::ALL.to_vec() } else { states });
            if let Some(t) = after {
                q = q.created_after(t);
            }
            if let Some(t) = before {
                q = q.created_before(t);
            }
            if let Some(r) = ranch {
                q = q.ranch(r);
            }
            if let Some(u) = user_id {
                q = q.user_id(u);
            }
            if let Some(t) = token_id {
                q = q.token_id(t);
            }
            let found = client.search(&q).await?;
            if json {
                out_json(&Value::Array(
                    found.iter().map(|r| r.json().clone()).collect(),
                ));
            } else {
                let mut text = String::new();
                for r in &found {
                    text.push_str(&summary_line(r));
                    text.push('\n');
                }
                out(&text);
            }
        }
        TfCommand::Cancel { ids, mine } => {
            let ids = if mine {
                client
                    .search(&SearchQuery::mine())
                    .await?
                    .into_iter()
                    .map(|r| r.id().to_string())
                    .collect()
            } else {
                ids
            };
            let mut results = Vec::new();
            let mut failed = false;
            for id in ids {
                match client.cancel(&id).await {
                    Ok(outcome) => {
                        if !json {
                            out(&format!("{id}: {outcome}\n"));
                        }
                        results.push(json!({"id": id, "outcome": outcome_name(&outcome)}));
                    }
                    Err(e) if e.is_cancelled() => return Err(e),
                    Err(e) => {
                        failed = true;
                        eprintln!("error: cancelling {id}: {:#}", chain(&e));
                        results.push(json!({"id": id, "error": chain(&e).to_string()}));
                    }
                }
            }
            if json {
                out_json(&Value::Array(results));
            }
            if failed {
                return Ok(EXIT_PARTIAL);
            }
        }
        #[cfg(feature = "ssh")]
        TfCommand::Reserve(_) => return Ok(EXIT_ERROR),
        TfCommand::WatchPipeline { id, interval } => {
            return watch(client, scope, &id, interval, json).await;
        }
        TfCommand::Cleanup { journal } => {
            let journal = Journal::new(journal);
            let report = atex::testingfarm::cleanup(client, &journal).await?;
            if json {
                out_json(&json!({
                    "journal": journal.path().display().to_string(),
                    "cancelled": report.cancelled.iter()
                        .map(|(id, o)| json!({"id": id, "outcome": outcome_name(o)}))
                        .collect::<Vec<_>>(),
                    "resolved": report.resolved.iter()
                        .map(|(m, ids)| json!({"marker": m, "requests": ids}))
                        .collect::<Vec<_>>(),
                    "failed": report.failed.iter()
                        .map(|(what, e)| json!({"what": what, "error": e.to_string()}))
                        .collect::<Vec<_>>(),
                }));
            } else {
                let mut text = String::new();
                for (id, o) in &report.cancelled {
                    text.push_str(&format!("{id}: {o}\n"));
                }
                for (marker, ids) in &report.resolved {
                    if ids.is_empty() {
                        text.push_str(&format!("create {marker}: no request was made\n"));
                    }
                }
                let left = journal.outstanding()?;
                if left.is_empty() {
                    text.push_str(&format!(
                        "{}: nothing outstanding\n",
                        journal.path().display()
                    ));
                } else {
                    text.push_str(&format!(
                        "{}: {} request(s) and {} create(s) still outstanding\n",
                        journal.path().display(),
                        left.requests.len(),
                        left.pending.len()
                    ));
                }
                out(&text);
            }
            for (what, e) in &report.failed {
                eprintln!("error: cleanup {what}: {:#}", chain(e));
            }
            if !report.is_complete() {
                return Ok(EXIT_PARTIAL);
            }
        }
    }
    Ok(0)
}

fn outcome_name(o: &CancelOutcome) -> &'static str {
    match o {
        CancelOutcome::Requested { .. } => "cancel-requested",
        CancelOutcome::AlreadyCancelled => "already-cancelled",
        CancelOutcome::AlreadyFinished => "already-finished",
        CancelOutcome::NotFound => "not-found",
    }
}

fn cut_fraction(t: &str) -> &str {
    t.split('.').next().unwrap_or(t)
}

fn summary_line(r: &RequestInfo) -> String {
    format!(
        "{} {} {} {} {}",
        cut_fraction(r.created().unwrap_or("-")),
        r.state(),
        r.id(),
        r.test_url().unwrap_or("-"),
        r.platforms().join(",")
    )
}

fn describe(r: &RequestInfo) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: &str| s.push_str(&format!("{k:<10} {v}\n"));
    row("id:", r.id());
    row("state:", r.state().as_str());
    row("created:", cut_fraction(r.created().unwrap_or("-")));
    row("updated:", cut_fraction(r.updated().unwrap_or("-")));
    row("test:", r.test_url().unwrap_or("-"));
    row("platform:", &r.platforms().join(", "));
    if let Some(a) = r.artifacts_url() {
        row("artifacts:", a);
    }
    if let Some(o) = r.result_overall() {
        let summary = r
            .result_summary()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        row("result:", &format!("{o}{summary}"));
    }
    for (level, message) in r.notes() {
        row("note:", &format!("{level}: {message}"));
    }
    s
}

/// `watch-pipeline`: waits for the log, then prints what is appended until the request ends.
async fn watch(
    client: &Client,
    scope: &Scope,
    id: &str,
    interval: Option<f64>,
    json: bool,
) -> Result<u8, TfError> {
    let interval = match interval {
        Some(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs.min(1e7)),
        Some(_) => {
            errors::print_message("--interval must be a positive number of seconds");
            return Ok(EXIT_ERROR);
        }
        None => client.poll_interval(),
    };
    let mut request = client.get(id).await?;
    request.set_poll_interval(interval);
    let mut lines = LineBuffer::new();
    let emit = |bytes: &[u8], lines: &mut LineBuffer| {
        if json {
            let mut text = String::new();
            for l in lines.push(bytes) {
                text.push_str(&json!({ "line": l }).to_string());
                text.push('\n');
            }
            out(&text);
        } else {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(bytes).and_then(|_| o.flush());
        }
    };
    let mut log = None;
    loop {
        let info = request.refresh_if_stale().await?.clone();
        let alive = info.state().is_alive();
        if log.is_none()
            && let Some(url) = info.artifacts_url()
        {
            log = Some(atex::testingfarm::PipelineLog::new(client, url));
        }
        if let Some(log) = log.as_mut() {
            // Drain what is there now.
            while let LogChunk::Data(d) = log.read_new().await? {
                emit(&d, &mut lines);
            }
        }
        if !alive {
            if json && let Some(rest) = lines.finish() {
                out(&format!("{}\n", json!({ "line": rest })));
            }
            eprintln!("atex tf: request {id} ended: {}", info.state());
            return Ok(0);
        }
        if scope.run(tokio::time::sleep(interval)).await.is_none() {
            return Ok(EXIT_INTERRUPTED);
        }
    }
}
