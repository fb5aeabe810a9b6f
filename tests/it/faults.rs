//! Upstream faults: each one is counted under its reason, the last good data
//! keeps being served, the exporter recovers, and the request rate stays
//! within the governor quota (counted at the fake server).

use std::time::{Duration, Instant};

use crate::common::{Exporter, FakeUpstream, Metrics, Reply, fixture, unmetered};
use bytes::Bytes;
use tokio::net::TcpListener;

const GOOD: &str = "cryptowatch/markets_summaries.excerpt.2023-08-19.json";

fn good() -> Reply {
    Reply::Json(unmetered(GOOD))
}

/// Short intervals so each scenario takes well under a second of polling.
fn args(url: &str) -> Vec<String> {
    vec![
        "--source=cryptowatch".into(),
        format!("--cryptowatch.url={url}"),
        "--poll.interval=50ms".into(),
        "--poll.max-backoff=200ms".into(),
        "--cryptowatch.rate-limit.period=20ms".into(),
        "--cryptowatch.timeout=500ms".into(),
        "--cryptowatch.connect-timeout=500ms".into(),
        "--cryptowatch.max-body-size=64KiB".into(),
    ]
}

async fn start(url: &str) -> Exporter {
    start_with(url, &[]).await
}

async fn start_with(url: &str, extra: &[&str]) -> Exporter {
    let mut args = args(url);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start(&refs).await
}

fn serves_last_good_data(m: &Metrics) {
    assert_eq!(
        m.price("kraken", "btcusd"),
        Some(26115.1),
        "last good price must still be served"
    );
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"cryptowatch\"}"),
        12.0
    );
}

/// good → `fault` until counted under `reason` → good again.
async fn fault_scenario(fault: Reply, reason: &str) {
    let upstream = FakeUpstream::start(good()).await;
    let exporter = start(&upstream.url).await;
    exporter
        .wait_for("first success", |m| m.successes() >= 1.0)
        .await;

    upstream.set(fault);
    let m = exporter
        .wait_for(reason, |m| m.failures(reason) >= 2.0)
        .await;
    assert_eq!(m.up(), 0.0);
    serves_last_good_data(&m);
    let ready = exporter.get("/-/ready", &[]).await;
    assert_eq!(ready.status(), 200, "stays ready on last good data");
    for other in [
        "timeout",
        "connect",
        "rate_limited",
        "http_status",
        "body_too_large",
        "invalid_response",
        "api_error",
        "collapsed",
    ] {
        if other != reason {
            assert_eq!(m.failures(other), 0.0, "{reason} miscounted as {other}");
        }
    }

    upstream.set(good());
    let before = m.successes();
    let m = exporter
        .wait_for("recovery", |m| m.successes() > before && m.up() == 1.0)
        .await;
    serves_last_good_data(&m);
    exporter.stop().await;
}

