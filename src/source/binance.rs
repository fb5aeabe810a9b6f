//! Binance Spot public REST API: `GET /api/v3/ticker/24hr` with no symbol
//! returns every symbol in one call (request weight 80); `GET
//! /api/v3/exchangeInfo` (weight 20, refreshed hourly) gives each symbol's
//! base/quote assets and the account-free weight limit (6,000 per minute).
//!
//! Wire format: an array of objects with decimals as strings;
//! `priceChangePercent` is a percent (`"5.058"` = +5.058 %). Dead symbols
//! report `count: 0` and zero prices; they are skipped.
//!
//! Limits: every response carries `X-MBX-USED-WEIGHT-1M`. When one more poll
//! would bring it near the limit, the next poll waits for the next minute
//! window. 429 and then 418 (IP ban) come with `Retry-After`, which the
//! poller honours: ignoring it is what gets an IP banned.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::de::{Row, number};
use super::listing::Listing;
use super::{Build, Entry, Fetched, PollFuture, Source, SourceError};
use super::{CandleApi, CandleFuture, CandlePage, CandleQuery, History};
use super::Sink;
use crate::admission::Admission;
use crate::domain::{Assets, Candle, MarketGauge, RawMarket, RejectReason};
use crate::settings::network::NetworkConfig;
use crate::settings::network::NetworkDefaults;
use crate::upstream::{Response, Upstream};

const EXCHANGE: &str = "binance";

/// Binance's public REST API, paced at one request a second; its request
/// weight is watched on top (see [`DEFAULT_WEIGHT_LIMIT`]).
pub const DEFAULTS: NetworkDefaults = NetworkDefaults {
    url: "https://api.binance.com",
    rate_limit_period: Duration::from_secs(1),
};
crate::network_options!("binance", "BINANCE", DEFAULTS, keyed: false);
/// Request weight of the all-symbols ticker and of exchangeInfo.
pub const TICKER_WEIGHT: u32 = 80;
pub const EXCHANGE_INFO_WEIGHT: u32 = 20;
/// Binance's documented default, used until exchangeInfo says otherwise.
pub const DEFAULT_WEIGHT_LIMIT: u32 = 6_000;
/// Headroom kept below the limit: other clients may share the IP.
const WEIGHT_HEADROOM: f64 = 0.8;

#[derive(Debug)]
pub struct Binance {
    /// From the last exchangeInfo; the documented default until then.
    weight_limit: u32,
    upstream: Upstream,
    ticker_url: String,
    info_url: String,
    klines_url: String,
    /// Binance's symbol → assets.
    symbols: Listing,
}

impl Entry for Binance {
    type Options = Options;
    const EXCHANGE: Option<&'static str> = Some(EXCHANGE);

    fn build(config: &NetworkConfig, cx: Build) -> Result<Self, SourceError> {
        Ok(Self {
            weight_limit: DEFAULT_WEIGHT_LIMIT,
            upstream: Upstream::new(&config.http, cx.metrics)?,
            ticker_url: config.endpoint("/api/v3/ticker/24hr"),
            info_url: config.endpoint("/api/v3/exchangeInfo"),
            klines_url: config.endpoint("/api/v3/klines"),
            symbols: Listing::new(EXCHANGE, "exchangeInfo"),
        })
    }
}

impl Source for Binance {
    fn poll(&mut self, admission: Admission) -> PollFuture<'_> {
        Box::pin(async move {
            let mut fetched = Fetched::default();
            let limit = self.weight_limit;
            let mut slow_down = None;
            let update = self.symbols.update(&self.upstream, &self.info_url, &mut fetched, |r| {
                slow_down = slow_down_after(r, limit, SystemTime::now());
                parse_exchange_info(&r.body)
            });
            if let Some(info) = update.await? {
                self.symbols.install(info.symbols);
                self.weight_limit = info.weight_limit.unwrap_or(DEFAULT_WEIGHT_LIMIT);
            }
            // Both calls in one poll could cross the limit: wait if told to.
            if let Some(wait) = slow_down {
                tokio::time::sleep(wait).await;
            }
            let response = self
                .upstream
                .get(&self.ticker_url, HeaderMap::new())
                .await?;
            fetched.requests += 1;
            fetched.slow_down = slow_down_after(&response, self.weight_limit, SystemTime::now());
            fetched.admission = self
                .symbols
                .read_ticker(response, &admission, |body, symbols, fresh| {
                    parse_ticker_into(body, symbols, fresh)
                })
                .await?;
            Ok(fetched)
        })
    }

    fn history(&self) -> Option<(CandleApi, &dyn History)> {
        Some((CANDLES, self))
    }
}

