//! The network sources' backfill against loopback fakes serving recorded
//! candles: the history's last point is what the live exporter serves from
//! the same fake upstream, requests follow each endpoint's contract, 429s
//! are waited out, and an interrupted backfill resumes where it stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::Uri;
use crypto_market_exporter::backfill::{self, BackfillArgs, BackfillError};
use crypto_market_exporter::config::Config;
use serde_json::{Value, json};

use crate::common::{Exporter, FakeUpstream, Metrics, Reply, fixture, tools_present};
use crate::harness::TempDir;

fn query(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn json_reply(v: &Value) -> Reply {
    Reply::Json(bytes::Bytes::from(v.to_string()))
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_f64().unwrap(),
    }
}

/// A recorded candle reduced to what every endpoint's rows carry.
#[derive(Debug, Clone, Copy)]
struct Row {
    start: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    vwap: f64,
    volume: f64,
    count: u64,
}

/// The 721 one-minute candles Kraken answered for XBTUSDT on 2026-09-03.
fn recorded_minutes() -> Vec<Row> {
    let v: Value =
        serde_json::from_slice(&fixture("kraken/ohlc.XBTUSDT.1m.2026-09-03.json")).unwrap();
    v["result"]["XBTUSDT"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Row {
            start: r[0].as_i64().unwrap(),
            open: num(&r[1]),
            high: num(&r[2]),
            low: num(&r[3]),
            close: num(&r[4]),
            vwap: num(&r[5]),
            volume: num(&r[6]),
            count: r[7].as_u64().unwrap(),
        })
        .collect()
}

/// Candles `minutes` wide made of the recorded minutes, as an exchange
/// aggregates them (buckets aligned to the width).
fn aggregate(rows: &[Row], minutes: i64) -> Vec<Row> {
    let width = minutes * 60;
    let mut out: Vec<Row> = Vec::new();
    for r in rows {
        let start = r.start - r.start.rem_euclid(width);
        match out.last_mut() {
            Some(a) if a.start == start => {
                a.high = a.high.max(r.high);
                a.low = a.low.min(r.low);
                a.close = r.close;
                a.vwap += r.vwap * r.volume;
                a.volume += r.volume;
                a.count += r.count;
            }
            _ => out.push(Row {
                start,
                vwap: r.vwap * r.volume,
                ..*r
            }),
        }
    }
    for a in &mut out {
        a.vwap = if a.volume > 0.0 {
            a.vwap / a.volume
        } else {
            0.0
        };
    }
    out
}

/// What a 24 h ticker taken at the end of the recording says: the last
/// close, the extremes and sums of the whole (12 h) recording.
struct Ticker {
    last: f64,
    high: f64,
    low: f64,
    volume: f64,
    quote: f64,
    trades: u64,
}

fn ticker(rows: &[Row]) -> Ticker {
    Ticker {
        last: rows.last().unwrap().close,
        high: rows.iter().map(|r| r.high).fold(f64::MIN, f64::max),
        low: rows.iter().map(|r| r.low).fold(f64::MAX, f64::min),
        volume: rows.iter().map(|r| r.volume).sum(),
        quote: rows.iter().map(|r| r.vwap * r.volume).sum(),
        trades: rows.iter().map(|r| r.count).sum(),
    }
}

/// The end of the recording: 30 s into its last (open) minute.
fn recording_end(rows: &[Row]) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(rows.last().unwrap().start + 30).unwrap())
}

fn config(args: &[String]) -> Config {
    let mut argv = vec!["crypto-market-exporter".to_owned()];
    argv.extend_from_slice(args);
    Config::from_args_without_env(argv).unwrap()
}

async fn run(
    args: &[String],
    since: Duration,
    until: SystemTime,
    output: &std::path::Path,
) -> Result<backfill::Written, BackfillError> {
    let flags = BackfillArgs {
        since: Some(since),
        until: Some(backfill::UnixTime(until)),
        output: Some(output.to_owned()),
        ..BackfillArgs::default()
    };
    // `now` is the recording's end too: Kraken's "newest 720 candles" are
    // counted from it.
    backfill::run(&config(args), &flags, until).await
}

