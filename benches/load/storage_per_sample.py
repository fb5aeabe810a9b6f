#!/usr/bin/env python3
"""Bytes per sample on disk, in Prometheus's TSDB and in VictoriaMetrics, for a day of
the exporter's series at the scrape interval (docs/scaling.md).

    python3 benches/load/storage_per_sample.py [--exchanges kraken,coinbase,bitstamp,kraken-futures] \\
        [--hours 24] [--step 60] > storage.json

The day is synthetic but shaped like the exporter's output, market by market from the
2023-08-19 Cryptowatch recording (tests/fixtures/cryptowatch): every gauge the
recording has a value for, with the values' own behaviour:
  price            a random walk (±0.1 % per step) rounded to the decimals the
                   recording quotes the market in (exchanges quote in ticks)
  high/low 24h     the running maximum/minimum of that price: a step function
  change ratio     price / first price - 1, every digit significant
  volumes (3)      random walks (±0.05 %), every digit significant
Then
  1. Prometheus: `promtool tsdb create-blocks-from openmetrics` (2h blocks, as a
     running Prometheus cuts them before compaction), bytes of chunks/ and of whole
     blocks per sample, and `promtool tsdb analyze`'s summary;
  2. VictoriaMetrics: the same samples through /api/v1/import/prometheus, flushed and
     force-merged, then vm_data_size_bytes / vm_rows of its storage (and the index).
One JSON object goes to stdout. Processes started here are stopped by PID; the scratch
directory is removed.
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
from measure_rules import FIXTURE, free_port, stop  # noqa: E402


def decimals(x):
    text = repr(float(x))
    if "e" in text:
        return 8
    return min(8, len(text.split(".")[1].rstrip("0")))


def generate(markets, steps, step, end, om_path, prom_path):
    state = 88172645463325252
    def uniform():
        nonlocal state
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        return (state >> 11) / float(1 << 53)

    samples = 0
    series = 0
    with open(om_path, "w") as om, open(prom_path, "w") as prom:
        families = {}
        for key, m in markets:
            exchange, pair = key.split(":", 1)
            labels = f'{{exchange="{exchange}",pair="{pair}",job="crypto-market-exporter",instance="exporter:9795"}}'
            price = (m.get("price") or {}).get("last")
            if not isinstance(price, (int, float)) or price <= 0:
                continue
            d = decimals(price)
            x = float(price)
            p = [round(x, d)]
            for _ in range(steps - 1):
                x *= 1.0 + 0.002 * (uniform() - 0.5)
                p.append(round(x, d))
            hi, lo = [], []
            h, l = (m.get("price") or {}).get("high"), (m.get("price") or {}).get("low")
            h = max(float(h), p[0]) if isinstance(h, (int, float)) else None
            l = min(float(l), p[0]) if isinstance(l, (int, float)) and l > 0 else None
            for v in p:
                if h is not None:
                    h = max(h, v)
                    hi.append(h)
                if l is not None:
                    l = min(l, v)
                    lo.append(l)
            gauges = {"crypto_market_price": p}
            if hi:
                gauges["crypto_market_price_high_24h"] = hi
            if lo:
                gauges["crypto_market_price_low_24h"] = lo
            gauges["crypto_market_price_change_ratio_24h"] = [v / p[0] - 1.0 for v in p]
            for name, field in [("crypto_market_volume_24h", "volume"),
                                ("crypto_market_volume_quote_24h", "volumeQuote"),
                                ("crypto_market_volume_usd_24h", "volumeUSD")]:
                v0 = m.get(field)
                if not isinstance(v0, (int, float)) or v0 <= 0:
                    continue
                x = float(v0)
                walk = []
                for _ in range(steps):
                    x *= 1.0 + 0.001 * (uniform() - 0.5)
                    walk.append(x)
                gauges[name] = walk
            for name, values in gauges.items():
                families.setdefault(name, []).append((labels, values))
        for name, members in families.items():
            om.write(f"# TYPE {name} gauge\n")
            for labels, values in members:
                series += 1
                om_lines, prom_lines = [], []
                for i, v in enumerate(values):
                    t = end - (steps - 1 - i) * step
                    om_lines.append(f"{name}{labels} {v!r} {t}\n")
                    prom_lines.append(f"{name}{labels} {v!r} {t * 1000}\n")
                samples += len(values)
                om.write("".join(om_lines))
                prom.write("".join(prom_lines))
        om.write("# EOF\n")
    return series, samples


def du(path):
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(base, f))
    return total


def vm_metrics(url):
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(vm_data_size_bytes|vm_rows|vm_active_merges|vm_pending_rows)\{type="([^"]+)"\} (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exchanges", default="kraken,coinbase,bitstamp,kraken-futures",
                    help="comma-separated; empty for all 14,462 markets")
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--step", type=int, default=60)
    args = ap.parse_args()
    exchanges = set(filter(None, args.exchanges.split(",")))
    result = json.load(open(FIXTURE))["result"]
    markets = sorted((k, v) for k, v in result.items() if not exchanges or k.split(":")[0] in exchanges)
    steps = int(args.hours * 3600 / args.step) + 1
    end = int(time.time()) - 7200
    end -= end % args.step
    scratch = tempfile.mkdtemp(prefix="cme-storage-")
    out = {"markets": len(markets), "hours": args.hours, "step_seconds": args.step}
    vm = None
    try:
        t0 = time.time()
        out["series"], out["samples"] = generate(markets, steps, args.step, end,
                                                 os.path.join(scratch, "day.om"),
                                                 os.path.join(scratch, "day.prom"))
        print(f"generated {out['series']} series, {out['samples']} samples in {time.time() - t0:.0f}s", file=sys.stderr)

        # 1. Prometheus TSDB blocks.
        blocks = os.path.join(scratch, "tsdb")
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                        os.path.join(scratch, "day.om"), blocks], check=True, stdout=subprocess.DEVNULL)
        chunks = index = 0
        samples_in_blocks = 0
        for b in os.listdir(blocks):
            meta = os.path.join(blocks, b, "meta.json")
            if not os.path.exists(meta):
                continue
            samples_in_blocks += json.load(open(meta))["stats"]["numSamples"]
            chunks += du(os.path.join(blocks, b, "chunks"))
            index += os.path.getsize(os.path.join(blocks, b, "index"))
        out["prometheus"] = {
            "samples": samples_in_blocks,
            "chunks_bytes": chunks,
            "index_bytes": index,
            "blocks_bytes": du(blocks),
            "chunk_bytes_per_sample": round(chunks / samples_in_blocks, 3),
            "block_bytes_per_sample": round(du(blocks) / samples_in_blocks, 3),
        }
        analyze = subprocess.run(["promtool", "tsdb", "analyze", blocks], capture_output=True, text=True)
        out["prometheus"]["analyze"] = analyze.stdout.splitlines()[:6]

        # 2. VictoriaMetrics.
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={scratch}/vm",
                               f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=1y",
                               "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with open(os.path.join(scratch, "day.prom"), "rb") as f:
            while True:
                batch = f.read(32 << 20)
                if not batch:
                    break
                batch += f.readline()
                urllib.request.urlopen(urllib.request.Request(
                    url + "/api/v1/import/prometheus", data=batch, method="POST"), timeout=600).read()
        urllib.request.urlopen(url + "/internal/force_flush", timeout=600).read()
        time.sleep(2)
        partitions = sorted({time.strftime("%Y_%m", time.gmtime(end - h * 3600)) for h in range(int(args.hours) + 1)})
        for p in partitions:
            urllib.request.urlopen(url + f"/internal/force_merge?partition_prefix={p}", timeout=600).read()
        for _ in range(600):
            m = vm_metrics(url)
            if sum(v for (k, _), v in m.items() if k == "vm_active_merges") == 0 and \
               sum(v for (k, _), v in m.items() if k == "vm_pending_rows") == 0:
                break
            time.sleep(1)
        time.sleep(2)
        m = vm_metrics(url)
        data = sum(v for (k, t), v in m.items() if k == "vm_data_size_bytes" and t.startswith("storage/"))
        rows = sum(v for (k, t), v in m.items() if k == "vm_rows" and t.startswith("storage/"))
        idx = sum(v for (k, t), v in m.items() if k == "vm_data_size_bytes" and t.startswith("indexdb"))
        out["victoriametrics"] = {
            "rows": int(rows),
            "data_bytes": int(data),
            "indexdb_bytes": int(idx),
            "data_bytes_per_sample": round(data / rows, 3),
            "disk_bytes": du(os.path.join(scratch, "vm")),
        }
        print(json.dumps(out, indent=2))
    finally:
        if vm is not None:
            stop([vm])
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
