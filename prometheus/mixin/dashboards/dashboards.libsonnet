// The Grafana dashboards. Panels read the recorded names the config enables; a panel
// (or a query of one) whose series is switched off is not rendered.
local g = import '../lib/grafana.libsonnet';
local u = import '../lib/util.libsonnet';

local window24h(cfg) =
  if cfg.stats24h.hourlyTotals
  then 'the 24 whole clock hours that ended one to two hours ago; changes on the hour'
  else 'the last 24 hours, to within 5 minutes';

local detail(cfg) =
  local price = cfg.metrics.price;
  local P = price.name;
  local m(name) = u.select(cfg, name, extra=['exchange="$exchange"', 'pair="$pair"']);
  local rec(key, op) = m(u.market(cfg, key, op));
  local f = cfg.spike.factor;
  local K = cfg.rank.topK;
  local when(c, xs) = if c then xs else [];
  g.dashboard(
    cfg,
    'detail',
    'Crypto markets: market detail',
    'One market in depth: price against its 1h average and the ' + f + 'x spike threshold, volumes, 24h statistics, volatility rank and alerts.',
    [
      g.queryVariable('exchange', 'Exchange', 'label_values(' + u.select(cfg, P) + ', exchange)', false, { text: 'kraken', value: 'kraken' }),
      g.queryVariable('pair', 'Pair', 'label_values(' + u.select(cfg, P, extra=['exchange="$exchange"']) + ', pair)', false, { text: 'btcusd', value: 'btcusd' }),
    ],
    [
      if price.avg1h then
        g.panel('timeseries', 'Price, 1h average and spike threshold',
                'Last trade price with its 1-hour average; the band up to ' + f + 'x the average is where CryptoMarketSpike stays quiet.',
                'short', g.pos(0, 0, 16, 10), [
                  g.target(m(P), 'price'),
                  g.target(rec('price', 'avg1h'), '1h average'),
                  g.target(f + ' * ' + rec('price', 'avg1h'), 'spike threshold (' + f + 'x)'),
                ], overrides=[{
                  matcher: { id: 'byName', options: 'spike threshold (' + f + 'x)' },
                  properties: [
                    { id: 'custom.fillBelowTo', value: '1h average' },
                    { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
                    { id: 'color', value: { mode: 'fixed', fixedColor: 'orange' } },
                  ],
                }])
      else
        g.panel('timeseries', 'Price', 'Last trade price.', 'short', g.pos(0, 0, 16, 10), [g.target(m(P), 'price')]),
    ]
    + when(cfg.rank.enabled, [
      g.panel('stat', 'Volatility rank',
              "Rank of this market's 24h price volatility among all markets (1 = most volatile; " + (K + 1) + ' means below the top ' + K + ').',
              'none', g.pos(16, 0, 4, 5), [g.target(rec(cfg.rank.metric, 'volatility24h_rank'), instant=true)]),
    ])
    + when(cfg.percentile.enabled, [
      g.panel('stat', 'Volatility percentile',
              "Share of markets whose 24h volatility is at or below this market's, on a " + (100 / cfg.percentile.grid) + '% grid (90% = top 10%).',
              'percentunit', g.pos(20, 0, 4, 5), [g.target(rec(cfg.percentile.metric, 'volatility24h_percentile'), instant=true)]),
    ])
    + [
      g.panel('stat', '24h change', 'Price change over the rolling 24h window, as reported by the source.',
              'percentunit', g.pos(16, 5, 4, 5), [g.target(m('crypto_market_price_change_ratio_24h'), instant=true)]),
    ]
    + when(price.volatility24h, [
      g.panel('stat', '24h volatility',
              '24h standard deviation of the price divided by its 24h average (' + window24h(cfg) + ').',
              'percentunit', g.pos(20, 5, 4, 5), [g.target(rec('price', 'volatility24h'), instant=true)]),
    ])
    + [
      g.panel('timeseries', '24h high and low', 'Rolling 24h high and low trade prices reported by the source, with the last price.',
              'short', g.pos(0, 10, 12, 8), [
                g.target(m('crypto_market_price_high_24h'), '24h high'),
                g.target(m('crypto_market_price_low_24h'), '24h low'),
                g.target(m(P), 'price'),
              ]),
    ]
    + when(price.stats24h, [
      g.panel('timeseries', '24h standard deviation and average',
              'Price statistics over ' + window24h(cfg) + ', computed exactly from 5-minute rollups.',
              'short', g.pos(12, 10, 12, 8), [
                g.target(rec('price', 'stddev24h'), '24h stddev'),
                g.target(rec('price', 'avg24h'), '24h average'),
              ]),
    ])
    + [
      local v = cfg.metrics[p.key];
      g.panel('timeseries', p.title, p.description + (if v.avg1h && p.avg then ', with its 1h average.' else '.'),
              p.unit, g.pos(p.x, 18, 8, 8),
              [g.target(m(v.name), p.legend)] + when(v.avg1h && p.avg, [g.target(rec(p.key, 'avg1h'), '1h average')]))
      for p in [
        { key: 'volume', title: '24h volume (base currency)', description: 'Traded volume of the rolling 24h window in base currency', unit: 'short', x: 0, legend: 'volume', avg: true },
        { key: 'volume_quote', title: '24h volume (quote currency)', description: 'Traded volume of the rolling 24h window in quote currency', unit: 'short', x: 8, legend: 'quote volume', avg: true },
        { key: 'volume_usd', title: '24h volume (USD)', description: 'Traded volume of the rolling 24h window in US dollars, where the source reports it', unit: 'currencyUSD', x: 16, legend: 'USD volume', avg: false },
      ]
    ]
    + when(cfg.crossExchange.enabled, [
      g.panel('timeseries', 'Divergence from other exchanges',
              "This market's price relative to the median price of the same pair across exchanges, minus one.",
              'percentunit', g.pos(0, 26, 24, 7), [g.target(m('market:' + P + ':divergence_ratio'), 'divergence')]),
    ]),
    annotations=[{
      name: 'Spike alerts',
      datasource: { type: 'prometheus', uid: '${datasource}' },
      enable: true,
      iconColor: 'red',
      expr: 'ALERTS{alertname="CryptoMarketSpike", alertstate="firing", exchange="$exchange", pair="$pair"}',
      step: cfg.scrapeIntervalSeconds + 's',
      titleFormat: '{{alertname}} ({{metric}})',
      textFormat: '{{metric}} above ' + f + 'x its 1h average',
      useValueForTime: false,
    }],
  );

local overview(cfg) =
  local P = cfg.metrics.price.name;
  local m(name) = u.select(cfg, name, extra=['exchange=~"$exchange"', 'pair=~"$pair"']);
  local K = cfg.rank.topK;
  local rank = u.market(cfg, cfg.rank.metric, 'volatility24h_rank');
  local when(c, xs) = if c then xs else [];
  local bar = { orientation: 'horizontal', displayMode: 'gradient', reduceOptions: { calcs: ['lastNotNull'] } };
  g.dashboard(
    cfg,
    'overview',
    'Crypto markets: overview',
    'All markets at a glance: volatility ranking, current spikes, biggest movers and cross-exchange divergence.',
    [
      g.queryVariable('exchange', 'Exchange', 'label_values(' + u.select(cfg, P) + ', exchange)', true, { text: 'All', value: '$__all' }),
      g.queryVariable('pair', 'Pair', 'label_values(' + u.select(cfg, P, extra=['exchange=~"$exchange"']) + ', pair)', true, { text: 'All', value: '$__all' }),
    ],
    when(cfg.rank.enabled, [
      g.panel('table', 'Most volatile markets (top ' + K + ')',
              'Markets ranked by 24h price volatility (24h stddev / 24h average, exact from 5-minute rollups, over ' + window24h(cfg) + '); rank 1 = most volatile. The sparkline is the last 24h of price.',
              'percentunit', g.pos(0, 0, 14, 12), [
                g.target(m(rank) + ' <= ' + K, instant=true, format='table'),
                g.target(m(u.market(cfg, cfg.rank.metric, 'volatility24h')) + ' and on(exchange, pair) ' + rank + ' <= ' + K, instant=true, format='table'),
                g.target(m(P) + ' and on(exchange, pair) ' + rank + ' <= ' + K, '{{exchange}} {{pair}}'),
              ],
              defaults={ custom: { align: 'auto' } },
              overrides=[
                { matcher: { id: 'byName', options: 'Rank' }, properties: [{ id: 'unit', value: 'none' }] },
                {
                  matcher: { id: 'byName', options: 'Price 24h' },
                  properties: [{ id: 'custom.cellOptions', value: { type: 'sparkline' } }, { id: 'unit', value: 'short' }],
                },
              ],
              extra={ transformations: [
                { id: 'timeSeriesTable', options: {} },
                { id: 'merge', options: {} },
                {
                  id: 'organize',
                  options: {
                    excludeByName: { Time: true, job: true, instance: true, __name__: true },
                    renameByName: { 'Value #A': 'Rank', 'Value #B': 'Volatility 24h', 'Trend #C': 'Price 24h' },
                  },
                },
                { id: 'sortBy', options: { sort: [{ field: 'Rank' }] } },
              ] }),
    ])
    + [
      g.panel('table', 'Markets spiking now',
              'Markets whose ' + u.orList([cfg.metrics[k].noun for k in cfg.spike.metrics]) + ' is more than ' + cfg.spike.factor + 'x its 1-hour average (firing CryptoMarketSpike alerts).',
              'none', g.pos(14, 0, 10, 12),
              [g.target('ALERTS{alertname="CryptoMarketSpike", alertstate="firing", exchange=~"$exchange", pair=~"$pair"}', instant=true, format='table')],
              extra={ transformations: [{
                id: 'organize',
                options: { excludeByName: { Time: true, Value: true, __name__: true, alertstate: true, job: true, instance: true } },
              }] }),
      g.panel('bargauge', 'Biggest 24h gainers', 'The ten markets with the largest 24h price increase, as reported by the source.',
              'percentunit', g.pos(0, 12, 8, 10),
              [g.target('topk(10, ' + m('crypto_market_price_change_ratio_24h') + ')', '{{exchange}} {{pair}}', instant=true)], options=bar),
      g.panel('bargauge', 'Biggest 24h losers', 'The ten markets with the largest 24h price decrease, as reported by the source.',
              'percentunit', g.pos(8, 12, 8, 10),
              [g.target('bottomk(10, ' + m('crypto_market_price_change_ratio_24h') + ')', '{{exchange}} {{pair}}', instant=true)], options=bar),
    ]
    + when(cfg.crossExchange.enabled, [
      g.panel('bargauge', 'Largest price divergence across exchanges',
              "How far each exchange's price is from the median of all exchanges quoting the same pair (pairs quoted by at least " + cfg.divergence.minExchanges + ' exchanges). The CryptoMarketPriceDivergence alert fires beyond ' + u.percent(cfg.divergence.ratio) + '.',
              'percentunit', g.pos(16, 12, 8, 10),
              [g.target('topk(10, abs(' + m('market:' + P + ':divergence_ratio') + ') and on(pair) ' + u.select(cfg, 'pair:' + P + ':exchanges') + ' >= ' + cfg.divergence.minExchanges + ')', '{{exchange}} {{pair}}', instant=true)],
              options=bar),
      g.panel('timeseries', 'Price divergence from the cross-exchange median',
              "Ratio of each selected market's price to the median price of its pair across exchanges, minus one.",
              'percentunit', g.pos(0, 22, 12, 9), [g.target(m('market:' + P + ':divergence_ratio'), '{{exchange}} {{pair}}')]),
    ])
    + [
      g.panel('timeseries', '24h USD volume by exchange',
              'Sum of the 24h USD volume of the selected markets, per exchange (markets whose source reports USD volume).',
              'currencyUSD', g.pos(12, 22, 12, 9), [g.target('sum by (exchange) (' + m(cfg.metrics.volume_usd.name) + ')', '{{exchange}}')]),
    ]
  );

local exporter(cfg) =
  local sel(name, source=true) =
    name + '{' + std.join(', ', [cfg.exporterSelector, 'instance=~"$instance"'] + (if source then ['source=~"$source"'] else [])) + '}';
  local rate(name) = 'rate(' + sel(name) + '[$__rate_interval])';
  g.dashboard(
    cfg,
    'exporter',
    'Crypto markets: exporter health',
    'The exporter itself: polls and failures, upstream latency, credits and rate limiting, markets exported and scrape cost.',
    [
      g.queryVariable('instance', 'Instance', 'label_values(crypto_market_exporter_build_info{' + cfg.exporterSelector + '}, instance)', true, { text: 'All', value: '$__all' }),
      g.queryVariable('source', 'Source', 'label_values(' + sel('crypto_market_exporter_up', source=false) + ', source)', true, { text: 'All', value: '$__all' }),
    ],
    [
      g.panel('stat', 'Sources up', '1 when the last poll of the source succeeded.', 'none', g.pos(0, 0, 6, 4),
              [g.target(sel('crypto_market_exporter_up'), '{{source}}', instant=true)]),
      g.panel('stat', 'Markets exported', 'Markets in the last successful poll, after filters and the cap.', 'none', g.pos(6, 0, 6, 4),
              [g.target(sel('crypto_market_exporter_markets'), '{{source}}', instant=true)]),
      g.panel('stat', 'Data age', 'Time since the last successful poll of each source.', 's', g.pos(12, 0, 6, 4),
              [g.target('time() - ' + sel('crypto_market_exporter_last_success_timestamp_seconds'), '{{source}}', instant=true)]),
      g.panel('stat', 'Next poll in', 'Delay before the next poll after credit pacing, Retry-After and backoff.', 's', g.pos(18, 0, 6, 4),
              [g.target(sel('crypto_market_exporter_next_poll_delay_seconds'), '{{source}}', instant=true)]),
      g.panel('timeseries', 'Polls by result', 'Polls per second, successful and failed.', 'reqps', g.pos(0, 4, 12, 8),
              [g.target('sum by (source, result) (' + rate('crypto_market_exporter_polls_total') + ')', '{{source}} {{result}}')]),
      g.panel('timeseries', 'Poll failures by reason', 'Failed polls per second by bounded reason (timeout, connect, rate_limited, http_status, ...).', 'reqps', g.pos(12, 4, 12, 8),
              [g.target('sum by (source, reason) (' + rate('crypto_market_exporter_poll_failures_total') + ')', '{{source}} {{reason}}')]),
      g.panel('timeseries', 'Upstream latency', 'Median and 95th percentile of upstream request duration, body included.', 's', g.pos(0, 12, 12, 8), [
        g.target('histogram_quantile(' + q[0] + ', sum by (source, le) (' + rate('crypto_market_exporter_upstream_request_duration_seconds_bucket') + '))', '{{source}} ' + q[1])
        for q in [['0.5', 'p50'], ['0.95', 'p95']]
      ]),
      g.panel('timeseries', 'Rate-limiter wait', 'Share of time spent waiting on the outbound rate limiter (seconds waited per second).', 'percentunit', g.pos(12, 12, 12, 8),
              [g.target('sum by (source) (' + rate('crypto_market_exporter_rate_limiter_wait_seconds_total') + ')', '{{source}}')]),
      g.panel('timeseries', 'API credits', 'Credits left until the daily reset, and what one poll costs (Cryptowatch).', 'none', g.pos(0, 20, 12, 8), [
        g.target(sel('crypto_market_exporter_credits_remaining'), '{{source}} remaining'),
        g.target(sel('crypto_market_exporter_credits_cost'), '{{source}} cost per poll'),
      ]),
      g.panel('timeseries', 'Rejected values and skipped markets', 'Values rejected by validation per second by reason, and markets without trades (no price gauges).', 'short', g.pos(12, 20, 12, 8), [
        g.target('sum by (source, reason) (' + rate('crypto_market_exporter_values_rejected_total') + ')', '{{source}} rejected {{reason}}'),
        g.target(sel('crypto_market_exporter_markets_no_trades'), '{{source}} no trades'),
      ]),
      g.panel('timeseries', 'Scrape duration', 'How long Prometheus takes to scrape the exporter.', 's', g.pos(0, 28, 12, 8),
              [g.target(sel('scrape_duration_seconds', source=false), '{{instance}}')]),
      g.panel('timeseries', 'Samples per scrape', 'Series exposed by the exporter per scrape.', 'short', g.pos(12, 28, 12, 8),
              [g.target(sel('scrape_samples_scraped', source=false), '{{instance}}')]),
      g.panel('timeseries', 'Full refresh: duration and requests',
              'Wall time of the last successful poll of each source (every request of a full refresh, rate-limiter waits included) and how many upstream requests it took. For Coinbase this is one request per product under the quota: when the duration nears the poll interval, polls run back to back; narrow the pairs or lengthen the interval.',
              's', g.pos(0, 36, 12, 8), [
                g.target(sel('crypto_market_exporter_last_poll_duration_seconds'), '{{source}} duration'),
                g.target(sel('crypto_market_exporter_last_poll_requests'), '{{source}} requests'),
              ], overrides=[{
                matcher: { id: 'byFrameRefID', options: 'B' },
                properties: [{ id: 'unit', value: 'short' }, { id: 'custom.axisPlacement', value: 'right' }],
              }]),
    ]
  );

{
  // uid -> dashboard
  all(cfg):: {
    [d.uid]: d
    for d in [overview(cfg), detail(cfg), exporter(cfg)]
  },
}
