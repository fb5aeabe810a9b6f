//! Cryptowatch REST API (`GET /markets/summaries`): every market in one call.
//!
//! Wire format (see tests/fixtures/README.md for the recorded responses):
//! `{"result": {"<exchange>:<pair>": {"price": {"last", "high", "low",
//! "change": {"percentage", "absolute"}}, "volume", "volumeBase"?, "volumeQuote",
//! "volumeUSD"?, "volumeContracts"?, "volumeSettlement"?}}, "cursor": {"last",
//! "hasMore"}, "allowance": {"cost", "remaining"}}`. Errors come as
//! `{"error": "..."}`. Older responses lack `volumeBase`/`volumeUSD`.
//!
//! Base and quote assets come from `GET /pairs` (`{"result": [{"symbol",
//! "base": {"symbol"}, "quote": {"symbol"}}], "cursor"}`), fetched at start
//! and then daily because it costs credits; if it fails, markets are exported
//! without `base`/`quote` and the listing is retried an hour later.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::de::{Row, number};
use super::{Build, Credits, Entry, Fetched, PollFuture, Refresh, Source, SourceError};
use super::{CandleApi, CandleFuture, CandlePage, CandleQuery, History};
use super::{Collected, Sink, parse_blocking};
use crate::admission::Admission;
use crate::domain::{Assets, Candle, MarketGauge, RawMarket, RejectReason, Rejections};
use crate::settings::network::{NetworkConfig, NetworkDefaults};
use crate::settings::{ConfigError, Resolve, Secret, SourceOptions};
use crate::upstream::Upstream;

/// Cursor pages followed per poll at most: a runaway `hasMore` must not burn
/// every credit of the day.
const MAX_PAGES: usize = 10;
/// How often the pair listing is refreshed, and retried after a failure.
const PAIRS_REFRESH: Duration = Duration::from_secs(86_400);
const PAIRS_RETRY: Duration = Duration::from_secs(3_600);
/// The host of the public API, gone since Kraken shut Cryptowatch down in 2023.
const SUNSET_HOST: &str = "api.cryptowat.ch";

/// The Cryptowatch API as it was; any Cryptowatch-compatible endpoint today.
pub const DEFAULTS: NetworkDefaults = NetworkDefaults {
    url: "https://api.cryptowat.ch",
    rate_limit_period: Duration::from_secs(1),
};
crate::network_options!("cryptowatch", "CRYPTOWATCH", DEFAULTS, keyed: true);

/// Environment variable holding the API key itself (never logged). There is
/// no flag for the key: it would show up in `ps`.
pub const API_KEY_ENV: &str = "CRYPTO_MARKET_EXPORTER_CRYPTOWATCH_API_KEY";

#[derive(Debug, Clone, PartialEq)]
pub struct CryptowatchConfig {
    pub network: NetworkConfig,
    pub api_key: Option<Secret>,
}

impl SourceOptions for Options {
    type Config = CryptowatchConfig;

    /// The network settings plus the API key: from `--cryptowatch.api-key-file`
    /// (a warning if others may read it), else from [`API_KEY_ENV`].
    fn resolve(&self, cx: &mut Resolve<'_>) -> Result<CryptowatchConfig, ConfigError> {
        let network = self.resolve_network(cx.origins)?;
        let api_key = match &self.api_key_file {
            Some(path) => Some(Secret::read_file(
                path,
                &cx.origins.name("cryptowatch.api-key-file"),
                cx.warnings,
            )?),
            None => std::env::var(API_KEY_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim())),
        };
        Ok(CryptowatchConfig { network, api_key })
    }

    fn poll_interval(config: &CryptowatchConfig) -> Option<Duration> {
        config.network.poll_interval
    }
}

/// Whether `url` points at the shut-down public API (worth a startup warning).
pub fn is_sunset(url: &reqwest::Url) -> bool {
    url.host_str()
        .is_some_and(|h| h.trim_end_matches('.').eq_ignore_ascii_case(SUNSET_HOST))
}

pub struct Cryptowatch {
    upstream: Upstream,
    base_url: String,
    summaries_url: String,
    api_key: Option<Secret>,
    /// Pair symbol → assets, from the last good `/pairs` listing.
    pairs: Arc<HashMap<String, Assets>>,
    /// When `/pairs` is next due.
    pairs_refresh: Refresh,
}

impl fmt::Debug for Cryptowatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cryptowatch")
            .field("summaries_url", &self.summaries_url)
            .finish_non_exhaustive()
    }
}

