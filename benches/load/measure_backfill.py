#!/usr/bin/env python3
"""Measures a network backfill's own cost (docs/performance.md): the release
binary backfills N markets from a loopback stand-in for Binance that answers
at once, so what /usr/bin/time reports is the exporter's CPU and peak RSS for
parsing the candles, computing the gauges and writing the history, with no
network waits.

    cargo build --release
    python3 benches/load/measure_backfill.py 1400        # markets; 25 h at 60 s
    python3 benches/load/measure_backfill.py 1400 --stdout   # the text to /dev/null
    python3 benches/load/measure_backfill.py 1400 --perf /tmp/perf.data   # a profile

`--stdout` writes the history to standard output, sent to /dev/null: the same
work but for copying the text into a file. `--perf FILE` runs the backfill
under `perf record -F 2000 -g` instead of /usr/bin/time (read it with
`perf report -i FILE --no-children --sort sym -g none`).

The stand-in serves exchangeInfo and a 24 h ticker for N symbols (SYMi/USDT)
and klines in the documented shape: one-minute candles, a random walk per
call window, the same body for every symbol (the exporter cannot tell). Not
used by the tests, which fake upstreams in-process with recorded candles.
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = sys.argv[1:]
N = int(ARGS[0]) if ARGS and ARGS[0].isdigit() else 1400
TO_STDOUT = "--stdout" in ARGS
PERF = ARGS[ARGS.index("--perf") + 1] if "--perf" in ARGS else None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, "target", "release", "crypto-market-exporter")

INFO = json.dumps({
    "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                    "intervalNum": 1, "limit": 6000}],
    "symbols": [{"symbol": f"SYM{i}USDT", "baseAsset": f"SYM{i}", "quoteAsset": "USDT"}
                for i in range(N)],
}).encode()
TICKER = json.dumps([
    {"symbol": f"SYM{i}USDT", "lastPrice": "100.5", "highPrice": "110.5",
     "lowPrice": "95.25", "priceChangePercent": "1.5", "volume": "12345.678",
     "quoteVolume": "1234567.8", "count": 1000}
    for i in range(N)
]).encode()
KLINES = {}
LOCK = threading.Lock()


def klines(start, end, limit):
    """One-minute candles opening in [start, end] (ms), at most `limit`."""
    key = (start, end, limit)
    with LOCK:
        if key not in KLINES:
            rng = random.Random(start)
            first = (start + 59_999) // 60_000 * 60_000
            rows, price = [], 100.0
            for t in range(first, end + 1, 60_000)[:limit]:
                o = price
                price *= 1 + rng.gauss(0, 0.001)
                h, l = max(o, price) * 1.0005, min(o, price) * 0.9995
                v = rng.uniform(0.5, 50)
                rows.append([t, f"{o:.8f}", f"{h:.8f}", f"{l:.8f}", f"{price:.8f}",
                             f"{v:.8f}", t + 59_999, f"{v * price:.8f}", 100,
                             f"{v / 2:.8f}", f"{v * price / 2:.8f}", "0"])
            KLINES[key] = json.dumps(rows, separators=(",", ":")).encode()
        return KLINES[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/api/v3/exchangeInfo":
            body = INFO
        elif path == "/api/v3/ticker/24hr":
            body = TICKER
        else:
            q = dict(kv.split("=", 1) for kv in query.split("&"))
            body = klines(int(q["startTime"]), int(q["endTime"]), int(q["limit"]))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-mbx-used-weight-1m", "10")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "history.om")
        backfill = [BINARY, "backfill", "--source=binance",
                    f"--binance.url={url}", "--binance.rate-limit.period=1ms",
                    "--binance.rate-limit.burst=1", "--poll.interval=60s", "--since=25h",
                    f"--markets.max={N}", "--log.level=warn"]
        if not TO_STDOUT:
            backfill.append(f"--output={out}")
        wrapper = (["perf", "record", "-F", "2000", "-g", "-o", PERF] if PERF
                   else ["/usr/bin/time", "-v"])
        run = subprocess.run(wrapper + backfill, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(run.stderr)
        if PERF:
            print(f"profile in {PERF}")
            return
        stats = run.stderr
        user = float(re.search(r"User time \(seconds\): ([\d.]+)", stats).group(1))
        system = float(re.search(r"System time \(seconds\): ([\d.]+)", stats).group(1))
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", stats).group(1)
        size = 0 if TO_STDOUT else os.path.getsize(out)
        samples = 0 if TO_STDOUT else sum(
            1 for line in open(out, "rb") if not line.startswith(b"#"))
    print(f"markets={N} samples={samples} bytes={size} "
          f"cpu={user + system:.2f}s (user {user:.2f}, sys {system:.2f}) "
          f"max_rss={rss / 1024:.0f}MB wall={wall}")


main()
