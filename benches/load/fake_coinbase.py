#!/usr/bin/env python3
"""A loopback stand-in for the Coinbase Exchange API, for measuring how long a
full refresh takes under the exporter's rate limiter (docs/performance.md).

    python3 benches/load/fake_coinbase.py 18081 300   # port, number of products

Serves GET /products (N online products) and GET /products/{id}/stats in the
documented shapes, and logs nothing. Not used by the tests, which fake
upstreams in-process.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
N = int(sys.argv[2])
PRODUCTS = json.dumps([
    {"id": f"T{i}-USD", "base_currency": f"T{i}", "quote_currency": "USD",
     "status": "online", "trading_disabled": False}
    for i in range(N)
]).encode()
STATS = json.dumps({"open": "100.0", "high": "110.5", "low": "95.25", "last": "104.5",
                    "volume": "12345.678", "volume_30day": "400000.1"}).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = PRODUCTS if self.path == "/products" else STATS
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
