// Every file rendered from the mixin, by path from the repository root:
// { path: { format: 'yaml' | 'json', header, value } }. ./render writes them (jsonnet
// computes the data; the formatting is render's, because string work in C++ jsonnet
// costs seconds per 100 KB). .ci/test renders into a scratch directory and fails on
// any difference with the files checked in.
local yaml = {
  manifest(value, header):: { format: 'yaml', header: header, value: value },
};
// render --override CODE: the user's changes, merged before anything is rendered.
local base = (import 'mixin.libsonnet') + std.extVar('override');
local large = base + (import 'variants/large.libsonnet');

local files = import 'lib/files.libsonnet';
local ruleFiles = files.ruleFiles;
local header = files.header;

local json(x) = { format: 'json', header: '', value: x };
// A value written as indented JSON text inside a YAML file.
local jsonText(x) = { '$json': x };

ruleFiles(base, 'prometheus/rules', 'default')
+ ruleFiles(large, 'prometheus/rules-large', 'variants/large.libsonnet')
// The default for vmalert: no rule reads its own group's results (docs/scaling.md).
+ ruleFiles(base { _config+:: { ruler: 'vmalert' } }, 'prometheus/rules-vmalert', "ruler: 'vmalert'")
+ {
  // The global ruler's extra alert when scrape shards feed one TSDB (docs/scaling.md).
  'prometheus/rules-sharded/crypto-market.shards.yml': yaml.manifest(
    base.prometheusShardAlerts,
    header('default', 'Scrape-shard alerts for the global ruler, with prometheus/rules.')
  ),
}
+ {
  ['grafana/dashboards/' + uid + '.json']: json(base.grafanaDashboards[uid])
  for uid in std.objectFields(base.grafanaDashboards)
}
+ {
  // Every metric's rollups in one flat group, for backfilling the history the 24h
  // statistics read (docs/performance.md, rule evaluation).
  'benches/load/rollup-backfill.yml':
    local cfg = std.parseJson(std.manifestJsonEx(large._config, ''));
    local rules = import 'rules.libsonnet';
    yaml.manifest({
      groups: [{
        name: 'rollup-5m',
        interval: cfg.intervals.slow,
        rules: std.flattenArrays([
          rules.rollups(cfg, k, { matcher: '' }, inlineCount=true)
          for k in cfg.metricOrder
          if cfg.metrics[k].stats24h
        ]),
      }],
    }, header('variants/large.libsonnet', 'The rollups, flattened for `promtool tsdb create-blocks-from rules`\n(which evaluates rules one by one, so sumsq5m cannot read count5m).')),
}
+ {
  // The Prometheus Operator's objects: the default rules as a PrometheusRule, the
  // dashboards as a ConfigMap for Grafana's dashboard sidecar (label grafana_dashboard).
  'deploy/kubernetes/base/prometheus-rules.yaml': yaml.manifest({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'crypto-market-exporter',
      labels: { 'app.kubernetes.io/name': 'crypto-market-exporter' },
    },
    spec: { groups: base.prometheusRules.groups + base.prometheusAlerts.groups },
  }, header('default', 'Rules and alerts for the Prometheus Operator.')),
  // The scrape-shard alert for the sharded overlay, for the global ruler.
  'deploy/kubernetes/overlays/sharded/prometheus-rules-sharded.yaml': yaml.manifest({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'crypto-market-exporter-shards',
      labels: { 'app.kubernetes.io/name': 'crypto-market-exporter' },
    },
    spec: base.prometheusShardAlerts,
  }, header('default', 'The scrape-shard alert for the Prometheus Operator (docs/scaling.md).')),
  'deploy/kubernetes/base/grafana-dashboards.yaml': yaml.manifest({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'crypto-market-dashboards',
      labels: { 'app.kubernetes.io/name': 'crypto-market-exporter', grafana_dashboard: '1' },
    },
    data: { [uid + '.json']: jsonText(base.grafanaDashboards[uid]) for uid in std.objectFields(base.grafanaDashboards) },
  }, header('default', "The dashboards, for Grafana's sidecar.")),
}