impl Entry for Cryptowatch {
    type Options = Options;
    const EXCHANGE: Option<&'static str> = None;

    fn build(config: &CryptowatchConfig, cx: Build) -> Result<Self, SourceError> {
        if is_sunset(&config.network.url) {
            tracing::warn!(
                source = "cryptowatch",
                url = %config.network.url,
                "the public Cryptowatch API was shut down in 2023 and this host no longer resolves: set --cryptowatch.url to a Cryptowatch-compatible endpoint, or use --source=kraken, binance, coinbase or demo"
            );
        }
        let base_url = config.network.url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            upstream: Upstream::new(&config.network.http, cx.metrics)?,
            summaries_url: format!("{base_url}/markets/summaries"),
            base_url,
            api_key: config.api_key.clone(),
            pairs: Arc::default(),
            pairs_refresh: Refresh::new(PAIRS_REFRESH, PAIRS_RETRY),
        })
    }
}

impl Cryptowatch {
    fn redact(&self, error: SourceError) -> SourceError {
        match &self.api_key {
            Some(key) => error.redact(key.expose()),
            None => error,
        }
    }

    fn headers(&self) -> Result<HeaderMap, SourceError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                SourceError::Request("API key contains characters not allowed in a header".into())
            })?;
            value.set_sensitive(true);
            headers.insert("X-CW-API-Key", value);
        }
        Ok(headers)
    }

    /// Refreshes the pair listing when due. A failure is logged, not fatal:
    /// prices matter more than the `base`/`quote` labels.
    async fn refresh_pairs(&mut self, fetched: &mut Fetched) {
        if !self.pairs_refresh.is_due() {
            return;
        }
        match self.fetch_pairs(fetched).await {
            Ok(pairs) => {
                tracing::info!(
                    source = "cryptowatch",
                    pairs = pairs.len(),
                    "pair listing loaded"
                );
                self.pairs = Arc::new(pairs);
                self.pairs_refresh.done(true);
            }
            Err(e) => {
                let e = self.redact(e);
                tracing::warn!(source = "cryptowatch", reason = e.reason(), error = %e, retry_in = %crate::units::format_duration(PAIRS_RETRY), "cannot load the pair listing; exporting markets without base/quote labels");
                self.pairs_refresh.done(false);
            }
        }
    }

    async fn fetch_pairs(
        &self,
        fetched: &mut Fetched,
    ) -> Result<HashMap<String, Assets>, SourceError> {
        let url = format!("{}/pairs", self.base_url);
        let mut pairs = HashMap::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page_url = match &cursor {
                None => url.clone(),
                Some(c) => format!("{url}?cursor={}", urlencode(c)),
            };
            let response = self.upstream.get(&page_url, self.headers()?).await?;
            fetched.requests += 1;
            let page = parse_pairs(&response.body)?;
            fetched.credits = page.credits.or(fetched.credits);
            pairs.extend(page.pairs);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(pairs)
    }

    async fn poll_pages(&mut self, admission: Admission) -> Result<Fetched, SourceError> {
        let filter = admission.filter();
        let mut fetched = Fetched::new(admission);
        self.refresh_pairs(&mut fetched).await;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let url = match &cursor {
                None => self.summaries_url.clone(),
                Some(c) => format!("{}?cursor={}", self.summaries_url, urlencode(c)),
            };
            let response = self.upstream.get(&url, self.headers()?).await?;
            fetched.requests += 1;
            let pairs = self.pairs.clone();
            let filter = filter.clone();
            // Parsing 4 MB takes ~10 ms: keep it off the async workers. Each
            // page streams into its own admission (bounded by markets.max),
            // merged into the poll's once the page has parsed.
            let (page, credits, next_cursor) = parse_blocking(move || {
                parse_page(&response.body, &pairs, || Admission::new(filter.clone()))
            })
            .await?;
            fetched.admission.absorb(page);
            fetched.credits = credits.or(fetched.credits);
            match next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(fetched),
            }
        }
        tracing::warn!(
            source = "cryptowatch",
            pages = MAX_PAGES,
            "stopped following cursor pages; exporting what was read"
        );
        Ok(fetched)
    }
}

impl Source for Cryptowatch {
    fn poll(&mut self, admission: Admission) -> PollFuture<'_> {
        Box::pin(async move {
            let polled = self.poll_pages(admission).await;
            polled.map_err(|e| self.redact(e))
        })
    }

    fn history(&self) -> Option<(CandleApi, &dyn History)> {
        Some((CANDLES, self))
    }
}

