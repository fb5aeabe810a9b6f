//! `crypto-market-exporter backfill`: history that promtool accepts and that
//! ends exactly where the live exporter goes on.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crypto_market_exporter::backfill::{self, BackfillArgs, Written};
use crypto_market_exporter::config::Config;

use crate::common::{Exporter, tools_present};
use crate::harness::TempDir;

fn config(args: &[&str]) -> Config {
    let mut argv = vec!["crypto-market-exporter"];
    argv.extend_from_slice(args);
    Config::from_args_without_env(argv).unwrap()
}

/// Runs a backfill into `dir/name` and returns what it wrote and the text.
async fn backfill_to(
    dir: &TempDir,
    name: &str,
    config: &Config,
    since: Duration,
    until: SystemTime,
) -> (Written, String) {
    let path = dir.0.join(name);
    let args = BackfillArgs {
        since: Some(since),
        output: Some(path.clone()),
        labels: vec![
            "job=crypto-market-exporter".parse_label(),
            "instance=exporter:9795".parse_label(),
        ],
        ..BackfillArgs::default()
    };
    let written = backfill::run(config, &args, until).await.unwrap();
    (written, std::fs::read_to_string(&path).unwrap())
}

trait ParseLabel {
    fn parse_label(self) -> backfill::Label;
}

impl ParseLabel for &str {
    fn parse_label(self) -> backfill::Label {
        use crypto_market_exporter::settings::value::OptionValue;
        backfill::Label::parse(self).unwrap()
    }
}

/// Runs `crypto-market-exporter backfill FLAGS --output=OUT`; it must succeed.
fn run_backfill(flags: &[&str], out: &std::path::Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .arg("backfill")
        .args(flags)
        .arg(format!("--output={}", out.display()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The last sample of every series of `name`: labels (without the extra ones) → value text.
fn last_samples(text: &str, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let (series, rest) = line.split_once("} ").unwrap();
        let labels = series.trim_start_matches(&format!("{name}{{")).replace(
            ",job=\"crypto-market-exporter\",instance=\"exporter:9795\"",
            "",
        );
        let value = rest.split(' ').next().unwrap().to_owned();
        out.insert(labels, value);
    }
    out
}

/// The history's last step is what the live exporter served at that step,
/// digit for digit, for every market and gauge: no seam where they meet.
#[tokio::test]
async fn the_demo_history_ends_where_the_live_exporter_is() {
    let args = ["--source=demo", "--demo.markets=40", "--poll.interval=60s"];
    let exporter = Exporter::start(&args).await;
    let m = exporter
        .wait_for("the first demo poll", |m| {
            m.get("crypto_market_exporter_markets{source=\"demo\"}") == Some(40.0)
        })
        .await;
    let polled = m
        .get("crypto_market_exporter_last_success_timestamp_seconds{source=\"demo\"}")
        .unwrap();
    let live = m.0.clone();
    exporter.stop().await;

    let dir = TempDir::new("backfill-seam");
    let until = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(polled);
    let (written, text) = backfill_to(
        &dir,
        "h.om",
        &config(&args),
        Duration::from_secs(600),
        until,
    )
    .await;
    assert_eq!(written.series, 40 * 7);
    assert!(text.ends_with("# EOF\n"));
    for gauge in [
        "crypto_market_price",
        "crypto_market_price_high_24h",
        "crypto_market_price_low_24h",
        "crypto_market_price_change_ratio_24h",
        "crypto_market_volume_24h",
        "crypto_market_volume_quote_24h",
        "crypto_market_volume_usd_24h",
    ] {
        let history = last_samples(&text, gauge);
        let served: BTreeMap<String, String> = live
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&format!("{gauge}{{"))?;
                let (labels, value) = rest.split_once("} ")?;
                Some((labels.to_owned(), value.to_owned()))
            })
            .collect();
        assert_eq!(history.len(), 40, "{gauge}");
        assert_eq!(history, served, "{gauge}: history's last step != live");
    }
}

/// The same admission as the live exporter: filters and the cap.
#[tokio::test]
async fn filters_and_the_cap_apply_as_live() {
    let dir = TempDir::new("backfill-filters");
    let now = SystemTime::now();
    let (written, text) = backfill_to(
        &dir,
        "h.om",
        &config(&[
            "--source=demo",
            "--markets.include-pairs=btc*,eth*",
            "--markets.max=7",
        ]),
        Duration::from_secs(3600),
        now,
    )
    .await;
    let prices = last_samples(&text, "crypto_market_price");
    assert_eq!(prices.len(), 7, "{prices:?}");
    assert!(
        prices
            .keys()
            .all(|l| l.contains("pair=\"btc") || l.contains("pair=\"eth")),
        "{prices:?}"
    );
    assert_eq!(written.series, 7 * 7);
    // 60 steps of 60 s in the hour, per series.
    assert_eq!(written.samples, 7 * 7 * 60);
}

