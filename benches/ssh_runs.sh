#!/usr/bin/env bash
# Runs examples/ssh_bench.rs RUNS times (default 5; root, openssh-server, openssh-client and
# rsync needed) and prints the median (min-max) of each figure over the runs. Every run
# measures atex and OpenSSH (ControlMaster, one ssh per command) against the same sshd, one
# after the other, so the ratios compare like with like.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
cargo build -q --release --example ssh_bench --features ssh
bin=$(mktemp /tmp/atex-ssh-bench-XXXXXX)
out=$(mktemp /tmp/atex-ssh-bench-out-XXXXXX)
trap 'rm -f "$bin" "$out"' EXIT
cp "${CARGO_TARGET_DIR:-target}/release/examples/ssh_bench" "$bin"
chmod +x "$bin"
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs" >&2
for _ in $(seq "$runs"); do
    "$bin" | tee -a "$out"
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" <<'PY'
import re, statistics, sys
text = open(sys.argv[1]).read()
rows = {
    "round trip, ms (atex, ControlMaster, ssh per command)": r"round trip `true` \(median\)\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)ms",
    "16 concurrent, ms (atex, ControlMaster)": r"16 concurrent `true` \(median batch\)\s+([\d.]+)ms\s+([\d.]+)ms",
    "upload 100 MB, s (atex SFTP, rsync over ControlMaster)": r"upload 100 MB \(atex SFTP vs rsync over CM\)\s+([\d.]+)s\s+([\d.]+)s",
    "round trip /bin/true, ms (atex, ControlMaster)": r"round trip `/bin/true` \(median\)\s+([\d.]+)ms\s+([\d.]+)ms",
    "latency ratio ControlMaster / atex": r"latency ratio, ControlMaster / atex:\s+([\d.]+)x",
    "latency ratio /bin/true ControlMaster / atex": r"latency ratio /bin/true, ControlMaster / atex:\s+([\d.]+)x",
    "latency ratio ssh per command / atex": r"latency ratio, ssh per command / atex:\s+([\d.]+)x",
    "16 concurrent ratio ControlMaster / atex": r"16 concurrent ratio, ControlMaster / atex:\s+([\d.]+)x",
    "upload ratio rsync / atex": r"upload ratio, rsync over CM / atex:\s+([\d.]+)x",
}
for name, pattern in rows.items():
    found = [tuple(map(float, m)) if isinstance(m, tuple) else (float(m),) for m in re.findall(pattern, text)]
    cols = list(zip(*found))
    cells = [f"{statistics.median(c):.3g} ({min(c):.3g}-{max(c):.3g})" for c in cols]
    print(f"{name}: n={len(found)}: " + " | ".join(cells))
PY
