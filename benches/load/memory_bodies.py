#!/usr/bin/env python3
"""Peak memory of the exporter against hostile or huge Cryptowatch answers.

Serves one scenario's `/markets/summaries` on 127.0.0.1 (cursor pages when the
scenario has several), starts the exporter against it, waits for its first poll
to end (success or failure), and prints the exporter's peak RSS (VmHWM) and
what the poll did. docs/performance.md records the figures.

  python3 benches/load/memory_bodies.py target/release/crypto-market-exporter [SCENARIO ...]

Scenarios (default: all):
  empty     one 65.7 MB page of 7.3 M `"a:b":{}` entries (under the 64 MiB cap)
  one-page  one page of as many real-shaped markets as fit the 64 MiB cap
  million   1,000,000 real-shaped markets in one page (body cap raised to 256 MiB)
  pages     ten cursor pages, each as large as one-page (1 M+ markets in all)
Every scenario runs with the default caps unless noted. Bounded: each run stops
after its first poll or 300 s, and kills what it started.
"""

import http.server
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
import time

CAP = 64 << 20


def market(i):
    # Real-shaped: the fields and magnitudes of the 2023-08-19 recording.
    return (
        f'"ex{i % 97}:p{i:07d}usd":{{"price":{{"last":{1 + i % 1000}.25,"high":{2 + i % 1000}.5,'
        f'"low":{i % 1000}.75,"change":{{"percentage":0.0123,"absolute":0.5}}}},'
        f'"volume":{i % 5000}.125,"volumeQuote":{i % 7000}.5}}'
    )


def page(markets_from, count, has_more, cursor):
    parts = ['{"result":{']
    parts.append(",".join(market(i) for i in range(markets_from, markets_from + count)))
    parts.append("},")
    parts.append(f'"cursor":{{"last":"{cursor}","hasMore":{"true" if has_more else "false"}}},')
    parts.append('"allowance":{"cost":0.001,"remaining":1000000}}')
    return "".join(parts).encode()


def fitting_count():
    per = len(market(1234567)) + 1
    return (CAP - 200) // per


def scenario_pages(name):
    if name == "empty":
        body = b'{"result":{' + b",".join([b'"a:b":{}'] * 7_300_000) + b"}}"
        return [body], []
    if name == "one-page":
        return [page(0, fitting_count(), False, "")], []
    if name == "million":
        return [page(0, 1_000_000, False, "")], ["--cryptowatch.max-body-size=256MiB"]
    if name == "pages":
        n = fitting_count()
        return [page(i * n, n, i < 9, str(i + 1)) for i in range(10)], []
    raise SystemExit(f"unknown scenario {name}")


def serve(pages):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/pairs"):
                body = b'{"result":[]}'
            else:
                m = re.search(r"cursor=(\d+)", self.path)
                body = pages[int(m.group(1)) if m else 0]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def vmhwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_until_published(binary, name):
    """Polls /metrics for the markets gauge: a successful poll logs nothing."""
    import urllib.request

    pages, extra = scenario_pages(name)
    sizes = [len(p) for p in pages]
    server = serve(pages)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTO_MARKET_EXPORTER_")}
    proc = subprocess.Popen(
        [binary, "--source=cryptowatch", f"--cryptowatch.url={url}", "--web.listen-address=127.0.0.1:0",
         "--poll.interval=1h", "--cryptowatch.rate-limit.period=10ms", "--cryptowatch.timeout=120s",
         "--log.format=json", *extra],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    outcome = "no poll within 300 s"
    try:
        first = json.loads(proc.stderr.readline())
        addr = re.search(r"127\.0\.0\.1:\d+", json.dumps(first)).group(0)
        lines = []
        threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.5)
            text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=30).read().decode()
            polls = {m.group(1): float(m.group(2)) for m in re.finditer(
                r'crypto_market_exporter_polls_total\{source="cryptowatch",result="(\w+)"\} (\S+)', text)}
            if sum(polls.values()) >= 1:
                markets = re.search(r'crypto_market_exporter_markets\{source="cryptowatch"\} (\S+)', text)
                truncated = re.search(r'crypto_market_exporter_markets_truncated\{source="cryptowatch"\} (\S+)', text)
                failed = [json.loads(l)["fields"].get("reason") for l in lines if "poll failed" in l]
                outcome = (f"success={polls.get('success', 0):.0f} failure={polls.get('failure', 0):.0f}"
                           f" reason={','.join(r for r in failed if r) or '-'}"
                           f" markets={markets.group(1) if markets else '?'}"
                           f" truncated={truncated.group(1) if truncated else '?'}")
                break
        peak = vmhwm(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
    return sizes, peak, outcome


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    names = sys.argv[2:] or ["empty", "one-page", "million", "pages"]
    print("| scenario | body | peak RSS (VmHWM) | first poll |")
    print("| --- | --- | --- | --- |")
    for name in names:
        sizes, peak, outcome = run_until_published(binary, name)
        body = f"{len(sizes)} x {max(sizes) / 1e6:.1f} MB" if len(sizes) > 1 else f"{sizes[0] / 1e6:.1f} MB"
        print(f"| {name} | {body} | {peak:.0f} MB | {outcome} |", flush=True)


if __name__ == "__main__":
    main()
