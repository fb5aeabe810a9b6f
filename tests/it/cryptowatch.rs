//! The Cryptowatch source against a fake upstream replaying the real
//! 2023-08-19 `/markets/summaries` recording.

use crate::common::{Exporter, FakeUpstream, Reply, fixture, unmetered};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_every_market_of_the_recording() {
    let upstream = FakeUpstream::start(Reply::Json(fixture(
        "cryptowatch/markets_summaries.2023-08-19.json",
    )))
    .await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--poll.interval=1h",
    ])
    .await;
    let m = exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;

    // Exact values, as recorded.
    let cases = [
        (
            "crypto_market_price{exchange=\"kraken\",pair=\"btcusd\"}",
            26115.1,
        ),
        (
            "crypto_market_price_high_24h{exchange=\"kraken\",pair=\"btcusd\"}",
            26250.0,
        ),
        (
            "crypto_market_price_low_24h{exchange=\"kraken\",pair=\"btcusd\"}",
            25800.1,
        ),
        (
            "crypto_market_price_change_ratio_24h{exchange=\"kraken\",pair=\"btcusd\"}",
            0.001910586104898055,
        ),
        (
            "crypto_market_volume_24h{exchange=\"kraken\",pair=\"btcusd\"}",
            1143.9408934147432,
        ),
        (
            "crypto_market_volume_quote_24h{exchange=\"kraken\",pair=\"btcusd\"}",
            29776774.655767854,
        ),
        (
            "crypto_market_volume_usd_24h{exchange=\"kraken\",pair=\"btcusd\"}",
            29776774.655767854,
        ),
        // A futures market, with '-' in its pair symbol.
        (
            "crypto_market_price{exchange=\"binance\",pair=\"btcusdt-perpetual-futures\"}",
            26097.0,
        ),
        (
            "crypto_market_volume_quote_24h{exchange=\"binance\",pair=\"btcusdt-perpetual-futures\"}",
            6150797336.124637,
        ),
        // An inverse future: volume in base currency is volumeBase, not the contract count.
        (
            "crypto_market_volume_24h{exchange=\"kraken-futures\",pair=\"btcusd-biquarterly-future-inverse\"}",
            4.714558915668438,
        ),
        (
            "crypto_market_price_change_ratio_24h{exchange=\"kraken-futures\",pair=\"btcusd-biquarterly-future-inverse\"}",
            -0.0006473724295506473,
        ),
        // Exponent form upstream.
        (
            "crypto_market_price{exchange=\"binance-us\",pair=\"adabtc\"}",
            0.00001023,
        ),
        // A market without volumeUSD.
        (
            "crypto_market_volume_quote_24h{exchange=\"binance-us\",pair=\"ankrusdt\"}",
            74.64555499998811,
        ),
    ];
    for (series, want) in cases {
        assert_eq!(m.get(series), Some(want), "{series}");
    }
    assert_eq!(
        m.get("crypto_market_volume_usd_24h{exchange=\"binance-us\",pair=\"ankrusdt\"}"),
        None
    );

    // Counts: 14,462 markets, 1,041 without trades (no price gauges), 1,557 without volumeUSD.
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"cryptowatch\"}"),
        14_462.0
    );
    assert_eq!(
        m.value("crypto_market_exporter_markets_no_trades{source=\"cryptowatch\"}"),
        1_041.0
    );
    assert_eq!(m.count("crypto_market_price"), 14_462 - 1_041);
    assert_eq!(m.count("crypto_market_price_high_24h"), 14_462 - 1_041);
    assert_eq!(m.count("crypto_market_volume_24h"), 14_462);
    assert_eq!(m.count("crypto_market_volume_usd_24h"), 14_462 - 1_557);
    // Zero-price markets have no price gauges.
    assert_eq!(m.price("binance-us", "balusdt"), None);
    assert_eq!(
        m.get("crypto_market_volume_24h{exchange=\"binance-us\",pair=\"balusdt\"}"),
        Some(0.0)
    );

    // Credits exported from the allowance.
    assert_eq!(
        m.value("crypto_market_exporter_credits_remaining{source=\"cryptowatch\"}"),
        9.695
    );
    assert_eq!(
        m.value("crypto_market_exporter_credits_cost{source=\"cryptowatch\"}"),
        0.015
    );
    assert_eq!(
        m.value("crypto_market_exporter_up{source=\"cryptowatch\"}"),
        1.0
    );

    // Output order is stable: sorted by exchange, then pair.
    let keys: Vec<&str> =
        m.0.lines()
            .filter(|l| l.starts_with("crypto_market_price{"))
            .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // Exactly two requests, the poll interval being an hour: the pair
    // listing (here answered with a summaries body, so unusable: markets go
    // out without base/quote, as checked above) and the summaries.
    let hits = upstream.hits();
    let uris: Vec<&str> = hits.iter().map(|h| h.uri.as_str()).collect();
    assert_eq!(uris, ["/pairs", "/markets/summaries"]);
    assert!(
        hits.iter().all(|h| h.headers.get("x-cw-api-key").is_none()),
        "no key configured, none sent"
    );
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_api_key_from_a_file() {
    let dir = std::env::temp_dir().join(format!("cme-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "s3cret-key\n").unwrap();
    let upstream = FakeUpstream::start(Reply::Json(fixture(
        "cryptowatch/markets_summaries.excerpt.2023-08-19.json",
    )))
    .await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}/", upstream.url),
        &format!("--cryptowatch.api-key-file={}", key_file.display()),
        "--poll.interval=1h",
    ])
    .await;
    exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;
    let hits = upstream.hits();
    assert_eq!(
        hits[1].uri, "/markets/summaries",
        "trailing slash in the URL is not doubled"
    );
    assert_eq!(hits[0].uri, "/pairs");
    assert_eq!(hits[0].headers.get("x-cw-api-key").unwrap(), "s3cret-key");
    exporter.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// The API key never leaves for another host: a redirect to another origin
