//! End to end with the real binaries (Debian's `prometheus`, `promtool` and
//! `prometheus-alertmanager`, installed by .ci/run): the exporter against a fake
//! upstream, Prometheus with the repo's rule files, Alertmanager with the shipped
//! routes, receivers and templates, an SMTP sink and a Slack webhook sink, all on
//! 127.0.0.1 with ephemeral ports.
//!
//! 1. An hour of flat history is backfilled (`promtool tsdb create-blocks-from
//!    openmetrics`); live data then shows kraken/btcusd at 3.5x its price.
//! 2. Exactly that market reaches both receivers, once, as the templates lay it out.
//! 3. Every recording rule yields series; every Grafana panel query returns data.
//! 4. The price comes back: exactly one resolved message per receiver.
//!
//! Set CME_E2E_KEEP=1 to keep the temporary directory (configs, logs, TSDB).
//!
//! Derived for speed, nothing else: rule group intervals become 5s (the `for:`
//! durations stay), scrapes every 10s, and Alertmanager's waits become seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Exporter, FakeUpstream, Reply, unmetered};
use crate::harness::{
    DEADLINE, Proc, TempDir, assert_says, binary, derived_alertmanager, free_port, query, ready,
    root, start_sink, start_smtp_sink, unix_now, wait_until,
};
use crypto_market_exporter::domain::{Market, MarketGauge, Rejections, admit_all};
use crypto_market_exporter::source::cryptowatch::parse;
use serde_json::Value;

const FIXTURE: &str = "cryptowatch/markets_summaries.excerpt.2023-08-19.json";

/// Seconds into the previous clock hour of its 5-minute rollups (never on the hour, as
/// in production) and of its hourly totals.
const ROLLUPS: [i64; 12] = [
    150, 450, 750, 1050, 1350, 1650, 1950, 2250, 2550, 2850, 3150, 3450,
];
const TOTALS: [i64; 1] = [1800];