/// The last sample of each series of the history: (gauge, labels) → value.
fn last_points(text: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, rest) = line.split_once("} ").unwrap();
        let (name, labels) = series.split_once('{').unwrap();
        let value = rest.split(' ').next().unwrap().parse().unwrap();
        out.insert((name.to_owned(), labels.to_owned()), value);
    }
    out
}

/// Every gauge the history ends with equals what the live exporter serves
/// from the same upstream (volumes to rounding: the history sums candle by
/// candle); `required` must be among them.
fn assert_history_meets_live(text: &str, live: &Metrics, required: &[&str]) {
    let last = last_points(text);
    assert!(!last.is_empty(), "empty history:\n{text}");
    for ((name, labels), value) in &last {
        let served = live.get(&format!("{name}{{{labels}}}")).unwrap_or_else(|| {
            panic!("history has {name}{{{labels}}}, the live exporter does not")
        });
        let tolerance = if name.contains("volume") {
            served.abs() * 1e-9
        } else {
            0.0
        };
        assert!(
            (served - value).abs() <= tolerance,
            "{name}{{{labels}}}: history ends at {value}, live serves {served}"
        );
    }
    for name in required {
        assert!(
            last.keys().any(|(n, _)| n == name),
            "no {name} in the history"
        );
    }
}

fn flags(source: &str, url: &str) -> Vec<String> {
    vec![
        format!("--source={source}"),
        format!("--{source}.url={url}"),
        format!("--{source}.rate-limit.period=5ms"),
        "--poll.interval=60s".into(),
    ]
}

// ---- Kraken ----

/// AssetPairs and a Ticker made of the recording (XBTUSDT), plus ETH/USD
/// that OHLC does not know (delisted between the two calls); OHLC answers
/// the recording aggregated to the width asked.
async fn kraken_upstream(rows: &[Row]) -> FakeUpstream {
    let up = FakeUpstream::start(Reply::Json(bytes::Bytes::from_static(b"{}"))).await;
    up.route(
        "/0/public/AssetPairs",
        Reply::Json(fixture("kraken/asset_pairs.excerpt.2026-01.json")),
    );
    let t = ticker(rows);
    let s = |v: f64| json!(v.to_string());
    up.route(
        "/0/public/Ticker",
        json_reply(&json!({"error": [], "result": {
            "XBTUSDT": {"c": [s(t.last), "1"], "h": [s(t.high), s(t.high)], "l": [s(t.low), s(t.low)],
                        "v": [s(t.volume), s(t.volume)], "p": [s(t.quote / t.volume), s(t.quote / t.volume)],
                        "t": [t.trades, t.trades]},
            "XETHZUSD": {"c": ["2000", "1"], "h": ["2100", "2100"], "l": ["1900", "1900"],
                         "v": ["5", "5"], "p": ["2000", "2000"], "t": [9, 9]}
        }})),
    );
    let rows = rows.to_vec();
    up.route(
        "/0/public/OHLC",
        Reply::dynamic(move |uri| {
            if query(uri, "pair").as_deref() != Some("XBTUSDT") {
                return json_reply(&json!({"error": ["EQuery:Unknown asset pair"]}));
            }
            let minutes: i64 = query(uri, "interval").unwrap().parse().unwrap();
            let candles: Vec<Value> = aggregate(&rows, minutes)
                .iter()
                .map(|r| {
                    json!([
                        r.start,
                        r.open.to_string(),
                        r.high.to_string(),
                        r.low.to_string(),
                        r.close.to_string(),
                        r.vwap.to_string(),
                        r.volume.to_string(),
                        r.count
                    ])
                })
                .collect();
            json_reply(&json!({"error": [], "result": {"XBTUSDT": candles, "last": 0}}))
        }),
    );
    up
}

