//! Whole-run scheduling benchmark on local remotes (`spec/benchmark-workloads.md`).
//!
//! Runs a synthetic workload with the AdHoc orchestrator on `M` local remotes
//! (LocalProvisioner + CommandExecutor + JsonlAggregator into a temporary directory) and
//! prints one JSON line with the measured and the ideal figures.
//!
//! ```text
//! cargo run --release --example bench_workload -- \
//!     --tests 1000 --remotes 16 --executor command --workload sleep-skewed --seed 1 \
//!     [--order given|longest-first] [--baseline-xargs]
//! ```
//!
//! `--executor fmf` writes the workload's FMF tree, discovers it (default plan) and runs the
//! tests with the FMF executor (test-control wrapper, results from the control channel).
//!
//! `--workload sleep-long` is the scale workload (0.5–2 s sleeps, seeded): run it with
//! `--tests 20000 --remotes 1000` (≥ 25 s). Every run samples the process's open file
//! descriptors, OS threads and live Tokio tasks every 100 ms and prints their value once
//! the pool is full (the first finished test), their peak, the peak over the second half
//! of the run and the value after the run (`fds_*`, `threads_*`, `tasks_*`): a leak shows
//! as a second half above the first.
//!
//! With `--direct` the command executor runs each script's words as an argv (`sleep 1.234`,
//! `true`) instead of `bash -c <script>`: the tests then cost the machine only their
//! program, which the scale workload needs on a small machine (20,000 bash start-ups alone
//! take more CPU than two cores give in its 25 s lower bound).
//!
//! With `--keep` the run's directory (results, files, remotes) is left in place and its
//! path printed as `kept`. Removing a tree frees its inodes, and on ext4 without a journal
//! (as `/` is mounted on the benchmark machines) the kernel does not reuse an inode for up to
//! five minutes after it was freed: every file created meanwhile first skips, one by one,
//! the recently freed inodes of its block group. Each run paid for the removal of the run
//! before it (up to 4× the CPU per test), so `benches/run_workloads.sh` keeps every tree
//! and removes them at its end.
//!
//! With `--baseline-xargs` the same scripts also run under
//! `xargs -d '\n' -n 1 -P M bash -c` (the floor any orchestrator of real processes has to
//! pay), and the line gains `xargs_wall_s` and `wall_vs_xargs`.

/// With the opt-in feature `mimalloc`, the allocator the `atex` program is then built with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::connection::Connection;
use atex::executor::fmf::FmfExecutorFactory;
use atex::executor::{CommandExecutor, Executor, ExecutorFactory};
use atex::orchestrator::AdHocOrchestrator;
use atex::orchestrator::adhoc::{Policy, TestInfo};
use atex::orchestrator::events::EventKind;
use atex::provisioner::{LocalProvisioner, Remote};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::workload::{Kind, Workload};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecutorKind {
    Command,
    Fmf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Given,
    LongestFirst,
}

#[derive(Debug)]
struct Args {
    tests: usize,
    remotes: usize,
    executor: ExecutorKind,
    workload: Kind,
    seed: u64,
    order: Order,
    baseline_xargs: bool,
    direct: bool,
    keep: bool,
}

const USAGE: &str = "usage: bench_workload [--tests N] [--remotes M] [--executor command|fmf] \
[--workload noop|sleep-uniform|sleep-skewed|sleep-long] [--seed S] [--order given|longest-first] \
[--baseline-xargs] [--direct] [--keep]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tests: 1000,
        remotes: 16,
        executor: ExecutorKind::Command,
        workload: Kind::Noop,
        seed: 1,
        order: Order::Given,
        baseline_xargs: false,
        direct: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--tests" => args.tests = value()?.parse().map_err(|e| format!("--tests: {e}"))?,
            "--remotes" => {
                args.remotes = value()?.parse().map_err(|e| format!("--remotes: {e}"))?
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--workload" => args.workload = value()?.parse()?,
            "--executor" => {
                args.executor = match value()?.as_str() {
                    "command" => ExecutorKind::Command,
                    "fmf" => ExecutorKind::Fmf,
                    other => return Err(format!("unknown executor '{other}'\n{USAGE}")),
                }
            }
            "--order" => {
                args.order = match value()?.as_str() {
                    "given" => Order::Given,
                    "longest-first" => Order::LongestFirst,
                    other => return Err(format!("unknown order '{other}'\n{USAGE}")),
                }
            }
            "--baseline-xargs" => args.baseline_xargs = true,
            "--direct" => args.direct = true,
            "--keep" => args.keep = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if args.direct && args.executor != ExecutorKind::Command {
        return Err("--direct applies to --executor command only".into());
    }
    if args.tests == 0 || args.remotes == 0 {
        return Err("--tests and --remotes must be at least 1".into());
    }
    Ok(args)
}

