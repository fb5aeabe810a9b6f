//! Market data sources. Each source is one file holding its wire-format DTOs
//! and the mapping into domain types; this file holds the contract and the
//! explicit list of sources (see [`build`]): adding a source is one new file
//! plus one line there, and one variant in [`SourceKind`].

pub mod binance;
pub mod coinbase;
pub mod cryptowatch;
pub mod demo;
pub mod kraken;
pub mod repair;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Admission;
use crate::config::Config;
use crate::domain::{RawMarket, RejectReason, Rejections};
use crate::self_metrics::SourceMetrics;

/// The sources this build knows, in the order `--help` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Cryptowatch,
    Kraken,
    Binance,
    Coinbase,
    Demo,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Cryptowatch,
        SourceKind::Kraken,
        SourceKind::Binance,
        SourceKind::Coinbase,
        SourceKind::Demo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Cryptowatch => "cryptowatch",
            SourceKind::Kraken => "kraken",
            SourceKind::Binance => "binance",
            SourceKind::Coinbase => "coinbase",
            SourceKind::Demo => "demo",
        }
    }

    /// The one exchange a source speaks for, if it is an exchange's own API.
    /// Aggregators (Cryptowatch) report many exchanges; when both run, the
    /// exchange's own API wins and the aggregator's copy is left out, so no
    /// series is exported twice.
    pub fn exchange(self) -> Option<&'static str> {
        match self {
            SourceKind::Kraken => Some("kraken"),
            SourceKind::Binance => Some("binance"),
            SourceKind::Coinbase => Some("coinbase"),
            SourceKind::Cryptowatch | SourceKind::Demo => None,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown source {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// The explicit list of sources: the one place a new source is wired in.
pub fn build(
    kind: SourceKind,
    config: &Config,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    Ok(match kind {
        SourceKind::Cryptowatch => {
            Box::new(cryptowatch::Cryptowatch::new(&config.cryptowatch, metrics)?)
        }
        SourceKind::Kraken => Box::new(kraken::Kraken::new(&config.kraken, metrics)?),
        SourceKind::Binance => Box::new(binance::Binance::new(&config.binance, metrics)?),
        SourceKind::Coinbase => Box::new(coinbase::Coinbase::new(
            &config.coinbase,
            config.poll.interval,
            metrics,
        )?),
        SourceKind::Demo => Box::new(demo::Demo::new(&config.demo)),
    })
}

/// When a source's reference listing (Kraken AssetPairs, Binance
/// exchangeInfo, Cryptowatch pairs) is next due: every `every` after a
/// success, `retry` after a failure, and sooner ("hurry") when a poll meets
/// a market the listing does not know yet, but never more than once per `retry`.
#[derive(Debug)]
pub struct Refresh {
    every: Duration,
    retry: Duration,
    due: Option<tokio::time::Instant>,
    last_attempt: Option<tokio::time::Instant>,
}

impl Refresh {
    pub fn new(every: Duration, retry: Duration) -> Self {
        Self {
            every,
            retry,
            due: None,
            last_attempt: None,
        }
    }

    pub fn is_due(&self) -> bool {
        self.due
            .is_none_or(|due| tokio::time::Instant::now() >= due)
    }

    pub fn done(&mut self, ok: bool) {
        let now = tokio::time::Instant::now();
        self.last_attempt = Some(now);
        self.due = Some(now + if ok { self.every } else { self.retry });
    }

    pub fn hurry(&mut self) {
        let soonest = self
            .last_attempt
            .map_or_else(tokio::time::Instant::now, |t| t + self.retry);
        self.due = Some(self.due.map_or(soonest, |due| due.min(soonest)));
    }
}

impl Refresh {
    /// Applies the outcome of fetching a listing. A new listing is returned to
    /// be swapped in. A failure is fatal to the poll only while there is no
    /// listing at all (`have_one` false): otherwise it is logged and the
    /// previous listing stays.
    pub fn settle<T>(
        &mut self,
        fetched: Result<T, SourceError>,
        have_one: bool,
        source: &'static str,
        what: &'static str,
    ) -> Result<Option<T>, SourceError> {
        match fetched {
            Ok(listing) => {
                self.done(true);
                Ok(Some(listing))
            }
            Err(e) if !have_one => {
                self.done(false);
                Err(e)
            }
            Err(e) => {
                self.done(false);
                tracing::warn!(source, listing = what, reason = e.reason(), error = %e, "cannot refresh the listing; keeping the previous one");
                Ok(None)
            }
        }
    }
}

/// Runs a parser on a blocking thread: a full response takes milliseconds to
/// parse, too long for an async worker.
pub async fn parse_blocking<T: Send + 'static>(
    parse: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(parse)
        .await
        .map_err(|e| SourceError::Internal(format!("parser task failed: {e}")))?
}

/// Remaining API credits, for upstreams that meter them (Cryptowatch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Credits {
    /// Credits the last call cost.
    pub cost: f64,
    /// Credits left until the next reset.
    pub remaining: f64,
}

