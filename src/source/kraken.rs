//! Kraken Spot public REST API: `GET /0/public/Ticker` with no `pair` returns
//! every pair in one call; `GET /0/public/AssetPairs` (refreshed hourly) maps
//! Kraken's keys (`XXBTZUSD`) to base/quote.
//!
//! Wire format: `{"error": [...], "result": {...}}`, HTTP 200 even for errors
//! (`"EGeneral:Too many requests"`); entries starting with `W` are warnings.
//! Ticker values are arrays of decimal strings where index 0 is "today" (since
//! midnight UTC) and index 1 the rolling 24 h: `c` = [last price, lot],
//! `h`/`l` = high/low, `v` = base volume, `p` = volume-weighted average price,
//! `t` = trade count. `o` is the open at midnight UTC, not 24 h ago, so Kraken
//! gives no rolling 24 h change and none is exported. Quote volume is exact:
//! vwap × volume = Σ price·qty.
//!
//! Asset codes: the `wsname` (`XBT/USD`) carries the short names; Kraken's
//! `XBT` and `XDG` become `btc` and `doge`, as on Cryptowatch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::de::{Row, number};
use super::listing::Listing;
use super::{Build, Entry, Fetched, PollFuture, Source, SourceError};
use super::{CandleApi, CandleFuture, CandlePage, CandleQuery, History};
use super::Sink;
use crate::admission::Admission;
use crate::domain::{Assets, Candle, MarketGauge, RawMarket, RejectReason};
use crate::settings::network::NetworkConfig;
use crate::settings::network::NetworkDefaults;
use crate::upstream::Upstream;

const EXCHANGE: &str = "kraken";

/// Kraken's public REST API; one request a second stays well inside its
/// public-endpoint budget.
pub const DEFAULTS: NetworkDefaults = NetworkDefaults {
    url: "https://api.kraken.com",
    rate_limit_period: Duration::from_secs(1),
};
crate::network_options!("kraken", "KRAKEN", DEFAULTS, keyed: false);

#[derive(Debug)]
pub struct Kraken {
    /// Kraken pair key (and altname) → assets; either serves OHLC.
    pairs: Listing,
    upstream: Upstream,
    ticker_url: String,
    pairs_url: String,
    ohlc_url: String,
}

impl Entry for Kraken {
    type Options = Options;
    const EXCHANGE: Option<&'static str> = Some(EXCHANGE);

    fn build(config: &NetworkConfig, cx: Build) -> Result<Self, SourceError> {
        Ok(Self {
            pairs: Listing::new(EXCHANGE, "AssetPairs"),
            upstream: Upstream::new(&config.http, cx.metrics)?,
            ticker_url: config.endpoint("/0/public/Ticker"),
            pairs_url: config.endpoint("/0/public/AssetPairs"),
            ohlc_url: config.endpoint("/0/public/OHLC"),
        })
    }
}

impl Source for Kraken {
    fn poll(&mut self, admission: Admission) -> PollFuture<'_> {
        Box::pin(async move {
            let mut fetched = Fetched::default();
            let update = self.pairs.update(&self.upstream, &self.pairs_url, &mut fetched, |r| {
                parse_asset_pairs(&r.body)
            });
            if let Some(pairs) = update.await? {
                self.pairs.install(pairs);
            }
            let response = self
                .upstream
                .get(&self.ticker_url, HeaderMap::new())
                .await?;
            fetched.requests += 1;
            fetched.admission = self
                .pairs
                .read_ticker(response, &admission, |body, pairs, fresh| {
                    parse_ticker_into(body, pairs, fresh)
                })
                .await?;
            Ok(fetched)
        })
    }

    fn history(&self) -> Option<(CandleApi, &dyn History)> {
        Some((CANDLES, self))
    }
}

/// `GET /0/public/OHLC?pair=&interval=&since=`: the newest 720 candles of
/// the width asked (and the one still open), whatever `since` says.
pub const CANDLES: CandleApi = CandleApi {
    widths: &[
        60, 300, 900, 1_800, 3_600, 14_400, 86_400, 604_800, 1_296_000,
    ],
    per_call: 720,
    newest_only: true,
};