impl Binance {
    async fn klines(&self, q: CandleQuery<'_>) -> Result<CandlePage, SourceError> {
        let symbol = self.symbols.symbol(&q.market.pair)?;
        let interval = KLINE_INTERVALS
            .iter()
            .find(|(w, _)| *w == q.width)
            .map_or("1m", |(_, name)| name);
        let url = format!(
            "{}?symbol={symbol}&interval={interval}&startTime={}&endTime={}&limit={}",
            self.klines_url,
            q.from.saturating_mul(1000),
            q.until.saturating_mul(1000) - 1,
            CANDLES.per_call
        );
        let response = self.upstream.get(&url, HeaderMap::new()).await?;
        let used = used_weight(&response.headers);
        // Parsed in place: at most 1,000 rows, and the backfill runs nothing
        // else on this runtime.
        let candles = parse_klines(&response.body)?;
        Ok(CandlePage {
            candles,
            slow_down: used.and_then(|u| {
                weight_delay_before(u, self.weight_limit, KLINES_WEIGHT, SystemTime::now())
            }),
        })
    }
}

/// `GET /api/v3/klines`: up to 1,000 candles a call, any span back.
pub const CANDLES: CandleApi = CandleApi {
    widths: &[
        60, 180, 300, 900, 1_800, 3_600, 7_200, 14_400, 21_600, 28_800, 43_200, 86_400,
    ],
    per_call: 1_000,
    newest_only: false,
};

/// Binance's names of the widths of [`CANDLES`].
const KLINE_INTERVALS: [(u32, &str); 12] = [
    (60, "1m"),
    (180, "3m"),
    (300, "5m"),
    (900, "15m"),
    (1_800, "30m"),
    (3_600, "1h"),
    (7_200, "2h"),
    (14_400, "4h"),
    (21_600, "6h"),
    (28_800, "8h"),
    (43_200, "12h"),
    (86_400, "1d"),
];

/// Request weight of one klines call (any limit up to 1,000).
pub const KLINES_WEIGHT: u32 = 2;

impl History for Binance {
    fn candles<'a>(&'a self, q: CandleQuery<'a>) -> CandleFuture<'a> {
        Box::pin(self.klines(q))
    }
}

/// How long the next call should wait after `response`, by the weight it
/// says is used against `limit` ([`weight_delay`]).
fn slow_down_after(response: &Response, limit: u32, now: SystemTime) -> Option<Duration> {
    weight_delay(used_weight(&response.headers)?, limit, now)
}

