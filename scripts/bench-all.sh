#!/usr/bin/env bash
# Every figure of benches/README.md section 0, each as the median (min-max) of RUNS runs
# (default 5) with its baseline measured in the same run. Meant for a quiet machine: it
# prints the load average before and after each part, and keeps every raw line.
#
# usage: scripts/bench-all.sh [PART...]
#   parts: workloads acceptance scale scale-shm scheduling fmf ssh report   (default: all)
# env:   RUNS (default 5), SCALE_RUNS (default RUNS; one scale run takes >= 25 s),
#        SCALE_TESTS / SCALE_REMOTES (default 20000 / 1000), OUT (log directory; default a
#        new /tmp/atex-bench-all-XXXXXX, kept)
#
# Time on an idle 2-core machine, after the builds: about 15 minutes with RUNS=5.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${RUNS:-5}
scale_runs=${SCALE_RUNS:-$RUNS}
out=${OUT:-$(mktemp -d /tmp/atex-bench-all-XXXXXX)}
mkdir -p "$out"
# Every run's directory stays until the end: on ext4 without a journal, removing thousands of
# files makes every file created in the next minutes (up to five) skip them one by one,
# which the next part would pay for (see examples/bench_workload.rs).
export BENCH_TREES="${TMPDIR:-/tmp}/atex-bench-trees-$$"
mkdir -p "$BENCH_TREES"
trap 'rm -rf "$BENCH_TREES"' EXIT
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(workloads acceptance scale scale-shm scheduling fmf ssh report)

# scale_part NAME TREES ORDER...: SCALE_RUNS runs of the scale workload in each ORDER, their
# directories kept under TREES, lines in $out/NAME.jsonl (errors in NAME.err).
scale_part() {
    local name=$1 trees=$2 bin="$out/bench_workload" order
    shift 2
    cargo build -q --release --example bench_workload
    cp "${CARGO_TARGET_DIR:-target}/release/examples/bench_workload" "$bin"
    for _ in $(seq "$scale_runs"); do
        for order in "$@"; do
            # --keep: see benches/run_workloads.sh
            TMPDIR=$trees "$bin" --keep --tests "${SCALE_TESTS:-20000}" --remotes "${SCALE_REMOTES:-1000}" \
                --direct --workload sleep-long --seed 1 --order "$order"
        done
    done >"$out/$name.jsonl" 2>"$out/$name.err"
    rm -f "$bin"
}

load() { echo "# $(date -u +%H:%M:%S) load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"; }

for part in "${parts[@]}"; do
    echo "## $part" | tee -a "$out/summary.txt"
    load | tee -a "$out/summary.txt"
    case $part in
        workloads)
            # command/noop and fmf/noop at N=1000, M=16 against xargs -P 16, and the
            # sleep-skewed makespans against G and LB.
            benches/run_workloads.sh 1000 16 >"$out/workloads.txt" 2>&1
            grep -v '^{' "$out/workloads.txt" | tee -a "$out/summary.txt"
            ;;
        acceptance)
            # The issue's acceptance figure: command/noop at N=500, M=16 vs xargs.
            SKEWED=0 EXECUTORS=command benches/run_workloads.sh 500 16 >"$out/acceptance.txt" 2>&1
            grep -v '^{' "$out/acceptance.txt" | tee -a "$out/summary.txt"
            ;;
        scale)
            # One process, 1,000 local remotes, 20,000 tests sleeping 0.5-2 s (`sleep` run
            # directly: bash start-ups alone exceed 2 cores in the 25 s bound): makespan vs
            # LB, peak RSS, file descriptors / threads / tasks over the run.
            scale_part scale "$(mktemp -d "$BENCH_TREES/scale-XXXXXX")" given longest-first
            python3 benches/summarize.py wall_s ideal_lb_s wall_vs_ideal_lb wall_vs_greedy \
                peak_rss_mib cpu_self_s fds_full fds_peak_first_half fds_peak_second_half \
                fds_after threads_peak_first_half threads_peak_second_half \
                tasks_peak_first_half tasks_peak_second_half tasks_after \
                <"$out/scale.jsonl" | tee -a "$out/summary.txt"
            ;;
        scale-shm)
            # The scale run (given order only) with its artifacts on tmpfs: what the per-test
            # file work costs on this machine's ext4 (see `scale`), measured in the same session.
            trees=$(mktemp -d /dev/shm/atex-scale-XXXXXX)
            scale_part scale-shm "$trees" given
            rm -rf "$trees"
            python3 benches/summarize.py wall_s ideal_lb_s wall_vs_ideal_lb wall_vs_greedy \
                peak_rss_mib cpu_self_s <"$out/scale-shm.jsonl" | tee -a "$out/summary.txt"
            ;;
        scheduling)
            # In-memory scheduling, N=100,000, M=1,000: CPU per test (5 runs inside).
            cargo bench -q --bench scheduling -- per-run-only >"$out/scheduling.txt" 2>&1
            grep -iv 'warning\|^$' "$out/scheduling.txt" | tail -20 | tee -a "$out/summary.txt"
            ;;
        fmf)
            # FMF load of the generated 10,000 / 100,000-node trees vs Python fmf.
            benches/fmf_vs_python.sh 10000 100000 2>&1 | tee "$out/fmf.txt" >>"$out/summary.txt"
            ;;
        ssh)
            # SSH round trip, 16 concurrent, upload: atex vs OpenSSH ControlMaster.
            benches/ssh_runs.sh >"$out/ssh.txt" 2>&1
            grep 'n=[0-9]' "$out/ssh.txt" | tee -a "$out/summary.txt"
            ;;
        report)
            cargo run -q --release --example report_bench >"$out/report.txt" 2>&1
            tail -8 "$out/report.txt" | tee -a "$out/summary.txt"
            ;;
        *)
            echo "unknown part '$part'" >&2
            exit 2
            ;;
    esac
    load | tee -a "$out/summary.txt"
done
echo "# raw output and summary in $out"
