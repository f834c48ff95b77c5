#!/usr/bin/env bash
# Compares two builds of examples/bench_workload.rs on the same machine in one session: the
# binaries run one after the other, RUNS times, and the script prints each one's median
# (min-max) of wall time, atex CPU (and its system share) and the tests' CPU.
#
# usage: benches/alternate.sh BIN_A BIN_B [bench_workload arguments...]
#   default arguments: --executor command --workload noop --tests 1000 --remotes 16
# env:   RUNS (default 7), TMPDIR (where the runs' directories go; /dev/shm for tmpfs)
#
# Build the "before" binary from another checkout (for example `git worktree add /tmp/before
# e92b585 && cargo build --release --example bench_workload` there) and copy both binaries
# somewhere stable first. Every run keeps its directory (`--keep`, see
# examples/bench_workload.rs); remove them after the session.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
a=$1 b=$2
shift 2
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--executor command --workload noop --tests 1000 --remotes 16)
runs=${RUNS:-7}
out=$(mktemp /tmp/atex-alternate-XXXXXX)
trap 'rm -f "$out"' EXIT
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each: ${args[*]}" >&2
for _ in $(seq "$runs"); do
    for bin in "$a" "$b"; do
        printf '%s ' "$bin" >>"$out"
        "$bin" "${args[@]}" --keep 2>/dev/null | head -n 1 >>"$out"
    done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    name, _, text = line.partition(" ")
    runs[name].append(json.loads(text))
def cell(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"
for name, rows in runs.items():
    fields = ["wall_s", "wall_vs_ideal_lb", "cpu_self_s", "cpu_self_sys_s", "cpu_tests_s", "fds_peak"]
    parts = [f"{f} {cell([r[f] for r in rows])}" for f in fields if all(r.get(f) is not None for r in rows)]
    print(f"{name}: n={len(rows)}: " + ", ".join(parts))
PY