/// What one successful poll returns.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The markets read, admitted one by one as they were parsed (validated,
    /// filtered, capped), with what was dropped on the way.
    pub admission: Admission,
    pub credits: Option<Credits>,
    /// Upstream's own limits ask for the next poll to wait at least this long
    /// (e.g. Binance's used request weight is close to its per-minute cap).
    pub slow_down: Option<Duration>,
    /// HTTP requests this poll made: one for Cryptowatch, one per product for Coinbase.
    pub requests: u32,
}

pub type PollFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, SourceError>> + Send + 'a>>;

/// Where a streaming parser puts what it reads, entry by entry.
pub trait Sink {
    fn market(&mut self, market: RawMarket);
    fn reject(&mut self, reason: RejectReason);
    /// A market without trades that the source drops itself (Binance's dead symbols).
    fn no_trades(&mut self);
}

impl Sink for Admission {
    fn market(&mut self, market: RawMarket) {
        self.offer(market);
    }
    fn reject(&mut self, reason: RejectReason) {
        Admission::reject(self, reason);
    }
    fn no_trades(&mut self) {
        self.add_rejections(&Rejections {
            no_trades: 1,
            ..Rejections::default()
        });
    }
}

/// A sink that keeps everything, for tests and benchmarks of the parsers.
#[derive(Debug, Default)]
pub struct Collected {
    pub markets: Vec<RawMarket>,
    pub rejections: Rejections,
}

impl Sink for Collected {
    fn market(&mut self, market: RawMarket) {
        self.markets.push(market);
    }
    fn reject(&mut self, reason: RejectReason) {
        self.rejections.count(reason);
    }
    fn no_trades(&mut self) {
        self.rejections.no_trades += 1;
    }
}

impl Fetched {
    pub fn new(admission: Admission) -> Self {
        Self {
            admission,
            ..Self::default()
        }
    }
}

/// A market data source. `poll` is never called concurrently with itself:
/// each source has exactly one poller task. It offers every market it reads
/// to `admission` as it reads it (never collecting a whole answer first) and
/// returns it in [`Fetched`].
pub trait Source: Send + Sync {
    fn kind(&self) -> SourceKind;
    fn poll(&mut self, admission: Admission) -> PollFuture<'_>;
}

/// Why a poll failed. [`SourceError::reason`] is the bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("rate limited by upstream (HTTP {status}){}", retry_after_text(.retry_after))]
    RateLimited {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("upstream answered HTTP {status}: {body}")]
    HttpStatus { status: u16, body: String },
    #[error("response body exceeds the {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("reading the response body failed: {0}")]
    Body(String),
    #[error("invalid response: {0}")]
    Decode(String),
    #[error("upstream reported an error: {0}")]
    Api(String),
    #[error("request failed: {0}")]
    Request(String),
    /// A task of the exporter's own failed (a panic while processing an answer):
    /// a bug, not a bad answer, so it gets its own reason.
    #[error("internal error: {0}")]
    Internal(String),
    /// A well-formed answer with no markets, or far fewer than the last good
    /// poll: an upstream glitch, not a market event, so the last data stays.
    #[error("{}", collapsed_text(*.markets, *.previous, *.min_ratio))]
    Collapsed {
        markets: usize,
        previous: usize,
        min_ratio: f64,
    },
}

fn collapsed_text(markets: usize, previous: usize, min_ratio: f64) -> String {
    if markets == 0 {
        "upstream answered with no markets at all".to_owned()
    } else {
        format!(
            "upstream answered with {markets} markets, under {min_ratio} of the last good poll's {previous} (--poll.min-markets-ratio)"
        )
    }
}

