// Recording rules. Names follow level:metric:operations (docs/rules.md has the
// definitions and the reasoning). Each family is written once here and rendered per
// metric and per pair split; `groups` lists them in dependency order.
local u = import 'lib/util.libsonnet';

{
  // The rollup rules of one metric. With inlineCount the sum of squares computes its
  // count itself instead of reading count5m (for promtool tsdb create-blocks-from
  // rules, which evaluates rules one by one: benches/load/rollup-backfill.yml).
  rollups(cfg, key, s, inlineCount=false)::
    local M = cfg.metrics[key].name;
    local rec(op) = u.market(cfg, key, op);
    local sel(name) = u.select(cfg, name, s);
    [
      { record: rec('count5m'), expr: 'count_over_time(' + sel(M) + '[5m])' },
      { record: rec('sum5m'), expr: 'sum_over_time(' + sel(M) + '[5m])' },
      {
        record: rec('sumsq5m'),
        expr: (if inlineCount then 'count_over_time(' + sel(M) + '[5m])' else sel(rec('count5m')))
              + ' * (stdvar_over_time(' + sel(M) + '[5m]) + avg_over_time(' + sel(M) + '[5m]) ^ 2)',
      },
    ],


  // A group per (family, split) for the per-market families, in dependency order:
  // [{ name, interval, rules, split }] where split is the split's name ('' = none).
  recordingGroups(cfg)::
    assert std.member(['prometheus', 'vmalert'], cfg.ruler) : "ruler must be 'prometheus' or 'vmalert', not '%s'" % cfg.ruler;
    // vmalert: no rule reads its own group's results (config.libsonnet, `ruler`).
    local vm = cfg.ruler == 'vmalert';
    local prior(selector) = u.prior(cfg, selector, cfg.intervals.slow);
    local splits = u.splits(cfg);
    local perSplit(family, interval, rulesOf) = [
      { name: 'crypto-market-' + family + s.suffix, interval: interval, split: s.name, rules: rulesOf(s) }
      for s in splits
    ];
    local sel(name, s, extra=[]) = u.select(cfg, name, s, extra);
    local metricGroups(key) =
      local m = cfg.metrics[key];
      local M = m.name;
      local rec(op) = u.market(cfg, key, op);
      local alerted = std.member(cfg.spike.metrics, key);
      // The 1h tier the spike alert reads runs every minute; for other metrics, no
      // alert waits for it.
      local interval1h = if alerted then cfg.intervals.fast else cfg.intervals.slow;
      local overTime(fn, op) = function(s) [{ record: rec(op), expr: fn + '_over_time(' + sel(M, s) + '[1h])' }];
      // One statistic per group, so that they run concurrently (docs/performance.md).
      (if m.avg1h then perSplit(m.short + '-1h-avg', interval1h, overTime('avg', 'avg1h')) else [])
      + (if m.avg1h && cfg.spike.recordGuards then
           perSplit(m.short + '-1h-count', interval1h, overTime('count', 'count1h'))
           + perSplit(m.short + '-1h-min', interval1h, overTime('min', 'min1h'))
         else [])
      + (if m.extremes1h then
           perSplit(m.short + '-1h-max', cfg.intervals.slow, overTime('max', 'max1h'))
           + perSplit(m.short + '-1h-stddev', cfg.intervals.slow, overTime('stddev', 'stddev1h'))
         else [])
      + (if m.stats24h then
           // Count, sum and sum of squares (n * (stdvar + mean^2)) of the raw samples
           // of each 5-minute window: sums, so that the 24h figures are those of every
           // raw sample, never an average of averages.
           perSplit(m.short + '-rollup-5m', cfg.intervals.slow, function(s) $.rollups(cfg, key, s, inlineCount=vm))
           + (if cfg.stats24h.hourlyTotals then std.flattenArrays([
                // The rollups of the last 24 whole clock hours: a subquery with a 1h step
                // evaluates at whole hours whatever the group's schedule, so the three
                // totals cover the same hours. `offset 1ms`: 24 hourly points, not 25,
                // where a closed 2.x range ends exactly on the hour.
                perSplit(m.short + '-24h-' + t, cfg.intervals.hourly, function(s) [{
                  record: rec(t + '24h_hourly'),
                  expr: 'sum_over_time(sum_over_time(' + sel(rec(t + '5m'), s) + '[1h])[24h:1h] offset 1ms)',
                }])
                for t in ['count', 'sum', 'sumsq']
              ]) else [])
           + perSplit(m.short + '-stats-24h', cfg.intervals.slow, function(s)
             // N, S, Q: with hourly totals, those the previous clock hour computed (all
             // three have run by then); else the last 24h of rollups, read here at one
             // timestamp. Rules in a group run in order, so the later ones divide what
             // the earlier ones just recorded and no statistic mixes two windows.
             local total(t) =
               if cfg.stats24h.hourlyTotals then
                 'last_over_time(last_over_time(' + sel(rec(t + '24h_hourly'), s) + '[1h])[1h:1h] offset 1ms)'
               else
                 'sum_over_time(' + sel(rec(t + '5m'), s) + '[24h] offset 1ms)';
             local N = if cfg.stats24h.recordCount && !vm then sel(rec('count24h'), s) else total('count');
             local avgExpr = total('sum') + ' / ' + N;
             // Population standard deviation, clamped at 0 against rounding.
             local stddevExpr(avg) = 'sqrt(clamp_min(' + total('sumsq') + ' / ' + N + ' - ' + avg + ' ^ 2, 0))';
             // With vmalert, what the group records is inlined, not read back.
             local avg = if vm then '(' + avgExpr + ')' else sel(rec('avg24h'), s);
             local stddev = if vm then stddevExpr(avg) else sel(rec('stddev24h'), s);
             (if cfg.stats24h.recordCount then [{ record: rec('count24h'), expr: total('count') }] else [])
             + [
               { record: rec('avg24h'), expr: avgExpr },
               { record: rec('stddev24h'), expr: stddevExpr(avg) },
             ]
             + (if m.volatility24h then [{
                  // Unitless, so pairs priced in dollars and in fractions of a cent compare.
                  // Where every sample is 0 the ratio is NaN, which `>= 0` drops.
                  record: rec('volatility24h'),
                  expr: stddev + ' / ' + avg + ' >= 0',
                }] else []))
         else []);

    local rankGroups =
      local key = cfg.rank.metric;
      local V = u.market(cfg, key, 'volatility24h');
      local K = cfg.rank.topK;
      local top = u.market(cfg, key, 'volatility24h_top' + K);
      local vsel = prior(u.select(cfg, V));
      local tsel = prior(u.select(cfg, top));
      if !cfg.rank.enabled then [] else [
        // The markets at or above the K-th largest volatility (more with ties): the
        // only ones the rank's comparisons run on, so it costs one pass, not K.
        {
          name: 'crypto-market-rank-top' + K,
          interval: cfg.intervals.slow,
          split: '',
          rules: [{ record: top, expr: vsel + ' >= on() group_left() min(topk(' + K + ', ' + vsel + '))' }],
        },
        // Competition rank: 1 + how many of the K largest values are strictly above.
        // Exact for the top K, K + 1 for every other market.
        {
          name: 'crypto-market-rank',
          interval: cfg.intervals.slow,
          split: '',
          rules: [{
            record: u.market(cfg, key, 'volatility24h_rank'),
            expr: '(\n  1\n'
                  + std.join('', ['  + (' + tsel + ' < bool on() group_left() min(topk(' + k + ', ' + tsel + ')))\n' for k in std.range(1, K)])
                  + ')\nor\n' + vsel + ' * 0 + ' + (K + 1) + '\n',
          }],
        },
      ];

    local grid = cfg.percentile.grid;
    local points = [
      local p = std.floor(k * 100 / grid);
      { label: if p % 10 == 0 then '0.' + (p / 10) else std.format('0.%02d', p), name: std.format('q%02d', p) }
      for k in std.range(1, grid - 1)
    ];
    local percentileGroups =
      local key = cfg.percentile.metric;
      local V = u.market(cfg, key, 'volatility24h');
      local Q = ':' + cfg.metrics[key].name + ':volatility24h_quantile';
      assert 100 % grid == 0 : 'percentile.grid must divide 100, not %d' % grid;
      if !cfg.percentile.enabled then [] else
        // One series per grid point (the level is empty: every label is aggregated
        // away), one group each because each reads every market.
        [
          {
            name: 'crypto-market-percentile-grid-' + q.name,
            interval: cfg.intervals.slow,
            split: '',
            // The grid point as the rule's label (not label_replace), so that
            // promtool's duplicate lint tells the nine rules apart.
            rules: [{ record: Q, expr: 'quantile(' + q.label + ', ' + prior(u.select(cfg, V)) + ')', labels: { quantile: q.label } }],
          }
          for q in points
        ]
        // Share of grid points the market reaches: 0.9 = top 10 %.
        + perSplit('percentile', cfg.intervals.slow, function(s) [{
          record: V + '_percentile',
          expr: '(\n'
                + std.join('', [
                  (if i == 0 then '    ' else '  + ')
                  + '(' + prior(sel(V, s)) + ' >= bool on() group_left() ' + prior(Q + '{quantile="' + points[i].label + '"}') + ')\n'
                  for i in std.range(0, std.length(points) - 1)
                ])
                + ') / ' + grid + '\n',
        }]);

    local crossGroups =
      local P = cfg.metrics.price.name;
      if !cfg.crossExchange.enabled then [] else
        perSplit('cross-exchange', cfg.intervals.fast, function(s) [
          { record: 'pair:' + P + ':median', expr: 'quantile by (pair) (0.5, ' + sel(P, s) + ')' },
          { record: 'pair:' + P + ':exchanges', expr: 'count by (pair) (' + sel(P, s) + ')' },
          {
            record: 'market:' + P + ':divergence_ratio',
            expr: sel(P, s) + ' / on(pair) group_left() '
                  + (if vm then 'quantile by (pair) (0.5, ' + sel(P, s) + ')' else sel('pair:' + P + ':median', s))
                  + ' - 1',
          },
        ]);

    std.flattenArrays([metricGroups(k) for k in cfg.metricOrder])
    + rankGroups + percentileGroups + crossGroups,
}
