#!/usr/bin/env python3
"""25 h of 1-minute history for every market of a Cryptowatch summaries recording,
as OpenMetrics for `promtool tsdb create-blocks-from openmetrics` (rule-evaluation
benchmark, docs/performance.md).

    python3 benches/load/gen_backfill.py END_UNIX MINUTES summaries.json > backfill.om

Each of the four gauges the rules read (price, base, quote and USD volume) follows a
seeded random walk (±0.1 % per minute) from its recorded value; markets without a
positive value for a gauge get no series for it, as the exporter would export none.
Labels match what Prometheus scrapes from the exporter (job, instance), so live
scrapes continue the backfilled series. The last sample is at END_UNIX: keep it in the
past when Prometheus starts, or the head refuses the live samples as out of bounds.
"""
import json
import sys

end, minutes, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
result = json.load(open(path))["result"]
gauges = [("crypto_market_price", "price"), ("crypto_market_volume_24h", "volumeBase"),
          ("crypto_market_volume_quote_24h", "volumeQuote"), ("crypto_market_volume_usd_24h", "volumeUSD")]
state = 1
out = sys.stdout
for name, field in gauges:
    out.write(f"# TYPE {name} gauge\n")
    for key, m in result.items():
        exchange, pair = key.split(":", 1)
        start = (m.get("price") or {}).get("last") if field == "price" else m.get(field)
        if not isinstance(start, (int, float)) or start <= 0:
            continue
        labels = f'{{exchange="{exchange}",pair="{pair}",job="crypto-market-exporter",instance="exporter:9795"}}'
        x = float(start)
        lines = []
        for i in range(minutes + 1):
            state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
            state ^= state >> 7
            state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
            x *= 1.0 + 0.002 * ((state >> 11) / float(1 << 53) - 0.5)
            lines.append(f"{name}{labels} {x!r} {end - (minutes - i) * 60}\n")
        out.write("".join(lines))
out.write("# EOF\n")