/// `X-MBX-USED-WEIGHT-1M`: weight used in the current minute, by this IP.
pub fn used_weight(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("x-mbx-used-weight-1m")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How long to wait before the next ticker call so that it stays under the
/// headroom: until the next minute window (plus a second of clock skew) if
/// the used weight plus one more ticker call would cross it, else nothing.
pub fn weight_delay(used: u32, limit: u32, now: SystemTime) -> Option<Duration> {
    weight_delay_before(used, limit, TICKER_WEIGHT, now)
}

/// [`weight_delay`] before a call of weight `next`.
pub fn weight_delay_before(used: u32, limit: u32, next: u32, now: SystemTime) -> Option<Duration> {
    let budget = f64::from(limit) * WEIGHT_HEADROOM;
    if f64::from(used.saturating_add(next)) <= budget {
        return None;
    }
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let into_minute = Duration::from_millis((since_epoch.as_millis() % 60_000) as u64);
    Some(Duration::from_secs(61).saturating_sub(into_minute))
}

// ---- Wire format ----

#[derive(Deserialize)]
struct TickerDto {
    symbol: String,
    #[serde(default, rename = "lastPrice", deserialize_with = "number")]
    last: Option<f64>,
    #[serde(default, rename = "highPrice", deserialize_with = "number")]
    high: Option<f64>,
    #[serde(default, rename = "lowPrice", deserialize_with = "number")]
    low: Option<f64>,
    #[serde(default, rename = "priceChangePercent", deserialize_with = "number")]
    change_percent: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    volume: Option<f64>,
    #[serde(default, rename = "quoteVolume", deserialize_with = "number")]
    quote_volume: Option<f64>,
    #[serde(default)]
    count: Option<u64>,
}

#[derive(Deserialize)]
struct ExchangeInfoDto {
    #[serde(default, rename = "rateLimits")]
    rate_limits: Vec<RateLimitDto>,
    symbols: Vec<SymbolDto>,
}

#[derive(Deserialize)]
struct RateLimitDto {
    #[serde(rename = "rateLimitType")]
    kind: String,
    interval: String,
    #[serde(rename = "intervalNum", default = "one")]
    interval_num: u32,
    limit: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct SymbolDto {
    symbol: String,
    #[serde(rename = "baseAsset")]
    base: String,
    #[serde(rename = "quoteAsset")]
    quote: String,
}

/// Binance's error body: `{"code": -1003, "msg": "..."}`.
#[derive(Deserialize)]
struct ErrorDto {
    code: i64,
    msg: String,
}

/// What exchangeInfo tells.
#[derive(Debug, Default)]
pub struct ExchangeInfo {
    pub symbols: HashMap<String, Assets>,
    /// The REQUEST_WEIGHT limit per one minute, when listed.
    pub weight_limit: Option<u32>,
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, SourceError> {
    let mut repaired = None;
    super::repair::from_slice(body, &mut repaired).map_err(|e| {
        match serde_json::from_slice::<ErrorDto>(body) {
            Ok(err) => SourceError::Api(format!("{} (code {})", err.msg, err.code)),
            Err(_) => SourceError::Decode(format!("{what}: {e}")),
        }
    })
}

/// Parses `/api/v3/klines`: `[openTime ms, open, high, low, close, volume,
/// closeTime, quoteVolume, trades, ...]`, decimals as strings. A row with a
/// value that is no number is left out.
pub fn parse_klines(body: &[u8]) -> Result<Vec<Candle>, SourceError> {
    let rows: Vec<Row<8>> = decode(body, "klines")?;
    Ok(rows
        .iter()
        .filter_map(|Row(r)| {
            let start = r[0]? / 1000.0;
            Candle::checked(start as i64, r[2]?, r[3]?, r[4]?, r[5]?, Some(r[7]?))
        })
        .collect())
}

pub fn parse_exchange_info(body: &[u8]) -> Result<ExchangeInfo, SourceError> {
    let dto: ExchangeInfoDto = decode(body, "exchangeInfo")?;
    Ok(ExchangeInfo {
        symbols: dto
            .symbols
            .into_iter()
            .map(|s| (s.symbol, Assets::new(&s.base, &s.quote)))
            .collect(),
        weight_limit: dto
            .rate_limits
            .iter()
            .find(|r| r.kind == "REQUEST_WEIGHT" && r.interval == "MINUTE" && r.interval_num == 1)
            .map(|r| r.limit),
    })
}

/// Streams `/api/v3/ticker/24hr` into a fresh sink from `fresh`, element by
/// element: memory follows what the sink keeps, not the size of the answer.
pub fn parse_ticker_into<S: Sink>(
    body: &[u8],
    symbols: &HashMap<String, Assets>,
    fresh: impl Fn() -> S,
) -> Result<S, SourceError> {
    // Data comes as an array; errors as `{"code", "msg"}`.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Err(match serde_json::from_slice::<ErrorDto>(body) {
            Ok(err) => SourceError::Api(format!("{} (code {})", err.msg, err.code)),
            Err(e) => SourceError::Decode(format!("ticker/24hr: {e}")),
        });
    }
    super::repair::retry(body, |text| {
        let mut sink = fresh();
        let mut de = serde_json::Deserializer::from_slice(text);
        TickerListSeed {
            sink: &mut sink,
            symbols,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(sink)
    })
    .map_err(|e| SourceError::Decode(format!("ticker/24hr: {e}")))
}

struct TickerListSeed<'s, S> {
    sink: &'s mut S,
    symbols: &'s HashMap<String, Assets>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for TickerListSeed<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for TickerListSeed<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of 24hr tickers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(t) = seq.next_element::<TickerDto>()? {
            emit(self.sink, t, self.symbols);
        }
        Ok(())
    }
}

