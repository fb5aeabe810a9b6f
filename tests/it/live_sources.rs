//! The live exchange sources (Kraken, Binance, Coinbase) against fake
//! upstreams on 127.0.0.1:0 replaying recorded (or, where no recording
//! exists, documented-format) responses: values, pair normalisation, rate-limit
//! headers and `Retry-After`, error bodies, the quota counted at the fake
//! server, and the isolation of several sources running at once.

use std::time::Duration;

use crate::common::{Exporter, FakeUpstream, Hit, Metrics, Reply, fixture, unmetered};
use bytes::Bytes;

fn json(path: &str) -> Reply {
    Reply::Json(fixture(path))
}

fn status(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
    Reply::Status {
        status,
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: Bytes::from(body.to_owned()),
    }
}

async fn start(args: &[String]) -> Exporter {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start(&refs).await
}

/// Fast polling for one network source, with a generous quota.
fn args(source: &str, url: &str) -> Vec<String> {
    args_with(source, url, "50ms", "10ms")
}

fn args_with(source: &str, url: &str, interval: &str, period: &str) -> Vec<String> {
    vec![
        format!("--source={source}"),
        format!("--{source}.url={url}"),
        format!("--poll.interval={interval}"),
        "--poll.max-backoff=200ms".into(),
        // Above the default cap of 10 polls, so a 1s Retry-After is obeyed in full.
        "--poll.max-retry-after=5s".into(),
        format!("--{source}.rate-limit.period={period}"),
        format!("--{source}.timeout=500ms"),
        format!("--{source}.connect-timeout=500ms"),
    ]
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() <= expected.abs() * 1e-12)
}

/// The quota held at the server: in any span of 10 periods, at most 10
/// requests plus 2. The governor spaces the *releases* one period apart; a
/// request's trip from release to the server can take a while on a loaded
/// machine, which can bring two arrivals closer than one period but never adds
/// requests to a span, so this bound cannot fail on a slow machine. Without
/// the limiter the polls (1 ms apart) would put dozens of requests in a span.
fn assert_within_quota(hits: &[Hit], period: Duration) {
    assert!(hits.len() >= 3, "too few requests to judge: {}", hits.len());
    let span = period * 10;
    for (i, first) in hits.iter().enumerate() {
        let within = hits[i..]
            .iter()
            .take_while(|h| h.at - first.at < span)
            .count();
        assert!(
            within <= 12,
            "{within} requests within {span:?} from {} on; the quota allows one per {period:?}",
            first.uri
        );
    }
}

// ---- Kraken ----

