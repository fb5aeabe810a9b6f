//! Market data sources. Each source is one file holding its wire-format DTOs,
//! its options and the mapping into domain types; this file holds the
//! contract ([`Source`], [`Entry`]) and the explicit list of sources
//! ([`for_each_source!`](crate::for_each_source)): adding a source is one new
//! file plus one line there.

pub mod listing;
pub mod repair;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

// The leaf types every module shares live in the domain and the error module;
// re-exported here, where sources meet them.
pub use crate::domain::{Credits, SourceKind};
pub use crate::error::SourceError;

use crate::admission::Admission;
use crate::domain::{Candle, Market, RawMarket, RejectReason, Rejections};
use crate::self_metrics::SourceMetrics;
use crate::settings::SourceOptions;

/// The explicit list of sources, in the order `--help` lists them: the one
/// place a source is wired in. A line is `Variant => module::Type`: the
/// [`SourceKind`] variant, the module under `src/source/` (whose name is the
/// source's: `--source=kraken`, the `--kraken.*` flags, the `kraken:` file
/// section) and the type that implements [`Entry`] there.
///
/// It hands the list to the macro named (`for_each_source!(then)` expands to
/// `then! { ... }`), and every per-source item is generated that way, each
/// in its own home: [`SourceKind`] in the domain, the options tree in
/// [`crate::config::options`], [`Settings`] and the `mod` lines here. Every
/// match over the sources is therefore exhaustive by construction.
#[macro_export]
macro_rules! for_each_source {
    ($then:ident) => {
        $then! {
            Cryptowatch => cryptowatch::Cryptowatch,
            Kraken => kraken::Kraken,
            Binance => binance::Binance,
            Coinbase => coinbase::Coinbase,
            Demo => demo::Demo,
            // Compiled for unit tests only: its file and this line are all
            // it has, which its tests check.
            #[cfg(test)]
            Canned => canned::Canned,
        }
    };
}

/// What a line of the list names: a source's options, and how to build it
/// from them once resolved.
pub trait Entry: Source + Sized + 'static {
    /// Its section of the options tree, resolved by [`SourceOptions::resolve`].
    type Options: SourceOptions;

    /// The one exchange it speaks for, if it is an exchange's own API.
    /// Aggregators (Cryptowatch) report many exchanges; when both run, the
    /// exchange's own API wins and the aggregator's copy is left out, so no
    /// series is exported twice.
    const EXCHANGE: Option<&'static str>;

    /// The source, from its own resolved settings alone.
    fn build(config: &Config<Self>, cx: Build) -> Result<Self, SourceError>;
}

/// An entry's resolved settings.
pub type Config<E> = <<E as Entry>::Options as SourceOptions>::Config;

/// What building a source takes beyond its own settings.
#[derive(Debug)]
pub struct Build {
    /// The interval it is polled at: its own, or `poll.interval`.
    pub interval: Duration,
    pub metrics: Arc<SourceMetrics>,
}

