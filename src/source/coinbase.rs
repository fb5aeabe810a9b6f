//! Coinbase Exchange public REST API: `GET /products` lists the products,
//! then `GET /products/{id}/stats` gives each one's rolling 24 h open, high,
//! low, last and base volume. A full refresh is therefore one request per
//! product, and Coinbase allows 10 requests/s per IP: the governor quota
//! (default 8/s, no burst) spreads a refresh over time instead of bursting,
//! and `crypto_market_exporter_last_poll_duration_seconds` reports how long
//! one takes. Products the market filter excludes are never fetched, and at
//! most `markets.max` products are (the first in product-id order).
//!
//! Wire format: decimals as strings; `id` is `BTC-USD`, with
//! `base_currency`/`quote_currency`; products not `online`, or with
//! `trading_disabled`, are skipped. Coinbase gives no quote or USD volume.
//! Errors: `{"message": "..."}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::fmt;

use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::de::{Row, number};
use super::{Build, Entry, Fetched, PollFuture, Source, SourceError};
use super::{CandleApi, CandleFuture, CandlePage, CandleQuery, History};
use crate::admission::Admission;
use std::time::Duration;

use crate::domain::{Assets, Candle, MarketGauge, RawMarket, RejectReason};
use crate::settings::network::NetworkConfig;
use crate::settings::network::NetworkDefaults;
use crate::units::{format_duration, format_rfc3339};
use crate::upstream::Upstream;

const EXCHANGE: &str = "coinbase";

/// Coinbase Exchange's public REST API. It allows 10 requests a second per
/// IP; 8 a second leaves room for clock skew.
pub const DEFAULTS: NetworkDefaults = NetworkDefaults {
    url: "https://api.exchange.coinbase.com",
    rate_limit_period: Duration::from_millis(125),
};
crate::network_options!("coinbase", "COINBASE", DEFAULTS, keyed: false);

pub struct Coinbase {
    upstream: Upstream,
    base_url: String,
    /// The interval this source is polled at (its own, or `poll.interval`): a
    /// refresh slower than that means polls run back to back.
    poll_interval: std::time::Duration,
    /// Whether a refresh slower than the poll interval was logged.
    warned_slow: bool,
    /// Our `pair` label → product id, of the products the last poll read.
    ids: HashMap<String, String>,
}

impl fmt::Debug for Coinbase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coinbase")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Entry for Coinbase {
    type Options = Options;
    const EXCHANGE: Option<&'static str> = Some(EXCHANGE);

    fn build(config: &NetworkConfig, cx: Build) -> Result<Self, SourceError> {
        Ok(Self {
            upstream: Upstream::new(&config.http, cx.metrics)?,
            base_url: config.url.as_str().trim_end_matches('/').to_owned(),
            poll_interval: cx.interval,
            warned_slow: false,
            ids: HashMap::new(),
        })
    }
}