/// `GET /markets/{exchange}/{pair}/ohlc?periods=&after=&before=`: the
/// recorded answers hold 1,000 candles per period, so calls of 1,000.
pub const CANDLES: CandleApi = CandleApi {
    widths: &[
        60, 180, 300, 900, 1_800, 3_600, 7_200, 14_400, 21_600, 43_200, 86_400, 259_200, 604_800,
    ],
    per_call: 1_000,
    newest_only: false,
};

impl History for Cryptowatch {
    fn candles<'a>(&'a self, q: CandleQuery<'a>) -> CandleFuture<'a> {
        Box::pin(async move {
            // Rows carry their close time; whether `after`/`before` bound
            // opens or closes, one candle width of margin each side covers
            // both (the caller clips).
            let width = q.width;
            let url = format!(
                "{}/markets/{}/{}/ohlc?periods={width}&after={}&before={}",
                self.base_url,
                urlencode(&q.market.exchange),
                urlencode(&q.market.pair),
                q.from,
                q.until + i64::from(width)
            );
            let fetched = async {
                let response = self.upstream.get(&url, self.headers()?).await?;
                // Parsed in place: at most 1,000 rows, and the backfill runs
                // nothing else on this runtime.
                parse_ohlc(&response.body, width)
            };
            let candles = fetched.await.map_err(|e| self.redact(e))?;
            Ok(CandlePage::from(candles))
        })
    }
}

/// `{"result": {"<period>": [[CloseTime, Open, High, Low, Close, Volume,
/// QuoteVolume], ...]}, "allowance": {...}}`.
#[derive(Deserialize)]
struct OhlcDto {
    #[serde(default)]
    result: HashMap<String, Vec<Row<7>>>,
    #[serde(default)]
    error: Option<String>,
}