/// What the executors read during the run (the discovered FMF tree lives as long as this).
type Keep = Option<atex::fmf::DiscoveredTests>;

/// The executor factory for the chosen executor. For `fmf` the workload's FMF tree is
/// written into `workdir` and discovered with the default plan; `direct` runs the command
/// executor's scripts without bash.
fn executor_factory(
    kind: ExecutorKind,
    direct: bool,
    workload: &Workload,
    workdir: &std::path::Path,
) -> Result<(Arc<dyn ExecutorFactory>, Keep), String> {
    match kind {
        ExecutorKind::Command => {
            let table: HashMap<String, Vec<String>> = workload
                .tests
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        if direct {
                            t.script.split_whitespace().map(String::from).collect()
                        } else {
                            vec!["bash".into(), "-c".into(), t.script.clone()]
                        },
                    )
                })
                .collect();
            let table = Arc::new(table);
            let factory: Arc<dyn ExecutorFactory> = Arc::new(move |remote: Arc<dyn Remote>| {
                let conn: Arc<dyn Connection> = remote;
                Box::new(CommandExecutor::with_tests(conn, table.clone())) as Box<dyn Executor>
            });
            Ok((factory, None))
        }
        ExecutorKind::Fmf => {
            let tree = workdir.join("tree");
            workload
                .write_fmf_tree(&tree)
                .map_err(|e| format!("writing the FMF tree: {e}"))?;
            let discovered = atex::fmf::discover(&atex::fmf::DiscoverOptions::new(&tree))
                .map_err(|e| format!("discovering the FMF tree: {e}"))?;
            if discovered.tests.len() != workload.tests.len() {
                return Err(format!(
                    "discovered {} tests, expected {}",
                    discovered.tests.len(),
                    workload.tests.len()
                ));
            }
            let factory = Arc::new(FmfExecutorFactory::new(&discovered));
            Ok((factory, Some(discovered)))
        }
    }
}

/// `VmHWM` (peak resident set) of this process, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds of this process (user + system, and system alone) and of its reaped children.
fn cpu_times() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime is field 14 overall.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 4 {
        return None;
    }
    // Clock ticks: 100 per second on Linux.
    Some(((f[0] + f[1]) / 100.0, f[1] / 100.0, (f[2] + f[3]) / 100.0))
}

/// Entries in a `/proc/self` directory (`fd`, `task`).
fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// One sample of the process's resources.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    fds: usize,
    threads: usize,
    tasks: usize,
}

impl Sample {
    fn now() -> Self {
        Self {
            fds: count_entries("/proc/self/fd"),
            threads: count_entries("/proc/self/task"),
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        }
    }
}

/// Samples every 100 ms until `stop` is cancelled: (elapsed s, sample) pairs.
async fn sample_resources(stop: tokio_util::sync::CancellationToken) -> Vec<(f64, Sample)> {
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return samples,
            _ = tick.tick() => samples.push((start.elapsed().as_secs_f64(), Sample::now())),
        }
    }
}

