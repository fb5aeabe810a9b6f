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
fn backfill_to(
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
    let written = backfill::run(config, &args, until).unwrap();
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
    );
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
#[test]
fn filters_and_the_cap_apply_as_live() {
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
    );
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

#[test]
fn network_sources_are_refused_with_a_reason() {
    let err = backfill::run(
        &config(&["--source=kraken"]),
        &BackfillArgs::default(),
        SystemTime::now(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "source kraken: backfill reads only the demo source so far (the candle endpoints of the network sources are not implemented yet)"
    );
}

/// The binary: flags, a bad label named, and a file promtool turns into blocks.
#[test]
fn promtool_creates_blocks_from_the_output() {
    if !tools_present("promtool_creates_blocks_from_the_output", &["promtool"]) {
        return;
    }
    let dir = TempDir::new("backfill-promtool");
    let out = dir.0.join("history.om");
    let run = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .args([
            "backfill",
            "--source=demo",
            "--demo.markets=20",
            "--since=3h",
            "--label=job=crypto-market-exporter,instance=exporter:9795",
        ])
        .arg(format!("--output={}", out.display()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!dir.0.join("history.om.partial").exists());
    let blocks = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&out)
        .arg(dir.0.join("data"))
        .output()
        .unwrap();
    assert!(
        blocks.status.success(),
        "{}",
        String::from_utf8_lossy(&blocks.stderr)
    );
    let listed = String::from_utf8_lossy(&blocks.stdout).into_owned();
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
