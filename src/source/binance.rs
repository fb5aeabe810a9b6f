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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::de::number;
use super::{
    Collected, Fetched, PollFuture, Refresh, Sink, Source, SourceError, SourceKind, parse_blocking,
};
use crate::admission::Admission;
use crate::domain::{Assets, MarketGauge, RawMarket, RejectReason};
use crate::self_metrics::SourceMetrics;
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

pub struct Binance {
    upstream: Upstream,
    ticker_url: String,
    info_url: String,
    symbols: Arc<HashMap<String, Assets>>,
    weight_limit: u32,
    refresh: Refresh,
}

impl fmt::Debug for Binance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binance")
            .field("ticker_url", &self.ticker_url)
            .field("symbols", &self.symbols.len())
            .field("weight_limit", &self.weight_limit)
            .finish_non_exhaustive()
    }
}

impl Binance {
    pub fn new(config: &NetworkConfig, metrics: Arc<SourceMetrics>) -> Result<Self, SourceError> {
        let base = config.url.as_str().trim_end_matches('/');
        Ok(Self {
            upstream: Upstream::new(&config.http, metrics)?,
            ticker_url: format!("{base}/api/v3/ticker/24hr"),
            info_url: format!("{base}/api/v3/exchangeInfo"),
            symbols: Arc::default(),
            weight_limit: DEFAULT_WEIGHT_LIMIT,
            refresh: Refresh::new(Duration::from_secs(3_600), Duration::from_secs(300)),
        })
    }

    async fn poll_once(&mut self, admission: Admission) -> Result<Fetched, SourceError> {
        let mut fetched = Fetched::default();
        if self.refresh.is_due() {
            let result = self.upstream.get(&self.info_url, HeaderMap::new()).await;
            fetched.requests += 1;
            if let Ok(r) = &result {
                fetched.slow_down = self.slow_down(r, SystemTime::now());
            }
            let listing = result.and_then(|r| parse_exchange_info(&r.body));
            if let Some(info) =
                self.refresh
                    .settle(listing, !self.symbols.is_empty(), "binance", "exchangeInfo")?
            {
                self.symbols = Arc::new(info.symbols);
                self.weight_limit = info.weight_limit.unwrap_or(DEFAULT_WEIGHT_LIMIT);
            }
            // Both calls in one poll could cross the limit: wait if told to.
            if let Some(wait) = fetched.slow_down {
                tokio::time::sleep(wait).await;
                fetched.slow_down = None;
            }
        }
        let response = self
            .upstream
            .get(&self.ticker_url, HeaderMap::new())
            .await?;
        fetched.requests += 1;
        fetched.slow_down = self.slow_down(&response, SystemTime::now());
        let symbols = self.symbols.clone();
        let filter = admission.filter();
        fetched.admission = parse_blocking(move || {
            parse_ticker_into(&response.body, &symbols, || Admission::new(filter.clone()))
        })
        .await?;
        if fetched.admission.rejections().values[RejectReason::UnknownPair as usize] > 0 {
            self.refresh.hurry();
        }
        Ok(fetched)
    }

    fn slow_down(&self, response: &Response, now: SystemTime) -> Option<Duration> {
        let used = used_weight(&response.headers)?;
        weight_delay(used, self.weight_limit, now)
    }
}

impl Source for Binance {
    fn kind(&self) -> SourceKind {
        SourceKind::Binance
    }

    fn poll(&mut self, admission: Admission) -> PollFuture<'_> {
        Box::pin(self.poll_once(admission))
    }
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
    let budget = f64::from(limit) * WEIGHT_HEADROOM;
    if f64::from(used + TICKER_WEIGHT) <= budget {
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

pub fn parse_ticker(
    body: &[u8],
    symbols: &HashMap<String, Assets>,
) -> Result<Collected, SourceError> {
    parse_ticker_into(body, symbols, Collected::default)
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
    sink.market(RawMarket {
        exchange: EXCHANGE.to_owned(),
        pair: assets.pair(),
        assets: Some(assets.clone()),
        values,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