/// The `<what>_full`, `_peak`, `_peak_first_half`, `_peak_second_half` and `_after` figures
/// of one resource: `full` at `full_at` s (the pool is full), halves split at the middle
/// between `full_at` and the end.
fn resource_figures(
    line: &mut Value,
    samples: &[(f64, Sample)],
    full_at: f64,
    after: Sample,
    what: &str,
    get: fn(&Sample) -> usize,
) {
    let end = samples.last().map_or(0.0, |s| s.0);
    let mid = full_at + (end - full_at) / 2.0;
    let peak = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, s)| get(s))
            .max()
    };
    let full = samples
        .iter()
        .find(|(t, _)| *t >= full_at)
        .map(|(_, s)| get(s));
    line[format!("{what}_full")] = json!(full);
    line[format!("{what}_peak")] = json!(peak(0.0, end));
    line[format!("{what}_peak_first_half")] = json!(peak(full_at, mid));
    line[format!("{what}_peak_second_half")] = json!(peak(mid, end));
    line[format!("{what}_after")] = json!(get(&after));
}

/// The results read back from the JSONL output: (rows, all good).
fn check_results(path: &std::path::Path, workload: &Workload) -> (usize, bool) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, false);
    };
    let mut names = HashSet::new();
    let mut rows = 0;
    let mut ok = true;
    for line in text.lines() {
        rows += 1;
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                ok &= v[1] == "pass";
                ok &= v[2].as_str().is_some_and(|n| names.insert(n.to_string()));
            }
            Err(_) => ok = false,
        }
    }
    ok &= rows == workload.tests.len() && names.len() == workload.tests.len();
    (rows, ok)
}

