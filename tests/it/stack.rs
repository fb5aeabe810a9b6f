//! The monitoring stack as code, checked offline: docker-compose.yml (no Docker
//! engine here), Grafana provisioning and dashboard conventions. The dashboards'
//! queries are executed against a real Prometheus in tests/it/e2e.rs.

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
    check_services(&compose);
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

/// Pinned images, healthchecks that dependencies wait for, mounts that exist and are
/// read-only, named volumes declared, secrets' default files present.
fn check_services(compose: &Value) {
    let services = compose["services"].as_object().unwrap();
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
        // A healthcheck on every long-running service; dependencies wait for health,
        // or for a one-shot (`restart: "no"`, e.g. the demo's backfill) to succeed.
        let one_shot = |svc: &Value| svc["restart"] == "no";
        assert!(
            one_shot(svc) || svc["healthcheck"]["test"].is_array(),
            "{name}: no healthcheck"
        );
        if let Some(deps) = svc.get("depends_on") {
            for (dep, cond) in deps.as_object().unwrap() {
                assert!(
                    services.contains_key(dep),
                    "{name} depends on unknown {dep}"
                );
                let want = if one_shot(&services[dep]) {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                assert_eq!(cond["condition"], want, "{name} -> {dep}");
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
}

/// `docker compose -f a -f b` as Compose merges them (the parts these files use):
/// mappings merge key by key, `volumes` by container path, sequences such as
/// `command` are replaced.
fn compose_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(Value::Array(existing)) if k == "volumes" => {
                        let target =
                            |m: &Value| m.as_str().unwrap().split(':').nth(1).unwrap().to_owned();
                        for m in v.as_array().unwrap() {
                            existing.retain(|e| target(e) != target(m));
                            existing.push(m.clone());
                        }
                    }
                    Some(slot) => compose_merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// docker-compose.scale.yml over the main file: a complete stack by the same rules,
/// and one slice count everywhere: the exporter's, each shard's scrape parameters,
/// and the shard alert's (prometheus/rules-sharded).
#[test]
fn scale_override_is_complete_and_its_shards_agree() {
    let mut merged = yaml("docker-compose.yml");
    compose_merge(&mut merged, &yaml("docker-compose.scale.yml"));
    check_services(&merged);
    let services = &merged["services"];
    let shards = services["exporter"]["environment"]["CRYPTO_MARKET_EXPORTER_WEB_SHARDS"]
        .as_str()
        .unwrap()
        .to_owned();
    let args = |svc: &str| -> Vec<String> {
        services[svc]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let mount_of = |svc: &str, target: &str| -> String {
        services[svc]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .find(|m| m.split(':').nth(1) == Some(target))
            .unwrap_or_else(|| panic!("{svc}: nothing mounted at {target}"))
            .split(':')
            .next()
            .unwrap()
            .trim_start_matches("./")
            .to_owned()
    };
    // Shard 0: the Prometheus agent reads the remote-write example.
    let prom = args("prometheus");
    assert!(
        prom.contains(&"--enable-feature=agent".to_owned()),
        "{prom:?}"
    );
    let config = prom
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .unwrap();
    let agent = yaml(&mount_of("prometheus", config));
    let job = &agent["scrape_configs"][0];
    assert_eq!(job["params"]["shards"][0], shards.as_str());
    assert_eq!(job["params"]["shard"][0], "0");
    assert_eq!(agent["global"]["external_labels"]["shard"], "0");
    // Shard 1: vmagent, its slice from the environment.
    let env = &services["vmagent"]["environment"];
    assert_eq!(env["SHARDS"], shards.as_str());
    assert_eq!(env["SHARD"], "1");
    let vmagent = yaml(&mount_of("vmagent", "/etc/vmagent/shard.yml"));
    let job = &vmagent["scrape_configs"][0];
    assert_eq!(job["params"]["shards"][0], "%{SHARDS}");
    assert_eq!(job["static_configs"][0]["labels"]["shard"], "%{SHARD}");
    assert_eq!(job["static_configs"][0]["targets"][0], "%{EXPORTER}");
    // Both write where VictoriaMetrics listens, and vmalert reads it.
    let vm_url = "http://victoria-metrics:8428";
    assert!(args("vmagent").contains(&format!("-remoteWrite.url={vm_url}/api/v1/write")));
    assert_eq!(
        agent["remote_write"][0]["url"],
        format!("{vm_url}/api/v1/write").as_str()
    );
    let vmalert = args("vmalert");
    assert!(vmalert.contains(&format!("-datasource.url={vm_url}")));
    // vmalert loads the vmalert rendering and the shard alert, for as many shards.
    for (flag, dir) in [
        ("-rule=/etc/rules/vmalert/*.yml", "prometheus/rules-vmalert"),
        ("-rule=/etc/rules/sharded/*.yml", "prometheus/rules-sharded"),
    ] {
        assert!(vmalert.contains(&flag.to_owned()), "{vmalert:?}");
        let target = flag.trim_start_matches("-rule=").trim_end_matches("/*.yml");
        assert_eq!(mount_of("vmalert", target), dir);
    }
    let sharded =
        std::fs::read_to_string(root().join("prometheus/rules-sharded/crypto-market.shards.yml"))
            .unwrap();
    let n: usize = shards.parse().unwrap();
    for i in 0..n {
        assert!(
            sharded.contains(&format!("shard=\"{i}\"")),
            "no absent() for shard {i}"
        );
    }
    assert!(!sharded.contains(&format!("shard=\"{n}\"")));
    // The Alertmanager pair: each the other's peer, both notified.
    for (am, peer) in [
        ("alertmanager", "alertmanager-2"),
        ("alertmanager-2", "alertmanager"),
    ] {
        assert!(
            args(am).contains(&format!("--cluster.peer={peer}:9094")),
            "{am}"
        );
        assert!(
            vmalert.contains(&format!("-notifier.url=http://{am}:9093")),
            "{am}"
        );
    }
    // Grafana's datasource: the same uid, now VictoriaMetrics.
    let ds = yaml(&mount_of(
        "grafana",
        "/etc/grafana/provisioning/datasources/prometheus.yml",
    ));
    let main_ds = yaml("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        ds["datasources"][0]["uid"],
        main_ds["datasources"][0]["uid"]
    );
    assert_eq!(ds["datasources"][0]["url"], vm_url);
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
    // Every rendered alert, of both variants.
    let mut alerts = String::new();
    for dir in ["prometheus/rules", "prometheus/rules-large"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            alerts.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
    }
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

/// One image name and tag everywhere: the crate's version, built by compose
/// (`build: .`), run by the Kubernetes manifest, and documented in README.md.
#[test]
fn image_tag_is_the_crate_version_everywhere() {
    let image = format!("crypto-market-exporter:{}", env!("CARGO_PKG_VERSION"));
    let compose = yaml("docker-compose.yml");
    assert_eq!(compose["services"]["exporter"]["image"], image.as_str());
    assert_eq!(compose["services"]["exporter"]["build"], ".");
    let manifest =
        std::fs::read_to_string(root().join("deploy/kubernetes/base/exporter.yaml")).unwrap();
    let images: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert!(!images.is_empty());
    for i in images {
        assert!(
            i.ends_with(&image),
            "deploy/kubernetes/base/exporter.yaml runs {i}, not {image}"
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

/// docker-compose.demo.yml over the main file: a complete stack, whose one-shot
/// backfill writes the exporter's demo walk labelled as the demo Prometheus scrapes
/// it, and is loaded, with the staged rules, before Prometheus starts.
#[test]
fn demo_override_backfills_before_prometheus_starts() {
    backfills_before_prometheus_starts("docker-compose.demo.yml", "prometheus/prometheus.demo.yml");
}

/// The opt-in history override of the default (Kraken) stack: the same
/// walk-through, with the exporter's network settings.
#[test]
fn history_override_backfills_the_network_source_before_prometheus_starts() {
    backfills_before_prometheus_starts("docker-compose.history.yml", "prometheus/prometheus.yml");
    let history = yaml("docker-compose.history.yml");
    assert!(
        history["services"]["backfill"]
            .get("network_mode")
            .is_none(),
        "the candles need the network"
    );
}

fn backfills_before_prometheus_starts(file: &str, prometheus: &str) {
    let mut merged = yaml("docker-compose.yml");
    compose_merge(&mut merged, &yaml(file));
    check_services(&merged);
    let services = &merged["services"];
    let (backfill, load) = (&services["backfill"], &services["backfill-load"]);
    // The same markets as the live exporter: source, interval, URL, the
    // demo's seed and count.
    for (key, value) in services["exporter"]["environment"].as_object().unwrap() {
        if key.starts_with("CRYPTO_MARKET_EXPORTER_DEMO")
            || key.ends_with("_SOURCE")
            || key.ends_with("_POLL_INTERVAL")
            || (key.ends_with("_URL")
                && backfill["environment"]["CRYPTO_MARKET_EXPORTER_SOURCE"] != "demo")
        {
            assert_eq!(
                &backfill["environment"][key], value,
                "{file}: backfill's {key}"
            );
        }
    }
    assert_eq!(backfill["image"], services["exporter"]["image"]);
    // Labelled as Prometheus labels the scraped exporter.
    let prom = yaml(prometheus);
    let job = &prom["scrape_configs"][0];
    let command: Vec<&str> = backfill["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command[0], "backfill");
    assert!(
        command.contains(&format!("--label=job={}", job["job_name"].as_str().unwrap()).as_str()),
        "{command:?}"
    );
    assert!(
        command.contains(
            &format!(
                "--label=instance={}",
                job["static_configs"][0]["targets"][0].as_str().unwrap()
            )
            .as_str()
        ),
        "{command:?}"
    );
    // The same file, loaded into Prometheus's volume with the staged rules, first.
    let output = command
        .iter()
        .find_map(|a| a.strip_prefix("--output="))
        .unwrap();
    let entry: Vec<&str> = load["entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(entry[2], output);
    let mounts: Vec<&str> = load["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        mounts.contains(&"./deploy/backfill/load-history.sh:/etc/prometheus/load-history.sh:ro")
    );
    assert!(
        mounts.contains(&format!("./prometheus/backfill:{}:ro", entry[4]).as_str()),
        "{mounts:?}"
    );
    assert!(
        mounts
            .iter()
            .any(|m| *m == format!("prometheus-data:{}", entry[3])),
        "{mounts:?}"
    );
    assert_eq!(load["image"], services["prometheus"]["image"]);
    assert_eq!(
        services["prometheus"]["depends_on"]["backfill-load"]["condition"],
        "service_completed_successfully"
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
    let manifest =
        std::fs::read_to_string(root().join("deploy/kubernetes/base/exporter.yaml")).unwrap();
    for line in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
    ] {
        assert!(
            manifest.contains(line),
            "deploy/kubernetes/base/exporter.yaml lacks {line}"
        );
    }
}
