#!/usr/bin/env python3
"""Soak: the exporter under sustained scraping while its upstream flaps.

A fake Cryptowatch upstream on 127.0.0.1 cycles, every few seconds, through
good data (the real 14,462-market recording), a changed market set (a tenth of
the markets gone, others renamed), HTTP 500, 429 with Retry-After, a body that
stalls halfway, and an empty answer. Meanwhile two `wrk` runs scrape /metrics,
one plain and one with gzip. At the end it reports and checks:

- zero failed scrapes (no non-2xx response, no socket error) and zero panics;
- the exporter's RSS after warm-up and at the end (flat: within 50 % or 32 MB);
- scrape latency p50/p99 for both runs;
- upstream requests within the rate-limit quota in every 10 s window.

  python3 benches/load/soak.py BINARY [--seconds 600] [--connections 8]

Bounded: every process it starts is stopped by PID when it ends or fails.
Exit code 0 only when every check holds. Figures: docs/performance.md.
"""

import argparse
import http.server
import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDING = os.path.join(ROOT, "tests/fixtures/cryptowatch/markets_summaries.2023-08-19.json")
QUOTA_PERIOD = 0.5  # --cryptowatch.rate-limit.period
PHASES = ["good", "changed", "http500", "good", "throttled", "good", "stalled", "empty", "good"]
PHASE_SECONDS = 4


def bodies():
    with open(RECORDING, "rb") as f:
        good = f.read()
    data = json.loads(good)
    markets = data["result"]
    changed = {}
    for i, (key, value) in enumerate(markets.items()):
        if i % 10 == 0:
            continue  # delisted
        if i % 10 == 1:
            key = key + "x"  # listed anew
        changed[key] = value
    data["result"] = changed
    # Plenty of credits, so pacing keeps the configured interval.
    data["allowance"] = {"cost": 0.001, "remaining": 1e9}
    changed_body = json.dumps(data).encode()
    data["result"] = markets
    good_body = json.dumps(data).encode()
    empty = b'{"result":{},"allowance":{"cost":0.001,"remaining":1000000000}}'
    return good_body, changed_body, empty


class Upstream:
    def __init__(self):
        self.good, self.changed, self.empty = bodies()
        self.started = time.time()
        self.hits = []
        self.lock = threading.Lock()

    def phase(self):
        return PHASES[int((time.time() - self.started) / PHASE_SECONDS) % len(PHASES)]

    def serve(self):
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with upstream.lock:
                    upstream.hits.append(time.time())
                phase = upstream.phase()
                if self.path.startswith("/pairs"):
                    return self.reply(200, b'{"result":[]}')
                if phase == "http500":
                    return self.reply(500, b"internal error")
                if phase == "throttled":
                    return self.reply(429, b"slow down", {"Retry-After": "1"})
                body = {"changed": upstream.changed, "empty": upstream.empty}.get(phase, upstream.good)
                if phase == "stalled":
                    # Half the body, then silence past the exporter's timeout.
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    try:
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        time.sleep(4)
                    except OSError:
                        pass
                    return
                return self.reply(200, body)

            def reply(self, status, body, headers=None):
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def parse_wrk(text):
    def latency(p):
        m = re.search(rf"^\s+{p}%\s+(\S+)", text, re.M)
        return m.group(1) if m else "?"

    requests = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "p50": latency(50),
        "p99": latency(99),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()

    upstream = Upstream()
    server = upstream.serve()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTO_MARKET_EXPORTER_")}
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    addr = f"127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    exporter = subprocess.Popen(
        [args.binary, "--source=cryptowatch", f"--cryptowatch.url={url}", f"--web.listen-address={addr}",
         "--poll.interval=1s", "--poll.max-backoff=2s", "--poll.max-retry-after=2s",
         f"--cryptowatch.rate-limit.period={int(QUOTA_PERIOD * 1000)}ms", "--cryptowatch.timeout=3s",
         "--cryptowatch.connect-timeout=1s", "--log.level=warn", "--log.format=json"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    logs = []
    wrks = []
    ok = False
    try:
        threading.Thread(target=lambda: logs.extend(exporter.stderr), daemon=True).start()
        # Let the first poll land before measuring.
        import urllib.request
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://{addr}/-/ready", timeout=5).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        rss = [rss_mb(exporter.pid)]
        per = max(1, args.connections // 2)
        for extra in ([], ["-H", "Accept-Encoding: gzip"]):
            wrks.append(subprocess.Popen(
                ["wrk", f"-t{min(2, per)}", f"-c{per}", f"-d{args.seconds}s", "--latency", "--timeout", "10s",
                 *extra, f"http://{addr}/metrics"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
        end = time.time() + args.seconds
        while time.time() < end:
            time.sleep(1)
            rss.append(rss_mb(exporter.pid))
        results = [parse_wrk(w.communicate(timeout=args.seconds + 60)[0]) for w in wrks]
        alive = exporter.poll() is None
        rss.append(rss_mb(exporter.pid))
    finally:
        for w in wrks:
            if w.poll() is None:
                w.kill()
        exporter.kill()
        exporter.wait()
        server.shutdown()

    panics = [l for l in logs if "panicked" in l]
    with upstream.lock:
        hits = sorted(upstream.hits)
    window, allowed = 10.0, int(10.0 / QUOTA_PERIOD) + 2
    worst = max((sum(1 for h in hits[i:] if h - t < window) for i, t in enumerate(hits)), default=0)
    start_rss, end_rss = rss[min(5, len(rss) - 1)], rss[-1]
    checks = {
        "no failed scrape": all(r["non2xx"] == 0 and r["socket_errors"] == 0 for r in results),
        "no panic, still running": not panics and alive,
        # Allocator noise and the market set changing size move RSS a little; a
        # leak grows it without bound.
        "RSS flat (within 50 % or 32 MB)": end_rss <= max(start_rss * 1.5, start_rss + 32),
        f"upstream within quota ({allowed} per 10 s)": worst <= allowed,
    }
    print(f"soak: {args.seconds}s, {args.connections} connections, upstream phases {'/'.join(PHASES)} x {PHASE_SECONDS}s")
    for name, r in zip(("plain", "gzip"), results):
        print(f"  {name}: {r['requests']} scrapes ({r['requests'] / args.seconds:.0f}/s), p50 {r['p50']}, p99 {r['p99']}, "
              f"non-2xx {r['non2xx']}, socket errors {r['socket_errors']}")
    print(f"  RSS: {start_rss:.1f} MB after warm-up, {end_rss:.1f} MB at the end, max {max(rss):.1f} MB")
    print(f"  upstream requests: {len(hits)}, at most {worst} in any 10 s")
    for name, held in checks.items():
        print(f"  {'ok  ' if held else 'FAIL'} {name}")
    ok = all(checks.values())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