impl History for Kraken {
    fn candles<'a>(&'a self, q: CandleQuery<'a>) -> CandleFuture<'a> {
        Box::pin(async move {
            let pair = &q.market.pair;
            let name = self.pairs.symbol(pair)?;
            let url = format!(
                "{}?pair={name}&interval={}&since={}",
                self.ohlc_url,
                q.width / 60,
                // `since` is exclusive: the candle opening at `from` is wanted.
                q.from - 1
            );
            let response = self.upstream.get(&url, HeaderMap::new()).await?;
            // Parsed in place: a few hundred rows, and the backfill runs
            // nothing else on this runtime.
            let candles = parse_ohlc(&response.body)?;
            Ok(CandlePage::from(candles))
        })
    }
}

// ---- Wire format ----

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    error: Vec<String>,
    result: Option<T>,
}

#[derive(Deserialize)]
struct AssetPairDto {
    #[serde(default)]
    altname: Option<String>,
    #[serde(default)]
    wsname: Option<String>,
    base: String,
    quote: String,
}

#[derive(Deserialize)]
struct TickerDto {
    #[serde(default)]
    c: Vec<Num>,
    #[serde(default)]
    h: Vec<Num>,
    #[serde(default)]
    l: Vec<Num>,
    #[serde(default)]
    v: Vec<Num>,
    #[serde(default)]
    p: Vec<Num>,
    #[serde(default)]
    t: Vec<Num>,
}

/// `result` of OHLC: the rows under Kraken's name for the pair, and `last`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OhlcEntry {
    /// `[time, open, high, low, close, vwap, volume, count]` each.
    Rows(Vec<Row<7>>),
    #[allow(dead_code)]
    Last(IgnoredAny),
}

/// One array element: a decimal string (or a number, for trade counts).
#[derive(Deserialize, Clone, Copy)]
struct Num(#[serde(deserialize_with = "number")] Option<f64>);

fn at(values: &[Num], i: usize) -> Option<f64> {
    values.get(i).and_then(|n| n.0)
}

/// Kraken's HTTP-200 errors. Warnings (`W...`) are not errors.
fn check_errors(errors: &[String]) -> Result<(), SourceError> {
    let errors: Vec<&str> = errors
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with('E'))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    if errors
        .iter()
        .any(|e| e.contains("Too many requests") || e.contains("Rate limit exceeded"))
    {
        return Err(SourceError::RateLimited {
            status: 200,
            retry_after: None,
        });
    }
    Err(SourceError::Api(errors.join("; ")))
}

/// Kraken's asset code as Cryptowatch names it.
fn asset(code: &str) -> String {
    match code.to_ascii_uppercase().as_str() {
        "XBT" => "btc".to_owned(),
        "XDG" => "doge".to_owned(),
        other => other.to_ascii_lowercase(),
    }
}

/// Legacy four-letter codes carry an `X` (crypto) or `Z` (fiat) prefix:
/// `XXBT`, `ZUSD`. Only used when a pair has no `wsname`.
fn strip_legacy(code: &str) -> &str {
    if code.len() == 4 && (code.starts_with('X') || code.starts_with('Z')) {
        &code[1..]
    } else {
        code
    }
}

/// Parses `/0/public/AssetPairs` into key (and altname) → assets.
pub fn parse_asset_pairs(body: &[u8]) -> Result<HashMap<String, Assets>, SourceError> {
    let dto: Envelope<HashMap<String, AssetPairDto>> = serde_json::from_slice(body)
        .map_err(|e| SourceError::Decode(format!("AssetPairs: {e}")))?;
    check_errors(&dto.error)?;
    let result = dto
        .result
        .ok_or_else(|| SourceError::Decode("AssetPairs: no \"result\" object".into()))?;
    let mut pairs = HashMap::with_capacity(result.len() * 2);
    for (key, p) in result {
        let (base, quote) = match p.wsname.as_deref().and_then(|w| w.split_once('/')) {
            Some((b, q)) => (asset(b), asset(q)),
            None => (asset(strip_legacy(&p.base)), asset(strip_legacy(&p.quote))),
        };
        let assets = Assets { base, quote };
        if let Some(alt) = p.altname.filter(|a| *a != key) {
            pairs.insert(alt, assets.clone());
        }
        pairs.insert(key, assets);
    }
    Ok(pairs)
}