/// An empty or collapsed answer is not data: counted as `collapsed`, the last
/// good markets stay on /metrics, and `up` turns 0 so the health alerts see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_collapsed_answer_keeps_the_last_good_data() {
    fault_scenario(
        Reply::Json(Bytes::from_static(
            br#"{"result":{},"allowance":{"cost":0.01,"remaining":1000}}"#,
        )),
        "collapsed",
    )
    .await;
    // Entries without a single value: no market either (the 7.3 M-entry
    // body of docs/performance.md, scaled down).
    let mut empties = String::from(r#"{"result":{"#);
    empties.push_str(&vec![r#""a:b":{}"#; 5_000].join(","));
    empties.push_str(r#"},"allowance":{"cost":0.01,"remaining":1000}}"#);
    fault_scenario(Reply::Json(Bytes::from(empties)), "collapsed").await;
    // One market of the twelve: under the default ratio of 0.1.
    let one = r#"{"result":{"kraken:ethusd":{"price":{"last":1650,"high":1700,"low":1600,"change":{"percentage":0.01,"absolute":16}},"volume":10,"volumeQuote":16500}},"allowance":{"cost":0.01,"remaining":1000}}"#;
    fault_scenario(Reply::Json(Bytes::from_static(one.as_bytes())), "collapsed").await;
}

/// `Retry-After: 100000` from a misbehaving proxy waits only
/// `--poll.max-retry-after`, not a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped_by_the_setting() {
    let upstream = FakeUpstream::start(good()).await;
    let exporter = start_with(&upstream.url, &["--poll.max-retry-after=200ms"]).await;
    exporter
        .wait_for("first success", |m| m.successes() >= 1.0)
        .await;
    upstream.set(Reply::Status {
        status: 429,
        headers: vec![("retry-after", "100000".to_owned())],
        body: Bytes::new(),
    });
    let m = exporter
        .wait_for("a second 429 despite Retry-After: 100000", |m| {
            m.failures("rate_limited") >= 2.0
        })
        .await;
    assert!(
        m.value("crypto_market_exporter_next_poll_delay_seconds{source=\"cryptowatch\"}") <= 0.2
    );
    serves_last_good_data(&m);
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500() {
    let fault = Reply::Status {
        status: 500,
        headers: vec![],
        body: Bytes::from_static(b"internal error"),
    };
    fault_scenario(fault, "http_status").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json() {
    let body = unmetered(GOOD);
    fault_scenario(
        Reply::Json(body.slice(..body.len() / 2)),
        "invalid_response",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_non_json_bodies() {
    fault_scenario(Reply::Json(Bytes::new()), "invalid_response").await;
    fault_scenario(
        Reply::Json(Bytes::from_static(
            b"<html><body>502 Bad Gateway</body></html>",
        )),
        "invalid_response",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_error_body() {
    // A real Cryptowatch error body, served with 200 as some proxies do.
    fault_scenario(
        Reply::Json(fixture(
            "cryptowatch/error_404.markets.kraken.aaabbb.summary.2023-08-19.json",
        )),
        "api_error",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_status_with_error_body() {
    let body = fixture("cryptowatch/error_404.markets.kraken.aaabbb.summary.2023-08-19.json");
    fault_scenario(
        Reply::Status {
            status: 404,
            headers: vec![],
            body,
        },
        "http_status",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body() {
    fault_scenario(
        Reply::Json(Bytes::from(vec![b' '; 100 * 1024])),
        "body_too_large",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout() {
    fault_scenario(Reply::Hang, "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_without_retry_after() {
    let fault = Reply::Status {
        status: 429,
        headers: vec![],
        body: Bytes::from_static(b"slow down"),
    };
    fault_scenario(fault, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_with_retry_after_is_honoured() {
    let upstream = FakeUpstream::start(good()).await;
    // The default cap (10 polls of 50ms here) would cut the 1s short.
    let exporter = start_with(&upstream.url, &["--poll.max-retry-after=5s"]).await;
    exporter
        .wait_for("first success", |m| m.successes() >= 1.0)
        .await;

    upstream.set(Reply::Status {
        status: 429,
        headers: vec![("retry-after", "1".into())],
        body: Bytes::new(),
    });
    let m = exporter
        .wait_for("429", |m| m.failures("rate_limited") >= 1.0)
        .await;
    serves_last_good_data(&m);
    upstream.set(good());
    let before = m.successes();
    exporter
        .wait_for("recovery", |m| m.successes() > before)
        .await;

    // The request after the 429 came no sooner than Retry-After said (a lower
    // bound: a slow machine only makes the gap longer).
    let hits = upstream.hits();
    let gaps: Vec<Duration> = hits.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().any(|g| *g >= Duration::from_millis(950)),
        "no 1s pause after the 429: {gaps:?}"
    );
    // And only one request was made while rate limited: no retry storm.
    let m = exporter.wait_for("steady", |_| true).await;
    assert_eq!(m.failures("rate_limited"), 1.0);
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_then_upstream_appears() {
    // Reserve a port, then free it: connecting is refused until the fake binds it again.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let exporter = start(&format!("http://{addr}")).await;
    let m = exporter
        .wait_for("connect failures", |m| m.failures("connect") >= 2.0)
        .await;
    assert_eq!(m.up(), 0.0);
    assert_eq!(m.count("crypto_market_price"), 0);
    assert_eq!(
        exporter.get("/-/ready", &[]).await.status(),
        503,
        "not ready before any data"
    );

    let upstream = FakeUpstream::start_on(TcpListener::bind(addr).await.unwrap(), good()).await;
    let m = exporter
        .wait_for("recovery", |m| m.successes() >= 1.0)
        .await;
    serves_last_good_data(&m);
    assert_eq!(exporter.get("/-/ready", &[]).await.status(), 200);
    drop(upstream);
    exporter.stop().await;
}

/// The governor quota bounds the request rate whatever the poll interval asks
/// for: with a 10 ms interval and one request per 150 ms, the fake server must
/// see at most 1 + elapsed/150ms requests (+1 for the window edge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_caps_requests() {
    for reply in [
        good(),
        Reply::Status {
            status: 500,
            headers: vec![],
            body: Bytes::new(),
        },
    ] {
        let upstream = FakeUpstream::start(reply).await;
        let started = Instant::now();
        let exporter = Exporter::start(&[
            "--source=cryptowatch",
            &format!("--cryptowatch.url={}", upstream.url),
            "--poll.interval=10ms",
            "--poll.max-backoff=10ms",
            "--cryptowatch.rate-limit.period=150ms",
        ])
        .await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let hits = upstream.hits();
        let elapsed = started.elapsed();
        let allowed = 2 + (elapsed.as_millis() / 150) as usize;
        assert!(hits.len() >= 2, "poller stalled: {} requests", hits.len());
        assert!(
            hits.len() <= allowed,
            "{} requests in {elapsed:?}, quota allows {allowed}",
            hits.len()
        );
        let m = exporter.wait_for("limiter wait accounted", |m| {
            m.value("crypto_market_exporter_rate_limiter_wait_seconds_total{source=\"cryptowatch\"}") > 0.0
        })
        .await;
        assert!(m.value("crypto_market_exporter_upstream_request_duration_seconds_count{source=\"cryptowatch\"}") >= 2.0);
        exporter.stop().await;
    }
}
