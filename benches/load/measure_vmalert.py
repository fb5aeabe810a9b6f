#!/usr/bin/env python3
"""What the sharded layout costs (docs/scaling.md): the exporter serving two slices of
the Cryptowatch recording (or the exchanges given), two vmagent scrape shards every
60 s into VictoriaMetrics, vmalert evaluating prometheus/rules-vmalert and
prometheus/rules-sharded there. Samples ingested per second, active series, the
resident memory and CPU of each process, vmalert's evaluation seconds per second and
its slowest group.

    python3 benches/load/measure_vmalert.py --minutes 12 \\
        [--exchanges kraken,coinbase,bitstamp,kraken-futures] [--backfill-hours 24] > samples.jsonl

Before vmalert starts, --backfill-hours of the price's 5-minute rollups (as the rules
record them, same labels as the shards write) are imported, so that the 24h statistics
read a day, as in a running deployment. Every 30 s one JSON line goes to stdout; the
summary of the second half goes to stderr. Needs a release build of the exporter and
Debian's victoria-metrics package (victoria-metrics, vmagent, vmalert). Everything
listens on 127.0.0.1; the processes started here are stopped by PID at the end.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure_rules import (  # noqa: E402
    ROOT, free_port, get, proc_cpu, proc_rss, serve_fixture, served_prices, stop, wait)

SHARDS = 2


def shard_of(pair, shards):
    """src/shard.rs: FNV-1a (64-bit) of the pair, modulo the count."""
    h = 0xCBF29CE484222325
    for b in pair.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def metrics(url):
    out = {}
    for line in get(f"{url}/metrics").splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def total(m, prefix, contains=""):
    return sum(v for k, v in m.items() if k.startswith(prefix) and contains in k)


def import_rollups(exporter, instance, hours, vm):
    markets, end = served_prices(exporter)
    lines = []
    for labels, v in markets:
        pair = re.search(r'pair="([^"]*)"', labels).group(1)
        lab = f'{labels},instance="{instance}",job="crypto-market-exporter",shard="{shard_of(pair, SHARDS)}"'
        for stat, value in (("count5m", 5.0), ("sum5m", 5 * v), ("sumsq5m", 5 * v * v)):
            for t in range(end - hours * 3600 + 150, end, 300):
                lines.append(f"market:crypto_market_price:{stat}{{{lab}}} {value!r} {t * 1000}\n")
    for i in range(0, len(lines), 200_000):
        urllib.request.urlopen(urllib.request.Request(
            f"{vm}/api/v1/import/prometheus", data="".join(lines[i:i + 200_000]).encode(),
            method="POST"), timeout=600).read()
    return len(markets)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--exchanges", default="")
    ap.add_argument("--backfill-hours", type=int, default=24)
    args = ap.parse_args()
    exchanges = set(filter(None, args.exchanges.split(",")))

    work = tempfile.mkdtemp(prefix="measure-vmalert-")
    procs = {}
    try:
        upstream = serve_fixture(exchanges)
        instance = f"127.0.0.1:{free_port()}"
        procs["exporter"] = subprocess.Popen(
            [os.path.join(ROOT, "target/release/crypto-market-exporter"),
             "--source=cryptowatch", f"--cryptowatch.url={upstream}",
             f"--web.listen-address={instance}", "--poll.interval=60s", f"--web.shards={SHARDS}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("the exporter's first poll", lambda: "crypto_market_price{" in get(f"http://{instance}/metrics"))

        vm = f"http://127.0.0.1:{free_port()}"
        procs["victoria-metrics"] = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={work}/vm", f"-httpListenAddr={vm[7:]}",
             "-retentionPeriod=1y", "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("VictoriaMetrics", lambda: get(f"{vm}/health"))
        markets = import_rollups(f"http://{instance}", instance, args.backfill_hours, vm) if args.backfill_hours else 0

        for i in range(SHARDS):
            port = free_port()
            procs[f"vmagent-{i}"] = subprocess.Popen(
                ["vmagent", f"-promscrape.config={ROOT}/prometheus/vmagent-shard.yml",
                 f"-remoteWrite.url={vm}/api/v1/write", f"-remoteWrite.tmpDataPath={work}/vmagent-{i}",
                 f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"],
                env=dict(os.environ, SHARD=str(i), SHARDS=str(SHARDS), EXPORTER=instance),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("both shards", lambda: json.loads(get(
            f"{vm}/api/v1/query?query=count(up%3D%3D1)"))["data"]["result"][0]["value"][1] == str(SHARDS))

        vmalert = f"http://127.0.0.1:{free_port()}"
        procs["vmalert"] = subprocess.Popen(
            ["vmalert", f"-rule={ROOT}/prometheus/rules-vmalert/*.yml", f"-rule={ROOT}/prometheus/rules-sharded/*.yml",
             f"-datasource.url={vm}", f"-remoteWrite.url={vm}", f"-remoteRead.url={vm}",
             "-evaluationInterval=1m", f"-httpListenAddr={vmalert[7:]}", "-loggerLevel=ERROR",
             "-notifier.url=http://127.0.0.1:9"],  # nobody listens: notifications are not measured
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vmalert.log"), "w"))
        wait("vmalert", lambda: get(f"{vmalert}/health"))

        t0 = time.time()
        cpu = {k: proc_cpu(p.pid) for k, p in procs.items()}
        vm0, va0, last_t = metrics(vm), metrics(vmalert), t0
        samples = []
        while time.time() - t0 < args.minutes * 60:
            time.sleep(30)
            now = time.time()
            vm1, va1 = metrics(vm), metrics(vmalert)
            dt = now - last_t
            cpu1 = {k: proc_cpu(p.pid) for k, p in procs.items()}
            groups = {}
            for k, v in va1.items():
                m = re.match(r'vmalert_iteration_duration_seconds\{group="([^"]+)",[^}]*quantile="1"\}', k)
                if m:
                    groups[m.group(1)] = v
            slowest = max(groups.items(), key=lambda kv: kv[1]) if groups else (None, None)
            s = {
                "t": round(now - t0),
                "rows_per_s": round((total(vm1, "vm_rows_inserted_total") - total(vm0, "vm_rows_inserted_total")) / dt, 1),
                "active_series": total(vm1, "vm_cache_entries", 'type="storage/hour_metric_ids"'),
                "rss_mb": {k: round(proc_rss(p.pid) / 2**20) for k, p in procs.items()},
                "cpu_per_s": {k: round((cpu1[k] - cpu[k]) / dt, 4) for k in procs},
                "eval_s_per_s": round((total(va1, "vmalert_iteration_duration_seconds_sum")
                                       - total(va0, "vmalert_iteration_duration_seconds_sum")) / dt, 4),
                "slowest_group": slowest[0],
                "slowest_s": slowest[1],
                "errors": total(va1, "vmalert_execution_errors_total") + total(va1, "vmalert_recording_rules_errors_total"),
            }
            vm0, va0, cpu, last_t = vm1, va1, cpu1, now
            samples.append(s)
            print(json.dumps(s), flush=True)
        half = [s for s in samples if s["t"] >= args.minutes * 30]
        summary = {
            "markets_backfilled": markets,
            "minutes": args.minutes,
            "rows_per_s": round(sum(s["rows_per_s"] for s in half) / len(half), 1),
            "active_series": samples[-1]["active_series"],
            "rss_max_mb": {k: max(s["rss_mb"][k] for s in half) for k in procs},
            "cpu_per_s": {k: round(sum(s["cpu_per_s"][k] for s in half) / len(half), 4) for k in procs},
            "eval_s_per_s": round(sum(s["eval_s_per_s"] for s in half) / len(half), 4),
            "slowest": max(((s["slowest_s"] or 0), s["slowest_group"]) for s in half),
            "errors": samples[-1]["errors"],
        }
        print(json.dumps(summary), file=sys.stderr)
    finally:
        stop(list(procs.values()))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