async fn live(args: &[String], source: &str) -> Metrics {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&refs).await;
    let m = exporter
        .wait_for("a poll", |m| m.successes_of(source) >= 1.0)
        .await;
    exporter.stop().await;
    m
}

/// What the live exporter serves from `up`, and the hour of history up
/// to `until` the backfill writes from it: (live, written, text).
async fn live_and_history(
    source: &str,
    up: &FakeUpstream,
    until: SystemTime,
) -> (Metrics, backfill::Written, String) {
    let args = flags(source, &up.url);
    let live = live(&args, source).await;
    let dir = TempDir::new(&format!("candles-{source}"));
    let out = dir.0.join("h.om");
    let written = run(&args, Duration::from_secs(3600), until, &out)
        .await
        .unwrap();
    (live, written, std::fs::read_to_string(&out).unwrap())
}

/// The gauges every source but Coinbase (no quote volume) serves and can
/// rebuild from candles; the change ratio needs a candle 24 h back.
const FROM_CANDLES: [&str; 5] = [
    "crypto_market_price",
    "crypto_market_price_high_24h",
    "crypto_market_price_low_24h",
    "crypto_market_volume_24h",
    "crypto_market_volume_quote_24h",
];

#[tokio::test]
async fn kraken_history_ends_where_the_live_exporter_is() {
    let rows = recorded_minutes();
    let up = kraken_upstream(&rows).await;
    let (live, written, text) = live_and_history("kraken", &up, recording_end(&rows)).await;
    assert_eq!(written.markets, 2);
    assert_eq!(written.skipped, 1, "ETH/USD has no candles");
    assert!(!text.contains("pair=\"ethusd\""));
    // Kraken serves no rolling 24 h change live, so the history has none either.
    assert!(!text.contains("crypto_market_price_change_ratio_24h{"));
    assert_history_meets_live(&text, &live, &FROM_CANDLES);
    // One call per market: 25 h and the 24 h before are more than 720
    // one-minute candles, so five-minute ones, from the start of that span.
    let calls = up.hits_on("/0/public/OHLC");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let start = rows.last().unwrap().start + 30 - 3600 - 86_400;
    assert!(
        calls.iter().any(|h| h.uri == format!("/0/public/OHLC?pair=XBTUSDT&interval=5&since={}", start - 1)),
        "{calls:?}"
    );
    // A sample a minute, each on the minute, the last one at the open candle.
    let stamps: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with("crypto_market_price{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as i64)
        .collect();
    assert_eq!(stamps.len(), 60);
    assert!(stamps.iter().all(|t| t % 60 == 0));
    assert_eq!(*stamps.last().unwrap(), rows.last().unwrap().start);
    // promtool turns it into blocks (whole-second timestamps, each family whole).
    if tools_present(
        "kraken_history_ends_where_the_live_exporter_is",
        &["promtool"],
    ) {
        let dir = TempDir::new("candles-promtool");
        let file = dir.0.join("h.om");
        std::fs::write(&file, &text).unwrap();
        crate::harness::create_blocks(&file, &dir.0.join("data"));
    }
}

/// 429s are waited out (as long as `Retry-After` says), and a market that
/// cannot be read leaves the work done so far in `FILE.parts`: the rerun
/// reads only what is missing.
#[tokio::test]
async fn a_failed_backfill_resumes_without_refetching() {
    let rows = recorded_minutes();
    let up = kraken_upstream(&rows).await;
    let ohlc = Arc::new(Mutex::new(0u32));
    // Both pairs have candles here; ETH/USD's endpoint is rate limited for
    // longer than the backfill waits.
    let (n, recorded) = (ohlc.clone(), rows.clone());
    let healthy = Arc::new(Mutex::new(false));
    let h = healthy.clone();
    up.route(
        "/0/public/OHLC",
        Reply::dynamic(move |uri| {
            *n.lock().unwrap() += 1;
            let pair = query(uri, "pair").unwrap();
            if pair != "XBTUSDT" && !*h.lock().unwrap() {
                return Reply::Status {
                    status: 429,
                    headers: vec![("retry-after", "0".into())],
                    body: bytes::Bytes::new(),
                };
            }
            let candles: Vec<Value> = aggregate(&recorded, 5)
                .iter()
                .map(|r| {
                    json!([
                        r.start,
                        "1",
                        r.high.to_string(),
                        r.low.to_string(),
                        r.close.to_string(),
                        "1",
                        "1",
                        1
                    ])
                })
                .collect();
            json_reply(&json!({"error": [], "result": {pair: candles, "last": 0}}))
        }),
    );
    let args = flags("kraken", &up.url);
    let dir = TempDir::new("candles-resume");
    let out = dir.0.join("h.om");
    let until = recording_end(&rows);
    let err = run(&args, Duration::from_secs(3600), until, &out)
        .await
        .unwrap_err()
        .to_string();
    let parts = format!("{}.parts", out.display());
    assert_eq!(
        err,
        format!(
            "1 of 2 markets could not be read (first: kraken:ethusd: rate limited by upstream (HTTP 429), Retry-After 0s); the 1 read are kept in {parts}: rerun the same command to fetch the rest"
        )
    );
    assert!(!out.exists(), "no history that looks whole");
    // XBTUSDT once; ETH/USD ten times (the 429s waited out, then given up).
    assert_eq!(*ohlc.lock().unwrap(), 1 + 10);

    *healthy.lock().unwrap() = true;
    *ohlc.lock().unwrap() = 0;
    let written = run(&args, Duration::from_secs(3600), until, &out)
        .await
        .unwrap();
    assert_eq!(
        *ohlc.lock().unwrap(),
        1,
        "only the missing market is fetched"
    );
    assert_eq!(written.markets, 2);
    let text = std::fs::read_to_string(&out).unwrap();
    let prices: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("crypto_market_price{"))
        .collect();
    assert_eq!(prices.len(), 2 * 60, "both markets, each once");
    assert!(text.ends_with("# EOF\n"));
    assert!(
        !std::path::Path::new(&parts).exists(),
        "the work in progress is removed"
    );
}

