#!/usr/bin/env bash
# Compare `atex fmf dump` (release build) with the reference Python fmf 1.7.0 on the
# same generated tree (10,000 nodes over 1,000 files by default; inheritance plus
# one adjust rule), and show the 100,000-node figure for linear growth.
#
# Each size is measured RUNS times per implementation, alternating atex and Python so that
# both see the same load; the table gives the median with min and max, and the ratio of the
# medians. Python is timed around `fmf.Tree` + `adjust` + a walk over the nodes, inside one
# interpreter (its start-up and `import fmf` are not counted). atex is timed twice: the same
# way, inside its process (`examples/fmf_load_time.rs`: load + adjust + walk), and as a whole
# process (`atex fmf dump`: start-up, load, JSON dump to /dev/null).
#
# usage: benches/fmf_vs_python.sh [NODES...]      (default: 10000 100000)
# env:   VENV (default /tmp/atex-fmf-bench-venv), RUNS (default 5), PY_MAX_NODES (skip
#        Python above this size; default 20000 — the reference needs minutes at 100k nodes)
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
cargo build -q --release --bin atex --example fmf_gen_tree --example fmf_load_time
target="${CARGO_TARGET_DIR:-$here/target}"
# Snapshot the binaries (a shared target directory may be rebuilt meanwhile).
cp "$target/release/atex" "$work/atex"
cp "$target/release/examples/fmf_gen_tree" "$work/fmf_gen_tree"
cp "$target/release/examples/fmf_load_time" "$work/fmf_load_time"
atex="$work/atex"
gen="$work/fmf_gen_tree"

cat > "$work/load.py" <<'PY'
import sys, time
import fmf
t = time.perf_counter()
tree = fmf.Tree(sys.argv[1])
tree.adjust(fmf.Context(distro="fedora-40"))
n = sum(1 for _ in tree.climb())
print(f"{time.perf_counter() - t:.4f} {n}")
PY

wall() {  # wall time (s) of one run of the command, output discarded
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

stats() {  # "median min max" of the numbers on stdin
    sort -g | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2;
        printf "%.4f %.4f %.4f\n", m, a[1], a[NR]}'
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each"
printf '%-8s %-6s %-28s %-28s %8s %-28s %8s\n' nodes files 'python s: median (min-max)' \
    'atex in-process s' ratio 'atex whole process s' ratio
for n in "${sizes[@]}"; do
    dir="$work/tree-$n"
    "$gen" "$dir" "$n"
    files=$(find "$dir" -name '*.fmf' | wc -l)
    # Same selection must come out of both implementations.
    ours=$("$atex" fmf dump "$dir" --context distro=fedora-40 | grep -o '"name":' | wc -l)
    skip_py=0
    [ "$n" -le "${PY_MAX_NODES:-20000}" ] || skip_py=1
    rs_runs=() py_runs=() in_runs=()
    for _ in $(seq "$runs"); do
        rs_runs+=("$(wall "$atex" fmf dump "$dir" --context distro=fedora-40)")
        read -r inp inn < <("$work/fmf_load_time" "$dir")
        [ "$ours" = "$inn" ] || echo "warning: atex dump listed $ours nodes, the in-process load $inn" >&2
        in_runs+=("$inp")
        if [ "$skip_py" = 0 ]; then
            read -r py pyn < <("$venv/bin/python" "$work/load.py" "$dir")
            [ "$ours" = "$pyn" ] || echo "warning: atex listed $ours nodes, python $pyn" >&2
            py_runs+=("$py")
        fi
    done
    read -r rs rs_min rs_max < <(printf '%s\n' "${rs_runs[@]}" | stats)
    rs_col="$rs ($rs_min-$rs_max)"
    read -r in in_min in_max < <(printf '%s\n' "${in_runs[@]}" | stats)
    in_col="$in ($in_min-$in_max)"
    if [ "$skip_py" = 1 ]; then
        printf '%-8s %-6s %-28s %-28s %8s %-28s %8s\n' "$n" "$files" skipped "$in_col" - "$rs_col" -
        continue
    fi
    read -r py py_min py_max < <(printf '%s\n' "${py_runs[@]}" | stats)
    ratio=$(echo "$py / $rs" | bc -l)
    in_ratio=$(echo "$py / $in" | bc -l)
    printf '%-8s %-6s %-28s %-28s %7.1fx %-28s %7.1fx\n' "$n" "$files" "$py ($py_min-$py_max)" \
        "$in_col" "$in_ratio" "$rs_col" "$ratio"
done
