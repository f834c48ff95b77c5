#!/usr/bin/env bash
# Runs the whole-run benchmarks of benches/README.md: every configuration RUNS times
# (default 5), each run with its baseline (`xargs -P M`, in the same process right after
# ours, where the configuration has one). Prints one JSON line per run, then one summary
# line per configuration with the median (min-max) of each figure.
# Usage: benches/run_workloads.sh [N] [M]   (defaults 1000 16)
# The runs' directories go to $TMPDIR (default /tmp): TMPDIR=/dev/shm measures without the
# file system's cost.
# env:   RUNS (default 5), EXECUTORS (default "command fmf"), SKEWED (0: noop only),
#        BENCH_TREES (keep the runs' directories there; the caller removes them)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
m=${2:-16}
runs=${RUNS:-5}
cargo build -q --release --example bench_workload
bin=$(mktemp /tmp/atex-bench-workload-XXXXXX)
# Every run's tree is kept until the end (`--keep`): removing one frees thousands of inodes,
# and on ext4 without a journal each file created in the next minutes first skips every
# recently freed inode (see examples/bench_workload.rs).
# BENCH_TREES: a directory the caller removes (scripts/bench-all.sh keeps every part's trees
# until its end, so that no part pays for the removal of another's).
if [ -n "${BENCH_TREES:-}" ]; then
    mkdir -p "$BENCH_TREES"
    trees=$(mktemp -d "$BENCH_TREES/atex-bench-trees-XXXXXX")
    trap 'rm -f "$bin" "$bin.jsonl"' EXIT
else
    trees=$(mktemp -d "${TMPDIR:-/tmp}/atex-bench-trees-XXXXXX")
    trap 'rm -rf "$bin" "$bin.jsonl" "$trees"; sync' EXIT
fi
# A snapshot: a shared target directory may be rebuilt meanwhile.
cp "${CARGO_TARGET_DIR:-target}/release/examples/bench_workload" "$bin"
chmod +x "$bin"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each" >&2
for executor in ${EXECUTORS:-command fmf}; do
    for _ in $(seq "$runs"); do
        TMPDIR=$trees "$bin" --keep --executor "$executor" --tests "$n" --remotes "$m" --workload noop --baseline-xargs
    done
    [ "$executor" = command ] && [ "${SKEWED:-1}" = 1 ] || continue
    for _ in $(seq "$runs"); do
        TMPDIR=$trees "$bin" --keep --tests "$n" --remotes "$m" --workload sleep-skewed --seed 1 --baseline-xargs
        TMPDIR=$trees "$bin" --keep --tests "$n" --remotes "$m" --workload sleep-skewed --seed 1 --order longest-first
    done
done | tee "$bin.jsonl"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 benches/summarize.py wall_s xargs_wall_s wall_vs_xargs per_test_ms wall_vs_greedy \
    wall_vs_ideal_lb peak_rss_mib cpu_self_s < "$bin.jsonl"
