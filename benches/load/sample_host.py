#!/usr/bin/env python3
"""Records, once a second for SECONDS seconds, what the machine and one process did
in that second, as JSON lines: the host's busy, iowait and steal shares of all CPUs
(from /proc/stat) and the process's CPU seconds (from /proc/PID/stat). Run beside
sample_rule_groups.py, it tells whether a slow rule evaluation met a busy machine,
a stolen CPU (a shared VM's neighbour) or a busy Prometheus (docs/performance.md).

    python3 benches/load/sample_host.py $(pgrep -f 'prometheus --config.file=prom-final') 3600 > host.jsonl

Garbage collections are not polled: start Prometheus with GODEBUG=gctrace=1 and its
stderr carries one line per collection, with the seconds since the process started.
"""
import json
import os
import sys
import time

pid, seconds = sys.argv[1], float(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")


def host():
    # cpu  user nice system idle iowait irq softirq steal ...
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(fields), fields[3], fields[4], fields[7]


def process():
    # Fields after the parenthesised command name; utime and stime are 14 and 15.
    after = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(after[11]) + int(after[12])) / tick


deadline = time.time() + seconds
last_host, last_proc = host(), process()
while time.time() < deadline:
    time.sleep(1)
    now_host, now_proc = host(), process()
    total = max(1, now_host[0] - last_host[0])
    print(json.dumps({
        "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "busy": round(1 - (now_host[1] - last_host[1] + now_host[2] - last_host[2]) / total, 3),
        "iowait": round((now_host[2] - last_host[2]) / total, 3),
        "steal": round((now_host[3] - last_host[3]) / total, 3),
        "process_cpu": round(now_proc - last_proc, 2),
    }), flush=True)
    last_host, last_proc = now_host, now_proc
