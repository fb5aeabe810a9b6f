#!/usr/bin/env python3
"""The hourly 24h totals (`market:*:{count,sum,sumsq}24h_hourly`) as a running
Prometheus would have recorded them, as OpenMetrics for `promtool tsdb
create-blocks-from openmetrics` (rule-evaluation benchmark, docs/performance.md).

    python3 benches/load/totals_backfill.py http://127.0.0.1:19090 START END STEP > totals.om

Evaluates each totals rule of prometheus/rules-large/ (the layout with hourly totals) over the HTTP
API at START, START+STEP, ... END (Unix seconds), against a Prometheus that holds the
5-minute rollups. promtool 2.42's `create-blocks-from rules` wrote no blocks for these
rules (their subqueries), hence this helper. The 5-minute 24h groups read the totals of
the previous clock hour, so a benchmark needs them for the hour before it starts.
"""
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

base, start, end, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rules_dir = Path(__file__).resolve().parents[2] / "prometheus/rules-large"
rules = [
    rule
    for f in sorted(rules_dir.glob("*.yml"))
    for rule in re.findall(r"record: (market:\S+:(?:count|sum|sumsq)24h_hourly)\n\s+expr: (.*)\n", f.read_text())
]
# The rules are split by pair into several groups recording the same name: one metric
# family (one TYPE line) per name, holding the series of all its splits.
families = {}
for name, expr in rules:
    families.setdefault(name, []).append(expr)
out = sys.stdout
for name, exprs in families.items():
    out.write(f"# TYPE {name} gauge\n")
    count = 0
    for expr in exprs:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        result = json.load(urllib.request.urlopen(f"{base}/api/v1/query_range?{query}", timeout=600))
        for series in result["data"]["result"]:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(series["metric"].items()))
            for t, v in series["values"]:
                out.write(f"{name}{{{labels}}} {v} {int(t)}\n")
        count += len(result["data"]["result"])
    print(f"{name}: {count} series from {len(exprs)} rules", file=sys.stderr)
out.write("# EOF\n")
