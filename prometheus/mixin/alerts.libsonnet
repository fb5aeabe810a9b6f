// Alerting rules: CamelCase with the CryptoMarket prefix, `severity`, a fixed
// `summary`, a templated `description`, `runbook_url` (set once, below) and
// `dashboard_url`. Thresholds and why: docs/rules.md; what to do: docs/runbook.md.
local u = import 'lib/util.libsonnet';

{
  alertingGroups(cfg)::
    local splits = u.splits(cfg);
    local dashboard(key, vars='') =
      cfg.grafanaUrl + '/d/' + cfg.dashboardUids[key] + '/' + cfg.dashboardUids[key] + vars;
    local withRunbook(rule) = rule {
      annotations+: { runbook_url: cfg.runbookUrl + '#' + std.asciiLower(rule.alert) },
    };
    // Evaluates to the first sample's value of a query inside a template.
    local lookup(fmt, args, humanize=true) =
      '{{ with printf "' + fmt + '" ' + args + ' | query }}{{ . | first | value'
      + (if humanize then ' | humanize' else '') + ' }}{{ end }}';

    local spikeGroups(key) =
      local m = cfg.metrics[key];
      local M = m.name;
      local avg = u.market(cfg, key, 'avg1h');
      local minSamples = std.ceil(cfg.spike.baselineMinutes * 60 / cfg.scrapeIntervalSeconds);
      assert m.avg1h : 'spike.metrics has %s, whose avg1h tier is off' % key;
      [
        {
          name: 'crypto-market-' + m.short + '-alerts' + s.suffix,
          interval: cfg.intervals.fast,
          split: s.name,
          local sel(name) = u.select(cfg, name, s),
          // The guards: recorded series, or the same statistic computed here.
          local guard(op, fn) =
            if cfg.spike.recordGuards then sel(u.market(cfg, key, op))
            else fn + '_over_time(' + sel(M) + '[1h])',
          rules: [{
            alert: 'CryptoMarketSpike',
            // The value is the ratio to the 1h average.
            expr: sel(M) + ' / ' + sel(avg) + ' > ' + cfg.spike.factor + '\n'
                  + 'and ' + guard('count1h', 'count') + ' >= ' + minSamples + '\n'
                  + (if cfg.spike.requireNonZeroBaseline then 'and ' + guard('min1h', 'min') + ' > 0\n' else ''),
            'for': cfg.spike['for'],
            labels: { severity: 'warning', metric: key },
            annotations: {
              // value, ratio and baseline on their own, so that notifications lay them
              // out (and a resolved message can say what they were when it last fired).
              value: lookup(M + "{exchange='%s',pair='%s'}", '$labels.exchange $labels.pair'),
              ratio: '{{ $value | printf "%.2f" }}',
              baseline: lookup(avg + "{exchange='%s',pair='%s'}", '$labels.exchange $labels.pair'),
              summary: "A market's " + m.noun + ' is more than ' + cfg.spike.factor + 'x its 1-hour average.',
              description: 'The ' + m.noun + ' of {{ $labels.pair }} on {{ $labels.exchange }} is '
                           + lookup(M + "{exchange='%s',pair='%s'}", '$labels.exchange $labels.pair') + ', '
                           + '{{ $value | printf "%.2f" }}x its 1h average of '
                           + lookup(avg + "{exchange='%s',pair='%s'}", '$labels.exchange $labels.pair') + '.',
              dashboard_url: dashboard('detail', '?var-exchange={{ $labels.exchange }}&var-pair={{ $labels.pair }}'),
            },
          }],
        }
        for s in splits
      ];

    local divergenceGroups =
      local P = cfg.metrics.price.name;
      if !cfg.crossExchange.enabled then [] else [
        {
          name: 'crypto-market-divergence-alerts' + s.suffix,
          interval: cfg.intervals.fast,
          split: s.name,
          local sel(name) = u.select(cfg, name, s),
          rules: [{
            alert: 'CryptoMarketPriceDivergence',
            expr: 'abs(' + sel('market:' + P + ':divergence_ratio') + ') > ' + std.format('%.2f', cfg.divergence.ratio) + '\n'
                  + 'and on(pair) ' + sel('pair:' + P + ':exchanges') + ' >= ' + cfg.divergence.minExchanges + '\n',
            'for': cfg.divergence['for'],
            labels: { severity: 'warning' },
            annotations: {
              value: '{{ $value | humanizePercentage }}',
              summary: "One exchange's price strays more than " + u.percent(cfg.divergence.ratio) + ' from the other exchanges.',
              description: '{{ $labels.pair }} on {{ $labels.exchange }} is {{ $value | humanizePercentage }} away from the median of '
                           + lookup('pair:' + P + ":exchanges{pair='%s'}", '$labels.pair', humanize=false)
                           + ' exchanges ('
                           + lookup('pair:' + P + ":median{pair='%s'}", '$labels.pair') + ').',
              dashboard_url: dashboard('overview', '?var-pair={{ $labels.pair }}'),
            },
          }],
        }
        for s in splits
      ];

    local h = cfg.health;
    local up = 'up{' + cfg.exporterSelector + '}';
    local healthGroup = {
      name: 'crypto-market-exporter-health',
      interval: cfg.intervals.fast,
      split: '',
      rules: [
        {
          alert: 'CryptoMarketExporterDown',
          expr: up + ' == 0 or absent(' + up + ')',
          'for': h.downFor,
          labels: { severity: 'critical' },
          annotations: {
            summary: 'Prometheus cannot scrape the crypto market exporter.',
            description: '{{ with $labels.instance }}{{ . }}{{ else }}The exporter{{ end }} has not been scraped successfully for ' + u.humanDuration(h.downFor) + '; market data and alerts are blind.',
          },
        },
        {
          alert: 'CryptoMarketUpstreamFailing',
          expr: 'crypto_market_exporter_up == 0',
          'for': h.upstreamFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Every poll of a market data source failed for ' + u.humanDuration(h.upstreamFailingFor) + '.',
            description: 'Source {{ $labels.source }} on {{ $labels.instance }} has not had a successful poll for ' + u.humanDuration(h.upstreamFailingFor) + '; it serves its last good data. Failures by reason are on the exporter dashboard.',
          },
        },
        {
          alert: 'CryptoMarketStaleQuotes',
          expr: 'time() - crypto_market_exporter_last_success_timestamp_seconds > ' + h.staleSeconds,
          'for': h.staleFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'The market data served is older than ' + (h.staleSeconds / 60) + ' minutes.',
            description: 'The last successful poll of {{ $labels.source }} on {{ $labels.instance }} was {{ $value | humanizeDuration }} ago; prices on dashboards and in alerts are stale.',
          },
        },
        {
          alert: 'CryptoMarketCreditsLow',
          expr: 'crypto_market_exporter_credits_remaining / (crypto_market_exporter_credits_cost > 0) < ' + h.creditsPolls,
          'for': h.creditsFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Fewer than ' + h.creditsPolls + ' upstream API calls are left before the credit reset.',
            description: '{{ $labels.source }} on {{ $labels.instance }} can afford {{ $value | printf "%.0f" }} more polls before its credits reset; polls are being spaced out and data will go stale.',
          },
        },
      ],
    };
    local health = healthGroup {
      rules: [r { annotations+: { dashboard_url: dashboard('exporter') } } for r in super.rules],
    };

    local all =
      std.flattenArrays([spikeGroups(k) for k in cfg.spike.metrics])
      + divergenceGroups + [health];
    // runbook_url on every alert, in one place.
    [g { rules: [withRunbook(r) for r in g.rules] } for g in all],

  // The global ruler's extra group when scrape shards feed one TSDB
  // (prometheus/rules-sharded). One absent() per shard, so the alert carries the
  // dead shard's label and stays firing for as long as it is dead (an "is it
  // missing compared with an hour ago" form would resolve by itself).
  shardAlertingGroups(cfg)::
    local s = cfg.scrapeShards;
    local absent(i) =
      'absent(up{' + cfg.exporterSelector + ',' + s.label + '="' + i + '"})';
    if s.count < 2 then [] else [{
      name: 'crypto-market-scrape-shards',
      interval: cfg.intervals.fast,
      split: '',
      rules: [{
        alert: 'CryptoMarketScrapeShardDown',
        expr: std.join('\nor ', [absent(i) for i in std.range(0, s.count - 1)]) + '\n',
        'for': s.downFor,
        labels: { severity: 'critical' },
        annotations: {
          summary: 'A scrape shard has sent no samples.',
          description: 'Scrape shard {{ $labels.' + s.label + ' }} of ' + s.count + ' has written no `up` series for ' + u.humanDuration(s.downFor) + ': the markets of its slice have no data, no rules and no alerts.',
          runbook_url: cfg.runbookUrl + '#cryptomarketscrapesharddown',
          dashboard_url: cfg.grafanaUrl + '/d/' + cfg.dashboardUids.exporter + '/' + cfg.dashboardUids.exporter,
        },
      }],
    }],
}