fn retry_after_text(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(", Retry-After {}s", d.as_secs()),
        None => ", no Retry-After".to_owned(),
    }
}

impl SourceError {
    /// Every reason label, so counters can start at 0 instead of appearing late.
    pub const REASONS: [&'static str; 11] = [
        "timeout",
        "connect",
        "rate_limited",
        "http_status",
        "body_too_large",
        "body_read",
        "invalid_response",
        "api_error",
        "request",
        "collapsed",
        "internal",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Timeout(_) => "timeout",
            SourceError::Connect(_) => "connect",
            SourceError::RateLimited { .. } => "rate_limited",
            SourceError::HttpStatus { .. } => "http_status",
            SourceError::BodyTooLarge { .. } => "body_too_large",
            SourceError::Body(_) => "body_read",
            SourceError::Decode(_) => "invalid_response",
            SourceError::Api(_) => "api_error",
            SourceError::Request(_) => "request",
            SourceError::Collapsed { .. } => "collapsed",
            SourceError::Internal(_) => "internal",
        }
    }

    /// The same error with every occurrence of `secret` in its text replaced:
    /// an upstream that echoes the API key in an error body must not put it
    /// into the logs.
    pub fn redact(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let clean = |s: String| s.replace(secret, "<redacted>");
        match self {
            SourceError::Connect(s) => SourceError::Connect(clean(s)),
            SourceError::HttpStatus { status, body } => SourceError::HttpStatus {
                status,
                body: clean(body),
            },
            SourceError::Body(s) => SourceError::Body(clean(s)),
            SourceError::Decode(s) => SourceError::Decode(clean(s)),
            SourceError::Api(s) => SourceError::Api(clean(s)),
            SourceError::Request(s) => SourceError::Request(clean(s)),
            other => other,
        }
    }

    /// How long upstream asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Lenient number parsing shared by the DTOs of all sources: JSON numbers in
/// any form (integer, decimal, exponent), numeric strings (Binance and Kraken
/// send decimals as strings), and `null` for "not reported". `"NaN"` and
/// `"inf"` parse to themselves so that validation can count them.
pub mod de {
    use serde::Deserializer;
    use serde::de::{self, Visitor};
    use std::fmt;

    struct Num;

    impl<'de> Visitor<'de> for Num {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, a numeric string or null")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        /// A string that is no number is one bad value, not a bad response:
        /// it reads as NaN, which validation drops and counts (`reason="nan"`).
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.trim().parse::<f64>().unwrap_or(f64::NAN)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Num)
        }
    }

    /// For `#[serde(default, deserialize_with = "de::number")]` fields of type `Option<f64>`.
    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_option(Num)
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "super::number")]
            v: Option<f64>,
        }

        fn parse(json: &str) -> Option<f64> {
            serde_json::from_str::<T>(json).unwrap().v
        }

        #[test]
        fn number_forms() {
            assert_eq!(parse(r#"{"v": 26250}"#), Some(26250.0));
            assert_eq!(parse(r#"{"v": 0.248}"#), Some(0.248));
            assert_eq!(
                parse(r#"{"v": 8.000000000000093e-8}"#),
                Some(8.000000000000093e-8)
            );
            assert_eq!(parse(r#"{"v": -3}"#), Some(-3.0));
            assert_eq!(parse(r#"{"v": "42.10000000"}"#), Some(42.1));
            assert_eq!(parse(r#"{"v": null}"#), None);
            assert_eq!(parse(r#"{}"#), None);
            assert!(parse(r#"{"v": "NaN"}"#).unwrap().is_nan());
            assert!(parse(r#"{"v": "abc"}"#).unwrap().is_nan());
            assert_eq!(parse(r#"{"v": "1e400"}"#), Some(f64::INFINITY));
            assert!(serde_json::from_str::<T>(r#"{"v": [1]}"#).is_err());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // test code: a panic is the input here
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_parser_is_an_internal_error_not_a_bad_answer() {
        let e = parse_blocking::<()>(|| panic!("a bug")).await.unwrap_err();
        assert_eq!(e.reason(), "internal");
        assert!(SourceError::REASONS.contains(&e.reason()));
    }
}
