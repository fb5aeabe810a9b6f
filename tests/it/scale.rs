//! The scale-out path end to end, with the real binaries on 127.0.0.1 (Debian's
//! `victoria-metrics`, `prometheus` and `prometheus-alertmanager`, installed by
//! .ci/run), as docs/scaling.md lays it out:
//!
//! - one exporter polls the upstream once and serves two slices (`--web.shards=2`);
//! - two scrape shards, one each: a Prometheus agent (prometheus/remote-write.example.yml)
//!   and a vmagent (prometheus/vmagent-shard.yml), remote-write into VictoriaMetrics;
//! - vmalert evaluates the mixin's vmalert rendering and the scrape-shard alert
//!   against VictoriaMetrics, writes the recorded series back, and notifies an
//!   Alertmanager HA pair (gossip on loopback) running the shipped config.
//!
//! Asserted:
//! 1. one spike is one e-mail and one Slack message through the pair, not two;
//! 2. killing one shard fires CryptoMarketScrapeShardDown for that shard and
//!    nothing else (no alert appears, none resolves, no other message);
//! 3. once the samples stop (both shards killed), every recording rule's latest
//!    result in VictoriaMetrics, the rank included, equals what Prometheus computes
//!    with the same expression at the same instant from the same samples (exported
//!    from VictoriaMetrics and loaded with promtool).
//!
//! Derived for speed: rule intervals 5s/10s and the shard alert's `for` of 10s come
//! from a `render --override` (which also holds the divergence alert back); scrapes
//! every 5s; instant-vector lookback 20s in vmalert (`-datasource.queryStep`) and in
//! the reference Prometheus alike.
//! CME_E2E_KEEP=1 keeps the scratch directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Exporter, FakeUpstream, Reply, unmetered};
use crate::harness::{
    DEADLINE, Notifications, Proc, TempDir, binary, derived_alertmanager, free_port, get_json,
    post_form, query, ready, root, start_sink, start_smtp_sink, unix_now, wait_until,
};
use crypto_market_exporter::domain::{MarketGauge, Rejections, admit_all};
use crypto_market_exporter::source::cryptowatch::parse;
use serde_json::Value;

const FIXTURE: &str = "cryptowatch/markets_summaries.excerpt.2023-08-19.json";
const SHARDS: usize = 2;
/// The instant-vector lookback, in vmalert and in the reference Prometheus.
const LOOKBACK: &str = "20s";
/// What the test changes in the mixin: its speed; and the divergence alert's `for:`,
/// which the spike rightly triggers (kraken strays from the other exchanges) and which
/// must not fire during the shard check.
const OVERRIDE: &str = "{ _config+:: { intervals: { fast: '5s', slow: '10s', hourly: '1h' }, scrapeShards+: { downFor: '10s' }, divergence+: { 'for': '1h' } } }";