/// One ticker into the sink: dead symbols and symbols missing from
/// exchangeInfo are counted, not exported.
fn emit<S: Sink>(sink: &mut S, t: TickerDto, symbols: &HashMap<String, Assets>) {
    // Dead (delisted or halted) symbols: no trade, all prices zero.
    if t.count == Some(0) {
        sink.no_trades();
        return;
    }
    let Some(assets) = symbols.get(&t.symbol) else {
        sink.reject(RejectReason::UnknownPair);
        return;
    };
    let mut values = [None; MarketGauge::COUNT];
    values[MarketGauge::Price as usize] = t.last;
    values[MarketGauge::PriceHigh24h as usize] = t.high;
    values[MarketGauge::PriceLow24h as usize] = t.low;
    values[MarketGauge::PriceChangeRatio24h as usize] = t.change_percent.map(|p| p / 100.0);
    values[MarketGauge::Volume24h as usize] = t.volume;
    values[MarketGauge::VolumeQuote24h as usize] = t.quote_volume;
    sink.market(RawMarket::listed(EXCHANGE, assets, values));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Collected;

    fn parse_ticker(
        body: &[u8],
        symbols: &HashMap<String, Assets>,
    ) -> Result<Collected, SourceError> {
        parse_ticker_into(body, symbols, Collected::default)
    }

    #[test]
    fn klines_become_candles() {
        let body = super::super::fixture("binance/klines.BTCUSDT.1m.2026-09-03.json");
        let candles = parse_klines(&body).unwrap();
        assert_eq!(candles[4].start, 1_788_458_820);
        let err = parse_klines(br#"{"code":-1121,"msg":"Invalid symbol."}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "upstream reported an error: Invalid symbol. (code -1121)"
        );
        // The weight of the next klines call, not of a ticker, decides.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_030);
        assert_eq!(weight_delay_before(4_700, 6_000, KLINES_WEIGHT, now), None);
        assert_eq!(
            weight_delay_before(4_799, 6_000, KLINES_WEIGHT, now),
            Some(Duration::from_secs(31))
        );
    }

    fn symbols() -> HashMap<String, Assets> {
        parse_exchange_info(
            br#"{"timezone":"UTC","rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000},{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":100}],
                "symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT"},{"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC"}]}"#,
        )
        .unwrap()
        .symbols
    }

    #[test]
    fn ticker_values_and_dead_symbols() {
        let body = br#"[
            {"symbol":"BTCUSDT","priceChange":"3912.73000000","priceChangePercent":"5.058","lastPrice":"81265.65000000","openPrice":"77352.92000000","highPrice":"81370.33000000","lowPrice":"76968.00000000","volume":"16871.11175000","quoteVolume":"1333430820.06342150","count":3872897},
            {"symbol":"BCCBTC","priceChangePercent":"0.000","lastPrice":"0.00000000","highPrice":"0.00000000","lowPrice":"0.00000000","volume":"0.00000000","quoteVolume":"0.00000000","firstId":-1,"lastId":-1,"count":0},
            {"symbol":"NEWCOINUSDT","lastPrice":"1.0","count":5}
        ]"#;
        let parsed = parse_ticker(body, &symbols()).unwrap();
        assert_eq!(parsed.markets.len(), 1);
        let m = &parsed.markets[0];
        assert_eq!(
            (m.exchange.as_str(), m.pair.as_str()),
            ("binance", "btcusdt")
        );
        assert_eq!(m.assets, Some(Assets::new("btc", "usdt")));
        assert_eq!(
            m.values,
            [
                Some(81265.65),
                Some(81370.33),
                Some(76968.0),
                Some(0.05058),
                Some(16871.11175),
                Some(1333430820.0634215),
                None
            ]
        );
        assert_eq!(parsed.rejections.no_trades, 1);
        assert_eq!(
            parsed.rejections.values[RejectReason::UnknownPair as usize],
            1
        );
    }

    #[test]
    fn exchange_info_weight_limit() {
        let info = parse_exchange_info(
            br#"{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1200}],"symbols":[]}"#,
        )
        .unwrap();
        assert_eq!(info.weight_limit, Some(1200));
    }

    #[test]
    fn error_bodies() {
        let e = parse_ticker(
            br#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}"#,
            &symbols(),
        )
        .unwrap_err();
        assert_eq!(e.reason(), "api_error");
        assert!(e.to_string().contains("(code -1003)"), "{e}");
        assert_eq!(
            parse_ticker(b"[{\"symbol\":", &symbols())
                .unwrap_err()
                .reason(),
            "invalid_response"
        );
    }

    #[test]
    fn weight_headroom() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        // 1_700_000_000 is 20 s into a minute.
        assert_eq!(weight_delay(80, 6_000, at(0)), None);
        assert_eq!(
            weight_delay(4_720, 6_000, at(0)),
            None,
            "exactly at the budget"
        );
        assert_eq!(
            weight_delay(4_721, 6_000, at(0)),
            Some(Duration::from_secs(41))
        );
        let mut h = HeaderMap::new();
        h.insert("X-MBX-USED-WEIGHT-1M", "4800".parse().unwrap());
        assert_eq!(used_weight(&h), Some(4800));
    }
}