/// is refused (and counted as a failed request), one on the same host is
/// followed with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_does_not_follow_a_redirect_to_another_host() {
    let dir = std::env::temp_dir().join(format!("cme-redirect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "s3cret-key\n").unwrap();
    let redirect = |to: String| Reply::Status {
        status: 302,
        headers: vec![("location", to)],
        body: bytes::Bytes::new(),
    };
    let summaries = || {
        Reply::Json(fixture(
            "cryptowatch/markets_summaries.excerpt.2023-08-19.json",
        ))
    };
    let elsewhere = FakeUpstream::start(summaries()).await;
    let upstream =
        FakeUpstream::start(redirect(format!("{}/markets/summaries", elsewhere.url))).await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        &format!("--cryptowatch.api-key-file={}", key_file.display()),
        "--poll.interval=50ms",
        "--poll.max-backoff=50ms",
        "--cryptowatch.rate-limit.period=10ms",
    ])
    .await;
    exporter
        .wait_for("a refused redirect", |m| m.failures("request") >= 2.0)
        .await;
    assert!(
        elsewhere.hits().is_empty(),
        "the other host was reached: {:?}",
        elsewhere.hits()
    );

    // The same host, another path: followed, key included.
    upstream.route(
        "/markets/summaries",
        redirect(format!("{}/v2/markets/summaries", upstream.url)),
    );
    upstream.route("/v2/markets/summaries", summaries());
    exporter
        .wait_for("a followed redirect", |m| m.successes() >= 1.0)
        .await;
    let moved = upstream.hits_on("/v2/markets/summaries");
    assert_eq!(moved[0].headers.get("x-cw-api-key").unwrap(), "s3cret-key");
    exporter.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_invalid_values_and_counts_them() {
    let upstream = FakeUpstream::start(Reply::Json(fixture(
        "cryptowatch/summaries.edge-cases.synthetic.json",
    )))
    .await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--poll.interval=1h",
    ])
    .await;
    let m = exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;
    // Old-generation shape with a '.' in the pair: volume falls back to `volume`.
    assert_eq!(m.price("binance", "stx.2btc"), Some(0.0000123));
    assert_eq!(
        m.get("crypto_market_volume_24h{exchange=\"binance\",pair=\"stx.2btc\"}"),
        Some(152340.0)
    );
    assert_eq!(
        m.get("crypto_market_volume_usd_24h{exchange=\"binance\",pair=\"stx.2btc\"}"),
        None
    );
    // NaN price and infinite quote volume dropped; the rest of the market stays.
    assert_eq!(m.price("kraken", "nanusd"), None);
    assert_eq!(
        m.get("crypto_market_price_high_24h{exchange=\"kraken\",pair=\"nanusd\"}"),
        Some(2.0)
    );
    assert_eq!(
        m.get("crypto_market_volume_quote_24h{exchange=\"kraken\",pair=\"nanusd\"}"),
        None
    );
    // Negative volume dropped, negative change kept.
    assert_eq!(
        m.get("crypto_market_volume_24h{exchange=\"kraken\",pair=\"negusd\"}"),
        None
    );
    assert_eq!(
        m.get("crypto_market_price_change_ratio_24h{exchange=\"kraken\",pair=\"negusd\"}"),
        Some(-0.1)
    );
    let rejected = |reason: &str| {
        m.value(&format!("crypto_market_exporter_values_rejected_total{{source=\"cryptowatch\",reason=\"{reason}\"}}"))
    };
    assert_eq!(rejected("nan"), 1.0);
    assert_eq!(rejected("infinite"), 1.0);
    assert_eq!(rejected("negative"), 1.0);
    assert_eq!(rejected("invalid_key"), 1.0);
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"cryptowatch\"}"),
        3.0
    );
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delisted_markets_vanish_on_the_next_poll() {
    let upstream = FakeUpstream::start(Reply::Json(unmetered(
        "cryptowatch/markets_summaries.excerpt.2023-08-19.json",
    )))
    .await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--poll.interval=50ms",
        "--cryptowatch.rate-limit.period=10ms",
    ])
    .await;
    let m = exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;
    assert_eq!(m.price("kraken", "ethusd"), Some(1678.69));
    upstream.set(Reply::Json(unmetered(
        "cryptowatch/summaries.edge-cases.synthetic.json",
    )));
    let m = exporter
        .wait_for("the new listing", |m| {
            m.price("binance", "stx.2btc").is_some()
        })
        .await;
    assert_eq!(m.price("kraken", "ethusd"), None);
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"cryptowatch\"}"),
        3.0
    );
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_cap() {
    let upstream = FakeUpstream::start(Reply::Json(fixture(
        "cryptowatch/markets_summaries.2023-08-19.json",
    )))
    .await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--poll.interval=1h",
        "--markets.include-exchanges=kraken*,bitstamp",
        "--markets.exclude-pairs=*-future*",
        "--markets.max=100",
    ])
    .await;
    let m = exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"cryptowatch\"}"),
        100.0
    );
    let truncated = m.value("crypto_market_exporter_markets_truncated{source=\"cryptowatch\"}");
    assert!(truncated > 0.0);
    let exchanges: std::collections::BTreeSet<&str> =
        m.0.lines()
            .filter(|l| l.starts_with("crypto_market_volume_24h{"))
            .map(|l| l.split('"').nth(1).unwrap())
            .collect();
    // Sorted order keeps bitstamp (first alphabetically) before any kraken market.
    assert!(
        exchanges
            .iter()
            .all(|e| *e == "bitstamp" || e.starts_with("kraken")),
        "{exchanges:?}"
    );
    assert!(exchanges.contains("bitstamp"));
    assert!(!m.0.contains("-future"), "futures excluded");
    exporter.stop().await;
}

