#!/usr/bin/env bash
# Compare `atex fmf dump` (release build) with the reference Python fmf 1.7.0 on the
# same generated tree (10,000 nodes over 1,000 files by default; inheritance plus
# one adjust rule), and show the 100,000-node figure for linear growth.
#
# usage: benches/fmf_vs_python.sh [NODES...]      (default: 10000 100000)
# env:   VENV (default /tmp/atex-fmf-bench-venv), RUNS (atex runs, best of; default 5),
#        PY_RUNS (Python runs, best of; default 1), PY_MAX_NODES (skip Python above
#        this size; default 20000 — the reference needs minutes at 100k nodes)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-/tmp/atex-fmf-bench-venv}"
runs="${RUNS:-5}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
work="$(mktemp -d /tmp/atex-fmf-bench-XXXXXX)"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import fmf' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'fmf==1.7.0'
fi

cd "$here"
cargo build -q --release --bin atex --example fmf_gen_tree
target="${CARGO_TARGET_DIR:-$here/target}"
# Snapshot the binaries (a shared target directory may be rebuilt meanwhile).
cp "$target/release/atex" "$work/atex"
cp "$target/release/examples/fmf_gen_tree" "$work/fmf_gen_tree"
atex="$work/atex"
gen="$work/fmf_gen_tree"

cat > "$work/load.py" <<'PY'
import sys, time
import fmf
best = None
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    tree = fmf.Tree(sys.argv[1])
    tree.adjust(fmf.Context(distro="fedora-40"))
    n = sum(1 for _ in tree.climb())
    el = time.perf_counter() - t
    best = el if best is None else min(best, el)
print(f"{best:.4f} {n}")
PY

best_of() {  # best wall time (s) of $runs runs of the command
    local best="" t0 t1 el
    for _ in $(seq "$runs"); do
        t0=$(date +%s.%N)
        "$@" >/dev/null
        t1=$(date +%s.%N)
        el=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$el < $best" | bc -l)" = 1 ]; then best=$el; fi
    done
    printf '%.4f' "$best"
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-7s %12s %12s %8s\n' nodes files python_s atex_s ratio
for n in "${sizes[@]}"; do
    dir="$work/tree-$n"
    "$gen" "$dir" "$n"
    files=$(find "$dir" -name '*.fmf' | wc -l)
    # Same selection must come out of both implementations.
    ours=$("$atex" fmf dump "$dir" --context distro=fedora-40 | grep -o '"name":' | wc -l)
    rs=$(best_of "$atex" fmf dump "$dir" --context distro=fedora-40)
    if [ "$n" -gt "${PY_MAX_NODES:-20000}" ]; then
        printf '%-8s %-7s %12s %12s %8s\n' "$n" "$files" skipped "$rs" -
        continue
    fi
    read -r py pyn < <("$venv/bin/python" "$work/load.py" "$dir" "${PY_RUNS:-1}")
    [ "$ours" = "$pyn" ] || echo "warning: atex listed $ours nodes, python $pyn" >&2
    ratio=$(echo "$py / $rs" | bc -l)
    printf '%-8s %-7s %12s %12s %7.1fx\n' "$n" "$files" "$py" "$rs" "$ratio"
done
