//! The mixin (prometheus/mixin) and what it renders, with the real jsonnet and
//! promtool:
//! - the promtool scenarios (prometheus/tests) pass on every rendered variant, with the
//!   evaluation order derived from the rules themselves;
//! - every config switch renders rules that pass `promtool check rules` with the
//!   duplicate lint fatal;
//! - pair splits partition every pair; a threshold change reaches every alert and
//!   panel that uses it; the default stays lean;
//! - the rendered YAML reads back as exactly the data jsonnet computed.
//!
//! That the checked-in files are current is `prometheus/mixin/render --check` (.ci/test).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Evaluates jsonnet code in prometheus/mixin. (Callers are gated on jsonnet being
/// present: `tools_present`.)
fn jsonnet(code: &str) -> Value {
    let mixin = root().join("prometheus/mixin");
    let out = Command::new("jsonnet")
        .arg("-J")
        .arg(&mixin)
        .args(["--ext-code", "override={}"])
        .arg("-e")
        .arg(code)
        .current_dir(&mixin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jsonnet failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rule_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

struct Group {
    name: String,
    records: Vec<String>,
    /// Every expression of the group, records and alerts.
    exprs: Vec<String>,
}

fn groups_of(files: &[PathBuf]) -> Vec<Group> {
    let mut out = Vec::new();
    for f in files {
        for g in yaml_file(f)["groups"].as_array().unwrap() {
            let rules = g["rules"].as_array().unwrap();
            out.push(Group {
                name: g["name"].as_str().unwrap().to_owned(),
                records: rules
                    .iter()
                    .filter_map(|r| r["record"].as_str().map(str::to_owned))
                    .collect(),
                exprs: rules
                    .iter()
                    .map(|r| r["expr"].as_str().unwrap().to_owned())
                    .collect(),
            });
        }
    }
    out
}

/// Metric names (and name prefixes) in a PromQL expression or a series string; a
/// `{__name__=~"market:...:(a|b)5m"}` regex yields its prefix.
fn names_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Recorded names referenced: tokens of the `level:metric:operations` form.
fn recorded_refs(text: &str) -> Vec<String> {
    names_in(text)
        .into_iter()
        .filter(|t| t.matches(':').count() >= 2)
        .collect()
}

/// An evaluation order for promtool: each group after every group whose records it
/// reads (rules within a group see what earlier groups recorded at the same
/// timestamp), otherwise in file order.
fn eval_order(groups: &[Group]) -> Vec<String> {
    let recorder: BTreeMap<&str, Vec<usize>> =
        groups
            .iter()
            .enumerate()
            .fold(BTreeMap::new(), |mut m, (i, g)| {
                for r in &g.records {
                    m.entry(r.as_str()).or_insert_with(Vec::new).push(i);
                }
                m
            });
    let deps: Vec<BTreeSet<usize>> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            g.exprs
                .iter()
                .flat_map(|e| recorded_refs(e))
                // What a group records itself it reads from its own earlier rules
                // (the other splits record the same name for other pairs).
                .filter(|n| !g.records.contains(n))
                .filter_map(|n| recorder.get(n.as_str()))
                .flatten()
                .copied()
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut done = vec![false; groups.len()];
    let mut order = Vec::new();
    while order.len() < groups.len() {
        let next = (0..groups.len())
            .find(|&i| !done[i] && deps[i].iter().all(|&j| done[j]))
            .expect("rule groups depend on each other in a cycle");
        done[next] = true;
        order.push(groups[next].name.clone());
    }
    order
}

/// `# requires: NAME` / `# unless: NAME` comment lines of a scenario file.
fn directives(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// Runs every scenario file of prometheus/tests against a variant: its rule files,
/// its evaluation order, and only the expression tests whose series it records.
/// Returns (files run, expression tests kept, dropped).
fn run_scenarios(variant: &str, dir: &str) -> (usize, usize, usize) {
    let files = rule_files(&root().join(dir));
    let groups = groups_of(&files);
    let recorded: BTreeSet<&str> = groups
        .iter()
        .flat_map(|g| g.records.iter().map(String::as_str))
        .collect();
    let records = |name: &str| recorded.iter().any(|r| r.starts_with(name));
    let order = eval_order(&groups);
    // Removed when the test ends, pass or fail.
    let scratch = crate::harness::TempDir::new(&format!("mixin-scenarios-{variant}"));
    let scratch = &scratch.0;
    let (mut ran, mut kept, mut dropped) = (0, 0, 0);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("prometheus/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file == "compat.test.yml" {
            continue; // its own rule file (.ci/test runs it)
        }
        if directives(&text, "requires").iter().any(|n| !records(n))
            || directives(&text, "unless").iter().any(|n| records(n))
        {
            continue;
        }
        let mut test: Value = serde_saphyr::from_str(&text).unwrap();
        test["rule_files"] = json!(files);
        test["group_eval_order"] = json!(order);
        for case in test["tests"].as_array_mut().unwrap() {
            let Some(exprs) = case
                .get_mut("promql_expr_test")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            exprs.retain(|t| {
                let mut text = t["expr"].as_str().unwrap().to_owned();
                for s in t["exp_samples"].as_array().into_iter().flatten() {
                    text.push(' ');
                    text.push_str(s["labels"].as_str().unwrap_or(""));
                }
                let ok = recorded_refs(&text).iter().all(|n| records(n));
                if ok {
                    kept += 1
                } else {
                    dropped += 1
                }
                ok
            });
        }
        let target = scratch.join(&file);
        // JSON is YAML: promtool reads it as is.
        std::fs::write(&target, serde_json::to_string_pretty(&test).unwrap()).unwrap();
        let out = Command::new("promtool")
            .args(["test", "rules"])
            .arg(&target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{variant}: {file} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    (ran, kept, dropped)
}

#[test]
fn scenarios_pass_on_the_default_rendering() {
    if !crate::common::tools_present(
        "mixin::scenarios_pass_on_the_default_rendering",
        &["promtool"],
    ) {
        return;
    }
    let (ran, kept, dropped) = run_scenarios("default", "prometheus/rules");
    // spike, health, stats (minus the opt-in tiers' checks), stats-24h-rollups.
    assert_eq!(ran, 4, "scenario files run");
    assert!(kept >= 10, "{kept} expression tests kept");
    // The 1h high, deviation and guards, the hourly totals: opt-in in the default.
    assert!(dropped > 0);
}

#[test]
fn scenarios_pass_on_the_large_variant() {
    if !crate::common::tools_present("mixin::scenarios_pass_on_the_large_variant", &["promtool"]) {
        return;
    }
    let (ran, _kept, dropped) = run_scenarios("large", "prometheus/rules-large");
    // spike, health, stats, stats-24h (hourly totals).
    assert_eq!(ran, 4, "scenario files run");
    assert_eq!(dropped, 0, "the large variant records every tier");
}

/// Renders the rule files of `overrides` (jsonnet objects merged into `_config`) in
/// one jsonnet run: { switch: { path: groups } }.
fn render_switches(overrides: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, Value>> {
    let cases: Vec<String> = overrides
        .iter()
        .map(|(name, o)| {
            format!(
                "'{name}': std.mapWithKey(function(p, f) f.value, files.ruleFiles(base + {{ _config+:: {o} }}, '{name}', '{name}'))"
            )
        })
        .collect();
    let code = format!(
        "local files = import 'lib/files.libsonnet'; local base = import 'mixin.libsonnet'; {{ {} }}",
        cases.join(", ")
    );
    serde_json::from_value(jsonnet(&code)).unwrap()
}

const ALL_TIERS: &str = "metrics+: { [k]+: { avg1h: true, extremes1h: true, stats24h: true, volatility24h: true } for k in ['price', 'volume', 'volume_quote', 'volume_usd'] }";

/// Every switch of config.libsonnet, alone and in the large combination.
fn switches() -> Vec<(&'static str, String)> {
    let mut s: Vec<(&'static str, String)> = vec![
        ("default", "{}".into()),
        ("all-tiers", format!("{{ {ALL_TIERS} }}")),
        ("extremes1h", "{ metrics+: { price+: { extremes1h: true } } }".into()),
        ("usd-24h", "{ metrics+: { volume_usd+: { avg1h: true, stats24h: true, volatility24h: true } } }".into()),
        ("no-24h", "{ metrics+: { price+: { stats24h: false, volatility24h: false } }, rank+: { enabled: false }, percentile+: { enabled: false } }".into()),
        ("guards", "{ spike+: { recordGuards: true } }".into()),
        ("no-zero-guard", "{ spike+: { requireNonZeroBaseline: false } }".into()),
        ("hourly", "{ stats24h+: { hourlyTotals: true } }".into()),
        ("count", "{ stats24h+: { recordCount: true } }".into()),
        ("hourly-count", "{ stats24h+: { hourlyTotals: true, recordCount: true } }".into()),
        ("no-rank", "{ rank+: { enabled: false } }".into()),
        ("top10", "{ rank+: { topK: 10 } }".into()),
        ("grid20", "{ percentile+: { grid: 20 } }".into()),
        ("no-percentile", "{ percentile+: { enabled: false } }".into()),
        ("no-cross", "{ crossExchange+: { enabled: false } }".into()),
        ("selector", "{ marketSelector: 'job=\"crypto\"', exporterSelector: 'job=\"crypto\"' }".into()),
        ("intervals", "{ intervals: { fast: '30s', slow: '2m', hourly: '1h' }, scrapeIntervalSeconds: 15 }".into()),
        ("large", "(import 'variants/large.libsonnet')._config".into()),
    ];
    for n in 2..=8 {
        let name: &'static str = Box::leak(format!("splits-{n}").into_boxed_str());
        s.push((name, format!("{{ pairSplits: {n} }}")));
    }
    s
}

#[test]
fn every_config_switch_renders_rules_promtool_accepts_with_the_duplicate_lint() {
    if !crate::common::tools_present(
        "mixin::every_config_switch_renders_rules_promtool_accepts_with_the_duplicate_lint",
        &["jsonnet", "promtool"],
    ) {
        return;
    }
    let switches = switches();
    let refs: Vec<(&str, &str)> = switches.iter().map(|(n, o)| (*n, o.as_str())).collect();
    let rendered = render_switches(&refs);
    let scratch = crate::harness::TempDir::new("mixin-switches");
    let scratch = &scratch.0;
    let mut paths = Vec::new();
    for (switch, files) in &rendered {
        for (path, groups) in files {
            let target = scratch.join(path.replace('/', "__"));
            std::fs::write(&target, serde_json::to_string(groups).unwrap()).unwrap();
            paths.push(target);
        }
        // Every switch renders something to evaluate, and no group name twice.
        let names: Vec<&str> = files
            .values()
            .flat_map(|f| f["groups"].as_array().unwrap())
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{switch}: a group name twice");
    }
    assert_eq!(rendered.len(), switches.len());
    let out = Command::new("promtool")
        .args(["check", "rules", "--lint=duplicate-rules", "--lint-fatal"])
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first character classes of split matchers: `pair=~"[0-9a].*"`,
/// `pair=~"[^0-9a-v].*"`.
fn class_matches(matcher: &str, c: char) -> bool {
    let class = matcher
        .strip_prefix("pair=~\"[")
        .and_then(|m| m.strip_suffix("].*\""))
        .unwrap_or_else(|| panic!("not a split matcher: {matcher}"));
    let (negated, class) = match class.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, class),
    };
    let chars: Vec<char> = class.chars().collect();
    let mut hit = false;
    let mut i = 0;
    while i < chars.len() {
        if chars.get(i + 1) == Some(&'-') && i + 2 < chars.len() {
            hit |= (chars[i]..=chars[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= chars[i] == c;
            i += 1;
        }
    }
    hit != negated
}

#[test]
fn pair_splits_partition_every_pair() {
    if !crate::common::tools_present("mixin::pair_splits_partition_every_pair", &["jsonnet"]) {
        return;
    }
    let code = "local u = import 'lib/util.libsonnet'; local c = (import 'mixin.libsonnet')._config; \
                { [std.toString(n)]: [s.matcher for s in u.splits(c { pairSplits: n })] for n in std.range(1, 12) } \
                + { large: [s.matcher for s in u.splits(c + (import 'variants/large.libsonnet')._config)] }";
    let splits: BTreeMap<String, Vec<String>> = serde_json::from_value(jsonnet(code)).unwrap();
    // The recording's pairs, and every first character a pair could start with.
    let summaries: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/cryptowatch/markets_summaries.2023-08-19.json"))
            .unwrap(),
    )
    .unwrap();
    let mut firsts: BTreeSet<char> = summaries["result"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.split(':').nth(1).unwrap().chars().next().unwrap())
        .collect();
    firsts.extend((0u32..0x300).filter_map(char::from_u32));
    firsts.extend(['é', 'Ж', '币', '🚀']);
    for (n, matchers) in &splits {
        let expected = if n == "large" { 12 } else { n.parse().unwrap() };
        if expected == 1 {
            assert_eq!(matchers, &[String::new()], "1 split = no matcher");
            continue;
        }
        assert_eq!(matchers.len(), expected, "{n} splits: {matchers:?}");
        for &c in &firsts {
            let hits = matchers.iter().filter(|m| class_matches(m, c)).count();
            assert_eq!(hits, 1, "{n} splits: {c:?} is in {hits} splits");
        }
        // The last is a positive matcher with a negated class (a negative matcher
        // gathers the postings of every excluded pair: benches/load/RESULTS.md).
        assert!(matchers.last().unwrap().starts_with("pair=~\"[^"));
    }
    // The large variant's classes are those measured (benches/load/RESULTS.md).
    assert_eq!(splits["large"][0], "pair=~\"[0-9a].*\"");
    assert_eq!(splits["large"][11], "pair=~\"[^0-9a-v].*\"");
}

#[test]
fn a_threshold_change_reaches_every_alert_and_panel_that_uses_it() {
    if !crate::common::tools_present(
        "mixin::a_threshold_change_reaches_every_alert_and_panel_that_uses_it",
        &["jsonnet"],
    ) {
        return;
    }
    let code = "local m = (import 'mixin.libsonnet') + (import 'variants/large.libsonnet') + { _config+:: { spike+: { factor: 4, baselineMinutes: 20 }, divergence+: { ratio: 0.25, minExchanges: 4 } } }; \
                { alerts: m.prometheusAlerts, dashboards: m.grafanaDashboards }";
    let out = jsonnet(code);
    let mut spikes = 0;
    let mut divergences = 0;
    for g in out["alerts"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            let summary = r["annotations"]["summary"].as_str().unwrap();
            match r["alert"].as_str().unwrap() {
                "CryptoMarketSpike" => {
                    spikes += 1;
                    assert!(expr.contains(" > 4\n"), "{expr}");
                    assert!(expr.contains(" >= 20\n"), "{expr}");
                    assert!(!expr.contains(" > 3\n") && !expr.contains(">= 30"));
                    assert!(summary.contains("more than 4x"), "{summary}");
                }
                "CryptoMarketPriceDivergence" => {
                    divergences += 1;
                    assert!(expr.contains(") > 0.25\n"), "{expr}");
                    assert!(expr.contains(" >= 4\n"), "{expr}");
                    assert!(summary.contains("25%"), "{summary}");
                }
                _ => {}
            }
        }
    }
    // Three metrics times twelve splits; one per split.
    assert_eq!((spikes, divergences), (36, 12));
    let text = out["dashboards"].to_string();
    assert!(text.contains("4 * market:crypto_market_price:avg1h"));
    assert!(text.contains("spike threshold (4x)"));
    assert!(text.contains("beyond 25%"));
    assert!(!text.contains("3x"), "a panel still says 3x");
}

/// The default records at most 24 per-market series names (issue: lean by default),
/// and the default dashboards read only what both variants record.
#[test]
fn the_default_is_lean_and_its_dashboards_work_on_both_variants() {
    let recorded = |dir: &str| -> BTreeSet<String> {
        groups_of(&rule_files(&root().join(dir)))
            .into_iter()
            .flat_map(|g| g.records)
            .collect()
    };
    let default = recorded("prometheus/rules");
    let large = recorded("prometheus/rules-large");
    let per_market: Vec<&String> = default
        .iter()
        .filter(|n| n.starts_with("market:"))
        .collect();
    assert!(
        per_market.len() <= 24,
        "{} per-market names: {per_market:?}",
        per_market.len()
    );
    assert!(large.iter().filter(|n| n.starts_with("market:")).count() >= 64);
    for entry in std::fs::read_dir(root().join("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for name in recorded_refs(&text) {
            assert!(
                default.contains(&name),
                "{}: {name} not recorded by default",
                path.display()
            );
            assert!(
                large.contains(&name),
                "{}: {name} not recorded by the large variant",
                path.display()
            );
        }
    }
}

/// The formatter of prometheus/mixin/render: every rendered file reads back as the
/// data jsonnet computed (so no YAML scalar changed meaning on the way).
#[test]
fn rendered_files_read_back_as_the_mixin_data() {
    if !crate::common::tools_present(
        "mixin::rendered_files_read_back_as_the_mixin_data",
        &["jsonnet"],
    ) {
        return;
    }
    let specs = jsonnet("import 'render.jsonnet'");
    let specs = specs.as_object().unwrap();
    assert!(specs.len() >= 20);
    for (path, spec) in specs {
        let text = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e} (run prometheus/mixin/render)"));
        let got: Value = if spec["format"] == "json" {
            serde_json::from_str(&text).unwrap()
        } else {
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let mut want = spec["value"].clone();
        unwrap_json_text(&mut want);
        let mut got = got;
        parse_json_text(&mut got, &want);
        assert_eq!(got, want, "{path} does not read back as the mixin's data");
    }
}

/// `{"$json": x}` in the mixin's data is written as JSON text.
fn unwrap_json_text(v: &mut Value) {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$json") => {
            *v = m.remove("$json").unwrap();
        }
        Value::Object(m) => m.values_mut().for_each(unwrap_json_text),
        Value::Array(a) => a.iter_mut().for_each(unwrap_json_text),
        _ => {}
    }
}

/// Parses the strings of `got` that hold JSON text where `want` has a structure.
fn parse_json_text(got: &mut Value, want: &Value) {
    match (got, want) {
        (g @ Value::String(_), w) if w.is_object() => {
            *g = serde_json::from_str(g.as_str().unwrap()).unwrap();
        }
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                if let Some(gv) = g.get_mut(k) {
                    parse_json_text(gv, wv);
                }
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            for (gv, wv) in g.iter_mut().zip(w) {
                parse_json_text(gv, wv);
            }
        }
        _ => {}
    }
}

/// The Prometheus Operator's objects carry exactly the default rendering: the
/// PrometheusRule every group of prometheus/rules/, the ConfigMap every dashboard.
#[test]
fn kubernetes_objects_carry_the_default_rendering() {
    let rule = yaml_file(&root().join("deploy/kubernetes/base/prometheus-rules.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    let mut groups = Vec::new();
    for f in ["crypto-market.rules.yml", "crypto-market.alerts.yml"] {
        let file = yaml_file(&root().join("prometheus/rules").join(f));
        groups.extend(file["groups"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(rule_files(&root().join("prometheus/rules")).len(), 2);
    assert_eq!(rule["spec"]["groups"], Value::Array(groups));

    let map = yaml_file(&root().join("deploy/kubernetes/base/grafana-dashboards.yaml"));
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = map["data"].as_object().unwrap();
    assert_eq!(data.len(), 3);
    for (name, text) in data {
        let embedded: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("grafana/dashboards").join(name)).unwrap(),
        )
        .unwrap();
        assert_eq!(embedded, file, "{name}");
    }
}

/// A panel (or query) whose series a switch turns off is not rendered: under every
/// switch, the dashboards read only names that switch's rules record.
#[test]
fn dashboards_read_only_what_each_switch_records() {
    if !crate::common::tools_present(
        "mixin::dashboards_read_only_what_each_switch_records",
        &["jsonnet"],
    ) {
        return;
    }
    let switches = switches();
    let cases: Vec<String> = switches
        .iter()
        .map(|(name, o)| {
            format!(
                "'{name}': local m = base + {{ _config+:: {o} }}; {{ rules: m.prometheusRules, dashboards: m.grafanaDashboards }}"
            )
        })
        .collect();
    let code = format!(
        "local base = import 'mixin.libsonnet'; {{ {} }}",
        cases.join(", ")
    );
    let out = jsonnet(&code);
    for (switch, _) in &switches {
        let recorded: BTreeSet<&str> = out[*switch]["rules"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .map(|r| r["record"].as_str().unwrap())
            .collect();
        let dashboards = out[*switch]["dashboards"].as_object().unwrap();
        assert_eq!(dashboards.len(), 3, "{switch}");
        let text = serde_json::to_string(dashboards).unwrap();
        for name in recorded_refs(&text) {
            assert!(
                recorded.contains(name.as_str()),
                "{switch}: a dashboard reads {name}, which this switch does not record"
            );
        }
    }
}

/// Recording rules of rendered files: (group, record, expr).
fn recording_rules_of(files: &BTreeMap<String, Value>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for file in files.values() {
        for g in file["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                if let Some(record) = r["record"].as_str() {
                    out.push((
                        g["name"].as_str().unwrap().to_owned(),
                        record.to_owned(),
                        r["expr"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

/// Whether every read of `name` in `expr` takes what was written before this
/// evaluation: a range ending 1ms early (`name{..}[w] offset 1ms`), or a range inside
/// a subquery that ends 1ms early (`f(name{..}[w])[r:s] offset 1ms`).
fn reads_only_before(expr: &str, name: &str) -> bool {
    let mut rest = expr;
    while let Some(at) = rest.find(name) {
        let after = &rest[at + name.len()..];
        let before_ok = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let next = after.chars().next();
        if !before_ok || next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            rest = after; // a longer name that starts or ends with this one
            continue;
        }
        let after = match after.strip_prefix('{') {
            Some(s) => &s[s.find('}').unwrap() + 1..],
            None => after,
        };
        let Some(window) = after.strip_prefix('[') else {
            return false; // an instant read
        };
        let tail = &window[window.find(']').unwrap() + 1..];
        let subquery_end = tail
            .strip_prefix(")[")
            .and_then(|s| s.find(']').map(|i| &s[i + 1..]));
        if !(tail.starts_with(" offset 1ms")
            || subquery_end.is_some_and(|s| s.starts_with(" offset 1ms")))
        {
            return false;
        }
        rest = tail;
    }
    true
}

/// vmalert writes results asynchronously and aligns every group's evaluations, so
/// its rendering (config `ruler: 'vmalert'`, docs/scaling.md) must not read what its
/// own group records, and reads what other groups record only as written before the
/// evaluation (deterministic, whichever group runs first). Checked on every config
/// switch. The Prometheus rendering does chain rules in a group: the four listed
/// here, which the vmalert rendering inlines. (tests/it/scale.rs runs it on
/// vmalert; CME_SCALE_RENDERING=rules there shows the Prometheus rendering failing.)
#[test]
fn the_vmalert_rendering_reads_no_result_of_its_own_evaluation() {
    if !crate::common::tools_present(
        "mixin::the_vmalert_rendering_reads_no_result_of_its_own_evaluation",
        &["jsonnet"],
    ) {
        return;
    }
    let switches = switches();
    let overrides: Vec<(String, String)> = switches
        .iter()
        .map(|(n, o)| (n.to_string(), format!("{o} + {{ ruler: 'vmalert' }}")))
        .chain([("prometheus".to_owned(), "{}".to_owned())])
        .collect();
    let refs: Vec<(&str, &str)> = overrides
        .iter()
        .map(|(n, o)| (n.as_str(), o.as_str()))
        .collect();
    let rendered = render_switches(&refs);
    for (switch, files) in &rendered {
        let rules = recording_rules_of(files);
        let recorded: BTreeSet<&str> = rules.iter().map(|(_, r, _)| r.as_str()).collect();
        let mut chained = BTreeSet::new();
        for (group, record, expr) in &rules {
            for name in recorded_refs(expr) {
                if !recorded.contains(name.as_str()) {
                    continue;
                }
                let own = rules.iter().any(|(g, r, _)| g == group && *r == name);
                if switch == "prometheus" {
                    if own {
                        chained.insert(record.clone());
                    }
                    continue;
                }
                assert!(
                    !own,
                    "{switch}: {record} reads {name}, which its group {group} records"
                );
                assert!(
                    reads_only_before(expr, &name),
                    "{switch}: {record} reads {name} as it stands, racing its writer: {expr}"
                );
            }
        }
        if switch == "prometheus" {
            let want: BTreeSet<String> = [
                "market:crypto_market_price:sumsq5m",
                "market:crypto_market_price:stddev24h",
                "market:crypto_market_price:volatility24h",
                "market:crypto_market_price:divergence_ratio",
            ]
            .map(str::to_owned)
            .into();
            assert_eq!(chained, want, "the rules the vmalert rendering inlines");
        }
    }
    assert!(reads_only_before(
        "last_over_time(a:b:c{x=\"1\"}[10m] offset 1ms)",
        "a:b:c"
    ));
    assert!(reads_only_before(
        "last_over_time(last_over_time(a:b:c[1h])[1h:1h] offset 1ms)",
        "a:b:c"
    ));
    assert!(!reads_only_before("a:b:c / 2", "a:b:c"));
    assert!(!reads_only_before("avg_over_time(a:b:c[10m])", "a:b:c"));
    assert!(reads_only_before("x:a:b:c / 2", "a:b:c"));
}