/// One hour of the recording's values at the scrape interval (10s), ending 30s ago;
/// and, for the 24h statistics, what Prometheus would have recorded in the previous
/// clock hour: the 5-minute rollups of those values and the hourly 24h totals. The
/// 24h groups read only whole past clock hours (docs/rules.md), which a test of a few
/// minutes never lives through.
fn backfill(dir: &Path, instance: &str) {
    let page = parse(&unmetered(FIXTURE)).unwrap();
    let mut rejections = Rejections::default();
    let markets = admit_all(page.markets, &mut rejections);
    let end = unix_now() as i64 - 30;
    let hour = end - end % 3600; // the last whole hour: the previous clock hour ends here
    let labels = |m: &Market| {
        format!(
            "{{exchange=\"{}\",pair=\"{}\",job=\"crypto-market-exporter\",instance=\"{instance}\"}}",
            m.exchange, m.pair
        )
    };
    let mut om = String::new();
    for gauge in MarketGauge::ALL {
        om.push_str(&format!("# TYPE {} gauge\n", gauge.name()));
        for m in &markets {
            let Some(v) = m.get(gauge) else { continue };
            for i in (0..360).rev() {
                om.push_str(&format!(
                    "{}{} {v} {}\n",
                    gauge.name(),
                    labels(m),
                    end - i * 10
                ));
            }
        }
    }
    let recorded = [
        MarketGauge::Price,
        MarketGauge::Volume24h,
        MarketGauge::VolumeQuote24h,
        MarketGauge::VolumeUsd24h,
    ];
    for gauge in recorded {
        // 30 samples per 5 minutes at the 10s scrape interval; 12 windows per hour.
        // (statistic, samples it sums, power of the value, when): count, Σx, Σx².
        let stats: [(&str, f64, i32, &[i64]); 6] = [
            ("count5m", 30.0, 0, &ROLLUPS),
            ("sum5m", 30.0, 1, &ROLLUPS),
            ("sumsq5m", 30.0, 2, &ROLLUPS),
            ("count24h_hourly", 360.0, 0, &TOTALS),
            ("sum24h_hourly", 360.0, 1, &TOTALS),
            ("sumsq24h_hourly", 360.0, 2, &TOTALS),
        ];
        for (stat, samples, power, offsets) in stats {
            let name = format!("market:{}:{stat}", gauge.name());
            om.push_str(&format!("# TYPE {name} gauge\n"));
            for m in &markets {
                let Some(v) = m.get(gauge) else { continue };
                for offset in offsets {
                    om.push_str(&format!(
                        "{name}{} {} {}\n",
                        labels(m),
                        samples * v.powi(power),
                        hour - 3600 + offset
                    ));
                }
            }
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join("backfill.om");
    std::fs::write(&file, om).unwrap();
    let out = Command::new(binary(&["promtool"]))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repo's rule files with every group interval shortened to 5s.
pub fn derived_rules(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("prometheus/rules")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let fast: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("interval:") {
                    "    interval: 5s".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let target = dir.join(path.file_name().unwrap());
        std::fs::write(&target, fast).unwrap();
        out.push(target);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spike_reaches_the_sink_and_every_query_has_data() {
    if !crate::common::tools_present("e2e", &["prometheus", "promtool", "amtool"]) {
        return;
    }
    let started = Instant::now();
    let prometheus = binary(&["prometheus"]);
    let alertmanager = binary(&["prometheus-alertmanager", "alertmanager"]);
    let dir = TempDir::new("e2e");

    // Live data: the recording, with kraken/btcusd at 3.5x its recorded price.
    let body = String::from_utf8(unmetered(FIXTURE).to_vec()).unwrap();
    let spiked = body.replacen(
        r#""kraken:btcusd":{"price":{"last":26115.1"#,
        r#""kraken:btcusd":{"price":{"last":91402.85"#,
        1,
    );
    assert_ne!(body, spiked);
    let upstream = FakeUpstream::start(Reply::Json(spiked.into())).await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--poll.interval=10s",
        "--cryptowatch.rate-limit.period=100ms",
    ])
    .await;
    let instance = exporter.url.trim_start_matches("http://").to_owned();
    let (sink, notifications) = start_sink().await;
    let (smtp_port, mails) = start_smtp_sink().await;

    backfill(&dir.0, &instance);
    let rules = derived_rules(&dir.0);
    let am_port = free_port();
    let am_config = derived_alertmanager(&dir.0, &format!("{sink}/slack"), smtp_port);
    let _am = Proc(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.0.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("alertmanager.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom_port = free_port();
    let rule_list: Vec<String> = rules
        .iter()
        .map(|r| format!("  - {}", r.display()))
        .collect();
    let prom_config = format!(
        "global:\n  scrape_interval: 10s\n  evaluation_interval: 5s\nrule_files:\n{}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: crypto-market-exporter\n    static_configs:\n      - targets: ['{instance}']\n",
        rule_list.join("\n")
    );
    std::fs::write(dir.0.join("prometheus.yml"), prom_config).unwrap();
    let _prom = Proc(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg(format!("--web.external-url=http://127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let client = reqwest::Client::new();

    // The backfilled hour is visible: 360 samples before the live ones.
    wait_until("Prometheus with the backfilled hour", started, || async {
        ready(&client, &format!("{prom}/-/ready")).await
            && query(&client, &prom, r#"count_over_time(crypto_market_price{exchange="kraken",pair="btcusd"}[1h]) > 300"#).await.len() == 1
    })
    .await;

    // 1. The spike reaches both receivers: one message each, for that market only.
    let delivered = || notifications.lock().unwrap().len() + mails.lock().unwrap().len();
    while delivered() < 2 {
        if started.elapsed() > DEADLINE {
            let mut state = String::new();
            for expr in [
                r#"crypto_market_price{exchange="kraken",pair="btcusd"}"#,
                r#"market:crypto_market_price:avg1h{exchange="kraken",pair="btcusd"}"#,
                r#"count_over_time(crypto_market_price{exchange="kraken",pair="btcusd"}[1h])"#,
                "ALERTS",
            ] {
                state.push_str(&format!(
                    "{expr} = {:?}\n",
                    query(&client, &prom, expr).await
                ));
            }
            let logs = |f: &str| std::fs::read_to_string(dir.0.join(f)).unwrap_or_default();
            panic!(
                "{} message(s) after {DEADLINE:?}\n{state}\nprometheus.log:\n{}\nalertmanager.log:\n{}",
                delivered(),
                logs("prometheus.log"),
                logs("alertmanager.log")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await; // one more group_interval: nothing else may arrive
    let graph = format!("Graph: http://127.0.0.1:{prom_port}/graph?g0.expr=");
    {
        let mails = mails.lock().unwrap();
        assert_eq!(mails.len(), 1, "exactly one e-mail expected: {mails:#?}");
        let mail = &mails[0];
        assert_says(
            "e-mail",
            mail,
            &[
                "Subject: [FIRING:1] CryptoMarketSpike btcusd on kraken",
                "FIRING: A market's price is more than 3x its 1-hour average.",
                "The price of btcusd on kraken is 91.4k, 3.",
                "Market: kraken btcusd",
                "Metric: price",
                "Began: ",
                "Dashboard: http://localhost:3000/d/crypto-market-detail/crypto-market-detail?var-exchange=kraken&var-pair=btcusd",
                &graph,
                "Runbook: https://github.com/crypto-market-exporter/crypto-market-exporter/blob/main/docs/runbook.md#cryptomarketspike",
            ],
        );
        assert!(!mail.contains("RESOLVED"), "{mail}");
        let slack = notifications.lock().unwrap();
        assert_eq!(
            slack.len(),
            1,
            "exactly one Slack message expected: {slack:#?}"
        );
        let (receiver, payload) = &slack[0];
        assert_eq!(receiver, "slack");
        let attachment = &payload["attachments"][0];
        assert_eq!(
            attachment["title"],
            "[FIRING:1] CryptoMarketSpike btcusd on kraken"
        );
        let text = attachment["text"].as_str().unwrap();
        assert_says(
            "Slack message",
            text,
            &[
                "*FIRING* A market's price is more than 3x its 1-hour average.",
                "The price of btcusd on kraken is 91.4k, 3.",
                "Market: kraken btcusd",
                "|Dashboard>",
                &format!("<http://127.0.0.1:{prom_port}/graph?g0.expr="),
                "#cryptomarketspike|Runbook>",
            ],
        );
    }
    let firing = query(&client, &prom, r#"ALERTS{alertstate="firing"}"#).await;
    assert_eq!(firing.len(), 1, "only one alert may fire: {firing:#?}");

    // 2. Every recording rule yields series.
    let rules = client
        .get(format!("{prom}/api/v1/rules?type=record"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let names: Vec<String> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| {
            g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned())
        })
        .collect();
    // The lean default: 24 rules, 13 per-market names (tests/it/mixin.rs).
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        wait_until(&format!("series of {name}"), started, || async {
            !query(&client, &prom, name).await.is_empty()
        })
        .await;
    }

    // 3. Every Grafana panel query, variables substituted, returns data.
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("grafana/dashboards")).unwrap() {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let mut exprs: Vec<(String, String)> = Vec::new();
        for p in dashboard["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                exprs.push((
                    p["title"].as_str().unwrap().to_owned(),
                    t["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
        for a in dashboard["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = a["expr"].as_str() {
                exprs.push((a["name"].as_str().unwrap().to_owned(), expr.to_owned()));
            }
        }
        for (title, expr) in exprs {
            let expr = expr
                .replace("$exchange", "kraken")
                .replace("$pair", "btcusd")
                .replace("$instance", ".*")
                .replace("$source", "cryptowatch")
                .replace("$__rate_interval", "40s"); // Grafana: 4x the 10s scrape interval
            let result = query(&client, &prom, &expr).await;
            assert!(
                !result.is_empty(),
                "{}: panel {title:?} has no data for {expr}",
                dashboard["uid"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} panel queries found");

    // 4. The price comes back: one resolved message per receiver, saying so.
    upstream.set(Reply::Json(body.clone().into()));
    let resolved_by = Instant::now();
    while delivered() < 4 {
        assert!(
            resolved_by.elapsed() < DEADLINE,
            "{} message(s) in all, no resolved ones after {DEADLINE:?}; alertmanager.log:\n{}",
            delivered(),
            std::fs::read_to_string(dir.0.join("alertmanager.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mails = mails.lock().unwrap().clone();
    assert_eq!(
        mails.len(),
        2,
        "one firing, one resolved e-mail: {mails:#?}"
    );
    let mail = &mails[1];
    assert_says(
        "resolved e-mail",
        mail,
        &[
            "Subject: [RESOLVED:1] CryptoMarketSpike btcusd on kraken",
            "RESOLVED, no longer true: A market's price is more than 3x its 1-hour average.",
            "Resolved at ",
            "Last seen while firing: 91.4k, 3.",
            "x the 1h average of ",
            "Dashboard: http://localhost:3000/d/crypto-market-detail/",
            &graph,
        ],
    );
    assert!(!mail.contains("FIRING"), "{mail}");
    assert!(
        !mail.contains("The price of btcusd on kraken is"),
        "firing text repeated:\n{mail}"
    );
    let slack = notifications.lock().unwrap().clone();
    assert_eq!(
        slack.len(),
        2,
        "one firing, one resolved Slack message: {slack:#?}"
    );
    let attachment = &slack[1].1["attachments"][0];
    assert_eq!(
        attachment["title"],
        "[RESOLVED:1] CryptoMarketSpike btcusd on kraken"
    );
    let text = attachment["text"].as_str().unwrap();
    assert_says(
        "resolved Slack message",
        text,
        &[
            "*RESOLVED*, no longer true:",
            "Resolved at ",
            "Last seen while firing: 91.4k",
        ],
    );
    drop(upstream);
    exporter.stop().await;
}
