//! The monitoring stack as code, checked offline: docker-compose.yml (no Docker
//! engine here), Grafana provisioning and dashboard conventions. The dashboards'
//! queries are executed against a real Prometheus in tests/e2e.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use std::path::PathBuf;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<_> = std::fs::read_dir(root().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn compose_file_is_complete_and_pinned() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    for name in [
        "exporter",
        "prometheus",
        "alertmanager",
        "grafana",
        "mailpit",
    ] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let volumes = compose["volumes"].as_object().unwrap();
    for (name, svc) in services {
        // Pinned images: a tag that is a version, never `latest` or none.
        let image = svc["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no image"));
        if svc.get("build").is_none() {
            let tag = image
                .rsplit_once(':')
                .map(|(_, t)| t)
                .unwrap_or_else(|| panic!("{name}: unpinned image {image}"));
            assert!(
                tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
                "{name}: unpinned image {image}"
            );
        }
        // A healthcheck everywhere, and dependencies wait for health.
        assert!(
            svc["healthcheck"]["test"].is_array(),
            "{name}: no healthcheck"
        );
        if let Some(deps) = svc.get("depends_on") {
            for (dep, cond) in deps.as_object().unwrap() {
                assert!(
                    services.contains_key(dep),
                    "{name} depends on unknown {dep}"
                );
                assert_eq!(cond["condition"], "service_healthy", "{name} -> {dep}");
            }
        }
        // Every mounted file exists; config is read-only; data is on named volumes.
        for mount in svc
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let spec = mount.as_str().unwrap();
            let parts: Vec<&str> = spec.split(':').collect();
            if let Some(host) = parts[0].strip_prefix("./") {
                assert!(
                    root().join(host).exists(),
                    "{name}: mounted {host} does not exist"
                );
                assert_eq!(
                    parts.last(),
                    Some(&"ro"),
                    "{name}: config mount {spec} is not :ro"
                );
            } else {
                assert!(
                    volumes.contains_key(parts[0]),
                    "{name}: volume {} not declared",
                    parts[0]
                );
            }
        }
    }
    // Secrets' default files exist.
    for (name, secret) in compose["secrets"].as_object().unwrap() {
        let file = secret["file"].as_str().unwrap();
        let default = file
            .split(":-")
            .nth(1)
            .map(|s| s.trim_end_matches('}'))
            .unwrap_or(file);
        assert!(
            root().join(default.trim_start_matches("./")).exists(),
            "secret {name}: {default} missing"
        );
    }
    // 90 days of retention on a named volume; the live kraken source by default.
    let prom = services["prometheus"]["command"].as_array().unwrap();
    assert!(
        prom.iter()
            .any(|a| a == "--storage.tsdb.retention.time=90d")
    );
    assert_eq!(
        services["exporter"]["environment"]["CRYPTO_MARKET_EXPORTER_SOURCE"],
        "${CRYPTO_MARKET_EXPORTER_SOURCE:-kraken}"
    );
}

#[test]
fn scrape_interval_matches_the_poll_interval() {
    let compose = yaml("docker-compose.yml");
    let prom = yaml("prometheus/prometheus.yml");
    assert_eq!(
        compose["services"]["exporter"]["environment"]["CRYPTO_MARKET_EXPORTER_POLL_INTERVAL"],
        "60s"
    );
    assert_eq!(prom["global"]["scrape_interval"], "60s");
    let ds = yaml("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(ds["datasources"][0]["jsonData"]["timeInterval"], "60s");
    assert_eq!(ds["datasources"][0]["uid"], "prometheus");
    let provider = yaml("grafana/provisioning/dashboards/crypto-market.yml");
    assert_eq!(provider["providers"][0]["allowUiUpdates"], false);
}

fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for inner in p
            .get("panels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(inner);
        }
    }
    out
}

