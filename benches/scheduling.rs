//! Scheduling overhead of the AdHoc orchestrator, in memory (no processes).
//!
//! N = 100,000 tests on M = 1,000 remotes from a [`MemoryProvisioner`], run by
//! [`MemoryPlan`] executors that finish at once and write no results (so the file system
//! and the aggregator stay out of the figure). What is measured is the whole run: queueing,
//! picking, handing each test to its remote's task, the artifacts directory of each attempt (an empty
//! directory is reused, but still checked with a directory read), events, remote setup and
//! release. The artifacts directories go to `/dev/shm` when it exists (a tmpfs, so that the
//! figure is the orchestrator's and not the disk's; set `ATEX_BENCH_DIR` to override). Criterion's throughput is tests per second;
//! the per-test cost is its inverse.
//!
//! Before the timing runs, the peak heap of one N = 100,000 run is measured with a counting
//! global allocator and printed as bytes per queued test.
//!
//! `cargo bench --bench scheduling` (`cargo bench --bench scheduling -- per-run-only` prints
//! the memory and per-run figures and skips criterion's timing).

use std::alloc::System;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::aggregator::{JsonlAggregator, JsonlOptions};
use atex::orchestrator::AdHocOrchestrator;
use atex::orchestrator::adhoc::{Policy, TestInfo};
use atex::scope::Scope;
use atex::testing::{MemoryPlan, MemoryProvisioner};
use cap::Cap;
use criterion::{BenchmarkId, Criterion, Throughput};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const N: usize = 100_000;
const M: usize = 1_000;

#[derive(Clone, Copy)]
enum Variant {
    /// FIFO, nobody listening to events.
    Plain,
    /// FIFO with an event consumer draining the stream.
    Events,
    /// Priority + longest-first ordering (keyed queue).
    Ordered,
}

fn tests(n: usize, ordered: bool) -> Vec<TestInfo> {
    (0..n)
        .map(|i| {
            let t = TestInfo::new(format!("/t{i:05}"));
            if ordered {
                t.with_priority((i % 3) as i64 - 1)
                    .with_duration(Duration::from_millis((i % 97) as u64))
            } else {
                t
            }
        })
        .collect()
}

/// Where the per-run artifacts directory goes.
fn artifacts_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("ATEX_BENCH_DIR") {
        return Some(dir.into());
    }
    let shm = std::path::Path::new("/dev/shm");
    shm.is_dir().then(|| shm.to_path_buf())
}

/// One whole run; returns its wall time.
async fn run_once(tests: Vec<TestInfo>, remotes: usize, variant: Variant) -> Duration {
    let out = tempfile::tempdir().expect("tempdir");
    let aggregator = JsonlAggregator::create(
        out.path().join("results.jsonl"),
        out.path().join("files"),
        JsonlOptions::default(),
    )
    .expect("aggregator");
    let plan = MemoryPlan::new().write_results(false).record(false);
    let n = tests.len();
    let mut builder = AdHocOrchestrator::builder("bench")
        .tests(tests)
        .provisioner(Arc::new(MemoryProvisioner::new(remotes)))
        .executor(plan.factory())
        .aggregator(Arc::new(aggregator))
        .artifacts_dir(artifacts_dir().unwrap_or_else(|| out.path().to_path_buf()));
    if let Variant::Ordered = variant {
        builder = builder
            .policy(Policy::priority())
            .policy(Policy::longest_first());
    }
    let mut orch = builder.build().expect("build");
    let consumer = if let Variant::Events = variant {
        let mut events = orch.subscribe(4096);
        Some(tokio::spawn(async move {
            let mut count = 0u64;
            while events.recv().await.is_some() {
                count += 1;
            }
            count
        }))
    } else {
        None
    };
    let scope = Scope::root("bench");
    let start = Instant::now();
    let summary = orch.run(&scope).await.expect("run");
    let wall = start.elapsed();
    assert_eq!(summary.tests.len(), n);
    if let Some(consumer) = consumer {
        let _ = consumer.await;
    }
    wall
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// Wall and CPU time per test: median, min and max of `ATEX_BENCH_RUNS` (default 5) whole
/// runs per variant (CPU time is less disturbed by other load on the machine than wall
/// time).
fn cpu_report(rt: &tokio::runtime::Runtime) {
    let runs: usize = std::env::var("ATEX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    for (name, variant) in [
        ("fifo", Variant::Plain),
        ("fifo+events", Variant::Events),
        ("priority+longest-first", Variant::Ordered),
    ] {
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let list = tests(N, matches!(variant, Variant::Ordered));
            let cpu = cpu_seconds();
            let wall = rt.block_on(run_once(list, M, variant));
            cpus.push((cpu_seconds() - cpu) * 1e6 / N as f64);
            walls.push(wall.as_secs_f64() * 1e6 / N as f64);
        }
        println!(
            "per-test: {name} N={N} M={M}, {runs} runs: wall {}, CPU {} (2 worker threads)",
            spread(&mut walls),
            spread(&mut cpus),
        );
    }
}

/// `median µs (min–max)` of `values`.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    format!("{median:.2} µs ({:.2}–{:.2})", values[0], values[n - 1])
}

/// Peak heap of one run, per queued test.
fn memory_report(rt: &tokio::runtime::Runtime) {
    let list = tests(N, false);
    let input_bytes = ALLOCATOR.allocated();
    let before_peak = ALLOCATOR.max_allocated();
    let wall = rt.block_on(run_once(list, M, Variant::Plain));
    let peak = ALLOCATOR.max_allocated().max(before_peak);
    let base = input_bytes.min(peak);
    println!(
        "memory: N={N} M={M}: peak heap {:.1} MiB during the run, {:.0} bytes per queued test \
         above the test list ({:.0} bytes per test including the input list); run took {:.3} s",
        peak as f64 / (1024.0 * 1024.0),
        (peak - base) as f64 / N as f64,
        peak as f64 / N as f64,
        wall.as_secs_f64(),
    );
}

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("adhoc");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    for (name, n, m, variant) in [
        ("fifo", N, M, Variant::Plain),
        ("fifo+events", N, M, Variant::Events),
        ("priority+longest-first", N, M, Variant::Ordered),
        ("fifo", 10_000, 100, Variant::Plain),
    ] {
        group.throughput(Throughput::Elements(n as u64));
        let list = tests(n, matches!(variant, Variant::Ordered));
        group.bench_with_input(
            BenchmarkId::new(name, format!("{n}x{m}")),
            &list,
            |b, list| {
                b.to_async(rt).iter_custom(|iters| {
                    let list = list.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += run_once(list.clone(), m, variant).await;
                        }
                        total
                    }
                });
            },
        );
    }
    group.finish();
}

fn main() {
    let rt = runtime();
    memory_report(&rt);
    cpu_report(&rt);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &rt);
    c.final_summary();
}
