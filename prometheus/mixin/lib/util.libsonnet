// Selectors, pair splits and formatting shared by the rules, alerts and dashboards.
local ranges = {
  // '0-9ac-d' -> [[48, 57], [97, 97], [99, 100]] (code points, inclusive).
  parse(class)::
    local c = std.stringChars(class);
    local n = std.length(c);
    local go(i, acc) =
      if i >= n then acc
      else if i + 2 < n && c[i + 1] == '-' then go(i + 3, acc + [[std.codepoint(c[i]), std.codepoint(c[i + 2])]])
      else go(i + 1, acc + [[std.codepoint(c[i]), std.codepoint(c[i])]]);
    go(0, []),
  // Sorted, with touching or overlapping ranges joined.
  merge(rs)::
    std.foldl(
      function(acc, r)
        if std.length(acc) > 0 && r[0] <= acc[std.length(acc) - 1][1] + 1 then
          acc[:std.length(acc) - 1] + [[acc[std.length(acc) - 1][0], std.max(r[1], acc[std.length(acc) - 1][1])]]
        else acc + [r],
      std.sort(rs, function(r) r[0]),
      []
    ),
  render(rs)::
    std.join('', [
      if r[0] == r[1] then std.char(r[0]) else std.char(r[0]) + '-' + std.char(r[1])
      for r in rs
    ]),
};

local units = ['0-9'] + [std.char(97 + i) for i in std.range(0, 25)];

// `n` contiguous classes of about equal weight over `units`; the last is the rest.
local balanced(n, weights) =
  local total = std.foldl(function(a, u) a + weights[u], units, 0);
  local state = std.foldl(
    function(s, i)
      local u = units[i];
      local cur = s.cur + [u];
      local cum = s.cum + weights[u];
      local closed = std.length(s.groups);
      local left = std.length(units) - i - 1;  // units after this one
      local want = n - 1 - closed;  // explicit classes still to close
      if want > 0 && (cum >= total * (closed + 1) / n || left < want + 1)
      then { groups: s.groups + [cur], cur: [], cum: cum }
      else { groups: s.groups, cur: cur, cum: cum },
    std.range(0, std.length(units) - 1),
    { groups: [], cur: [], cum: 0 }
  );
  [ranges.render(ranges.merge(std.flattenArrays([ranges.parse(u) for u in g]))) for g in state.groups];

{
  ranges:: ranges,

  // The explicit classes of a pairSplits setting: [] for none.
  classes(cfg)::
    if std.type(cfg.pairSplits) == 'array' then cfg.pairSplits
    else if cfg.pairSplits <= 1 then []
    else balanced(cfg.pairSplits, cfg.pairFirstCharWeights),

  // The splits: [{ name, suffix, matcher }]. Without splits one entry with an empty
  // suffix and no matcher. The last split takes every first character none of the
  // classes does; it is a positive matcher with a negated class on purpose: for a
  // negative matcher (pair!~"[...]") Prometheus gathers the postings of every pair
  // it excludes, and those groups took two to three times as long
  // (docs/performance.md).
  splits(cfg)::
    local classes = $.classes(cfg);
    local name(class) =
      local c = std.stringChars(class);
      if std.length(c) == 1 then c[0] else c[0] + '-' + c[std.length(c) - 1];
    // (Built from locals: C++ jsonnet evaluates an object's field again on every
    // access, a local only once.)
    local union = ranges.render(ranges.merge(std.flattenArrays([ranges.parse(c) for c in classes])));
    local split(name, matcher) = { name: name, suffix: '-pairs-' + name, matcher: matcher };
    if std.length(classes) == 0 then [{ name: '', suffix: '', matcher: '' }]
    else [split(name(c), 'pair=~"[' + c + '].*"') for c in classes]
         + [split('rest', 'pair=~"[^' + union + '].*"')],

  // `metric{matchers}` with the market selector and a split's matcher.
  select(cfg, metric, split={ matcher: '' }, extra=[])::
    local m = std.filter(function(x) x != '', [cfg.marketSelector, split.matcher] + extra);
    if std.length(m) == 0 then metric else metric + '{' + std.join(', ', m) + '}',

  // Recorded series names: level:metric:operations.
  market(cfg, key, op):: 'market:' + cfg.metrics[key].name + ':' + op,

  // '5m' -> '10m'.
  twice(d):: (2 * std.parseInt(std.substr(d, 0, std.length(d) - 1))) + d[std.length(d) - 1],

  // A rule's read of what another group recorded. With ruler 'vmalert' (config.libsonnet):
  // the last value written before this evaluation, within two of that group's
  // intervals (one missed evaluation is bridged); with Prometheus, as it stands.
  prior(cfg, selector, interval)::
    if cfg.ruler == 'vmalert'
    then 'last_over_time(' + selector + '[' + $.twice(interval) + '] offset 1ms)'
    else selector,

  // '5m' -> '5 minutes', '1h' -> '1 hour': durations in alert texts.
  humanDuration(d)::
    local n = std.parseInt(std.substr(d, 0, std.length(d) - 1));
    local unit = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[d[std.length(d) - 1]];
    n + ' ' + unit + (if n == 1 then '' else 's'),

  // ['a', 'b', 'c'] -> 'a, b or c'.
  orList(xs)::
    local n = std.length(xs);
    if n <= 1 then std.join('', xs) else std.join(', ', xs[:n - 1]) + ' or ' + xs[n - 1],

  // 0.1 -> '0.10' style percentages and ratios in texts.
  percent(x):: std.format('%d%%', std.floor(x * 100 + 0.5)),
}
