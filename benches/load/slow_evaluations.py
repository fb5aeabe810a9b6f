#!/usr/bin/env python3
"""Lists the rule group evaluations slower than a limit with what else happened while
they ran: the garbage collections of Prometheus, the other groups evaluating, and the
machine's load (docs/performance.md, rule evaluation).

    python3 benches/load/slow_evaluations.py samples.jsonl host.jsonl prom.log [FROM [TO [LIMIT]]]

samples.jsonl is sample_rule_groups.py's output, host.jsonl sample_host.py's, and
prom.log the stderr of a Prometheus started with GODEBUG=gctrace=1: its first line's
ts= is taken as the process start, to which each `gc N @S.SSSs` line's seconds are
added; a collection lasts the sum of its three clock phases. At the end, the share
of the time spent in collections and the share of evaluations (all, and slow) that
overlapped one tell whether collections and slow evaluations go together.
"""
import datetime
import json
import re
import sys

samples, host_path, log_path = sys.argv[1:4]
since = sys.argv[4] if len(sys.argv) > 4 else ""
until = sys.argv[5] if len(sys.argv) > 5 else "9999"
limit = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0


def parse(ts):
    # Prometheus writes nanoseconds; fromisoformat takes at most microseconds.
    return datetime.datetime.fromisoformat(ts.rstrip("Z")[:26]).replace(
        tzinfo=datetime.timezone.utc).timestamp()


evals = []
for line in open(samples):
    s = json.loads(line)
    if since <= s["at"] < until:
        evals.append((parse(s["at"]), s["secs"], s["group"]))
evals.sort()

host = {}
for line in open(host_path):
    h = json.loads(line)
    host[int(parse(h["at"]))] = h

gcs, started = [], None
for line in open(log_path):
    if started is None:
        m = re.search(r"ts=(\S+)", line)
        if m:
            started = parse(m.group(1))
    m = re.match(r"gc \d+ @([\d.]+)s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock", line)
    if m and started is not None:
        begin = started + float(m.group(1))
        gcs.append((begin, begin + sum(float(m.group(i)) for i in (2, 3, 4)) / 1000))


def overlaps(a, b, windows):
    return [w for w in windows if w[0] < b and a < w[1]]


slow = [e for e in evals if e[1] > limit]
for at, secs, group in slow:
    end = at + secs
    during = [h for t, h in host.items() if at - 1 <= t <= end + 1]
    others = [f"{g} {s:.2f}" for a, s, g in evals if g != group and a < end and at < a + s]
    gc = overlaps(at, end, gcs)
    print(f"{datetime.datetime.fromtimestamp(at, datetime.timezone.utc):%H:%M:%S} {secs:5.2f} s {group}")
    print(f"    gc: {len(gc)} ({', '.join(f'{b - at:+.1f}..{e - at:+.1f} s' for b, e in gc)})"
          f"; host busy max {max((h['busy'] for h in during), default=0):.2f}"
          f", steal max {max((h['steal'] for h in during), default=0):.2f}"
          f", prometheus cpu max {max((h['process_cpu'] for h in during), default=0):.2f} s/s")
    print(f"    alongside: {'; '.join(others) or 'nothing'}")

if evals:
    span = evals[-1][0] + evals[-1][1] - evals[0][0]
    in_gc = sum(min(e, evals[-1][0] + evals[-1][1]) - max(b, evals[0][0])
                for b, e in gcs if b < evals[-1][0] + evals[-1][1] and e > evals[0][0])
    met = sum(bool(overlaps(a, a + s, gcs)) for a, s, _ in evals)
    print(f"\n{len(evals)} evaluations, {len(slow)} over {limit} s; {len(gcs)} collections logged, "
          f"{in_gc / span:.1%} of the time in one; evaluations overlapping one: "
          f"{met / len(evals):.1%} of all, "
          f"{sum(bool(overlaps(a, a + s, gcs)) for a, s, _ in slow) / max(1, len(slow)):.1%} of the slow")
