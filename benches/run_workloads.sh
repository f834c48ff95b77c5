#!/usr/bin/env bash
# Runs the whole-run benchmarks of benches/README.md: every configuration RUNS times
# (default 5), each run with its baseline (`xargs -P M`, in the same process right after
# ours, where the configuration has one). Prints one JSON line per run, then one summary
# line per configuration with the median (min-max) of each figure.
# Usage: benches/run_workloads.sh [N] [M]   (defaults 1000 16)
# env:   RUNS (default 5), EXECUTORS (default "command fmf"), SKEWED (0: noop only)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
m=${2:-16}
runs=${RUNS:-5}
cargo build -q --release --example bench_workload
bin=$(mktemp /tmp/atex-bench-workload-XXXXXX)
trap 'rm -f "$bin" "$bin.jsonl"' EXIT
# A snapshot: a shared target directory may be rebuilt meanwhile.
cp "${CARGO_TARGET_DIR:-target}/release/examples/bench_workload" "$bin"
chmod +x "$bin"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each" >&2
for executor in ${EXECUTORS:-command fmf}; do
    for _ in $(seq "$runs"); do
        "$bin" --executor "$executor" --tests "$n" --remotes "$m" --workload noop --baseline-xargs
    done
    [ "$executor" = command ] && [ "${SKEWED:-1}" = 1 ] || continue
    for _ in $(seq "$runs"); do
        "$bin" --tests "$n" --remotes "$m" --workload sleep-skewed --seed 1 --baseline-xargs
        "$bin" --tests "$n" --remotes "$m" --workload sleep-skewed --seed 1 --order longest-first
    done
done | tee "$bin.jsonl"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 benches/summarize.py wall_s xargs_wall_s wall_vs_xargs per_test_ms wall_vs_greedy \
    wall_vs_ideal_lb peak_rss_mib cpu_self_s < "$bin.jsonl"