/// Parses `/0/public/OHLC` into candles; quote volume is exact (vwap x
/// volume), as in the live ticker. A row with a value that is no number is
/// left out, not taken for zero.
pub fn parse_ohlc(body: &[u8]) -> Result<Vec<Candle>, SourceError> {
    let dto: Envelope<HashMap<String, OhlcEntry>> =
        serde_json::from_slice(body).map_err(|e| SourceError::Decode(format!("OHLC: {e}")))?;
    check_errors(&dto.error)?;
    let result = dto
        .result
        .ok_or_else(|| SourceError::Decode("OHLC: no \"result\" object".into()))?;
    let mut candles = Vec::new();
    for entry in result.into_values() {
        let OhlcEntry::Rows(rows) = entry else {
            continue;
        };
        candles.extend(rows.iter().filter_map(|Row(r)| {
            let volume = r[6]?;
            Candle::checked(
                r[0]? as i64,
                r[2]?,
                r[3]?,
                r[4]?,
                volume,
                Some(r[5]? * volume),
            )
        }));
    }
    Ok(candles)
}

/// Streams `/0/public/Ticker` into a fresh sink from `fresh`, entry by entry:
/// memory follows what the sink keeps, not the size of the answer.
pub fn parse_ticker_into<S: Sink>(
    body: &[u8],
    pairs: &HashMap<String, Assets>,
    fresh: impl Fn() -> S,
) -> Result<S, SourceError> {
    let (sink, errors, result) = super::repair::retry(body, |text| {
        let mut sink = fresh();
        let mut de = serde_json::Deserializer::from_slice(text);
        let (errors, result) = TickerSeed {
            sink: &mut sink,
            pairs,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok((sink, errors, result))
    })
    .map_err(|e| SourceError::Decode(format!("Ticker: {e}")))?;
    check_errors(&errors)?;
    if !result {
        return Err(SourceError::Decode("Ticker: no \"result\" object".into()));
    }
    Ok(sink)
}

/// The Ticker envelope: `error` is read, `result` streams into the sink.
struct TickerSeed<'s, S> {
    sink: &'s mut S,
    pairs: &'s HashMap<String, Assets>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for TickerSeed<'_, S> {
    type Value = (Vec<String>, bool);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for TickerSeed<'_, S> {
    type Value = (Vec<String>, bool);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kraken response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let TickerSeed { sink, pairs } = self;
        let mut errors = Vec::new();
        let mut result = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "error" => errors = map.next_value()?,
                "result" => {
                    result = map.next_value_seed(TickersSeed {
                        sink: &mut *sink,
                        pairs,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((errors, result))
    }
}

/// The `result` object: pair key → ticker, each into the sink as read.
struct TickersSeed<'s, S> {
    sink: &'s mut S,
    pairs: &'s HashMap<String, Assets>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for TickersSeed<'_, S> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for TickersSeed<'_, S> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of pair keys")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let ticker: TickerDto = map.next_value()?;
            emit(self.sink, &key, &ticker, self.pairs);
        }
        Ok(true)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// One ticker into the sink; a pair missing from AssetPairs is counted.
fn emit<S: Sink>(sink: &mut S, key: &str, t: &TickerDto, pairs: &HashMap<String, Assets>) {
    let Some(assets) = pairs.get(key) else {
        sink.reject(RejectReason::UnknownPair);
        return;
    };
    let mut values = [None; MarketGauge::COUNT];
    let trades = at(&t.t, 1);
    // No trade in 24 h: `c` still holds the last trade, however old. A
    // price of 0 is how the domain marks "no trades" (counted, not exported).
    values[MarketGauge::Price as usize] = if trades == Some(0.0) {
        Some(0.0)
    } else {
        at(&t.c, 0)
    };
    values[MarketGauge::PriceHigh24h as usize] = at(&t.h, 1);
    values[MarketGauge::PriceLow24h as usize] = at(&t.l, 1);
    let volume = at(&t.v, 1);
    values[MarketGauge::Volume24h as usize] = volume;
    values[MarketGauge::VolumeQuote24h as usize] = volume.zip(at(&t.p, 1)).map(|(v, p)| v * p);
    sink.market(RawMarket::listed(EXCHANGE, assets, values));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Collected;

    fn parse_ticker(
        body: &[u8],
        pairs: &HashMap<String, Assets>,
    ) -> Result<Collected, SourceError> {
        parse_ticker_into(body, pairs, Collected::default)
    }

    const PAIRS: &[u8] = br#"{"error":[],"result":{
        "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","status":"online"},
        "XBTUSDT":{"altname":"XBTUSDT","wsname":"XBT/USDT","base":"XXBT","quote":"USDT"},
        "XDGEUR":{"altname":"XDGEUR","wsname":"XDG/EUR","base":"XXDG","quote":"ZEUR"},
        "OLDPAIR":{"altname":"OLDPAIR","base":"XETH","quote":"ZGBP"}
    }}"#;

    #[test]
    fn asset_pairs_normalise_like_cryptowatch() {
        let pairs = parse_asset_pairs(PAIRS).unwrap();
        assert_eq!(pairs["XXBTZUSD"], Assets::new("btc", "usd"));
        assert_eq!(pairs["XBTUSD"], Assets::new("btc", "usd"), "altname too");
        assert_eq!(pairs["XBTUSDT"].pair(), "btcusdt");
        assert_eq!(pairs["XDGEUR"].pair(), "dogeeur");
        assert_eq!(
            pairs["OLDPAIR"].pair(),
            "ethgbp",
            "legacy codes without wsname"
        );
    }

    #[test]
    fn ticker_values() {
        let pairs = parse_asset_pairs(PAIRS).unwrap();
        let body = br#"{"error":[],"result":{
            "XBTUSDT":{"a":["81277.20000","1","1.000"],"b":["81273.40000","1","1.000"],"c":["81280.20000","0.05016745"],"v":["175.73904925","218.16099893"],"p":["80123.90460","79575.03199"],"t":[6682,9276],"l":["76972.30000","76972.30000"],"h":["81363.80000","81363.80000"],"o":"77335.20000"},
            "XDGEUR":{"c":["0.1","1"],"v":["0","0"],"p":["0","0"],"t":[0,0],"l":["0.1","0.1"],"h":["0.1","0.1"],"o":"0.1"},
            "NEWPAIR":{"c":["1","1"]}
        }}"#;
        let parsed = parse_ticker(body, &pairs).unwrap();
        assert_eq!(parsed.markets.len(), 2);
        let btc = parsed.markets.iter().find(|m| m.pair == "btcusdt").unwrap();
        assert_eq!(btc.exchange, "kraken");
        assert_eq!(
            btc.values,
            [
                Some(81280.2),
                Some(81363.8),
                Some(76972.3),
                None,
                Some(218.16099893),
                Some(218.16099893 * 79575.03199),
                None
            ]
        );
        let doge = parsed.markets.iter().find(|m| m.pair == "dogeeur").unwrap();
        assert_eq!(
            doge.values[MarketGauge::Price as usize],
            Some(0.0),
            "no trades"
        );
        assert_eq!(
            parsed.rejections.values[RejectReason::UnknownPair as usize],
            1
        );
    }

    #[test]
    fn ohlc_rows_become_candles() {
        let candles = parse_ohlc(&super::super::fixture("kraken/ohlc.XBTUSDT.1m.2026-09-03.json")).unwrap();
        assert_eq!(candles[720].start, 1_788_458_820);
        assert_eq!(candles[720].close, 81280.2);
        // Kraken answers under its own name for the pair, whatever was asked.
        let renamed = br#"{"error":[],"result":{"XXBTZUSD":[[60,"1","2","0.5","1.5","1.2","3",4],[120,"1","2","1","x","1","1",1]],"last":60}}"#;
        let c = parse_ohlc(renamed).unwrap();
        assert_eq!(c.len(), 1, "the row that is no number is left out");
        assert_eq!(c[0].quote_volume, Some(1.2 * 3.0));
        assert_eq!(
            parse_ohlc(br#"{"error":["EQuery:Unknown asset pair"]}"#)
                .unwrap_err()
                .reason(),
            "api_error"
        );
    }

    #[test]
    fn errors_in_a_200() {
        let limited = parse_ticker(
            br#"{"error":["EGeneral:Too many requests"]}"#,
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(limited.reason(), "rate_limited");
        let api = parse_ticker(
            br#"{"error":["EQuery:Unknown asset pair"]}"#,
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(api.reason(), "api_error");
        assert_eq!(
            api.to_string(),
            "upstream reported an error: EQuery:Unknown asset pair"
        );
        let warned = parse_ticker(
            br#"{"error":["WGeneral:Deprecated"],"result":{}}"#,
            &HashMap::new(),
        );
        assert!(warned.is_ok());
        assert_eq!(
            parse_ticker(b"[]", &HashMap::new()).unwrap_err().reason(),
            "invalid_response"
        );
        assert_eq!(
            parse_ticker(br#"{"error":[]}"#, &HashMap::new())
                .unwrap_err()
                .reason(),
            "invalid_response"
        );
    }
}