/// Unix seconds of `2026-09-03T18:07:00Z` (what Coinbase's `start`/`end` carry).
fn parse_rfc3339(text: &str) -> i64 {
    let text = text.replace("%3A", ":");
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // days_from_civil (Howard Hinnant), the inverse of what the exporter formats.
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]
}

fn query_i64(uri: &Uri, name: &str) -> i64 {
    query(uri, name).unwrap().parse().unwrap()
}

// ---- Binance ----

/// exchangeInfo (synthetic), a 24 h ticker made of the five recorded
/// BTCUSDT klines, and klines answered by `startTime`, `endTime` and `limit`.
#[tokio::test]
async fn binance_history_ends_where_the_live_exporter_is() {
    let klines: Vec<Value> =
        serde_json::from_slice(&fixture("binance/klines.BTCUSDT.1m.2026-09-03.json")).unwrap();
    let up = FakeUpstream::start(Reply::Status {
        status: 400,
        headers: vec![],
        body: bytes::Bytes::from_static(br#"{"code":-1121,"msg":"Invalid symbol."}"#),
    })
    .await;
    up.route(
        "/api/v3/exchangeInfo",
        Reply::Json(fixture("binance/exchange_info.synthetic.json")),
    );
    let col = |i: usize| klines.iter().map(move |k| num(&k[i]));
    let s = |v: f64| json!(v.to_string());
    up.route(
        "/api/v3/ticker/24hr",
        json_reply(&json!([{
            "symbol": "BTCUSDT",
            "lastPrice": s(num(&klines[4][4])),
            "highPrice": s(col(2).fold(f64::MIN, f64::max)),
            "lowPrice": s(col(3).fold(f64::MAX, f64::min)),
            "priceChangePercent": "0.5",
            "volume": s(col(5).sum()),
            "quoteVolume": s(col(7).sum()),
            "count": 11501
        }])),
    );
    let rows = klines.clone();
    up.route(
        "/api/v3/klines",
        Reply::dynamic(move |uri| {
            assert_eq!(query(uri, "interval").as_deref(), Some("1m"));
            let (start, end) = (query_i64(uri, "startTime"), query_i64(uri, "endTime"));
            let limit = usize::try_from(query_i64(uri, "limit")).unwrap();
            assert!(limit <= 1000, "{uri}");
            let answer: Vec<&Value> = rows
                .iter()
                .filter(|k| (start..=end).contains(&k[0].as_i64().unwrap()))
                .take(limit)
                .collect();
            json_reply(&json!(answer))
        }),
    );
    let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_788_458_850);
    let (live, written, text) = live_and_history("binance", &up, until).await;
    assert_eq!(written.markets, 1);
    assert_history_meets_live(&text, &live, &FROM_CANDLES);
    // The hour and the 24 h before it in minutes: two calls of at most
    // 1,000 that tile the span, the last one ending with `until`'s second.
    let calls = up.hits_on("/api/v3/klines");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let bounds: Vec<(i64, i64)> = calls
        .iter()
        .map(|h| {
            let uri: Uri = h.uri.parse().unwrap();
            (query_i64(&uri, "startTime"), query_i64(&uri, "endTime"))
        })
        .collect();
    assert_eq!(
        bounds[0].0,
        (1_788_458_850 - 3600 - 86_400) / 60 * 60 * 1000
    );
    assert_eq!(bounds[1].0, bounds[0].1 + 1);
    assert_eq!(bounds[1].1, 1_788_458_850_999);
}

