// The crypto-market mixin: recording rules, alerts and Grafana dashboards from one
// parametrised definition (config.libsonnet). Import it and override `_config`:
//
//   local mixin = (import 'mixin.libsonnet') + { _config+:: { spike+: { factor: 4 } } };
//   { 'alerts.yml': std.manifestYamlDoc(mixin.prometheusAlerts) }
//
// Layout: config.libsonnet (every knob, documented), rules.libsonnet (recording
// rules), alerts.libsonnet (alerts), dashboards/ (Grafana), lib/ (selectors and pair
// splits, YAML output), variants/ (the large-scale configuration), render.jsonnet
// (the files checked in; run ./render).
local alerts = import 'alerts.libsonnet';
local dashboards = import 'dashboards/dashboards.libsonnet';
local rules = import 'rules.libsonnet';

local strip(groups) = [{ [k]: g[k] for k in std.objectFields(g) if k != 'split' } for g in groups];

(import 'config.libsonnet') + {
  // The config as plain data: C++ jsonnet evaluates an inherited field (`metrics+:`)
  // again on every access, and the rules read it thousands of times.
  local cfg = std.parseJson(std.manifestJsonEx(self._config, '')),
  local root = self,
  // With the split each group keeps: which file it is rendered into.
  recordingGroups:: rules.recordingGroups(cfg),
  alertingGroups:: alerts.alertingGroups(cfg),
  shardAlertingGroups:: alerts.shardAlertingGroups(cfg),

  prometheusRules:: { groups: strip(root.recordingGroups) },
  prometheusAlerts:: { groups: strip(root.alertingGroups) },
  prometheusShardAlerts:: { groups: strip(root.shardAlertingGroups) },
  grafanaDashboards:: dashboards.all(cfg),
}
