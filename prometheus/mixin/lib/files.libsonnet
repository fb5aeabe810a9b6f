// The rule files of one configuration of the mixin, as render.jsonnet writes them
// (also used by tests/it/mixin.rs to render every config switch).
local yaml = {
  manifest(value, header):: { format: 'yaml', header: header, value: value },
};

local header(variant, what) = std.join('\n', [
  'Generated from prometheus/mixin (' + variant + '): do not edit. Change the mixin and',
  'run prometheus/mixin/render. ' + what + ' Definitions and reasoning: docs/rules.md.',
]);
local strip(groups) = [{ [k]: g[k] for k in std.objectFields(g) if k != 'split' } for g in groups];

// Without splits: one rules file and one alerts file. With splits: the groups of each
// split in a file of their own (so that no file defines a name twice and promtool's
// duplicate lint holds), the rest in the two files.
{
  header:: header,
  ruleFiles(mixin, dir, variant)::
    local all = mixin.recordingGroups + mixin.alertingGroups;
    local splitNames = std.uniq(std.sort([g.split for g in all if g.split != '']));
  {
    [dir + '/crypto-market.rules.yml']: yaml.manifest(
      { groups: strip([g for g in mixin.recordingGroups if g.split == '']) },
      header(variant, 'Recording rules.')
    ),
    [dir + '/crypto-market.alerts.yml']: yaml.manifest(
      { groups: strip([g for g in mixin.alertingGroups if g.split == '']) },
      header(variant, 'Alerting rules.')
    ),
  } + {
    [dir + '/crypto-market.pairs-' + s + '.yml']: yaml.manifest(
      { groups: strip([g for g in all if g.split == s]) },
      header(variant, 'The recording and alerting rules of the pairs of split ' + s + '.')
    )
    for s in splitNames
  },
}