/// Parses `/markets/{exchange}/{pair}/ohlc` for the period `width`; a row
/// with a value that is no number is left out.
pub fn parse_ohlc(body: &[u8], width: u32) -> Result<Vec<Candle>, SourceError> {
    let dto: OhlcDto =
        serde_json::from_slice(body).map_err(|e| SourceError::Decode(format!("ohlc: {e}")))?;
    if let Some(error) = dto.error {
        return Err(SourceError::Api(error));
    }
    let rows = dto
        .result
        .get(&width.to_string())
        .map_or(&[][..], Vec::as_slice);
    Ok(rows
        .iter()
        .filter_map(|Row(r)| {
            let start = (r[0]? as i64).saturating_sub(i64::from(width));
            Candle::checked(start, r[2]?, r[3]?, r[4]?, r[5]?, r[6])
        })
        .collect())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- Wire format ----

#[derive(Deserialize)]
struct SummaryDto {
    #[serde(default)]
    price: Option<PriceDto>,
    #[serde(default, deserialize_with = "number")]
    volume: Option<f64>,
    #[serde(default, rename = "volumeBase", deserialize_with = "number")]
    volume_base: Option<f64>,
    #[serde(default, rename = "volumeQuote", deserialize_with = "number")]
    volume_quote: Option<f64>,
    #[serde(default, rename = "volumeUSD", deserialize_with = "number")]
    volume_usd: Option<f64>,
    // Futures markets also carry volumeContracts/volumeSettlement; not part of
    // the metric contract, so they are ignored like any unknown field.
}

#[derive(Deserialize)]
struct PriceDto {
    #[serde(default, deserialize_with = "number")]
    last: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    high: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    low: Option<f64>,
    #[serde(default)]
    change: Option<ChangeDto>,
}

#[derive(Deserialize)]
struct ChangeDto {
    /// Already a ratio: 0.0019 means +0.19 %.
    #[serde(default, deserialize_with = "number")]
    percentage: Option<f64>,
}

#[derive(Deserialize)]
struct CursorDto {
    #[serde(default)]
    last: Option<String>,
    #[serde(default, rename = "hasMore")]
    has_more: bool,
}

#[derive(Deserialize)]
struct AllowanceDto {
    #[serde(default, deserialize_with = "number")]
    cost: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    remaining: Option<f64>,
}

/// `error` is a string in every recorded response; anything else is still an error.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorDto {
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl ErrorDto {
    fn into_source_error(self, body: &[u8]) -> SourceError {
        SourceError::Api(match self {
            ErrorDto::Text(s) => s,
            ErrorDto::Other(_) => crate::upstream::excerpt(body),
        })
    }
}

impl AllowanceDto {
    fn credits(self) -> Option<Credits> {
        Some(Credits {
            cost: self.cost?,
            remaining: self.remaining?,
        })
    }
}

impl CursorDto {
    /// The cursor of the next page, if there is one.
    fn next(self) -> Option<String> {
        self.last.filter(|_| self.has_more)
    }
}

/// One parsed page.
#[derive(Debug, Default)]
pub struct Page {
    pub markets: Vec<RawMarket>,
    pub rejections: Rejections,
    pub credits: Option<Credits>,
    pub next_cursor: Option<String>,
}

/// Parses one `/markets/summaries` body into raw domain markets.
pub fn parse(body: &[u8]) -> Result<Page, SourceError> {
    parse_with_pairs(body, &HashMap::new())
}

/// [`parse`], labelling markets with base/quote from a `/pairs` listing.
pub fn parse_with_pairs(body: &[u8], pairs: &HashMap<String, Assets>) -> Result<Page, SourceError> {
    let (collected, credits, next_cursor) = parse_page(body, pairs, Collected::default)?;
    Ok(Page {
        markets: collected.markets,
        rejections: collected.rejections,
        credits,
        next_cursor,
    })
}

/// Streams one page's markets into a fresh sink from `fresh`, never holding
/// the whole `result` at once: memory follows what the sink keeps. A body
/// that fails to parse is [repaired](super::repair) once and read again into
/// another fresh sink, so nothing is counted twice.
pub fn parse_page<S: Sink>(
    body: &[u8],
    pairs: &HashMap<String, Assets>,
    fresh: impl Fn() -> S,
) -> Result<(S, Option<Credits>, Option<String>), SourceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SourceError::Decode("empty body".into()));
    }
    let attempt = |text: &[u8]| -> Result<(S, Meta), serde_json::Error> {
        let mut sink = fresh();
        let mut de = serde_json::Deserializer::from_slice(text);
        // The top level is an object: its visitor alone reads it.
        let meta = de.deserialize_map(PageVisitor {
            sink: &mut sink,
            pairs,
        })?;
        de.end()?;
        Ok((sink, meta))
    };
    let (sink, meta) =
        super::repair::retry(body, attempt).map_err(|e| SourceError::Decode(format!("{e}")))?;
    if let Some(error) = meta.error {
        return Err(error.into_source_error(body));
    }
    if !meta.result {
        return Err(SourceError::Decode(
            "no \"result\" object in the response".into(),
        ));
    }
    Ok((
        sink,
        meta.allowance.and_then(AllowanceDto::credits),
        meta.cursor.and_then(CursorDto::next),
    ))
}

/// A page's fields besides `result`, which streams into the sink.
#[derive(Default)]
struct Meta {
    /// Whether `result` was an object (not missing, not null).
    result: bool,
    cursor: Option<CursorDto>,
    allowance: Option<AllowanceDto>,
    error: Option<ErrorDto>,
}

/// The top-level object of a page.
struct PageVisitor<'s, S> {
    sink: &'s mut S,
    pairs: &'s HashMap<String, Assets>,
}

impl<'de, S: Sink> Visitor<'de> for PageVisitor<'_, S> {
    type Value = Meta;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Cryptowatch response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
        let PageVisitor { sink, pairs } = self;
        let mut meta = Meta::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "result" => {
                    meta.result = map.next_value_seed(ResultSeed {
                        sink: &mut *sink,
                        pairs,
                    })?;
                }
                "cursor" => meta.cursor = map.next_value()?,
                "allowance" => meta.allowance = map.next_value()?,
                "error" => meta.error = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(meta)
    }
}

/// The `result` object: each entry becomes a market in the sink as soon as
/// it is read; keys are borrowed from the body where they hold no escapes.
struct ResultSeed<'s, S> {
    sink: &'s mut S,
    pairs: &'s HashMap<String, Assets>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for ResultSeed<'_, S> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for ResultSeed<'_, S> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of \"exchange:pair\" keys")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let summary: SummaryDto = map.next_value()?;
            emit(self.sink, &key, summary, self.pairs);
        }
        Ok(true)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// One entry into the sink. An entry without a single value (`"a:b":{}`)
