#!/usr/bin/env python3
"""Records every rule group evaluation of a running Prometheus (group, time,
duration, per-rule durations) as JSON lines, for SECONDS seconds, then prints the
median and maximum duration per group (docs/performance.md).

    python3 benches/load/sample_rule_groups.py http://127.0.0.1:19090 1200 > samples.jsonl
"""
import json
import statistics
import sys
import time
import urllib.request

base, seconds = sys.argv[1], float(sys.argv[2])
seen, by_group = set(), {}
deadline = time.time() + seconds
while time.time() < deadline:
    groups = json.load(urllib.request.urlopen(f"{base}/api/v1/rules"))["data"]["groups"]
    for g in groups:
        key = (g["name"], g["lastEvaluation"])
        if g["lastEvaluation"].startswith("0001") or key in seen:
            continue
        seen.add(key)
        by_group.setdefault(g["name"], []).append(g["evaluationTime"])
        print(json.dumps({"group": g["name"], "at": g["lastEvaluation"], "secs": g["evaluationTime"],
                          "rules": [[r["name"], r["evaluationTime"]] for r in g["rules"]]}), flush=True)
    time.sleep(10)
for name, secs in sorted(by_group.items()):
    print(f"# {name}: n={len(secs)} median={statistics.median(secs):.3f}s max={max(secs):.3f}s",
          file=sys.stderr)
