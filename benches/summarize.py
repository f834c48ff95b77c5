#!/usr/bin/env python3
"""Median (min-max) of numeric fields over JSON lines grouped by configuration.

usage: summarize.py FIELD... < lines.jsonl
Lines are grouped by (executor, workload, order, tests, remotes); one line per group with
`median (min-max), n` of every FIELD. `per_test_ms` is derived as wall_s / tests * 1000.
"""
import json
import statistics
import sys

fields = sys.argv[1:]
groups = {}
for raw in sys.stdin:
    raw = raw.strip()
    if not raw.startswith("{"):
        continue
    line = json.loads(raw)
    line["per_test_ms"] = line["wall_s"] / line["tests"] * 1000
    key = tuple(line.get(k) for k in ("executor", "workload", "order", "tests", "remotes"))
    groups.setdefault(key, []).append(line)
for key, lines in groups.items():
    parts = []
    for f in fields:
        vals = [l[f] for l in lines if l.get(f) is not None]
        if vals:
            parts.append(f"{f} {statistics.median(vals):.4g} ({min(vals):.4g}-{max(vals):.4g})")
    ok = all(l.get("results_ok") for l in lines)
    print(f"{'/'.join(map(str, key))}: n={len(lines)} results_ok={ok}: " + ", ".join(parts))
