#!/usr/bin/env bash
# Podman figures for benches/README.md (root, podman with runc; CONTAINERS_CONF defaults to
# scripts/podman/containers.conf; the images of scripts/podman/test-images.sh, the systemd
# one included). RUNS times each (default 5), median (min-max):
#   * container start: `atex run --provisioner podman:IMAGE` of one `true` test, minus
#     nothing: the wall time from start to the container's removal, plain and systemd;
#     and the provisioner's own "container ready" time from its log;
#   * per-test overhead of fmf `true` tests at --remotes 8: (T(8+8K) - T(8)) * 8 / (8K)
#     with K rounds of 8 extra tests (default 8, i.e. 64 extra tests).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
extra=${EXTRA:-64}
: "${CONTAINERS_CONF:=$PWD/scripts/podman/containers.conf}"
export CONTAINERS_CONF
if [ -n "${ATEX_BIN:-}" ]; then
    atex=$ATEX_BIN  # an atex binary built already (say, the debug one)
else
    cargo build -q --release --bin atex --features podman
    atex="${CARGO_TARGET_DIR:-target}/release/atex"
fi
tmp=$(mktemp -d /tmp/atex-podman-bench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tree() { # DIR N
    mkdir -p "$1/.fmf" "$1/tests"; echo 1 > "$1/.fmf/version"
    : > "$1/tests/main.fmf"
    for i in $(seq "$2"); do printf '/t%s:\n    test: "true"\n' "$i" >> "$1/tests/main.fmf"; done
}
tree "$tmp/one" 1; tree "$tmp/eight" 8; tree "$tmp/more" $((8 + extra))
now() { date +%s.%N; }
timed() { # LABEL ARGS...
    local label=$1; shift
    rm -rf "$tmp/res"
    local t0 t1
    t0=$(now)
    "$atex" -v run "$@" --results "$tmp/res" 2>"$tmp/log" >/dev/null
    t1=$(now)
    local ready
    ready=$(grep -o 'container ready.*elapsed=[0-9.]*[mµ]*s' "$tmp/log" | grep -o 'elapsed=[0-9.]*[mµ]*s' | head -1 || true)
    echo "$label $(echo "$t1 - $t0" | bc) $ready"
}
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs" >&2
for _ in $(seq "$runs"); do
    timed plain "$tmp/one" --provisioner podman:localhost/atex-test-mini
    timed systemd "$tmp/one" --provisioner podman:localhost/atex-test-debsd --podman-systemd
    timed eight "$tmp/eight" --provisioner podman:localhost/atex-test-mini --remotes 8
    timed more "$tmp/more" --provisioner podman:localhost/atex-test-mini --remotes 8
done | tee "$tmp/out"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$tmp/out" "$extra" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
extra = int(sys.argv[2])
def ms(v):
    m = re.match(r"elapsed=([\d.]+)(ms|µs|s)", v)
    x = float(m.group(1))
    return x * {"ms": 1, "µs": 0.001, "s": 1000}[m.group(2)]
def show(name, xs, unit):
    print(f"{name}: n={len(xs)}: {statistics.median(xs):.3g} ({min(xs):.3g}-{max(xs):.3g}) {unit}")
for label in ["plain", "systemd"]:
    show(f"{label}: atex run of one test, start to removal", [float(r[1]) for r in rows if r[0] == label], "s")
    ready = [ms(r[2]) for r in rows if r[0] == label and len(r) > 2]
    if ready:
        show(f"{label}: container start (podman run to ready)", ready, "ms")
eight = [float(r[1]) for r in rows if r[0] == "eight"]
more = [float(r[1]) for r in rows if r[0] == "more"]
per = [(m - e) * 8 / extra * 1000 for e, m in zip(eight, more)]
show("fmf true tests at --remotes 8: per-test overhead per slot", per, "ms")
show(f"--remotes 8: 8 tests", eight, "s")
show(f"--remotes 8: {8 + extra} tests", more, "s")
PY
