// Every knob of the crypto-market mixin, defined once. Override any of them with
//
//   (import 'mixin.libsonnet') + { _config+:: { spike+: { factor: 4 } } }
//
// and render with prometheus/mixin/render (docs/rules.md, "Customise"). The defaults
// are the lean deployment: what an alert, a dashboard panel or the rank reads, for
// up to a few thousand markets on one Prometheus. variants/large.libsonnet is the
// layout measured at 14,462 markets.
{
  _config+:: {
    // ---- Selectors ----------------------------------------------------------------
    // The exporter's scrape job. `up` is shared by every target, so the
    // ExporterDown alert and the exporter dashboard select on it.
    exporterSelector: 'job="crypto-market-exporter"',
    // An extra matcher for the market series (crypto_market_*) and everything
    // recorded from them, e.g. 'job="crypto-market-exporter"' when another job
    // exports the same names, or 'exchange!="demo"'. Empty: all of them (the names
    // are this exporter's own).
    marketSelector: '',

    // ---- Scrape and evaluation -------------------------------------------------------
    // Prometheus's scrape interval for the exporter (prometheus/prometheus.yml). The
    // spike alert's sample-count guard is derived from it.
    scrapeIntervalSeconds: 60,
    // Rule-group intervals: `fast` for what the alerts read every minute (the 1h
    // baselines of alerted metrics, the cross-exchange view), `slow` for the rest
    // (rollups, 24h statistics, ranks), `hourly` for the hourly 24h totals.
    intervals: { fast: '1m', slow: '5m', hourly: '1h' },

    // ---- Metrics and their tiers -----------------------------------------------------
    // Which statistics are recorded per metric. Tiers:
    //   avg1h          the 1h average (the spike alert's baseline, dashboards)
    //   extremes1h     the 1h high and standard deviation (max1h, stddev1h)
    //   stats24h       5-minute rollups, and the exact 24h count/mean/stddev from them
    //   volatility24h  stddev24h / avg24h (needs stats24h)
    // The rank and the percentile read the price's volatility; the spike alert reads
    // avg1h of each metric in spike.metrics.
    metrics: {
      price: {
        name: 'crypto_market_price',
        short: 'price',  // group names and the alert's `metric` label
        noun: 'price',  // in alert texts
        avg1h: true,
        extremes1h: false,
        stats24h: true,
        volatility24h: true,
      },
      volume: {
        name: 'crypto_market_volume_24h',
        short: 'volume',
        noun: '24h base volume',
        avg1h: true,
        extremes1h: false,
        stats24h: false,
        volatility24h: false,
      },
      volume_quote: {
        name: 'crypto_market_volume_quote_24h',
        short: 'volume-quote',
        noun: '24h quote volume',
        avg1h: true,
        extremes1h: false,
        stats24h: false,
        volatility24h: false,
      },
      volume_usd: {
        name: 'crypto_market_volume_usd_24h',
        short: 'volume-usd',
        noun: '24h USD volume',
        avg1h: false,
        extremes1h: false,
        stats24h: false,
        volatility24h: false,
      },
    },
    // The order groups are rendered in (and evaluated in by promtool's tests).
    metricOrder: ['price', 'volume', 'volume_quote', 'volume_usd'],

    // ---- The spike alert (CryptoMarketSpike) -----------------------------------------
    spike: {
      // Fires when a metric exceeds `factor` times its 1h average: the product's
      // definition. A 2.5x move does not fire at 3.
      factor: 3,
      // Metrics with a spike alert (one rule each, label metric=<key>). Each needs
      // the avg1h tier.
      metrics: ['price', 'volume', 'volume_quote'],
      // Minutes of samples the hour must hold before its average is trusted, so a new
      // market, or one back from a gap, is not judged against a partial baseline.
      // The guard counts samples: baselineMinutes * 60 / scrapeIntervalSeconds.
      baselineMinutes: 30,
      // No zero in the hour: a 0 means "no data" for these gauges, never a baseline.
      requireNonZeroBaseline: true,
      // One confirmation, so a single bad sample does not page.
      'for': '1m',
      // Record the guards (market:M:count1h, market:M:min1h) as series of their own,
      // or compute them inside the alert. Recording pays at scale (one cheap group
      // per statistic, split by pair); inline keeps two series per market out of
      // the TSDB.
      recordGuards: false,
    },

    // ---- The divergence alert (CryptoMarketPriceDivergence) --------------------------
    divergence: {
      ratio: 0.10,  // |price / cross-exchange median - 1|
      minExchanges: 3,  // with fewer, one outlier drags the median
      'for': '5m',  // skips transient arbitrage gaps
    },

    // ---- Exporter health alerts ------------------------------------------------------
    health: {
      downFor: '5m',
      upstreamFailingFor: '15m',
      staleSeconds: 900,
      staleFor: '1m',
      creditsPolls: 50,
      creditsFor: '15m',
    },

    // ---- 24h statistics ----------------------------------------------------------------
    stats24h: {
      // false: every `slow` interval, the 24h statistics sum the last 24 hours of
      //   5-minute rollups directly (one group per metric; fresh to 5 minutes).
      // true: hourly groups sum the rollups of the last 24 whole clock hours, one
      //   total each, and the statistics read the totals of the previous clock hour
      //   (one to two hours old, but no group reads 24h more than once an hour: the
      //   layout that keeps every group under a second at 14,000 markets).
      hourlyTotals: false,
      // Record market:M:count24h (samples in the window). No panel or alert reads
      // it; the mean and deviation then divide by the sum of the rollup counts.
      recordCount: false,
    },

    // ---- Rank and percentile of price volatility -------------------------------------
    rank: {
      enabled: true,
      metric: 'price',
      // Exact competition rank for the top K; every other market gets K + 1. Cost
      // grows with K (one comparison per k), not with the number of markets.
      topK: 25,
    },
    percentile: {
      enabled: true,
      metric: 'price',
      // Grid points: the 1/grid ... (grid-1)/grid quantiles of all markets'
      // volatility; the percentile is the share of them a market reaches. Must
      // divide 100.
      grid: 10,
    },
    crossExchange: {
      // Per-pair median and number of exchanges, and each market's divergence
      // ratio: what the divergence alert and panels read.
      enabled: true,
    },

    // ---- Scale: splitting per-market groups by pair ----------------------------------
    // Rules in a group run one after another and one evaluation reads every series
    // its selectors match. At 10,000+ markets, split every per-market group into
    // this many groups by the pair's first character (1 = none). A number splits the
    // characters in contiguous classes of about equal weight (pairFirstCharWeights);
    // a list gives the classes (regex character classes without brackets, e.g.
    // ['0-9a', 'b', 'c-d']), and one more group takes every character none of them
    // does. With splits, each split's groups go into a file of their own, so no
    // rules file defines a name twice.
    pairSplits: 1,
    // How many markets' pairs start with each character, from the 14,462-market
    // Cryptowatch recording (tests/fixtures/cryptowatch); digits count as one class.
    pairFirstCharWeights: {
      '0-9': 61,
      a: 1339, b: 1124, c: 799, d: 685, e: 750, f: 526, g: 719, h: 292, i: 360,
      j: 101, k: 427, l: 715, m: 776, n: 362, o: 445, p: 558, q: 124, r: 522,
      s: 1252, t: 519, u: 384, v: 211, w: 522, x: 584, y: 95, z: 210,
    },

    // ---- The rule engine (docs/scaling.md, "MetricsQL and vmalert") --------------------
    // 'prometheus': Prometheus, and the rulers built on its engine (Thanos, Mimir).
    //   A rule reads what an earlier rule of its group recorded at the same
    //   evaluation; other groups' results are read as they stand.
    // 'vmalert': VictoriaMetrics. vmalert writes results asynchronously, so a rule
    //   never reads its own group's results (each expression is inlined instead), and
    //   evaluations are aligned across groups, where VictoriaMetrics' lookback
    //   (t - step, t] would make a read of another group's result race with that
    //   group's write. Such reads take the last value written before this
    //   evaluation, last_over_time(x[<interval>] offset 1ms): deterministic on any
    //   number of vmalert replicas, one interval later than with Prometheus.
    ruler: 'prometheus',

    // ---- Scale-out: scrape shards (docs/scaling.md) ------------------------------------
    // With N >= 2 scrape shards (vmagent or Prometheus agents, each scraping one
    // slice, /metrics?shard=i&shards=N, and labelling its series shardLabel="i"),
    // the global ruler also loads prometheus/rules-sharded: CryptoMarketScrapeShardDown
    // fires when a shard's `up` series is absent (a dead scraper writes no up=0; its
    // slice just goes quiet). 0 or 1: no shards, no such alert.
    scrapeShards: { count: 2, label: 'shard', downFor: '5m' },

    // ---- Links -----------------------------------------------------------------------
    // Alerts carry runbook_url (<runbookUrl>#<alertname, lower case>) and
    // dashboard_url (<grafanaUrl>/d/<uid>/<uid>).
    runbookUrl: 'https://github.com/crypto-market-exporter/crypto-market-exporter/blob/main/docs/runbook.md',
    grafanaUrl: 'http://localhost:3000',
    dashboardUids: {
      overview: 'crypto-market-overview',
      detail: 'crypto-market-detail',
      exporter: 'crypto-market-exporter',
    },
    // The Grafana datasource the dashboards default to (its uid in
    // grafana/provisioning/datasources); a variable lets users pick another.
    datasourceUid: 'prometheus',
    dashboardTags: ['crypto-market'],
    dashboardRefresh: '1m',
  },
}
