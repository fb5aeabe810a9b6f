// Grafana building blocks that carry the dashboard conventions once: every panel on
// the datasource variable, with a unit and a description; provisioned dashboards not
// editable; ids and refIds numbered here, not by hand.
local ds = { type: 'prometheus', uid: '${datasource}' };

{
  target(expr, legend='', instant=false, format='time_series'):: {
    datasource: ds,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
  },

  panel(type, title, description, unit, gridPos, targets, overrides=[], options={}, defaults={}, extra={})::
    assert std.length(description) > 10 : 'panel %s: no description' % title;
    assert std.length(targets) > 0 : 'panel %s: no query' % title;
    {
      type: type,
      title: title,
      description: description,
      datasource: ds,
      gridPos: gridPos,
      targets: [targets[i] { refId: std.char(65 + i) } for i in std.range(0, std.length(targets) - 1)],
      fieldConfig: { defaults: { unit: unit } + defaults, overrides: overrides },
      options: options,
    } + extra,

  pos(x, y, w, h):: { x: x, y: y, w: w, h: h },

  datasourceVariable(cfg):: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    current: { text: 'Prometheus', value: cfg.datasourceUid },
    hide: 0,
    refresh: 1,
    options: [],
  },

  queryVariable(name, label, query, multi, current):: {
    name: name,
    label: label,
    type: 'query',
    datasource: ds,
    query: { query: query, refId: name + '-var' },
    refresh: 2,
    sort: 1,
    multi: multi,
    includeAll: multi,
    hide: 0,
    options: [],
    current: current,
  } + (if multi then { allValue: '.*' } else {}),

  dashboard(cfg, key, title, description, variables, panels, annotations=[]):: {
    uid: cfg.dashboardUids[key],
    title: title,
    description: description,
    editable: false,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    tags: cfg.dashboardTags,
    time: { from: 'now-24h', to: 'now' },
    refresh: cfg.dashboardRefresh,
    timezone: '',
    templating: { list: [$.datasourceVariable(cfg)] + variables },
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }] + annotations,
    },
    links: [{
      title: 'Crypto markets',
      type: 'dashboards',
      tags: cfg.dashboardTags,
      asDropdown: true,
      icon: 'external link',
      includeVars: false,
      keepTime: true,
      targetBlank: false,
      tooltip: '',
    }],
    panels: [panels[i] { id: i + 1 } for i in std.range(0, std.length(panels) - 1)],
  },
}
