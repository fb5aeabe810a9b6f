#!/usr/bin/env python3
"""Times each recording rule's expression of prometheus/rules/crypto-market.rules.yml
as an instant query against a running Prometheus (rule-evaluation benchmark,
docs/performance.md): the cost of one rule on its own, without the other groups
competing for the CPU, to compare with what the rule groups take in the server.

    python3 benches/load/time_rule_exprs.py http://127.0.0.1:19090 [GROUP_REGEX] [RUNS]

Each expression is wrapped in count() so the answer is one number and the time is
the query's, not the transfer's; prints the median and minimum of RUNS (default 5)
per rule. Needs PyYAML (python3 -m pip install pyyaml).
"""
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

base = sys.argv[1]
pattern = re.compile(sys.argv[2] if len(sys.argv) > 2 else "")
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
rules_file = Path(__file__).resolve().parents[2] / "prometheus/rules/crypto-market.rules.yml"
for group in yaml.safe_load(rules_file.read_text())["groups"]:
    if not pattern.search(group["name"]):
        continue
    for rule in group["rules"]:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": f"count({rule['expr']})"})
        secs = []
        for _ in range(runs):
            start = time.monotonic()
            urllib.request.urlopen(url, timeout=120).read()
            secs.append(time.monotonic() - start)
        print(f"{group['name']:55} {rule['record']:55} median {statistics.median(secs):.3f}s "
              f"min {min(secs):.3f}s")