impl Source for Coinbase {
    fn poll(&mut self, admission: Admission) -> PollFuture<'_> {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            // The poll's filter, so a reload (SIGHUP) also changes what is fetched.
            let filter = admission.filter();
            let mut fetched = Fetched::new(admission);
            let list = self
                .upstream
                .get(&format!("{}/products", self.base_url), HeaderMap::new())
                .await?;
            fetched.requests += 1;
            let products = parse_products(&list.body)?;
            let wanted: Vec<Product> = products
                .into_iter()
                .filter(|p| filter.allows(EXCHANGE, &p.assets.pair()))
                // One request per product: a listing of millions must not mean millions of calls.
                .take(filter.max_markets)
                .collect();
            self.ids = wanted
                .iter()
                .map(|p| (p.assets.pair(), p.id.clone()))
                .collect();
            for product in wanted {
                let url = format!("{}/products/{}/stats", self.base_url, product.id);
                let result = self.upstream.get(&url, HeaderMap::new()).await;
                fetched.requests += 1;
                match result.and_then(|r| parse_stats(&r.body)) {
                    Ok(values) => {
                        let market = RawMarket::listed(EXCHANGE, &product.assets, values);
                        fetched.admission.offer(market);
                    }
                    // Systemic failures end the refresh: carrying on would hammer
                    // an upstream that is rate limiting or down. The last good
                    // snapshot stays.
                    Err(
                        e @ (SourceError::RateLimited { .. }
                        | SourceError::Timeout(_)
                        | SourceError::Connect(_)),
                    ) => return Err(e),
                    // One product failing (delisted since the listing, a bad
                    // body) costs only that product.
                    Err(e) => {
                        tracing::debug!(source = "coinbase", product = %product.id, error = %e, "product stats unavailable");
                        fetched.admission.reject(RejectReason::Unavailable);
                    }
                }
            }
            let took = started.elapsed();
            if !self.warned_slow && took > self.poll_interval {
                tracing::info!(source = "coinbase", requests = fetched.requests, took = %format_duration(took), poll_interval = %format_duration(self.poll_interval), "a full refresh takes longer than the poll interval under the rate limit, so polls run back to back; narrow it with markets.include_pairs or lengthen coinbase.poll_interval");
                self.warned_slow = true;
            }
            Ok(fetched)
        })
    }

    fn history(&self) -> Option<(CandleApi, &dyn History)> {
        Some((CANDLES, self))
    }
}

/// `GET /products/{id}/candles?granularity=&start=&end=`: at most 300
/// candles a call; buckets without trades are left out.
pub const CANDLES: CandleApi = CandleApi {
    widths: &[60, 300, 900, 3_600, 21_600, 86_400],
    per_call: 300,
    newest_only: false,
};

impl History for Coinbase {
    fn candles<'a>(&'a self, q: CandleQuery<'a>) -> CandleFuture<'a> {
        let CandleQuery {
            market,
            width,
            from,
            until,
        } = q;
        Box::pin(async move {
            let id = self.ids.get(&market.pair).ok_or_else(|| {
                SourceError::Api(format!("no Coinbase product is named {}", market.pair))
            })?;
            // `end` is inclusive: the last bucket start of the call, so that
            // a full call asks for exactly 300 buckets.
            let last = (from + i64::from(width) * (i64::from(CANDLES.per_call) - 1)).min(until - 1);
            let url = format!(
                "{}/products/{id}/candles?granularity={width}&start={}&end={}",
                self.base_url,
                format_rfc3339(from),
                format_rfc3339(last.max(from))
            );
            let response = self.upstream.get(&url, HeaderMap::new()).await?;
            let candles = parse_candles(&response.body)?;
            Ok(CandlePage::from(candles))
        })
    }
}

// ---- Wire format ----

#[derive(Deserialize)]
struct ProductDto {
    id: String,
    base_currency: String,
    quote_currency: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    trading_disabled: bool,
}

#[derive(Deserialize)]
struct StatsDto {
    #[serde(default, deserialize_with = "number")]
    open: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    high: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    low: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    last: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    volume: Option<f64>,
}

#[derive(Deserialize)]
struct ErrorDto {
    message: String,
}

/// A tradable product.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Coinbase's id, used in URLs: `BTC-USD`.
    pub id: String,
    pub assets: Assets,
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, SourceError> {
    let mut repaired = None;
    super::repair::from_slice(body, &mut repaired).map_err(|e| {
        match serde_json::from_slice::<ErrorDto>(body) {
            Ok(err) => SourceError::Api(err.message),
            Err(_) => SourceError::Decode(format!("{what}: {e}")),
        }
    })
}

