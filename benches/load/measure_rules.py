#!/usr/bin/env python3
"""What a rendering of the mixin costs Prometheus: head series against exported
series, resident memory, CPU, rule-evaluation seconds per second and the slowest
group, with the exporter polling the 14,462-market Cryptowatch recording (or the
exchanges given) from a loopback server, scraped every 60 s (docs/performance.md).

    python3 benches/load/measure_rules.py --rules prometheus/rules --minutes 45 \\
        [--exchanges kraken,coinbase,bitstamp,kraken-futures] [--backfill-hours 24] \\
        [--gogc 100] > samples.jsonl

Before Prometheus starts, --backfill-hours of 5-minute rollups (count5m, sum5m,
sumsq5m of the price, as the rules record them, same labels) are written as TSDB
blocks, so that the 24h statistics read a day of rollups from disk as they do in a
running deployment. Every 30 s one JSON line goes to stdout; the summary of the
second half of the run goes to stderr. Needs a release build of the exporter
(cargo build --release), prometheus and promtool. Everything listens on 127.0.0.1,
on ephemeral ports; the processes started here are stopped by PID at the end.
"""
import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests/fixtures/cryptowatch/markets_summaries.2023-08-19.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_fixture(exchanges):
    data = json.load(open(FIXTURE))
    if exchanges:
        data["result"] = {k: v for k, v in data["result"].items() if k.split(":")[0] in exchanges}
    # Unmetered: the recording's few credits would pace the polls to minutes.
    data.setdefault("allowance", {})["remaining"] = 1e9
    body = json.dumps(data).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/markets/summaries"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def stop(procs):
    """Stops the processes this script started, by PID: SIGTERM, then SIGKILL after 30 s."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def wait(what, fn, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(1)
    sys.exit(f"measure_rules: timed out waiting for {what}")


def query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.loads(get(url))["data"]["result"]


def scalar(prom, expr):
    r = query(prom, expr)
    return float(r[0]["value"][1]) if r else None


def proc_rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def proc_cpu(pid):
    after = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")


LINE = re.compile(r'^crypto_market_price\{([^}]*)\} (\S+)$')


def served_prices(exporter):
    """[(labels, price)] of every market the exporter serves, and the last 5-minute
    boundary at least 2 minutes ago: where backfilled rollups end."""
    markets = []
    for line in get(f"{exporter}/metrics").splitlines():
        m = LINE.match(line)
        if m:
            markets.append((m.group(1), float(m.group(2))))
    end = int(time.time()) - 120
    return markets, end - end % 300


def backfill(exporter, instance, hours, work):
    """Rollups of the served prices for the last `hours`, 150 s past each 5 minutes
    (off the hour, as a group's offset keeps them), ending before Prometheus starts."""
    markets, end = served_prices(exporter)
    start = end - hours * 3600
    path = os.path.join(work, "rollups.om")
    with open(path, "w") as f:
        # 5 samples per 5 minutes at the 60 s scrape interval; a flat price.
        for stat, fn in (("count5m", lambda v: 5), ("sum5m", lambda v: 5 * v), ("sumsq5m", lambda v: 5 * v * v)):
            name = f"market:crypto_market_price:{stat}"
            f.write(f"# TYPE {name} gauge\n")
            for labels, v in markets:
                value = repr(float(fn(v)))
                lab = f'{labels},instance="{instance}",job="crypto-market-exporter"'
                for t in range(start + 150, end, 300):
                    f.write(f"{name}{{{lab}}} {value} {t}\n")
        f.write("# EOF\n")
    data = os.path.join(work, "data")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", path, data],
                   check=True, stdout=subprocess.DEVNULL)
    os.remove(path)
    return len(markets)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", required=True)
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--exchanges", default="")
    ap.add_argument("--backfill-hours", type=int, default=24)
    ap.add_argument("--gogc", default="100")
    args = ap.parse_args()
    exchanges = set(filter(None, args.exchanges.split(",")))

    work = tempfile.mkdtemp(prefix="measure-rules-")
    procs = []
    try:
        upstream = serve_fixture(exchanges)
        exporter_port = free_port()
        instance = f"127.0.0.1:{exporter_port}"
        exporter = subprocess.Popen(
            [os.path.join(ROOT, "target/release/crypto-market-exporter"),
             "--source=cryptowatch", f"--cryptowatch.url={upstream}",
             f"--web.listen-address={instance}", "--poll.interval=60s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(exporter)
        wait("the exporter's first poll", lambda: "crypto_market_price{" in get(f"http://{instance}/metrics"))
        markets = backfill(f"http://{instance}", instance, args.backfill_hours, work) if args.backfill_hours else 0

        prom_port = free_port()
        rules = os.path.abspath(args.rules)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 60s
  scrape_timeout: 20s
  evaluation_interval: 1m
rule_files: ["{rules}/*.yml"]
scrape_configs:
  - job_name: crypto-market-exporter
    static_configs: [{{targets: ["{instance}"]}}]
  - job_name: prometheus
    scrape_interval: 15s
    static_configs: [{{targets: ["127.0.0.1:{prom_port}"]}}]
""")
        env = dict(os.environ, GOGC=args.gogc)
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=30d"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prom.log"), "w"))
        procs.append(prom)
        url = f"http://127.0.0.1:{prom_port}"
        wait("Prometheus", lambda: get(f"{url}/-/ready"))
        t0 = time.time()
        cpu0 = proc_cpu(prom.pid)
        samples = []
        last_cpu, last_t = cpu0, t0
        while time.time() - t0 < args.minutes * 60:
            time.sleep(30)
            now, cpu = time.time(), proc_cpu(prom.pid)
            top = query(url, "topk(1, prometheus_rule_group_last_duration_seconds)")
            s = {
                "t": round(now - t0),
                "head_series": scalar(url, "prometheus_tsdb_head_series"),
                # Prometheus's own scrape (15 s), not part of what is measured.
                "self_series": scalar(url, 'count({job="prometheus"})'),
                "exported": scalar(url, 'scrape_samples_scraped{job="crypto-market-exporter"}'),
                "rss": proc_rss(prom.pid),
                "cpu_per_s": round((cpu - last_cpu) / (now - last_t), 4),
                "rule_eval_per_s": scalar(url, "sum(rate(prometheus_rule_group_duration_seconds_sum[5m]))"),
                "slowest_group": top[0]["metric"].get("rule_group", "").split(";")[-1] if top else None,
                "slowest_s": float(top[0]["value"][1]) if top else None,
                "recorded": scalar(url, 'count({__name__=~"market:.+|pair:.+|:.+"})'),
            }
            last_cpu, last_t = cpu, now
            samples.append(s)
            print(json.dumps(s), flush=True)
        half = [s for s in samples if s["t"] >= args.minutes * 30]
        last = samples[-1]
        summary = {
            "rules": args.rules,
            "markets_backfilled": markets,
            "minutes": args.minutes,
            "gogc": args.gogc,
            "head_series": last["head_series"],
            "self_series": last["self_series"],
            "exported_series": last["exported"],
            "head_per_exported": round((last["head_series"] - (last["self_series"] or 0)) / last["exported"], 2),
            "recorded_series": last["recorded"],
            "rss_max_mb": round(max(s["rss"] for s in half) / 2**20),
            "rss_last_mb": round(last["rss"] / 2**20),
            "prometheus_cpu_per_s": round(sum(s["cpu_per_s"] for s in half) / len(half), 3),
            "rule_eval_s_per_s": round(sum((s["rule_eval_per_s"] or 0) for s in half) / len(half), 4),
            "slowest": max(((s["slowest_s"] or 0), s["slowest_group"]) for s in half),
        }
        print(json.dumps(summary), file=sys.stderr)
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