/// would be no market at all: skipped before anything is allocated for it.
fn emit<S: Sink>(sink: &mut S, key: &str, s: SummaryDto, pairs: &HashMap<String, Assets>) {
    // Keys split on the FIRST colon only: pair symbols may contain '-' or '.'.
    let Some((exchange, pair)) = key
        .split_once(':')
        .filter(|(e, p)| !e.is_empty() && !p.is_empty())
    else {
        sink.reject(RejectReason::InvalidKey);
        return;
    };
    let mut values = [None; MarketGauge::COUNT];
    if let Some(price) = &s.price {
        values[MarketGauge::Price as usize] = price.last;
        values[MarketGauge::PriceHigh24h as usize] = price.high;
        values[MarketGauge::PriceLow24h as usize] = price.low;
        values[MarketGauge::PriceChangeRatio24h as usize] =
            price.change.as_ref().and_then(|c| c.percentage);
    }
    values[MarketGauge::Volume24h as usize] = s.volume_base.or(s.volume);
    values[MarketGauge::VolumeQuote24h as usize] = s.volume_quote;
    values[MarketGauge::VolumeUsd24h as usize] = s.volume_usd;
    if values.iter().all(Option::is_none) {
        return;
    }
    sink.market(RawMarket {
        exchange: exchange.to_owned(),
        pair: pair.to_owned(),
        assets: pairs.get(pair).cloned(),
        values,
    });
}

#[derive(Deserialize)]
struct PairsDto {
    #[serde(default)]
    result: Option<Vec<PairDto>>,
    #[serde(default)]
    cursor: Option<CursorDto>,
    #[serde(default)]
    allowance: Option<AllowanceDto>,
    #[serde(default)]
    error: Option<ErrorDto>,
}

#[derive(Deserialize)]
struct PairDto {
    symbol: String,
    base: AssetDto,
    quote: AssetDto,
}

#[derive(Deserialize)]
struct AssetDto {
    symbol: String,
}

/// One parsed `/pairs` page.
#[derive(Debug, Default)]
pub struct PairsPage {
    pub pairs: HashMap<String, Assets>,
    pub credits: Option<Credits>,
    pub next_cursor: Option<String>,
}