fn spawn(dir: &Path, name: &str, command: &mut Command) -> Proc {
    Proc(
        command
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The mixin rendered with OVERRIDE: the vmalert rule files and the shard alert.
fn rendered_rules(dir: &Path) -> Vec<PathBuf> {
    let out = Command::new(root().join("prometheus/mixin/render"))
        .args(["--override", OVERRIDE])
        .arg(dir.join("render"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = Vec::new();
    // CME_SCALE_RENDERING=rules runs the Prometheus rendering on vmalert instead, to
    // see the difference docs/scaling.md describes (its comparison then fails).
    let rendering = std::env::var("CME_SCALE_RENDERING").unwrap_or("rules-vmalert".into());
    for sub in [rendering.as_str(), "rules-sharded"] {
        for entry in std::fs::read_dir(dir.join("render/prometheus").join(sub)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files
}

/// Every recording rule of the files: (record, expr, labels).
fn recording_rules(files: &[PathBuf]) -> Vec<(String, String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for f in files {
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for g in doc["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                let Some(record) = r["record"].as_str() else {
                    continue;
                };
                let labels = serde_json::from_value(r["labels"].clone()).unwrap_or_default();
                out.push((
                    record.to_owned(),
                    r["expr"].as_str().unwrap().to_owned(),
                    labels,
                ));
            }
        }
    }
    out
}

/// Two hours of history at the scrape interval (5s) ending 30s ago, as the shards
/// would have written it, imported into VictoriaMetrics (Prometheus text with millisecond timestamps): each market's price
/// swings by its own amplitude (0.2 %, 0.4 %, ...), so the 24h volatility, its
/// quantiles and the rank tell every market apart; and the 5-minute rollups of that
/// price, which the 24h statistics read. Timestamps sit 370 ms off the second, never
/// on an evaluation's window edge.
async fn import_history(client: &reqwest::Client, vm: &str, instance: &str) {
    let page = parse(&unmetered(FIXTURE)).unwrap();
    let mut rejections = Rejections::default();
    let markets = admit_all(page.markets, &mut rejections);
    let end = (unix_now() as i64 - 30) * 1000 + 370;
    let steps: i64 = 2 * 3600 / 5;
    let mut text = String::new();
    for (index, m) in markets.iter().enumerate() {
        // The labels the live series will have: the shard's too.
        let labels = format!(
            "exchange=\"{}\",pair=\"{}\",job=\"crypto-market-exporter\",instance=\"{instance}\",shard=\"{}\"",
            m.exchange,
            m.pair,
            crypto_market_exporter::shard::of(&m.pair, SHARDS)
        );
        let amplitude = 0.002 * (index + 1) as f64;
        for gauge in MarketGauge::ALL {
            let Some(v) = m.get(gauge) else { continue };
            let mut window = (0.0, 0.0, 0.0);
            for i in 0..steps {
                let ts = end - (steps - 1 - i) * 5000;
                let x = if gauge == MarketGauge::Price {
                    v * (1.0 + amplitude * (i as f64 / 7.0).sin())
                } else {
                    v
                };
                text.push_str(&format!("{}{{{labels}}} {x} {ts}\n", gauge.name()));
                if gauge != MarketGauge::Price {
                    continue;
                }
                window = (window.0 + 1.0, window.1 + x, window.2 + x * x);
                if (i + 1) % 60 == 0 {
                    for (stat, value) in [
                        ("count5m", window.0),
                        ("sum5m", window.1),
                        ("sumsq5m", window.2),
                    ] {
                        text.push_str(&format!(
                            "market:crypto_market_price:{stat}{{{labels}}} {value} {ts}\n"
                        ));
                    }
                    window = (0.0, 0.0, 0.0);
                }
            }
        }
    }
    let resp = client
        .post(format!("{vm}/api/v1/import/prometheus"))
        .body(text)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "import: {}", resp.status());
}

/// A shard's scrape config as checked in, pointed at the loopback exporter and
/// VictoriaMetrics, scraping every 5s.
fn derived_scrape_config(dir: &Path, file: &str, exporter: &str, vm: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("prometheus").join(file)).unwrap();
    let derived = text
        .replace("scrape_interval: 60s", "scrape_interval: 5s")
        .replace("scrape_timeout: 20s", "scrape_timeout: 4s")
        .replace("exporter:9795", exporter)
        .replace("http://victoria-metrics:8428", vm);
    assert!(
        derived.contains("scrape_interval: 5s"),
        "{file}: no 60s scrape_interval"
    );
    let path = dir.join(file);
    std::fs::write(&path, derived).unwrap();
    path
}

/// Alerts vmalert holds (pending or firing): "name{label=value,...}" without the
/// annotations' noise.
async fn active_alerts(client: &reqwest::Client, vmalert: &str) -> BTreeSet<String> {
    let body = get_json(client, &format!("{vmalert}/api/v1/alerts"))
        .await
        .expect("vmalert answers /api/v1/alerts");
    body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(a["labels"].clone()).unwrap();
            let labels: Vec<String> = labels
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "alertgroup" | "alertname"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{}{{{}}}", a["name"].as_str().unwrap(), labels.join(","))
        })
        .collect()
}

/// Messages per receiver whose title/subject names `alert`.
fn delivered(
    slack: &Notifications,
    mails: &std::sync::Mutex<Vec<String>>,
    alert: &str,
) -> (usize, usize) {
    let s = slack
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| {
            p["attachments"][0]["title"]
                .as_str()
                .unwrap_or("")
                .contains(alert)
        })
        .count();
    let m = mails
        .lock()
        .unwrap()
        .iter()
        .filter(|m| {
            m.lines()
                .any(|l| l.starts_with("Subject:") && l.contains(alert))
        })
        .count();
    (s, m)
}