/// Parses `/products`, keeping tradable products in a stable order.
pub fn parse_products(body: &[u8]) -> Result<Vec<Product>, SourceError> {
    let dto: Vec<ProductDto> = decode(body, "products")?;
    let mut products: Vec<Product> = dto
        .into_iter()
        .filter(|p| !p.trading_disabled && p.status.as_deref().is_none_or(|s| s == "online"))
        // The id goes into a URL path: refuse anything that is not a plain symbol.
        .filter(|p| {
            p.id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|p| Product {
            assets: Assets::new(&p.base_currency, &p.quote_currency),
            id: p.id,
        })
        .collect();
    products.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(products)
}

/// Parses `/products/{id}/candles`: `[time, low, high, open, close,
/// volume]`, numbers, newest first. Coinbase gives no quote volume. A row
/// with a value that is no number is left out.
pub fn parse_candles(body: &[u8]) -> Result<Vec<Candle>, SourceError> {
    let rows: Vec<Row<6>> = decode(body, "candles")?;
    Ok(rows
        .iter()
        .filter_map(|Row(r)| Candle::checked(r[0]? as i64, r[2]?, r[1]?, r[4]?, r[5]?, None))
        .collect())
}

/// Parses `/products/{id}/stats` into gauge values.
pub fn parse_stats(body: &[u8]) -> Result<[Option<f64>; MarketGauge::COUNT], SourceError> {
    // Every stats field is optional, so an error object would parse as empty stats.
    if let Ok(err) = serde_json::from_slice::<ErrorDto>(body) {
        return Err(SourceError::Api(err.message));
    }
    let s: StatsDto = decode(body, "product stats")?;
    let mut values = [None; MarketGauge::COUNT];
    values[MarketGauge::Price as usize] = s.last;
    values[MarketGauge::PriceHigh24h as usize] = s.high;
    values[MarketGauge::PriceLow24h as usize] = s.low;
    // `open` is the price 24 h ago: a true rolling change.
    values[MarketGauge::PriceChangeRatio24h as usize] = match (s.last, s.open) {
        (Some(last), Some(open)) if open > 0.0 => Some((last - open) / open),
        _ => None,
    };
    values[MarketGauge::Volume24h as usize] = s.volume;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_in_coinbase_order() {
        let body = super::super::fixture("coinbase/candles.BTC-USD.1d.2026-08-01_2026-08-10.json");
        let candles = parse_candles(&body).unwrap();
        assert!(
            candles.windows(2).all(|w| w[0].start > w[1].start),
            "newest first"
        );
        assert_eq!(
            parse_candles(br#"{"message":"NotFound"}"#)
                .unwrap_err()
                .to_string(),
            "upstream reported an error: NotFound"
        );
    }

    #[test]
    fn products_keep_tradable_ones() {
        let products = parse_products(
            br#"[{"id":"ETH-USD","base_currency":"ETH","quote_currency":"USD","status":"online","trading_disabled":false},
                 {"id":"BTC-USD","base_currency":"BTC","quote_currency":"USD","status":"online","trading_disabled":false},
                 {"id":"OLD-USD","base_currency":"OLD","quote_currency":"USD","status":"delisted","trading_disabled":true},
                 {"id":"HALT-USD","base_currency":"HALT","quote_currency":"USD","status":"online","trading_disabled":true},
                 {"id":"../x","base_currency":"X","quote_currency":"Y","status":"online"}]"#,
        )
        .unwrap();
        let ids: Vec<&str> = products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["BTC-USD", "ETH-USD"]);
        assert_eq!(products[0].assets.pair(), "btcusd");
    }

    #[test]
    fn stats_values() {
        let v = parse_stats(
            br#"{"open":"40000.00","high":"42000.5","low":"39500","last":"41000.00","volume":"1234.5","volume_30day":"99999"}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            [
                Some(41000.0),
                Some(42000.5),
                Some(39500.0),
                Some(0.025),
                Some(1234.5),
                None,
                None
            ]
        );
        let e = parse_stats(br#"{"message":"NotFound"}"#).unwrap_err();
        assert_eq!(e.reason(), "api_error");
        assert_eq!(
            parse_stats(b"<html>").unwrap_err().reason(),
            "invalid_response"
        );
    }
}
