#!/usr/bin/env python3
"""Summarises the JSON lines of sample_rule_groups.py per tier of groups, for the
table in docs/performance.md (rule evaluation).

    python3 benches/load/summarize_samples.py samples.jsonl [FROM [TO]]

FROM and TO (ISO 8601 UTC prefixes such as 2026-12-01T22:05) bound the evaluations
counted, so the warm-up after Prometheus starts (compaction of the backfilled blocks,
first scrapes) can be left out. A tier is a group name with the metric left out
(`crypto-market-price-stats-24h` and `crypto-market-volume-stats-24h` are both
`*-stats-24h`), and so is the pair split (`-pairs-0-a`, `-pairs-b`, … and `-pairs-rest`
are `-pairs-*`); per tier it prints the groups, the evaluations, the median of the
groups' medians, the range of those medians, the 95th percentile and the maximum of
the evaluations, and the share of evaluations that took at most 1 s.
"""
import json
import re
import statistics
import sys

path = sys.argv[1]
since = sys.argv[2] if len(sys.argv) > 2 else ""
until = sys.argv[3] if len(sys.argv) > 3 else "9999"
METRICS = r"crypto-market-(?:price|volume-quote|volume-usd|volume)-"
SPLITS = r"-pairs-(?:[0-9a-z](?:-[a-z])?|rest)$"
by_group = {}
for line in open(path):
    s = json.loads(line)
    if since <= s["at"] < until:
        by_group.setdefault(s["group"], []).append(s["secs"])
tiers = {}
for group, secs in by_group.items():
    tier = re.sub(SPLITS, "-pairs-*", re.sub("^" + METRICS, "*-", group))
    tiers.setdefault(tier, {})[group] = secs
print("| tier (groups) | evaluations | median of the groups' medians | their medians | 95th percentile | max | ≤ 1 s |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for tier, groups in sorted(tiers.items()):
    medians = sorted(statistics.median(v) for v in groups.values())
    every = [x for v in groups.values() for x in v]
    within = sum(x <= 1.0 for x in every) / len(every)
    spread = f"{medians[0]:.2f} – {medians[-1]:.2f} s" if len(medians) > 1 else ""
    p95 = sorted(every)[min(len(every) - 1, int(0.95 * len(every)))]
    print(f"| `{tier}` ({len(groups)}) | {len(every)} | {statistics.median(medians):.2f} s | {spread} "
          f"| {p95:.2f} s | {max(every):.2f} s | {within:.0%} |")
every = [x for v in by_group.values() for x in v]
print(f"\nall: {len(every)} evaluations of {len(by_group)} groups, "
      f"{sum(x <= 1.0 for x in every) / len(every):.1%} at most 1 s, max {max(every):.2f} s; "
      f"median at most 1 s for {sum(statistics.median(v) <= 1.0 for v in by_group.values())} "
      f"of the groups, every evaluation at most 1 s for {sum(max(v) <= 1.0 for v in by_group.values())}")