// ---- Coinbase ----

/// Coinbase's candles in its documented shape (`[time, low, high, open,
/// close, volume]`, newest first, at most 300 a call), made of the Kraken
/// minute recording: no one-minute Coinbase recording exists. Stats are the
/// same candles' 24 h.
#[tokio::test]
async fn coinbase_history_ends_where_the_live_exporter_is() {
    let rows = recorded_minutes();
    let up = FakeUpstream::start(Reply::Status {
        status: 404,
        headers: vec![],
        body: bytes::Bytes::from_static(br#"{"message":"NotFound"}"#),
    })
    .await;
    up.route(
        "/products",
        Reply::Json(fixture("coinbase/products.synthetic.json")),
    );
    let t = ticker(&rows);
    up.route(
        "/products/BTC-USD/stats",
        json_reply(&json!({
            "open": rows[0].open.to_string(), "high": t.high.to_string(), "low": t.low.to_string(),
            "last": t.last.to_string(), "volume": t.volume.to_string(), "volume_30day": "1"
        })),
    );
    let recorded = rows.clone();
    up.route(
        "/products/BTC-USD/candles",
        Reply::dynamic(move |uri| {
            assert_eq!(query(uri, "granularity").as_deref(), Some("60"));
            let start = parse_rfc3339(&query(uri, "start").unwrap());
            let end = parse_rfc3339(&query(uri, "end").unwrap());
            assert!(
                (end - start) / 60 < 300,
                "more than 300 candles asked: {uri}"
            );
            let mut answer: Vec<Value> = recorded
                .iter()
                .filter(|r| (start..=end).contains(&r.start))
                .map(|r| json!([r.start, r.low, r.high, r.open, r.close, r.volume]))
                .collect();
            answer.reverse();
            json_reply(&json!(answer))
        }),
    );
    let (live, written, text) = live_and_history("coinbase", &up, recording_end(&rows)).await;
    assert_eq!(written.markets, 1, "only BTC-USD has stats");
    assert_history_meets_live(&text, &live, &FROM_CANDLES[..4]);
    // No quote volume from Coinbase, live or past.
    assert!(!text.contains("crypto_market_volume_quote_24h{"));
    // 25 h of minutes and the one open at `until`, in calls of 300.
    assert_eq!(up.hits_on("/products/BTC-USD/candles").len(), 6);
}

// ---- Cryptowatch ----

/// A summaries body made of the recorded kraken:btceur one-minute OHLC
/// (2022-02-28), and the OHLC endpoint answering that recording by
/// `after`/`before`.
#[tokio::test]
async fn cryptowatch_history_ends_where_the_live_exporter_is() {
    let recorded: Value = serde_json::from_slice(&fixture(
        "cryptowatch/ohlc.kraken.btceur.excerpt.2022-02-28.json",
    ))
    .unwrap();
    let minutes: Vec<Value> = recorded["result"]["60"].as_array().unwrap().clone();
    let col = |i: usize| minutes.iter().map(move |r| num(&r[i]));
    let last_close = minutes.last().unwrap()[0].as_i64().unwrap();
    let up = FakeUpstream::start(Reply::Status {
        status: 404,
        headers: vec![],
        body: bytes::Bytes::from_static(br#"{"error":"Instrument not found"}"#),
    })
    .await;
    up.route(
        "/pairs",
        Reply::Json(fixture("cryptowatch/pairs.synthetic.json")),
    );
    up.route(
        "/markets/summaries",
        json_reply(&json!({
            "result": {"kraken:btceur": {
                "price": {"last": num(&minutes.last().unwrap()[4]),
                          "high": col(2).fold(f64::MIN, f64::max),
                          "low": col(3).fold(f64::MAX, f64::min),
                          "change": {"percentage": 0.01, "absolute": 1}},
                "volume": col(5).sum::<f64>(),
                "volumeQuote": col(6).sum::<f64>()}},
            "allowance": {"cost": 0.005, "remaining": 1_000_000}
        })),
    );
    up.route(
        "/markets/kraken/btceur/ohlc",
        Reply::dynamic(move |uri| {
            assert_eq!(query(uri, "periods").as_deref(), Some("60"));
            let (after, before) = (query_i64(uri, "after"), query_i64(uri, "before"));
            let rows: Vec<&Value> = minutes
                .iter()
                .filter(|r| (after..=before).contains(&r[0].as_i64().unwrap()))
                .take(1000)
                .collect();
            json_reply(&json!({"result": {"60": rows}, "allowance": {"cost": 0.015, "remaining": 1_000_000}}))
        }),
    );
    // 30 s into the last recorded minute.
    let until =
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(last_close - 30).unwrap());
    let (live, written, text) = live_and_history("cryptowatch", &up, until).await;
    assert_eq!(written.markets, 1);
    assert_history_meets_live(&text, &live, &FROM_CANDLES);
}

/// The binary against an upstream that is not there: the listing is retried
/// (1, 2, 4 s), then one line names the source and the cause, and the exit
/// status is 1; nothing that looks like a history is left behind.
#[test]
fn an_unreachable_upstream_fails_in_one_line() {
    let port = crate::harness::free_port();
    let dir = TempDir::new("candles-unreachable");
    let out = dir.0.join("h.om");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .args([
            "backfill",
            "--source=kraken",
            &format!("--kraken.url=http://127.0.0.1:{port}"),
            "--kraken.connect-timeout=1s",
            "--log.level=error",
        ])
        .arg(format!("--output={}", out.display()))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("crypto-market-exporter: backfill failed: source kraken: "),
        "{stderr}"
    );
    assert!(lines[0].contains("connect"), "{stderr}");
    assert!(!out.exists());
    assert!(
        !dir.0.join("h.om.parts").exists(),
        "nothing to resume, nothing kept"
    );
}