async fn kraken_upstream() -> FakeUpstream {
    let up =
        FakeUpstream::start(status(404, &[], r#"{"error":["EGeneral:Unknown method"]}"#)).await;
    up.route(
        "/0/public/AssetPairs",
        json("kraken/asset_pairs.excerpt.2026-01.json"),
    );
    up.route("/0/public/Ticker", json("kraken/ticker.all.synthetic.json"));
    up
}

#[tokio::test]
async fn kraken_values_and_normalisation() {
    let up = kraken_upstream().await;
    let exporter = start(&args("kraken", &up.url)).await;
    let m = exporter
        .wait_for("a kraken poll", |m| m.successes_of("kraken") >= 1.0)
        .await;
    // The recorded single-pair ticker (XBTUSDT) inside the synthetic all-pairs body.
    let price = |base, quote| m.labelled("crypto_market_price", "kraken", base, quote);
    assert_eq!(price("btc", "usdt"), Some(81280.2));
    assert_eq!(
        m.labelled("crypto_market_price_high_24h", "kraken", "btc", "usdt"),
        Some(81363.8)
    );
    assert_eq!(
        m.labelled("crypto_market_price_low_24h", "kraken", "btc", "usdt"),
        Some(76972.3)
    );
    assert_eq!(
        m.labelled("crypto_market_volume_24h", "kraken", "btc", "usdt"),
        Some(218.16099893)
    );
    assert!(close(
        m.labelled("crypto_market_volume_quote_24h", "kraken", "btc", "usdt"),
        218.16099893 * 79575.03199
    ));
    // XXBTZUSD → btcusd, XDGUSD → dogeusd, USDTZUSD → usdtusd, 1INCHEUR → 1incheur.
    assert_eq!(price("btc", "usd"), Some(81291.0));
    assert_eq!(price("doge", "usd"), Some(0.1234567));
    assert_eq!(price("usdt", "usd"), Some(1.0002));
    assert_eq!(price("btc", "eur"), Some(74820.4));
    // Kraken's `o` is the open at midnight UTC, not 24 h ago: no change ratio.
    assert_eq!(m.count("crypto_market_price_change_ratio_24h"), 0);
    // 1INCHEUR has no trade in 24 h: volumes exported, price gauges not.
    assert_eq!(price("1inch", "eur"), None);
    assert_eq!(
        m.labelled("crypto_market_volume_24h", "kraken", "1inch", "eur"),
        Some(0.0)
    );
    assert_eq!(m.of("markets_no_trades", "kraken"), 1.0);
    // ZZNEWUSD is not in AssetPairs: counted, not guessed.
    assert_eq!(m.rejected("kraken", "unknown_pair"), 1.0);
    assert_eq!(m.of("markets", "kraken"), 9.0);
    assert!(
        up.hits_on("/0/public/AssetPairs").len() == 1,
        "AssetPairs is fetched hourly, not per poll"
    );
    exporter.stop().await;
}

#[tokio::test]
async fn kraken_errors_in_a_200_keep_the_last_good_data() {
    let up = kraken_upstream().await;
    let exporter = start(&args("kraken", &up.url)).await;
    exporter
        .wait_for("a kraken poll", |m| m.successes_of("kraken") >= 1.0)
        .await;
    up.route(
        "/0/public/Ticker",
        json_text(r#"{"error":["EService:Unavailable"],"result":{}}"#),
    );
    exporter
        .wait_for("api_error", |m| m.failures_of("kraken", "api_error") >= 1.0)
        .await;
    up.route(
        "/0/public/Ticker",
        json_text(r#"{"error":["EGeneral:Too many requests"]}"#),
    );
    let m = exporter
        .wait_for("rate_limited", |m| {
            m.failures_of("kraken", "rate_limited") >= 1.0
        })
        .await;
    assert_eq!(m.of("up", "kraken"), 0.0);
    assert_eq!(
        m.labelled("crypto_market_price", "kraken", "btc", "usdt"),
        Some(81280.2),
        "last good data stays"
    );
    up.route("/0/public/Ticker", json("kraken/ticker.all.synthetic.json"));
    exporter
        .wait_for("recovery", |m| m.of("up", "kraken") == 1.0)
        .await;
    exporter.stop().await;
}

#[tokio::test]
async fn kraken_without_asset_pairs_fails_the_poll() {
    let up = kraken_upstream().await;
    up.route(
        "/0/public/AssetPairs",
        status(502, &[], "<html>Bad Gateway</html>"),
    );
    let exporter = start(&args("kraken", &up.url)).await;
    let m = exporter
        .wait_for("http_status", |m| {
            m.failures_of("kraken", "http_status") >= 1.0
        })
        .await;
    assert_eq!(m.count("crypto_market_price"), 0);
    assert_eq!(exporter.get("/-/ready", &[]).await.status(), 503);
    exporter.stop().await;
}

fn json_text(body: &str) -> Reply {
    Reply::Json(Bytes::from(body.to_owned()))
}

#[tokio::test]
async fn kraken_quota_counted_at_the_server() {
    let up = kraken_upstream().await;
    let exporter = start(&args_with("kraken", &up.url, "1ms", "100ms")).await;
    exporter
        .wait_for("several polls", |m| m.successes_of("kraken") >= 5.0)
        .await;
    exporter.stop().await;
    assert_within_quota(&up.hits(), Duration::from_millis(100));
}

// ---- Binance ----

async fn binance_upstream(used_weight: &str) -> FakeUpstream {
    let up = FakeUpstream::start(status(404, &[], r#"{"code":-1,"msg":"not found"}"#)).await;
    up.route(
        "/api/v3/exchangeInfo",
        Reply::Status {
            status: 200,
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-mbx-used-weight-1m", "20".into()),
            ],
            body: fixture("binance/exchange_info.synthetic.json"),
        },
    );
    up.route(
        "/api/v3/ticker/24hr",
        Reply::Status {
            status: 200,
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-mbx-used-weight-1m", used_weight.into()),
            ],
            body: fixture("binance/ticker_24hr.excerpt.2024-01-05.json"),
        },
    );
    up
}

#[tokio::test]
async fn binance_values_and_normalisation() {
    let up = binance_upstream("100").await;
    let exporter = start(&args("binance", &up.url)).await;
    let m = exporter
        .wait_for("a binance poll", |m| m.successes_of("binance") >= 1.0)
        .await;
    // Recorded BTCUSDT of 2024-01-05: strings parsed, percent turned into a ratio.
    assert_eq!(
        m.labelled("crypto_market_price", "binance", "btc", "usdt"),
        Some(43714.03)
    );
    assert!(close(
        m.labelled(
            "crypto_market_price_change_ratio_24h",
            "binance",
            "btc",
            "usdt"
        ),
        -0.01198
    ));
    assert_eq!(
        m.labelled("crypto_market_volume_24h", "binance", "btc", "usdt"),
        Some(49543.47584)
    );
    assert_eq!(
        m.labelled("crypto_market_price", "binance", "eth", "btc"),
        Some(0.05121)
    );
    assert_eq!(
        m.labelled("crypto_market_volume_quote_24h", "binance", "eth", "btc"),
        Some(2055.162892)
    );
    // BCCBTC is dead (count 0): skipped. SOLUSDT is missing from exchangeInfo.
    assert!(!m.0.contains("pair=\"bccbtc\""));
    assert_eq!(m.of("markets_no_trades", "binance"), 1.0);
    assert_eq!(m.rejected("binance", "unknown_pair"), 1.0);
    assert_eq!(m.of("markets", "binance"), 10.0);
    assert_eq!(m.count("crypto_market_volume_usd_24h"), 0);
    exporter.stop().await;
}

#[tokio::test]
async fn binance_slows_down_near_the_weight_limit() {
    // 5,950 of 6,000 used: one more ticker (80) would cross the 80 % headroom.
    let up = binance_upstream("5950").await;
    let exporter = start(&args("binance", &up.url)).await;
    exporter
        .wait_for("a binance poll", |m| m.successes_of("binance") >= 1.0)
        .await;
    // At a 50 ms interval there would be ~15 more polls in 800 ms; the next
    // poll must instead wait for the next minute window (at least 1 s away).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let m = Metrics(exporter.metrics().await);
    assert_eq!(up.hits_on("/api/v3/ticker/24hr").len(), 1);
    assert!(m.of("next_poll_delay_seconds", "binance") >= 1.0);
    exporter.stop().await;
}

#[tokio::test]
async fn binance_429_then_418_honour_retry_after() {
    let up = binance_upstream("100").await;
    let exporter = start(&args("binance", &up.url)).await;
    exporter
        .wait_for("a binance poll", |m| m.successes_of("binance") >= 1.0)
        .await;
    let body = r#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}"#;
    up.route(
        "/api/v3/ticker/24hr",
        status(429, &[("retry-after", "1")], body),
    );
    exporter
        .wait_for("429", |m| m.failures_of("binance", "rate_limited") >= 1.0)
        .await;
    up.route(
        "/api/v3/ticker/24hr",
        status(418, &[("retry-after", "1")], body),
    );
    exporter
        .wait_for("418", |m| m.failures_of("binance", "rate_limited") >= 2.0)
        .await;
    up.route(
        "/api/v3/ticker/24hr",
        json("binance/ticker_24hr.excerpt.2024-01-05.json"),
    );
    let m = exporter
        .wait_for("recovery", |m| m.of("up", "binance") == 1.0)
        .await;
    exporter.stop().await;
    assert_eq!(
        m.failures_of("binance", "rate_limited"),
        2.0,
        "one request per Retry-After"
    );
    // After each 429/418 the next request waited the full Retry-After second.
    let hits = up.hits_on("/api/v3/ticker/24hr");
    let gaps: Vec<Duration> = hits.windows(2).map(|w| w[1].at - w[0].at).collect();
    let waited = gaps
        .iter()
        .filter(|g| **g >= Duration::from_millis(990))
        .count();
    assert!(waited >= 2, "Retry-After not honoured: {gaps:?}");
}

#[tokio::test]
async fn binance_error_body_is_reported() {
    let up = binance_upstream("100").await;
    up.route(
        "/api/v3/ticker/24hr",
        status(400, &[], r#"{"code":-1121,"msg":"Invalid symbol."}"#),
    );
    let exporter = start(&args("binance", &up.url)).await;
    let m = exporter
        .wait_for("http_status", |m| {
            m.failures_of("binance", "http_status") >= 1.0
        })
        .await;
    assert_eq!(m.of("up", "binance"), 0.0);
    exporter.stop().await;
}

// ---- Coinbase ----

async fn coinbase_upstream() -> FakeUpstream {
    let up = FakeUpstream::start(status(404, &[], r#"{"message":"NotFound"}"#)).await;
    up.route("/products", json("coinbase/products.synthetic.json"));
    let stats: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fixture("coinbase/stats.synthetic.json")).unwrap();
    for (id, body) in stats {
        up.route(
            &format!("/products/{id}/stats"),
            Reply::Json(Bytes::from(body.to_string())),
        );
    }
    up
}

#[tokio::test]
async fn coinbase_values_requests_and_unavailable_products() {
    let up = coinbase_upstream().await;
    let exporter = start(&args("coinbase", &up.url)).await;
    let m = exporter
        .wait_for("a coinbase refresh", |m| m.successes_of("coinbase") >= 1.0)
        .await;
    let get = |metric, base, quote| m.labelled(metric, "coinbase", base, quote);
    assert_eq!(get("crypto_market_price", "btc", "usd"), Some(81250.37));
    assert_eq!(
        get("crypto_market_price_high_24h", "btc", "usd"),
        Some(81402.12)
    );
    assert_eq!(
        get("crypto_market_price_low_24h", "btc", "usd"),
        Some(76930.0)
    );
    assert!(close(
        get("crypto_market_price_change_ratio_24h", "btc", "usd"),
        (81250.37 - 77310.01) / 77310.01
    ));
    assert_eq!(
        get("crypto_market_volume_24h", "btc", "usd"),
        Some(21034.81273011)
    );
    assert_eq!(get("crypto_market_price", "eth", "btc"), Some(0.03839));
    assert_eq!(
        m.count("crypto_market_volume_quote_24h"),
        0,
        "Coinbase gives none"
    );
    // GONE-USD is listed but its stats 404: counted, the rest exported.
    assert_eq!(m.rejected("coinbase", "unavailable"), 1.0);
    assert_eq!(m.of("markets", "coinbase"), 5.0);
    // One listing plus one request per tradable product; delisted and
    // trading-disabled products are never asked for.
    assert_eq!(m.of("last_poll_requests", "coinbase"), 7.0);
    assert!(up.hits_on("/products/OLD-USD").is_empty());
    assert!(up.hits_on("/products/HALT-USD").is_empty());
    exporter.stop().await;
}

#[tokio::test]
async fn coinbase_refresh_is_spread_under_the_quota() {
    let up = coinbase_upstream().await;
    let exporter = start(&args_with("coinbase", &up.url, "50ms", "50ms")).await;
    let m = exporter
        .wait_for("two refreshes", |m| m.successes_of("coinbase") >= 2.0)
        .await;
    exporter.stop().await;
    assert_within_quota(&up.hits(), Duration::from_millis(50));
    // 7 requests at one per 50 ms cannot take less than 300 ms.
    assert!(m.of("last_poll_duration_seconds", "coinbase") >= 0.29);
}

#[tokio::test]
async fn coinbase_filter_saves_requests() {
    let up = coinbase_upstream().await;
    let mut a = args("coinbase", &up.url);
    a.push("--markets.include-pairs=btc*".into());
    let exporter = start(&a).await;
    let m = exporter
        .wait_for("a coinbase refresh", |m| m.successes_of("coinbase") >= 1.0)
        .await;
    exporter.stop().await;
    assert_eq!(m.of("last_poll_requests", "coinbase"), 2.0);
    assert_eq!(m.of("markets", "coinbase"), 1.0);
    assert!(up.hits_on("/products/ETH-USD").is_empty());
}

#[tokio::test]
async fn coinbase_rate_limit_mid_refresh_keeps_the_last_good_data() {
    let up = coinbase_upstream().await;
    let exporter = start(&args("coinbase", &up.url)).await;
    exporter
        .wait_for("a coinbase refresh", |m| m.successes_of("coinbase") >= 1.0)
        .await;
    up.route(
        "/products/ETH-USD/stats",
        status(429, &[], r#"{"message":"Public rate limit exceeded"}"#),
    );
    let m = exporter
        .wait_for("rate_limited", |m| {
            m.failures_of("coinbase", "rate_limited") >= 1.0
        })
        .await;
    assert_eq!(
        m.labelled("crypto_market_price", "coinbase", "btc", "usd"),
        Some(81250.37)
    );
    assert_eq!(m.of("markets", "coinbase"), 5.0);
    exporter.stop().await;
}

// ---- Several sources at once ----

/// A hanging Kraken neither stalls nor empties Binance, and each source keeps
/// its own `up`, failures and interval.
#[tokio::test]
async fn sources_are_isolated() {
    let kraken = kraken_upstream().await;
    kraken.route("/0/public/Ticker", Reply::Hang);
    let binance = binance_upstream("100").await;
    let exporter = start(&[
        "--source=kraken,binance".into(),
        format!("--kraken.url={}", kraken.url),
        format!("--binance.url={}", binance.url),
        "--poll.interval=50ms".into(),
        "--poll.max-backoff=200ms".into(),
        "--kraken.timeout=300ms".into(),
        "--kraken.connect-timeout=300ms".into(),
        "--binance.rate-limit.period=10ms".into(),
    ])
    .await;
    let m = exporter
        .wait_for("binance polls while kraken hangs", |m| {
            m.successes_of("binance") >= 5.0 && m.failures_of("kraken", "timeout") >= 1.0
        })
        .await;
    assert_eq!(m.of("up", "binance"), 1.0);
    assert_eq!(m.of("up", "kraken"), 0.0);
    assert_eq!(m.of("markets", "binance"), 10.0);
    assert_eq!(m.count("crypto_market_price{exchange=\"kraken\""), 0);
    assert_eq!(exporter.get("/-/ready", &[]).await.status(), 200);
    exporter.stop().await;
}

/// With Cryptowatch and Kraken both configured, Kraken's markets come from
/// the kraken source only: no series is exported twice.
#[tokio::test]
async fn an_exchange_with_its_own_source_is_left_out_of_cryptowatch() {
    let cw = FakeUpstream::start(Reply::Json(unmetered(
        "cryptowatch/markets_summaries.excerpt.2023-08-19.json",
    )))
    .await;
    cw.route("/pairs", json("cryptowatch/pairs.synthetic.json"));
    let kraken = kraken_upstream().await;
    let exporter = start(&[
        "--source=cryptowatch,kraken".into(),
        format!("--cryptowatch.url={}", cw.url),
        format!("--kraken.url={}", kraken.url),
        "--poll.interval=50ms".into(),
        "--cryptowatch.rate-limit.period=10ms".into(),
        "--kraken.rate-limit.period=10ms".into(),
    ])
    .await;
    let m = exporter
        .wait_for("both sources", |m| {
            m.successes_of("kraken") >= 1.0 && m.successes_of("cryptowatch") >= 1.0
        })
        .await;
    // kraken:btcusd, kraken:btceur, kraken:ethusd of the Cryptowatch excerpt.
    assert_eq!(m.of("markets_excluded", "cryptowatch"), 3.0);
    assert_eq!(m.of("markets", "cryptowatch"), 9.0);
    assert_eq!(
        m.labelled("crypto_market_price", "kraken", "btc", "usd"),
        Some(81291.0),
        "from the kraken source"
    );
    // Cryptowatch markets carry base/quote from /pairs.
    assert_eq!(
        m.labelled("crypto_market_price", "bitstamp", "btc", "usd"),
        Some(26115.0)
    );
    let series: Vec<&str> =
        m.0.lines()
            .filter(|l| l.starts_with("crypto_market_price{exchange=\"kraken\",pair=\"btcusd\""))
            .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    exporter.stop().await;
}

// ---- The same guarantees for every live source ----

/// Starts a fake upstream for `source` serving good data.
async fn upstream_for(source: &str) -> FakeUpstream {
    match source {
        "kraken" => kraken_upstream().await,
        "binance" => binance_upstream("100").await,
        "coinbase" => coinbase_upstream().await,
        other => panic!("no fake upstream for {other}"),
    }
}

/// The request that carries the market data (the one a 429 is put on).
fn data_path(source: &str) -> &'static str {
    match source {
        "kraken" => "/0/public/Ticker",
        "binance" => "/api/v3/ticker/24hr",
        _ => "/products",
    }
}

#[tokio::test]
async fn every_source_stays_within_its_quota() {
    for source in ["kraken", "binance", "coinbase"] {
        let up = upstream_for(source).await;
        // Polls as fast as possible: only the quota spaces the requests.
        let exporter = start(&args_with(source, &up.url, "1ms", "60ms")).await;
        exporter
            .wait_for("several polls", |m| m.successes_of(source) >= 3.0)
            .await;
        exporter.stop().await;
        assert_within_quota(&up.hits(), Duration::from_millis(60));
    }
}

#[tokio::test]
async fn every_source_honours_retry_after() {
    for source in ["kraken", "binance", "coinbase"] {
        let up = upstream_for(source).await;
        let exporter = start(&args(source, &up.url)).await;
        exporter
            .wait_for("a poll", |m| m.successes_of(source) >= 1.0)
            .await;
        up.route(
            data_path(source),
            status(429, &[("retry-after", "1")], "{}"),
        );
        exporter
            .wait_for("429", |m| m.failures_of(source, "rate_limited") >= 1.0)
            .await;
        let limited_at = up.hits_on(data_path(source)).last().map(|h| h.at).unwrap();
        // Back to good data; the next request must still wait out the second.
        let good = match source {
            "kraken" => json("kraken/ticker.all.synthetic.json"),
            "binance" => json("binance/ticker_24hr.excerpt.2024-01-05.json"),
            _ => json("coinbase/products.synthetic.json"),
        };
        up.route(data_path(source), good);
        exporter
            .wait_for("recovery", |m| m.of("up", source) == 1.0)
            .await;
        exporter.stop().await;
        let next = up.hits().into_iter().find(|h| h.at > limited_at).unwrap();
        assert!(
            next.at - limited_at >= Duration::from_millis(990),
            "{source}: retried {:?} after a 429 with Retry-After: 1",
            next.at - limited_at
        );
    }
}