/// `/api/v1/export` of VictoriaMetrics: one JSON object per series.
async fn export(client: &reqwest::Client, vm: &str, matcher: &str, start: f64) -> Vec<Value> {
    let start = format!("{start:.3}");
    let text = post_form(
        client,
        &format!("{vm}/api/v1/export"),
        &[("match[]", matcher), ("start", &start)],
    )
    .await;
    // Staleness markers (vmalert writes them when a recorded series ends) come out as
    // a bare NaN, which JSON has no word for.
    text.lines()
        .map(|l| {
            serde_json::from_str(&l.replace("NaN", "null"))
                .unwrap_or_else(|e| panic!("export line {l}: {e}"))
        })
        .collect()
}

fn labels_of(metric: &Value) -> BTreeMap<String, String> {
    metric
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// Every exported series as OpenMetrics, for `promtool tsdb create-blocks-from
/// openmetrics` (families contiguous, samples in time order, no stale markers).
fn openmetrics(series: &[Value]) -> String {
    let mut by_name: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for s in series {
        by_name
            .entry(s["metric"]["__name__"].as_str().unwrap().to_owned())
            .or_default()
            .push(s);
    }
    let mut out = String::new();
    for (name, list) in by_name {
        for s in list {
            let labels: Vec<String> = labels_of(&s["metric"])
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let values = s["values"].as_array().unwrap();
            let stamps = s["timestamps"].as_array().unwrap();
            for (v, t) in values.iter().zip(stamps) {
                let Some(v) = v.as_f64().filter(|v| v.is_finite()) else {
                    continue;
                };
                let t = t.as_i64().unwrap();
                out.push_str(&format!(
                    "{name}{{{}}} {v} {}.{:03}\n",
                    labels.join(","),
                    t.div_euclid(1000),
                    t.rem_euclid(1000)
                ));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Equal up to float rounding: the engines sum in different orders, and the 24h
/// deviation subtracts two close numbers.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 * a.abs().max(b.abs()) + 1e-12
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_into_victoriametrics_with_vmalert_and_an_alertmanager_pair() {
    if !crate::common::tools_present(
        "scale",
        &[
            "victoria-metrics",
            "vmagent",
            "vmalert",
            "prometheus",
            "promtool",
            "amtool",
            "jsonnet",
        ],
    ) {
        return;
    }
    let started = Instant::now();
    let alertmanager = binary(&["prometheus-alertmanager", "alertmanager"]);
    let dir = TempDir::new("scale");
    let d = dir.0.clone();
    let rules = rendered_rules(&d);

    // The upstream: the recording, with kraken/btcusd at 10x its recorded price (far
    // enough above its average that the spike lasts the whole test).
    let body = String::from_utf8(unmetered(FIXTURE).to_vec()).unwrap();
    let spiked = body.replacen(
        r#""kraken:btcusd":{"price":{"last":26115.1"#,
        r#""kraken:btcusd":{"price":{"last":261151"#,
        1,
    );
    assert_ne!(body, spiked);
    let upstream = FakeUpstream::start(Reply::Json(spiked.into())).await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--poll.interval=5s",
        "--cryptowatch.rate-limit.period=100ms",
        &format!("--web.shards={SHARDS}"),
    ])
    .await;
    let instance = exporter.url.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new(); // after the exporter installed rustls' provider
    let (sink, slack) = start_sink().await;
    let (smtp_port, mails) = start_smtp_sink().await;

    // VictoriaMetrics: no response cache (history is imported behind its back), no
    // latency offset (the comparison evaluates at the very instants vmalert did).
    let vm_port = free_port();
    let vm = format!("http://127.0.0.1:{vm_port}");
    let _vm = spawn(
        &d,
        "victoria-metrics",
        Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", d.join("vm").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{vm_port}"))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache"),
    );
    let health = format!("{vm}/health");
    wait_until("VictoriaMetrics", Instant::now(), || {
        ready(&client, &health)
    })
    .await;
    import_history(&client, &vm, &instance).await;

    // The Alertmanager pair: the shipped config, each the other's gossip peer.
    let am_config = derived_alertmanager(&d, &format!("{sink}/slack"), smtp_port);
    let web = [free_port(), free_port()];
    let gossip = [free_port(), free_port()];
    let _ams: Vec<Proc> = (0..2)
        .map(|i| {
            spawn(
                &d,
                &format!("alertmanager-{i}"),
                Command::new(alertmanager)
                    .arg(format!("--config.file={}", am_config.display()))
                    .arg(format!(
                        "--storage.path={}",
                        d.join(format!("am-{i}")).display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{}", web[i]))
                    .arg(format!("--cluster.listen-address=127.0.0.1:{}", gossip[i]))
                    .arg(format!(
                        "--cluster.advertise-address=127.0.0.1:{}",
                        gossip[i]
                    ))
                    .arg(format!("--cluster.peer=127.0.0.1:{}", gossip[1 - i]))
                    .arg("--cluster.peer-timeout=3s"),
            )
        })
        .collect();
    wait_until(
        "the Alertmanager pair to see each other",
        Instant::now(),
        || async {
            let mut peers = 0;
            for port in web {
                if let Some(v) =
                    get_json(&client, &format!("http://127.0.0.1:{port}/api/v2/status")).await
                {
                    peers += v["cluster"]["peers"].as_array().map_or(0, Vec::len);
                }
            }
            peers == 4
        },
    )
    .await;

    // The scrape shards: slice 0 by a Prometheus agent, slice 1 by vmagent.
    let agent_config = derived_scrape_config(&d, "remote-write.example.yml", &instance, &vm);
    let vmagent_config = derived_scrape_config(&d, "vmagent-shard.yml", &instance, &vm);
    let shard_ports = [free_port(), free_port()];
    let mut shards: Vec<Option<Proc>> = vec![
        Some(spawn(
            &d,
            "shard-0-prometheus-agent",
            Command::new(binary(&["prometheus"]))
                .arg("--enable-feature=agent")
                .arg(format!("--config.file={}", agent_config.display()))
                .arg(format!(
                    "--storage.agent.path={}",
                    d.join("agent").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", shard_ports[0])),
        )),
        Some(spawn(
            &d,
            "shard-1-vmagent",
            Command::new("vmagent")
                .env("SHARD", "1")
                .env("SHARDS", SHARDS.to_string())
                .env("EXPORTER", &instance)
                .arg(format!("-promscrape.config={}", vmagent_config.display()))
                .arg(format!("-remoteWrite.url={vm}/api/v1/write"))
                .arg(format!(
                    "-remoteWrite.tmpDataPath={}",
                    d.join("vmagent").display()
                ))
                .arg(format!("-httpListenAddr=127.0.0.1:{}", shard_ports[1]))
                .arg("-remoteWrite.flushInterval=1s"),
        )),
    ];

    let logs = |d: &Path| {
        let mut all = String::new();
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all.push_str(&format!("== {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    all.push_str(l);
                    all.push('\n');
                }
            }
        }
        all
    };

    // Both slices arrive, each with its shard label, and every market once.
    wait_until(
        "both shards' samples in VictoriaMetrics",
        Instant::now(),
        || async {
            query(
                &client,
                &vm,
                r#"count(up{job="crypto-market-exporter"} == 1)"#,
            )
            .await
            .first()
            .is_some_and(|r| r["value"][1] == "2")
        },
    )
    .await;
    let per_shard = query(
        &client,
        &vm,
        r#"count by (shard) (crypto_market_price{shard!=""})"#,
    )
    .await;
    assert_eq!(per_shard.len(), SHARDS, "{per_shard:?}");

    // vmalert, once both shards deliver (else the shard alert would rightly fire for
    // a shard still starting): the rendered rules, both Alertmanagers.
    let vmalert_port = free_port();
    let vmalert = format!("http://127.0.0.1:{vmalert_port}");
    let mut cmd = Command::new("vmalert");
    for f in &rules {
        cmd.arg(format!("-rule={}", f.display()));
    }
    let _vmalert = spawn(
        &d,
        "vmalert",
        cmd.arg(format!("-datasource.url={vm}"))
            .arg(format!("-remoteWrite.url={vm}"))
            .arg(format!("-remoteRead.url={vm}"))
            .arg(format!("-notifier.url=http://127.0.0.1:{}", web[0]))
            .arg(format!("-notifier.url=http://127.0.0.1:{}", web[1]))
            .arg(format!("-datasource.queryStep={LOOKBACK}"))
            .arg("-remoteWrite.flushInterval=1s")
            .arg("-evaluationInterval=5s")
            .arg(format!("-external.url={vmalert}"))
            .arg(format!("-httpListenAddr=127.0.0.1:{vmalert_port}")),
    );

    // 1. The spike: one e-mail and one Slack message through the pair.
    let spike = "CryptoMarketSpike btcusd on kraken";
    loop {
        let (s, m) = delivered(&slack, &mails, spike);
        if s > 0 && m > 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no spike notification after {DEADLINE:?}: {:?}\n{}",
            active_alerts(&client, &vmalert).await,
            logs(&d)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The second Alertmanager waits one peer timeout (3s), then finds the first one's
    // notification in the gossiped log; one group_interval (5s) more for good measure.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        delivered(&slack, &mails, spike),
        (1, 1),
        "one Slack message and one e-mail through the HA pair: {:#?} {:#?}",
        slack.lock().unwrap(),
        mails.lock().unwrap()
    );
    for port in web {
        let alerts = get_json(&client, &format!("http://127.0.0.1:{port}/api/v2/alerts"))
            .await
            .expect("Alertmanager answers /api/v2/alerts");
        assert!(
            alerts
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["labels"]["alertname"] == "CryptoMarketSpike"),
            "Alertmanager on {port} never got the alert: both must, for HA"
        );
    }

    // Every recording rule's series exist, the rank among them.
    let recording = recording_rules(&rules);
    let names: BTreeSet<&str> = recording.iter().map(|(r, _, _)| r.as_str()).collect();
    assert!(
        names.contains("market:crypto_market_price:volatility24h_rank"),
        "{names:?}"
    );
    for name in &names {
        wait_until(&format!("series of {name}"), Instant::now(), || async {
            !query(&client, &vm, name).await.is_empty()
        })
        .await;
    }

    // 2. Kill the shard without kraken/btcusd (its spike stays in view): the shard
    // alert fires for it, and nothing else changes.
    let spiked_slice = crypto_market_exporter::shard::of("btcusd", SHARDS);
    let victim = 1 - spiked_slice;
    let before = active_alerts(&client, &vmalert).await;
    let messages_before = slack.lock().unwrap().len() + mails.lock().unwrap().len();
    drop(shards[victim].take());
    let down = format!(
        "CryptoMarketScrapeShardDown{{job=crypto-market-exporter,severity=critical,shard={victim}}}"
    );
    let killed = Instant::now();
    loop {
        let now = active_alerts(&client, &vmalert).await;
        if now.contains(&down) && delivered(&slack, &mails, "CryptoMarketScrapeShardDown") != (0, 0)
        {
            break;
        }
        assert!(
            killed.elapsed() < DEADLINE,
            "{down} never fired and notified: {now:?}\n{}",
            logs(&d)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = active_alerts(&client, &vmalert).await;
    let appeared: Vec<&String> = after.difference(&before).collect();
    let vanished: Vec<&String> = before.difference(&after).collect();
    assert_eq!(appeared, vec![&down], "only the shard alert may appear");
    assert!(
        vanished.is_empty(),
        "alerts resolved by a shard's death: {vanished:?}"
    );
    assert_eq!(
        delivered(&slack, &mails, "CryptoMarketScrapeShardDown"),
        (1, 1),
        "one Slack message and one e-mail for the dead shard: {:#?}",
        mails.lock().unwrap()
    );
    let messages_after = slack.lock().unwrap().len() + mails.lock().unwrap().len();
    assert_eq!(
        messages_after - messages_before,
        2,
        "nothing but the shard alert was sent: {:#?}",
        slack.lock().unwrap()
    );

    // 3. Stop the samples (kill the other shard), let vmalert evaluate every rule
    // once more on the final data, then evaluate the same expressions at the same
    // instants in Prometheus over the same samples.
    drop(shards[spiked_slice].take());
    let frozen = unix_now() + 3.0; // remote-write flushes every second
    let stopped = Instant::now();
    let mut at: BTreeMap<String, f64> = BTreeMap::new();
    for name in &names {
        loop {
            let series = export(&client, &vm, name, frozen).await;
            // The latest evaluation with a value: once the inputs pass the lookback,
            // vmalert ends each series with a staleness marker (null here), which
            // has nothing to compare. A slow machine may read only after that.
            let latest = series
                .iter()
                .filter_map(|s| {
                    let values = s["values"].as_array()?;
                    s["timestamps"]
                        .as_array()?
                        .iter()
                        .zip(values)
                        .filter(|(_, v)| v.is_number())
                        .filter_map(|(t, _)| t.as_i64())
                        .max()
                })
                .max();
            if let Some(ms) = latest {
                at.insert((*name).to_owned(), ms as f64 / 1000.0);
                break;
            }
            assert!(
                stopped.elapsed() < DEADLINE,
                "no evaluation of {name} on the final data\n{}",
                logs(&d)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // the last results are flushed
    let everything = export(&client, &vm, r#"{__name__!=""}"#, 0.0).await;
    std::fs::write(d.join("export.om"), openmetrics(&everything)).unwrap();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(d.join("export.om"))
        .arg(d.join("reference"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(d.join("reference.yml"), "global: {}\n").unwrap();
    let ref_port = free_port();
    let reference = format!("http://127.0.0.1:{ref_port}");
    let _prom = spawn(
        &d,
        "reference-prometheus",
        Command::new(binary(&["prometheus"]))
            .arg(format!(
                "--config.file={}",
                d.join("reference.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                d.join("reference").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{ref_port}"))
            .arg(format!("--query.lookback-delta={LOOKBACK}")),
    );
    let reference_ready = format!("{reference}/-/ready");
    wait_until("the reference Prometheus", Instant::now(), || {
        ready(&client, &reference_ready)
    })
    .await;

    let mut compared = 0;
    for (record, expr, rule_labels) in &recording {
        let t = at[record];
        let vm_series: BTreeMap<BTreeMap<String, String>, f64> =
            export(&client, &vm, record, t - 0.001)
                .await
                .iter()
                .filter_map(|s| {
                    let stamps = s["timestamps"].as_array()?;
                    let i = stamps
                        .iter()
                        .position(|x| x.as_i64() == Some((t * 1000.0).round() as i64))?;
                    Some((labels_of(&s["metric"]), s["values"][i].as_f64()?))
                })
                .filter(|(labels, _)| rule_labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
                .collect();
        let time = format!("{t:.3}");
        let text = post_form(
            &client,
            &format!("{reference}/api/v1/query"),
            &[("query", expr.as_str()), ("time", &time)],
        )
        .await;
        let resp: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(resp["status"], "success", "{record}: {resp}");
        let prom_series: BTreeMap<BTreeMap<String, String>, f64> = resp["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut labels = labels_of(&r["metric"]);
                labels.extend(rule_labels.clone());
                (
                    labels,
                    r["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect();
        assert!(!vm_series.is_empty(), "{record}: nothing recorded at {t}");
        assert_eq!(
            vm_series.keys().collect::<Vec<_>>(),
            prom_series.keys().collect::<Vec<_>>(),
            "{record} at {t}: VictoriaMetrics and Prometheus disagree on the series"
        );
        for (labels, v) in &vm_series {
            let p = prom_series[labels];
            assert!(
                close(*v, p),
                "{record}{labels:?} at {t}: vmalert recorded {v}, Prometheus computes {p} from the same samples"
            );
        }
        compared += vm_series.len();
    }
    let ranks = query(
        &client,
        &vm,
        "market:crypto_market_price:volatility24h_rank",
    )
    .await;
    assert!(ranks.len() >= 10, "{ranks:?}");
    eprintln!(
        "scale: {} recording rules, {compared} series equal in VictoriaMetrics and Prometheus; {:?}",
        recording.len(),
        started.elapsed()
    );
    drop(upstream);
    exporter.stop().await;
}