/// Parses one `/pairs` body: pair symbol → base/quote.
pub fn parse_pairs(body: &[u8]) -> Result<PairsPage, SourceError> {
    let dto: PairsDto = serde_json::from_slice(body)
        .map_err(|e| SourceError::Decode(format!("pair listing: {e}")))?;
    if let Some(error) = dto.error {
        return Err(error.into_source_error(body));
    }
    let result = dto.result.ok_or_else(|| {
        SourceError::Decode("pair listing: no \"result\" array in the response".into())
    })?;
    Ok(PairsPage {
        pairs: result
            .into_iter()
            .map(|p| (p.symbol, Assets::new(&p.base.symbol, &p.quote.symbol)))
            .collect(),
        credits: dto.allowance.and_then(AllowanceDto::credits),
        next_cursor: dto.cursor.and_then(CursorDto::next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ohlc_rows_carry_their_close_time() {
        let body = super::super::fixture("cryptowatch/ohlc.kraken.btceur.excerpt.2022-02-28.json");
        assert_eq!(parse_ohlc(&body, 300).unwrap().len(), 1000);
        assert!(
            parse_ohlc(&body, 900).unwrap().is_empty(),
            "a period not answered"
        );
        assert_eq!(
            parse_ohlc(br#"{"error":"Instrument not found"}"#, 60)
                .unwrap_err()
                .reason(),
            "api_error"
        );
    }

    fn market<'a>(page: &'a Page, key: &str) -> &'a RawMarket {
        let (e, p) = key.split_once(':').unwrap();
        page.markets
            .iter()
            .find(|m| m.exchange == e && m.pair == p)
            .unwrap()
    }

    #[test]
    fn the_public_api_is_recognised_as_gone() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(is_sunset(&url("https://api.cryptowat.ch")));
        assert!(is_sunset(&url("https://API.Cryptowat.ch./")));
        assert!(!is_sunset(&url("https://cw-mirror.example")));
        assert!(!is_sunset(&url("http://127.0.0.1:8080")));
    }

    #[test]
    fn both_generations_and_futures() {
        let body = br#"{"result":{
            "kraken:btcusd":{"price":{"last":26115.1,"high":26250,"low":25800.1,"change":{"percentage":0.0019,"absolute":49.8}},"volume":1143.9,"volumeBase":1143.9,"volumeQuote":29776774.6,"volumeUSD":29776774.6},
            "binance:stx.2btc":{"price":{"last":8.0e-8,"high":1,"low":0,"change":{"percentage":-0.5,"absolute":0}},"volume":10,"volumeQuote":20},
            "binance:btcusdt-perpetual-futures":{"price":{"last":2,"high":3,"low":1,"change":{"percentage":0,"absolute":0}},"volume":5,"volumeBase":5,"volumeQuote":6,"volumeContracts":5,"volumeSettlement":6,"volumeUSD":7,"somethingNew":{"x":1}}
        },"cursor":{"last":"abc","hasMore":false},"allowance":{"cost":0.015,"remaining":9.695,"upgrade":"x"}}"#;
        let page = parse(body).unwrap();
        assert_eq!(page.markets.len(), 3);
        assert_eq!(
            market(&page, "kraken:btcusd").values,
            [
                Some(26115.1),
                Some(26250.0),
                Some(25800.1),
                Some(0.0019),
                Some(1143.9),
                Some(29776774.6),
                Some(29776774.6)
            ]
        );
        let old = market(&page, "binance:stx.2btc");
        assert_eq!(old.values[MarketGauge::Volume24h as usize], Some(10.0));
        assert_eq!(old.values[MarketGauge::VolumeUsd24h as usize], None);
        assert_eq!(old.values[MarketGauge::Price as usize], Some(8.0e-8));
        let fut = market(&page, "binance:btcusdt-perpetual-futures");
        assert_eq!(fut.values[MarketGauge::VolumeUsd24h as usize], Some(7.0));
        assert_eq!(
            page.credits,
            Some(Credits {
                cost: 0.015,
                remaining: 9.695
            })
        );
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn key_splits_on_first_colon_and_bad_keys_are_counted() {
        let page = parse(
            br#"{"result":{"a:b:c":{"price":{"last":1}},"nocolon":{"price":{"last":1}},":x":{}}}"#,
        )
        .unwrap();
        assert_eq!(page.markets.len(), 1);
        assert_eq!(
            (
                page.markets[0].exchange.as_str(),
                page.markets[0].pair.as_str()
            ),
            ("a", "b:c")
        );
        assert_eq!(page.rejections.values[RejectReason::InvalidKey as usize], 2);
    }

    #[test]
    fn error_shapes() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "invalid_response"),
            (b"   \n", "invalid_response"),
            (b"<html>502</html>", "invalid_response"),
            (
                br#"{"result":{"kraken:btcusd":{"price":{"last":1"#,
                "invalid_response",
            ),
            (
                br#"{"error":"Route not found","allowance":{"cost":0,"remaining":9}}"#,
                "api_error",
            ),
            (br#"{"cursor":{}}"#, "invalid_response"),
        ];
        for (body, reason) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(
                err.reason(),
                reason,
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse(br#"{"error":"Route not found"}"#)
                .unwrap_err()
                .to_string(),
            "upstream reported an error: Route not found"
        );
    }

    #[test]
    fn pairs_listing_labels_markets() {
        let listing = parse_pairs(
            br#"{"result":[{"id":232,"symbol":"btceur","base":{"id":60,"symbol":"btc","fiat":false},"quote":{"id":108,"symbol":"eur","fiat":true},"route":"x"}],
                "cursor":{"last":"c","hasMore":false},"allowance":{"cost":0.002,"remaining":9.9}}"#,
        )
        .unwrap();
        assert_eq!(listing.pairs["btceur"], Assets::new("btc", "eur"));
        assert_eq!(listing.credits.map(|c| c.cost), Some(0.002));
        let page = parse_with_pairs(
            br#"{"result":{"kraken:btceur":{"price":{"last":2}},"kraken:ethbtc":{"price":{"last":1}}}}"#,
            &listing.pairs,
        )
        .unwrap();
        assert_eq!(page.markets[0].assets, Some(Assets::new("btc", "eur")));
        assert_eq!(page.markets[1].assets, None);
        let err = parse_pairs(br#"{"error":"Pair not found"}"#).unwrap_err();
        assert_eq!(err.reason(), "api_error");
        assert_eq!(
            parse_pairs(br#"{"result":{}}"#).unwrap_err().reason(),
            "invalid_response"
        );
    }

    #[test]
    fn cursor_is_followed_only_when_has_more() {
        let page = parse(br#"{"result":{},"cursor":{"last":"n3xt","hasMore":true}}"#).unwrap();
        assert_eq!(page.next_cursor.as_deref(), Some("n3xt"));
        assert_eq!(urlencode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