/// The binary: flags, a bad label named, and a file promtool turns into blocks.
#[test]
fn promtool_creates_blocks_from_the_output() {
    if !tools_present("promtool_creates_blocks_from_the_output", &["promtool"]) {
        return;
    }
    let dir = TempDir::new("backfill-promtool");
    let out = dir.0.join("history.om");
    run_backfill(
        &[
            "--source=demo",
            "--demo.markets=20",
            "--since=3h",
            "--label=job=crypto-market-exporter,instance=exporter:9795",
        ],
        &out,
    );
    assert!(!dir.0.join("history.om.partial").exists());
    let listed = crate::harness::create_blocks(&out, &dir.0.join("data"));
    // 20 markets x 7 gauges, in every block.
    assert!(listed.contains(" 140 "), "{listed}");

    let bad = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .args(["backfill", "--source=demo", "--label=__name__=x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--label: invalid label name \"__name__\""),
        "{stderr}"
    );
}

/// History on day one, end to end with the real binaries: the demo's past is
/// backfilled and loaded with its recording rules (deploy/backfill/load-history.sh,
/// the stages of prometheus/backfill), Prometheus starts on it with the shipped
/// rules and scrapes the live exporter, through a proxy that multiplies one
/// market's price by 10. The 24h rank and the 1h averages are there at once, equal
/// to their rules' expressions on the same samples, and the spike alert fires
/// without the 30 minutes its sample guard needs on an empty Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_history_serves_rules_and_alerts_from_the_first_minute() {
    use crate::harness::{DEADLINE, Proc, binary, free_port, query, ready, root, wait_until};
    use std::process::Stdio;
    use std::time::Instant;
    if !tools_present("backfill e2e", &["prometheus", "promtool"]) {
        return;
    }
    let dir = TempDir::new("backfill-e2e");
    let args = ["--source=demo", "--demo.markets=30", "--poll.interval=60s"];
    let exporter = Exporter::start(&args).await;

    // The live target: the exporter, with one market's price 10x (a planted spike).
    let upstream = exporter.url.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let upstream = upstream.clone();
            async move {
                let body = reqwest::get(format!("{upstream}/metrics"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let mut spiked = false;
                body.lines()
                    .map(|l| match l.rsplit_once(' ') {
                        Some((series, v))
                            if !spiked && series.starts_with("crypto_market_price{") =>
                        {
                            spiked = true;
                            format!("{series} {}\n", v.parse::<f64>().unwrap() * 10.0)
                        }
                        _ => format!("{l}\n"),
                    })
                    .collect::<String>()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let first_price = exporter
        .wait_for("the first demo poll", |m| {
            m.get("crypto_market_exporter_markets{source=\"demo\"}") == Some(30.0)
        })
        .await
        .0;
    let spiked_series = first_price
        .lines()
        .find(|l| l.starts_with("crypto_market_price{"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(s, _)| s.to_owned())
        .unwrap();
    let pair = spiked_series
        .split("pair=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();

    // 3 hours of history, labelled as Prometheus will label the live target.
    let history = dir.0.join("history.om");
    let mut flags = args.to_vec();
    let instance_label = format!("--label=instance={instance}");
    flags.extend([
        "--since=3h",
        "--label=job=crypto-market-exporter",
        &instance_label,
    ]);
    run_backfill(&flags, &history);
    let data = dir.0.join("data");
    let load = Command::new("sh")
        .arg(root().join("deploy/backfill/load-history.sh"))
        .arg(&history)
        .arg(&data)
        .env("BACKFILL_PROMETHEUS_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );

    let rules = crate::e2e::derived_rules(&dir.0);
    let rule_list: Vec<String> = rules
        .iter()
        .map(|r| format!("  - {}", r.display()))
        .collect();
    std::fs::write(
        dir.0.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 60s\nrule_files:\n{}\nscrape_configs:\n  - job_name: crypto-market-exporter\n    static_configs:\n      - targets: ['{instance}']\n",
            rule_list.join("\n")
        ),
    )
    .unwrap();
    let port = free_port();
    let prom = format!("http://127.0.0.1:{port}");
    let _prom = Proc(
        Command::new(binary(&["prometheus"]))
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let ready_url = format!("{prom}/-/ready");
    wait_until("Prometheus on the loaded history", Instant::now(), || {
        ready(&client, &ready_url)
    })
    .await;

    // The backfilled rules: their last samples before the live data, equal to
    // what each rule's expression gives at that instant on the same samples.
    let history_text = std::fs::read_to_string(&history).unwrap();
    let end: f64 = history_text
        .lines()
        .rev()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    // The last sample of a backfilled record: each stage's group evaluates on
    // its own offset, so every record has its own instants.
    let last_backfilled = async |record: &str| -> f64 {
        let text = crate::harness::post_form(
            &client,
            &format!("{prom}/api/v1/query"),
            &[
                ("query", &format!("{record}[30m]")),
                ("time", &format!("{end:.3}")),
            ],
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let t = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v[0].as_f64().unwrap())
            })
            .fold(f64::MIN, f64::max);
        assert!(
            t > end - 600.0,
            "{record}: nothing backfilled in the last 10 minutes of history: {v}"
        );
        t
    };
    for record in [
        "market:crypto_market_price:avg24h",
        "market:crypto_market_price:volatility24h",
        "market:crypto_market_price:volatility24h_rank",
    ] {
        let rules_text =
            std::fs::read_to_string(root().join("prometheus/rules/crypto-market.rules.yml"))
                .unwrap();
        let expr = rules_text
            .split(&format!("record: {record}\n"))
            .nth(1)
            .and_then(|r| r.split("expr: ").nth(1))
            .map(|e| {
                // The expression: one line, or a `|` block of indented lines.
                if let Some(block) = e.strip_prefix("|\n") {
                    block
                        .lines()
                        .take_while(|l| l.starts_with("          "))
                        .collect::<Vec<_>>()
                        .join("\n")
                } else {
                    e.lines().next().unwrap().to_owned()
                }
            })
            .unwrap();
        let t = last_backfilled(record).await;
        let recorded = query(&client, &prom, &format!("{record} @ {t:.3}")).await;
        assert_eq!(recorded.len(), 30, "{record}: one series per market");
        let computed = crate::harness::post_form(
            &client,
            &format!("{prom}/api/v1/query"),
            &[("query", &expr), ("time", &format!("{t:.3}"))],
        )
        .await;
        let computed: serde_json::Value = serde_json::from_str(&computed).unwrap();
        let computed = computed["data"]["result"].as_array().unwrap().clone();
        assert_eq!(computed.len(), recorded.len(), "{record}: {expr}");
        let value = |r: &serde_json::Value| r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
        let key = |r: &serde_json::Value| {
            (
                r["metric"]["exchange"].to_string(),
                r["metric"]["pair"].to_string(),
            )
        };
        let mut want: Vec<_> = computed.iter().map(|r| (key(r), value(r))).collect();
        let mut got: Vec<_> = recorded.iter().map(|r| (key(r), value(r))).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        for ((k, g), (_, w)) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1e-12),
                "{record}{k:?}: backfilled {g}, rule gives {w}"
            );
        }
    }

    // After the first live evaluations: the rank and every 1h average, fresh.
    for counted in [
        "count(market:crypto_market_price:avg1h)",
        "count(market:crypto_market_price:volatility24h_rank)",
    ] {
        wait_until(counted, Instant::now(), || async {
            query(&client, &prom, counted)
                .await
                .first()
                .is_some_and(|r| r["value"][1] == "30")
        })
        .await;
    }

    // The planted spike fires with history: scraped every 60 s, as compose does, an
    // empty Prometheus would need 30 minutes of samples before the guard lets it.
    let started = Instant::now();
    loop {
        let alerts = query(
            &client,
            &prom,
            "ALERTS{alertname=\"CryptoMarketSpike\",alertstate=\"firing\",metric=\"price\"}",
        )
        .await;
        if alerts.iter().any(|a| a["metric"]["pair"] == pair.as_str()) {
            break;
        }
        // The first scrape (within a scrape interval), then `for: 1m`.
        assert!(
            started.elapsed() < DEADLINE + Duration::from_secs(90),
            "CryptoMarketSpike never fired for {pair}: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    exporter.stop().await;
}

/// A fast-polled demo (5 s) backfilled at 60 s: every 12th step, on whole minutes,
/// each the very value the live exporter serves at that step.
#[tokio::test]
async fn a_coarser_step_samples_the_same_values() {
    let dir = TempDir::new("backfill-step");
    let config = config(&["--source=demo", "--demo.markets=3", "--poll.interval=5s"]);
    let path = dir.0.join("h.om");
    let args = BackfillArgs {
        since: Some(Duration::from_secs(3600)),
        step: Some(Duration::from_secs(60)),
        output: Some(path.clone()),
        ..BackfillArgs::default()
    };
    let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let written = backfill::run(&config, &args, until).await.unwrap();
    assert_eq!(written.samples, 3 * 7 * 60);
    let text = std::fs::read_to_string(&path).unwrap();
    let stamps: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("crypto_market_price{exchange=\"alphaex\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), 60);
    assert!(stamps.iter().all(|t| t % 60.0 == 0.0), "{stamps:?}");
    assert_eq!(
        *stamps.last().unwrap(),
        1_790_000_000.0 - 1_790_000_000.0 % 60.0
    );
    // The 60 s history's last sample is the 5 s demo's value at that step.
    let mut demo = crypto_market_exporter::source::demo::Demo::new(&config.settings.demo);
    let live = demo.at(demo.step_of(1_789_999_980_000));
    let price = live[0].values[0].unwrap();
    let history_last = text
        .lines()
        .filter(|l| l.starts_with("crypto_market_price{"))
        .find(|l| {
            l.ends_with(" 1789999980")
                && l.contains(&format!("pair=\"{}\"", live[0].pair))
                && l.contains(&format!("exchange=\"{}\"", live[0].exchange))
        })
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert_eq!(history_last, price);
}
