#!/usr/bin/env bash
# Runs the whole-run benchmarks of benches/README.md and prints one JSON line per run.
# Usage: benches/run_workloads.sh [N] [M]   (defaults 1000 16)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
m=${2:-16}
cargo build -q --release --example bench_workload
bin=${CARGO_TARGET_DIR:-target}/release/examples/bench_workload
for i in 1 2 3; do
    "$bin" --tests "$n" --remotes "$m" --workload noop --baseline-xargs
done
TMPDIR=/dev/shm "$bin" --tests "$n" --remotes "$m" --workload noop --baseline-xargs
"$bin" --tests "$n" --remotes "$m" --workload sleep-uniform --baseline-xargs
for i in 1 2; do
    "$bin" --tests "$n" --remotes "$m" --workload sleep-skewed --seed 1 --baseline-xargs
    "$bin" --tests "$n" --remotes "$m" --workload sleep-skewed --seed 1 --order longest-first
done