macro_rules! wire_in {
    ($($(#[$attr:meta])* $kind:ident => $module:ident::$ty:ident,)*) => {
        $($(#[$attr])* pub mod $module;)*

        /// Every source's own settings, resolved (selected or not: a reload
        /// compares them all).
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $($(#[$attr])* pub $module: Config<$module::$ty>,)*
        }

        impl Settings {
            /// Builds the source of `kind` from its own settings alone.
            pub fn build(
                &self,
                kind: SourceKind,
                cx: Build,
            ) -> Result<Box<dyn Source>, SourceError> {
                Ok(match kind {
                    $($(#[$attr])* SourceKind::$kind => {
                        Box::new($module::$ty::build(&self.$module, cx)?)
                    })*
                })
            }

            /// The source's own poll interval, where it overrides `poll.interval`.
            pub fn poll_interval(&self, kind: SourceKind) -> Option<Duration> {
                match kind {
                    $($(#[$attr])* SourceKind::$kind => {
                        <$module::$ty as Entry>::Options::poll_interval(&self.$module)
                    })*
                }
            }

            /// The sources whose settings differ between `self` and `new` in
            /// a way only a restart applies, by name.
            pub fn needs_restart(&self, new: &Settings) -> Vec<&'static str> {
                let mut changed = Vec::new();
                $($(#[$attr])* {
                    let (old, new) = (&self.$module, &new.$module);
                    if <$module::$ty as Entry>::Options::needs_restart(old, new) {
                        changed.push(stringify!($module));
                    }
                })*
                changed
            }
        }

        impl SourceKind {
            /// See [`Entry::EXCHANGE`].
            pub fn exchange(self) -> Option<&'static str> {
                match self {
                    $($(#[$attr])* SourceKind::$kind => <$module::$ty as Entry>::EXCHANGE,)*
                }
            }
        }
    };
}
for_each_source!(wire_in);

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
    fn poll(&mut self, admission: Admission) -> PollFuture<'_>;
    /// The source's candle endpoint and what it offers, for `backfill`:
    /// `None` where it has none (the demo replays its own past instead).
    fn history(&self) -> Option<(CandleApi, &dyn History)> {
        None
    }
}

/// What a candle endpoint offers: the widths it has, how many candles one
/// call returns, and whether it only ever answers the newest ones (Kraken
/// returns the last 720 candles whatever `since` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleApi {
    /// Candle widths in seconds, finest first.
    pub widths: &'static [u32],
    pub per_call: u32,
    pub newest_only: bool,
}

/// One call's answer: the candles, and how long upstream's own limits ask the
/// next call to wait (Binance's request weight).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CandlePage {
    pub candles: Vec<Candle>,
    pub slow_down: Option<Duration>,
}

impl From<Vec<Candle>> for CandlePage {
    fn from(candles: Vec<Candle>) -> Self {
        Self {
            candles,
            slow_down: None,
        }
    }
}

pub type CandleFuture<'a> =
    Pin<Box<dyn Future<Output = Result<CandlePage, SourceError>> + Send + 'a>>;

/// One candle call: the candles of `market`, `width` seconds wide, that
/// start in `[from, until)` (Unix seconds). A source may return more (the
/// caller clips and de-duplicates) or fewer (a market listed later).
#[derive(Debug, Clone, Copy)]
pub struct CandleQuery<'a> {
    pub market: &'a Market,
    pub width: u32,
    pub from: i64,
    pub until: i64,
}

/// A source's past, one market at a time, through the same [`Upstream`]
/// (governor quota, timeouts, 429 handling) as its polls. Only markets the
/// last poll returned are asked for: the source maps them back to its own
/// symbols from the listing that poll read.
///
/// [`Upstream`]: crate::upstream::Upstream
pub trait History: Send + Sync {
    fn candles<'a>(&'a self, query: CandleQuery<'a>) -> CandleFuture<'a>;
}

/// A recorded answer from `tests/fixtures/`, for the parsers' unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
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

    /// A candle row (`[time, "open", "high", ...]`): its first `N` elements
    /// as numbers (`None` where absent or null), the rest skipped, so a
    /// column upstream adds later breaks nothing. Read straight into an
    /// array: a `Vec` per row was a measurable share of a backfill's CPU.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Row<const N: usize>(pub [Option<f64>; N]);

    impl<'de, const N: usize> serde::Deserialize<'de> for Row<N> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(RowVisitor::<N>)
        }
    }

    struct RowVisitor<const N: usize>;

    /// One element of a row, through [`Num`].
    struct Element;

    impl<'de> de::DeserializeSeed<'de> for Element {
        type Value = Option<f64>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
            d.deserialize_any(Num)
        }
    }

    impl<'de, const N: usize> Visitor<'de> for RowVisitor<N> {
        type Value = Row<N>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of numbers")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Row<N>, A::Error> {
            let mut row = [None; N];
            for slot in &mut row {
                match seq.next_element_seed(Element)? {
                    Some(v) => *slot = v,
                    None => return Ok(Row(row)),
                }
            }
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok(Row(row))
        }
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
        fn rows_read_their_first_columns() {
            let rows: Vec<super::Row<3>> =
                serde_json::from_str(r#"[[1, "2.5", null, "x", 9], [4], []]"#).unwrap();
            assert_eq!(rows[0].0[..2], [Some(1.0), Some(2.5)]);
            assert_eq!(rows[0].0[2], None);
            assert_eq!(rows[1].0, [Some(4.0), None, None]);
            assert_eq!(rows[2].0, [None, None, None]);
            assert!(serde_json::from_str::<Vec<super::Row<3>>>(r#"[[[1]]]"#).is_err());
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

    /// Each source's recorded candles, read by its parser: how many, and
    /// the first as (start, high, low, close, volume, quote volume), with the
    /// recorded row it comes from.
    #[test]
    fn recorded_candles_become_candles() {
        type Parse = fn(&[u8]) -> Result<Vec<Candle>, SourceError>;
        type Row = (i64, f64, f64, f64, f64, Option<f64>);
        let cases: [(&str, Parse, usize, Row); 4] = [
            // [1788415620,"77734.0","77734.0","77726.3","77726.3","77731.9","0.00028258",2]:
            // time, open, high, low, close, vwap, volume; 720 closed and the one still open.
            (
                "kraken/ohlc.XBTUSDT.1m.2026-09-03.json",
                kraken::parse_ohlc,
                721,
                (
                    1_788_415_620,
                    77734.0,
                    77726.3,
                    77726.3,
                    0.00028258,
                    Some(77731.9 * 0.00028258),
                ),
            ),
            // [1788458580000,"81133.99000000","81182.36000000","81133.99000000","81182.35000000",
            //  "5.97533000",1788458639999,"484960.60604970",...]
            (
                "binance/klines.BTCUSDT.1m.2026-09-03.json",
                binance::parse_klines,
                5,
                (
                    1_788_458_580,
                    81182.36,
                    81133.99,
                    81182.35,
                    5.97533,
                    Some(484960.6060497),
                ),
            ),
            // [1786320000, 63733.03, 65341.83, 64848.68, 63911.88, 6197.02944527]:
            // low, high, open, close, volume; no quote volume.
            (
                "coinbase/candles.BTC-USD.1d.2026-08-01_2026-08-10.json",
                coinbase::parse_candles,
                10,
                (
                    1_786_320_000,
                    65341.83,
                    63733.03,
                    63911.88,
                    6197.02944527,
                    None,
                ),
            ),
            // [1646011920, 34185.2, 34352.8, 34185.2, 34352.8, 1.92426961, 66006.827267407]:
            // the close time first, so the candle starts a minute earlier.
            (
                "cryptowatch/ohlc.kraken.btceur.excerpt.2022-02-28.json",
                |body| cryptowatch::parse_ohlc(body, 60),
                1000,
                (
                    1_646_011_860,
                    34352.8,
                    34185.2,
                    34352.8,
                    1.92426961,
                    Some(66006.827267407),
                ),
            ),
        ];
        for (path, parse, len, first) in cases {
            let candles = parse(&fixture(path)).unwrap();
            assert_eq!(candles.len(), len, "{path}");
            let c = &candles[0];
            let row = (c.start, c.high, c.low, c.close, c.volume, c.quote_volume);
            assert_eq!(row, first, "{path}");
        }
    }
}