/// Runs the scripts with `xargs -P M`; returns the wall time.
fn xargs_floor(workload: &Workload, remotes: usize) -> Result<Duration, String> {
    let mut input = String::new();
    for t in &workload.tests {
        input.push_str(&t.script);
        input.push('\n');
    }
    let start = Instant::now();
    let mut child = Command::new("xargs")
        .args([
            "-d",
            "\\n",
            "-n",
            "1",
            "-P",
            &remotes.to_string(),
            "bash",
            "-c",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting xargs: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("feeding xargs: {e}"))?;
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for xargs: {e}"))?;
    let wall = start.elapsed();
    if !status.success() {
        return Err(format!("xargs failed: {status}"));
    }
    Ok(wall)
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

async fn run(args: Args) -> Result<Value, String> {
    let workload = Workload::generate(args.workload, args.tests, args.seed);
    let out = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let (factory, _keep) = executor_factory(args.executor, args.direct, &workload, out.path())?;
    let results = out.path().join("results.jsonl");
    let aggregator = Arc::new(
        JsonlAggregator::create(&results, out.path().join("files"), JsonlOptions::default())
            .map_err(|e| e.to_string())?,
    );
    let tests = workload
        .tests
        .iter()
        .map(|t| TestInfo::new(t.name.clone()).with_duration(Duration::from_millis(t.duration_ms)));
    let mut builder = AdHocOrchestrator::builder("local")
        .tests(tests)
        .provisioner(Arc::new(
            LocalProvisioner::with_base_dir(out.path().join("remotes"))
                .with_max_remotes(args.remotes),
        ))
        .executor(factory)
        .aggregator(aggregator.clone())
        .max_remotes(args.remotes)
        .artifacts_dir(out.path());
    if args.order == Order::LongestFirst {
        builder = builder.policy(Policy::longest_first());
    }
    let mut orch = builder.build().map_err(|e| e.to_string())?;
    // Per-test run time minus nominal duration (process start, output files, evaluation)
    // comes from the events; the consumer runs beside the orchestrator.
    let nominal: HashMap<String, f64> = workload
        .tests
        .iter()
        .map(|t| (t.name.clone(), t.duration_ms as f64 / 1000.0))
        .collect();
    let mut events = orch.subscribe(args.tests * 4 + 1024);
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut extra = Vec::new();
        let mut first_done = None;
        while let Some(ev) = events.recv().await {
            if let EventKind::TestFinished { test, duration, .. } = ev.kind {
                first_done.get_or_insert_with(|| start.elapsed().as_secs_f64());
                let want = nominal.get(&test).copied().unwrap_or(0.0);
                extra.push(duration.as_secs_f64() - want);
            }
        }
        (extra, first_done.unwrap_or(0.0))
    });
    let stop_sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample_resources(stop_sampling.clone()));
    let scope = Scope::root("bench");

    let summary = orch.run(&scope).await.map_err(|e| e.to_string())?;
    aggregator.finish().await.map_err(|e| e.to_string())?;
    let report = scope.shutdown(ShutdownOptions::default()).await;
    let wall = start.elapsed().as_secs_f64();

    stop_sampling.cancel();
    let samples = sampler.await.unwrap_or_default();
    let (mut extra, full_at) = consumer.await.unwrap_or_default();
    let after = Sample::now();
    extra.sort_by(f64::total_cmp);
    let exec_mean_ms = extra.iter().sum::<f64>() / extra.len().max(1) as f64 * 1000.0;
    let exec_p99_ms = extra
        .get((extra.len() * 99 / 100).min(extra.len().saturating_sub(1)))
        .map_or(f64::NAN, |v| v * 1000.0);
    if !report.is_clean() {
        tracing::warn!(?report, "shutdown was not clean");
    }
    let (cpu_self, cpu_self_sys, cpu_children) =
        cpu_times().unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let n = args.tests as f64;
    let m = args.remotes;
    let lb = workload.ideal_lower_bound_s(m);
    let greedy = workload.greedy_makespan_ms(m, workload.tests.iter()) as f64 / 1000.0;
    let (rows, ok) = check_results(&results, &workload);
    let mut line = json!({
        "impl": "atex-rs",
        "executor": match args.executor { ExecutorKind::Command => "command", ExecutorKind::Fmf => "fmf" },
        "workload": args.workload.as_str(),
        "direct": args.direct,
        "order": match args.order { Order::Given => "given", Order::LongestFirst => "longest-first" },
        "seed": args.seed,
        "tests": args.tests,
        "remotes": m,
        "sum_dur_s": round(workload.sum_ms() as f64 / 1000.0, 3),
        "max_dur_s": round(workload.max_ms() as f64 / 1000.0, 3),
        "ideal_lb_s": round(lb, 5),
        "greedy_s": round(greedy, 3),
        "wall_s": round(wall, 4),
        "overhead_per_test_ms": round((wall - lb) / n * 1000.0, 4),
        "overhead_vs_greedy_per_test_ms": round((wall - greedy) / n * 1000.0, 4),
        "wall_vs_greedy": round(wall / greedy.max(f64::MIN_POSITIVE), 4),
        "wall_vs_ideal_lb": round(wall / lb.max(f64::MIN_POSITIVE), 4),
        "peak_rss_mib": peak_rss_mib().map(|v| round(v, 2)),
        "allocator": if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" },
        "cpu_self_s": round(cpu_self, 2),
        "cpu_self_sys_s": round(cpu_self_sys, 2),
        "cpu_tests_s": round(cpu_children, 2),
        "exec_overhead_mean_ms": round(exec_mean_ms, 3),
        "exec_overhead_p99_ms": round(exec_p99_ms, 3),
        "results": rows,
        "results_ok": ok && summary.passed() == args.tests,
        "reruns": summary.reruns.len(),
        "ingest_errors": summary.ingest_errors.len(),
    });
    resource_figures(&mut line, &samples, full_at, after, "fds", |s| s.fds);
    resource_figures(&mut line, &samples, full_at, after, "threads", |s| {
        s.threads
    });
    resource_figures(&mut line, &samples, full_at, after, "tasks", |s| s.tasks);
    if args.order == Order::LongestFirst {
        let lpt = workload.greedy_makespan_ms(m, workload.longest_first()) as f64 / 1000.0;
        line["greedy_longest_first_s"] = json!(round(lpt, 3));
    }
    if args.baseline_xargs {
        let floor = xargs_floor(&workload, m)?.as_secs_f64();
        line["xargs_wall_s"] = json!(round(floor, 4));
        line["wall_vs_xargs"] = json!(round(wall / floor, 4));
    }
    if args.keep {
        line["kept"] = json!(out.keep().display().to_string());
    }
    Ok(line)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_workload: {e}");
            ExitCode::from(2)
        }
    }
}
