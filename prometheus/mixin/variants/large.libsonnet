// The layout measured at 14,462 markets on one 2-core Prometheus (docs/performance.md):
// every tier of every metric, the 1h guards and the 24h totals recorded so that no
// group reads 24h more than once an hour, and every per-market group split in twelve
// by the pair's first character, in classes chosen on the Cryptowatch recording so
// that no group takes much more than a twelfth of the markets (5.5-10.2 % each).
{
  _config+:: {
    metrics+: {
      [k]+: { avg1h: true, extremes1h: true, stats24h: true, volatility24h: true }
      for k in ['price', 'volume', 'volume_quote', 'volume_usd']
    },
    spike+: { recordGuards: true },
    stats24h+: { hourlyTotals: true, recordCount: true },
    pairSplits: ['0-9a', 'b', 'c-d', 'e-f', 'g-i', 'j-l', 'm', 'n-o', 'p-r', 's', 't-v'],
  },
}