/// Value-level failure isolation, fuzz-style: one market of the real
/// 14,462-market recording is mutated in each way that used to void the whole
/// response. Every time, the poll parses, only that value (or, for a garbled
/// key, that market) is dropped and counted, and every other market is intact.
#[test]
fn one_unrepresentable_value_costs_one_value_not_the_poll() {
    use crypto_market_exporter::domain::{RejectReason, admit_all};
    use crypto_market_exporter::source::cryptowatch::parse;

    let body = String::from_utf8(fixture("cryptowatch/markets_summaries.2023-08-19.json").to_vec())
        .unwrap();
    let original = r#""kraken:btcusd":{"price":{"last":26115.1,"high":26250,"low":25800.1,"#;
    assert_eq!(body.matches(original).count(), 1);
    let admitted = |text: &str| {
        let page = parse(text.as_bytes()).unwrap_or_else(|e| panic!("poll voided: {e}"));
        let mut rejections = page.rejections;
        let markets = admit_all(page.markets, &mut rejections);
        (markets, rejections)
    };
    let (baseline, base_rejections) = admitted(&body);
    let others = |markets: &[crypto_market_exporter::domain::Market]| {
        let mut v: Vec<_> = markets
            .iter()
            .filter(|m| !(m.exchange == "kraken" && m.pair == "btcusd"))
            .map(|m| (m.exchange.clone(), m.pair.clone(), m.values))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    };
    let huge = "9".repeat(100_000);
    let mutations: [(&str, String, Option<RejectReason>); 6] = [
        (
            "1e400 as the price",
            original.replace("26115.1", "1e400"),
            Some(RejectReason::Infinite),
        ),
        (
            "a 100,000-digit high",
            original.replace("26250", &huge),
            Some(RejectReason::Infinite),
        ),
        (
            "a bare NaN low",
            original.replace("25800.1", "NaN"),
            Some(RejectReason::Nan),
        ),
        (
            "-Infinity as the price",
            original.replace("26115.1", "-Infinity"),
            Some(RejectReason::Infinite),
        ),
        (
            "a malformed number",
            original.replace("26250", "2.6.250"),
            Some(RejectReason::Nan),
        ),
        (
            "a lone surrogate in the key",
            original.replace("btcusd", r"btc\ud800usd"),
            None,
        ),
    ];
    for (what, replacement, reason) in mutations {
        let mutated = body.replacen(original, &replacement, 1);
        assert!(
            serde_json::from_str::<serde_json::Value>(&mutated).is_err(),
            "{what}: the mutation should be invalid for a plain JSON parser"
        );
        let (markets, rejections) = admitted(&mutated);
        let delta =
            |r: RejectReason| rejections.values[r as usize] - base_rejections.values[r as usize];
        match reason {
            Some(reason) => {
                assert_eq!(markets.len(), baseline.len(), "{what}");
                assert_eq!(
                    delta(reason),
                    1,
                    "{what}: not counted as {}",
                    reason.reason()
                );
                let btc = markets
                    .iter()
                    .find(|m| m.exchange == "kraken" && m.pair == "btcusd")
                    .unwrap();
                let good = baseline
                    .iter()
                    .find(|m| m.exchange == "kraken" && m.pair == "btcusd")
                    .unwrap();
                let kept = btc
                    .values
                    .iter()
                    .zip(good.values)
                    .filter(|(a, b)| **a == *b)
                    .count();
                assert_eq!(
                    kept,
                    good.values.len() - 1,
                    "{what}: more than one value lost"
                );
            }
            None => {
                assert_eq!(markets.len(), baseline.len() - 1, "{what}");
                assert_eq!(delta(RejectReason::InvalidKey), 1, "{what}");
            }
        }
        assert_eq!(
            others(&markets),
            others(&baseline),
            "{what}: other markets changed"
        );
    }
}