#[test]
fn dashboards_follow_the_conventions() {
    let all = dashboards();
    assert_eq!(all.len(), 3);
    let mut uids = std::collections::HashSet::new();
    for (file, d) in &all {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_owned()), "{file}: duplicate uid {uid}");
        assert_eq!(format!("{uid}.json"), *file, "file named after its uid");
        assert_eq!(
            d["editable"], false,
            "{file}: provisioned dashboards are not editable"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{file}: no datasource variable"
        );
        for p in panels(d) {
            let title = p["title"].as_str().unwrap();
            assert!(!title.is_empty(), "{file}: untitled panel");
            assert!(
                p["description"].as_str().is_some_and(|s| s.len() > 10),
                "{file}/{title}: no description"
            );
            assert!(
                p["fieldConfig"]["defaults"]["unit"].as_str().is_some(),
                "{file}/{title}: no unit"
            );
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}/{title}: not on the datasource variable"
            );
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}/{title}");
                if expr.contains("rate(") {
                    assert!(
                        expr.contains("[$__rate_interval]"),
                        "{file}/{title}: rate() without $__rate_interval: {expr}"
                    );
                }
            }
        }
    }
}

#[test]
fn alert_dashboard_links_point_at_real_dashboards() {
    let uids: Vec<String> = dashboards()
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap().to_owned())
        .collect();
    let alerts =
        std::fs::read_to_string(root().join("prometheus/rules/crypto-market.alerts.yml")).unwrap();
    let mut links = 0;
    for part in alerts.split("/d/").skip(1) {
        let uid = part.split('/').next().unwrap();
        assert!(
            uids.iter().any(|u| u == uid),
            "dashboard_url to unknown dashboard {uid}"
        );
        links += 1;
    }
    assert!(links >= 8);
    // Every alert has a runbook section.
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md"))
        .unwrap()
        .to_lowercase();
    for anchor in alerts.split("runbook.md#").skip(1) {
        let anchor = anchor.split_whitespace().next().unwrap();
        assert!(
            runbook.contains(&format!("## {anchor}")),
            "docs/runbook.md has no section #{anchor}"
        );
    }
}

