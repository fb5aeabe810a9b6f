#!/bin/sh
# Loads a backfill (crypto-market-exporter backfill --output FILE) into a
# Prometheus data directory, and then the recording rules over the same window,
# so averages, 24h statistics, rank and percentile exist from the first minute.
#
#   load-history.sh HISTORY.om DATA_DIR [STAGES_DIR]
#
# Run it while no Prometheus uses DATA_DIR (compose runs it before Prometheus
# starts; docs/backfill.md has the steps for a running server). Needs promtool
# and prometheus on PATH; POSIX sh, so it runs in the prom/prometheus image.
#
# 1. promtool tsdb create-blocks-from openmetrics: the raw series.
# 2. For each stage of prometheus/backfill (rendered by the mixin: a rule's stage
#    comes after every stage whose records it reads), a temporary Prometheus on
#    DATA_DIR (loopback, no scrapes, no rules) answers promtool tsdb
#    create-blocks-from rules, whose blocks are moved into DATA_DIR before the
#    next stage starts the server again.
set -eu

history=${1:?usage: load-history.sh HISTORY.om DATA_DIR [STAGES_DIR]}
data=${2:?usage: load-history.sh HISTORY.om DATA_DIR [STAGES_DIR]}
stages=${3:-$(dirname "$0")/../../prometheus/backfill}
port=${BACKFILL_PROMETHEUS_PORT:-19099}
work=$(mktemp -d "${TMPDIR:-/tmp}/load-history.XXXXXX")
prom_pid=
stop() {
  if [ -n "$prom_pid" ]; then
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
    prom_pid=
  fi
}
trap 'stop; rm -rf "$work"' EXIT INT TERM

log() { echo "load-history: $*" >&2; }

[ -s "$history" ] || { log "$history: missing or empty"; exit 1; }
mkdir -p "$data"
# Only into a fresh data directory: a Prometheus that ran already has its own
# samples for the window (compose runs this on every `up`).
if [ -d "$data/wal" ] || ls -d "$data"/01* >/dev/null 2>&1; then
  log "$data already holds data: nothing loaded"
  exit 0
fi

# The window: the first and the last sample of the file (every series has the
# same steps, so the first series' first sample and the file's last one).
first=$(grep -m1 -v '^#' "$history" | awk '{print $NF}')
last=$(grep -v '^#' "$history" | tail -n 1 | awk '{print $NF}')
start=${first%.*}
end=${last%.*}
log "raw series from $history ($start to $end)"
promtool tsdb create-blocks-from openmetrics "$history" "$data" >&2

printf 'global: {}\n' > "$work/prometheus.yml"
for file in "$stages"/stage-*.yml; do
  name=$(basename "$file" .yml)
  interval=${name##*-}
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  tries=0
  until promtool query instant "http://127.0.0.1:$port" 'vector(1)' >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 240 ] || ! kill -0 "$prom_pid" 2>/dev/null; then
      cat "$work/prometheus.log" >&2
      log "the temporary Prometheus did not start"
      exit 1
    fi
    sleep 0.5
  done
  log "$name: evaluating every $interval"
  rm -rf "$work/blocks"
  promtool tsdb create-blocks-from rules --start="$start" --end="$end" \
    --eval-interval="$interval" --url="http://127.0.0.1:$port" \
    --output-dir="$work/blocks" "$file" >&2
  stop
  for block in "$work"/blocks/*/; do
    [ -d "$block" ] && mv "$block" "$data/"
  done
done
log "done: $data holds the history and its recording rules"