/// The groups every per-market rule group is split into, by pair (rules file header).
/// The last takes every pair the others do not, so each pair lands in exactly one.
const PAIR_SPLITS: [(&str, &str); 12] = [
    ("pairs-0-a", r#"pair=~"[0-9a].*""#),
    ("pairs-b", r#"pair=~"[b].*""#),
    ("pairs-c-d", r#"pair=~"[c-d].*""#),
    ("pairs-e-f", r#"pair=~"[e-f].*""#),
    ("pairs-g-i", r#"pair=~"[g-i].*""#),
    ("pairs-j-l", r#"pair=~"[j-l].*""#),
    ("pairs-m", r#"pair=~"[m].*""#),
    ("pairs-n-o", r#"pair=~"[n-o].*""#),
    ("pairs-p-r", r#"pair=~"[p-r].*""#),
    ("pairs-s", r#"pair=~"[s].*""#),
    ("pairs-t-v", r#"pair=~"[t-v].*""#),
    ("pairs-rest", r#"pair=~"[^0-9a-v].*""#),
];

/// (group name, [(record or alert, expr)]) of a rules file, in file order.
fn rule_groups(path: &str) -> Vec<(String, Vec<(String, String)>)> {
    yaml(path)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let rules = g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let name = r["record"].as_str().or(r["alert"].as_str()).unwrap();
                    (name.to_owned(), r["expr"].as_str().unwrap().to_owned())
                })
                .collect();
            (g["name"].as_str().unwrap().to_owned(), rules)
        })
        .collect()
}

#[test]
fn pair_splits_partition_every_pair() {
    // The first character's class of a matcher like pair=~"[0-9a].*": ranges and
    // single characters.
    let class = |m: &str| -> std::collections::BTreeSet<char> {
        let class = m.split('[').nth(1).unwrap().split(']').next().unwrap();
        let chars: Vec<char> = class.chars().collect();
        let mut set = std::collections::BTreeSet::new();
        let mut i = 0;
        while i < chars.len() {
            if chars.get(i + 1) == Some(&'-') {
                assert!(i + 2 < chars.len(), "{m}: open range");
                set.extend(chars[i]..=chars[i + 2]);
                i += 3;
            } else {
                set.insert(chars[i]);
                i += 1;
            }
        }
        set
    };
    let (rest, others) = PAIR_SPLITS.split_last().unwrap();
    // The others are pairwise disjoint, and the last one's class is the complement of
    // their union: a partition of all pairs by first character.
    let mut union = std::collections::BTreeSet::new();
    for (suffix, matcher) in others {
        assert!(
            matcher.contains("=~") && matcher.ends_with(r#".*""#),
            "{suffix}"
        );
        let c = class(matcher);
        assert!(union.is_disjoint(&c), "{suffix} overlaps an earlier split");
        union.extend(c);
    }
    // A positive matcher with a negated class, not `pair!~"[0-9a-v].*"`: a negative
    // matcher makes Prometheus gather the postings of every pair it excludes, nine
    // tenths of the head, and took two to three times as long (docs/performance.md).
    let negated = rest.1.replace("[^", "[");
    assert!(
        rest.1.contains(r#"=~"[^"#) && rest.1.ends_with(r#".*""#),
        "{}",
        rest.1
    );
    assert_eq!(class(&negated), union);
}

/// promtool's duplicate-rules lint is off for these files (.ci/test) because the split
/// groups record the same names on purpose; this is the stricter check in its place: a
/// name is recorded (or alerted on) by more than one group only within one split
/// family, whose groups are the same rules with every selector restricted to their
/// share of the pairs.
#[test]
fn rules_defined_twice_are_exactly_the_pair_splits() {
    let mut split_groups = 0;
    for file in [
        "prometheus/rules/crypto-market.rules.yml",
        "prometheus/rules/crypto-market.alerts.yml",
    ] {
        let groups = rule_groups(file);
        let mut families = std::collections::BTreeMap::<String, Vec<usize>>::new();
        let mut defined_by = std::collections::BTreeMap::<&str, Vec<&str>>::new();
        for (i, (name, rules)) in groups.iter().enumerate() {
            for (record, _) in rules {
                defined_by.entry(record).or_default().push(name);
            }
            if let Some((suffix, _)) = PAIR_SPLITS.iter().find(|(s, _)| name.ends_with(s)) {
                let base = name.strip_suffix(suffix).unwrap();
                families.entry(base.to_owned()).or_default().push(i);
                split_groups += 1;
            }
        }
        for (base, members) in &families {
            let names: Vec<&str> = members.iter().map(|&i| groups[i].0.as_str()).collect();
            let expected: Vec<String> = PAIR_SPLITS
                .iter()
                .map(|(s, _)| format!("{base}{s}"))
                .collect();
            assert_eq!(
                names, expected,
                "{file}: family {base}: one group per split, in order"
            );
            let unsplit = |i: usize, matcher: &str| -> Vec<(String, String)> {
                let rules = &groups[i].1;
                for (record, expr) in rules {
                    // Every per-market selector carries the split's matcher; a name
                    // with an empty level (":crypto_market_…") is an aggregate of all
                    // markets, with no pair label to split on.
                    let selectors = expr.matches("crypto_market_").count()
                        - expr.matches(" :crypto_market_").count();
                    assert_eq!(
                        expr.matches(matcher).count(),
                        selectors,
                        "{}: {record}: a selector without {matcher}: {expr}",
                        groups[i].0
                    );
                }
                rules
                    .iter()
                    .map(|(r, e)| {
                        let e = e.replace(&format!("{{{matcher}}}"), "");
                        (r.clone(), e.replace(&format!(",{matcher}}}"), "}"))
                    })
                    .collect()
            };
            let reference = unsplit(members[0], PAIR_SPLITS[0].1);
            for (k, &i) in members.iter().enumerate().skip(1) {
                assert_eq!(unsplit(i, PAIR_SPLITS[k].1), reference, "{}", groups[i].0);
            }
        }
        for (record, in_groups) in defined_by {
            // The percentile's grid points: one series each, told apart by the
            // `quantile` label that group's rule sets (q10 sets "0.1", …).
            if in_groups.len() > 1
                && in_groups
                    .iter()
                    .all(|g| g.starts_with("crypto-market-percentile-grid-q"))
            {
                for group in &in_groups {
                    let q = group.trim_start_matches("crypto-market-percentile-grid-q");
                    let label = format!(r#""quantile", "0.{}""#, q.trim_end_matches('0'));
                    let (_, rules) = groups.iter().find(|(n, _)| n == group).unwrap();
                    assert!(
                        rules.len() == 1 && rules[0].0 == record && rules[0].1.contains(&label),
                        "{group}: one rule, recording {record} with {label}"
                    );
                }
                assert_eq!(in_groups.len(), 9, "{record}: {in_groups:?}");
                continue;
            }
            // Otherwise twice only through splits (CryptoMarketSpike is also one rule
            // per metric, each split in twelve).
            if in_groups.len() > 1 {
                for group in &in_groups {
                    assert!(
                        PAIR_SPLITS.iter().any(|(s, _)| group.ends_with(s)),
                        "{record} is defined by {in_groups:?}: {group} is not a pair split"
                    );
                }
            }
        }
    }
    assert!(split_groups >= 500, "{split_groups} split groups");
}

/// The promtool tests (prometheus/tests/) exercise the price's rules value by value;
/// the three volume metrics get the same rules, with the metric renamed. This holds
/// them to it, so a slip in a volume copy cannot hide behind the price's tests: every
/// volume group has a price twin with the same (record or alert, expr) list once the
/// metric names agree. Intervals and annotations may differ (the USD volume's 1h tier
/// runs every 5 minutes; the alerts name their metric).
#[test]
fn volume_rules_are_the_price_rules_renamed() {
    // Longest prefix first: "crypto-market-volume-" also starts the other two.
    let metrics = [
        (
            "crypto-market-volume-quote-",
            "crypto_market_volume_quote_24h",
        ),
        ("crypto-market-volume-usd-", "crypto_market_volume_usd_24h"),
        ("crypto-market-volume-", "crypto_market_volume_24h"),
    ];
    let mut compared = 0;
    for file in [
        "prometheus/rules/crypto-market.rules.yml",
        "prometheus/rules/crypto-market.alerts.yml",
    ] {
        let groups = rule_groups(file);
        let by_name: std::collections::BTreeMap<&str, &Vec<(String, String)>> =
            groups.iter().map(|(n, r)| (n.as_str(), r)).collect();
        for (name, rules) in &groups {
            let Some((prefix, metric)) = metrics.iter().find(|(p, _)| name.starts_with(p)) else {
                continue;
            };
            let twin = format!("crypto-market-price-{}", &name[prefix.len()..]);
            let price = by_name
                .get(twin.as_str())
                .unwrap_or_else(|| panic!("{file}: {name} has no price twin {twin}"));
            let renamed: Vec<(String, String)> = price
                .iter()
                .map(|(r, e)| {
                    let rename = |s: &str| s.replace("crypto_market_price", metric);
                    (rename(r), rename(e))
                })
                .collect();
            assert_eq!(rules, &renamed, "{file}: {name} differs from {twin}");
            compared += 1;
        }
    }
    assert!(compared >= 90, "{compared} volume groups compared");
}

/// promtool evaluates the groups a test file does not list in `group_eval_order` first,
/// in no set order, so a test file that orders the groups at all must list every one of
/// them, in the rules file's order (which is the order of their dependencies).
#[test]
fn rule_tests_order_every_group() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("prometheus/tests")).unwrap() {
        let path = entry.unwrap().path();
        let rel = format!(
            "prometheus/tests/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let test = yaml(&rel);
        let Some(order) = test["group_eval_order"].as_array() else {
            continue;
        };
        let order: Vec<&str> = order.iter().map(|g| g.as_str().unwrap()).collect();
        let mut all = Vec::new();
        for file in test["rule_files"].as_array().unwrap() {
            let file = file.as_str().unwrap().trim_start_matches("../");
            all.extend(
                rule_groups(&format!("prometheus/{file}"))
                    .into_iter()
                    .map(|g| g.0),
            );
        }
        assert_eq!(order, all, "{rel}: group_eval_order");
        checked += 1;
    }
    assert!(checked >= 4, "{checked} test files with group_eval_order");
}

/// One image name and tag everywhere: the crate's version, built by compose
/// (`build: .`), run by the Kubernetes manifest, and documented in README.md.
#[test]
fn image_tag_is_the_crate_version_everywhere() {
    let image = format!("crypto-market-exporter:{}", env!("CARGO_PKG_VERSION"));
    let compose = yaml("docker-compose.yml");
    assert_eq!(compose["services"]["exporter"]["image"], image.as_str());
    assert_eq!(compose["services"]["exporter"]["build"], ".");
    let manifest = std::fs::read_to_string(root().join("deploy/kubernetes/exporter.yaml")).unwrap();
    let images: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert!(!images.is_empty());
    for i in images {
        assert!(
            i.ends_with(&image),
            "deploy/kubernetes/exporter.yaml runs {i}, not {image}"
        );
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("docker build -t {image} .")),
        "README.md does not say how {image} is built"
    );
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(&format!("docker build -t {image} .")));
}

/// docker-compose.demo.yml: the demo source polled at the demo scrape interval,
/// and a Prometheus config that is the main one but for that interval.
#[test]
fn demo_override_only_speeds_up_scrapes() {
    let demo = yaml("docker-compose.demo.yml");
    let env = &demo["services"]["exporter"]["environment"];
    assert_eq!(env["CRYPTO_MARKET_EXPORTER_SOURCE"], "demo");
    let main = yaml("prometheus/prometheus.yml");
    let mut fast = yaml("prometheus/prometheus.demo.yml");
    assert_eq!(
        env["CRYPTO_MARKET_EXPORTER_POLL_INTERVAL"],
        fast["global"]["scrape_interval"]
    );
    // Mounted where the main compose file mounts prometheus.yml, so it replaces it.
    let target = |v: &Value| -> Vec<String> {
        v["services"]["prometheus"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().split(':').nth(1).unwrap().to_owned())
            .collect()
    };
    let main_compose = yaml("docker-compose.yml");
    for t in target(&demo) {
        assert!(
            target(&main_compose).contains(&t),
            "{t} mounts nothing in docker-compose.yml"
        );
    }
    for key in ["scrape_interval", "scrape_timeout"] {
        fast["global"][key] = main["global"][key].clone();
    }
    assert_eq!(
        fast, main,
        "prometheus.demo.yml differs from prometheus.yml beyond the scrape interval"
    );
}

/// The exporter's container: non-root user, read-only root filesystem, no
/// capabilities, no privilege escalation.
#[test]
fn exporter_container_is_hardened() {
    let compose = yaml("docker-compose.yml");
    let exporter = &compose["services"]["exporter"];
    assert_eq!(exporter["read_only"], true);
    assert_eq!(exporter["cap_drop"][0], "ALL");
    assert_eq!(exporter["security_opt"][0], "no-new-privileges:true");
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.lines().any(|l| l == "USER nonroot:nonroot"));
    let manifest = std::fs::read_to_string(root().join("deploy/kubernetes/exporter.yaml")).unwrap();
    for line in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
    ] {
        assert!(
            manifest.contains(line),
            "deploy/kubernetes/exporter.yaml lacks {line}"
        );
    }
}
