//! Domain types shared by every source: what a market is once its wire format
//! has been parsed away, the validation every value goes through, and which
//! source a market came from ([`SourceKind`]) with its metering ([`Credits`]).

use std::fmt;
use std::str::FromStr;

/// The per-market gauges of the metric contract, in exposition order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketGauge {
    Price,
    PriceHigh24h,
    PriceLow24h,
    PriceChangeRatio24h,
    Volume24h,
    VolumeQuote24h,
    VolumeUsd24h,
}

impl MarketGauge {
    pub const COUNT: usize = 7;
    pub const ALL: [MarketGauge; Self::COUNT] = [
        MarketGauge::Price,
        MarketGauge::PriceHigh24h,
        MarketGauge::PriceLow24h,
        MarketGauge::PriceChangeRatio24h,
        MarketGauge::Volume24h,
        MarketGauge::VolumeQuote24h,
        MarketGauge::VolumeUsd24h,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MarketGauge::Price => "crypto_market_price",
            MarketGauge::PriceHigh24h => "crypto_market_price_high_24h",
            MarketGauge::PriceLow24h => "crypto_market_price_low_24h",
            MarketGauge::PriceChangeRatio24h => "crypto_market_price_change_ratio_24h",
            MarketGauge::Volume24h => "crypto_market_volume_24h",
            MarketGauge::VolumeQuote24h => "crypto_market_volume_quote_24h",
            MarketGauge::VolumeUsd24h => "crypto_market_volume_usd_24h",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            MarketGauge::Price => {
                "Last trade price in quote currency, cached from the last successful poll."
            }
            MarketGauge::PriceHigh24h => {
                "Highest trade price of the rolling 24h window in quote currency, cached from the last successful poll."
            }
            MarketGauge::PriceLow24h => {
                "Lowest trade price of the rolling 24h window in quote currency, cached from the last successful poll."
            }
            MarketGauge::PriceChangeRatio24h => {
                "Price change over the rolling 24h window as a ratio (0.02 = +2%), cached from the last successful poll."
            }
            MarketGauge::Volume24h => {
                "Traded volume of the rolling 24h window in base currency, cached from the last successful poll."
            }
            MarketGauge::VolumeQuote24h => {
                "Traded volume of the rolling 24h window in quote currency, cached from the last successful poll."
            }
            MarketGauge::VolumeUsd24h => {
                "Traded volume of the rolling 24h window in US dollars, where the source reports it, cached from the last successful poll."
            }
        }
    }

    /// Gauges that describe the trade price: meaningless for a market with no trades.
    fn is_price(self) -> bool {
        matches!(
            self,
            MarketGauge::Price
                | MarketGauge::PriceHigh24h
                | MarketGauge::PriceLow24h
                | MarketGauge::PriceChangeRatio24h
        )
    }

    /// Only the change ratio may legitimately be negative.
    fn may_be_negative(self) -> bool {
        self == MarketGauge::PriceChangeRatio24h
    }
}

/// One market as a source reports it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMarket {
    pub exchange: String,
    pub pair: String,
    /// Base and quote currency symbols (`btc`, `usd`), where the source tells them.
    pub assets: Option<Assets>,
    /// Indexed by `MarketGauge as usize`; `None` where the source does not report it.
    pub values: [Option<f64>; MarketGauge::COUNT],
}

impl RawMarket {
    /// A market of an exchange's own API, named by its listing's assets.
    pub fn listed(
        exchange: &str,
        assets: &Assets,
        values: [Option<f64>; MarketGauge::COUNT],
    ) -> Self {
        Self {
            exchange: exchange.to_owned(),
            pair: assets.pair(),
            assets: Some(assets.clone()),
            values,
        }
    }
}

/// One validated market: every present value is finite, and non-negative
/// unless the gauge allows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    pub exchange: String,
    pub pair: String,
    pub assets: Option<Assets>,
    pub values: [Option<f64>; MarketGauge::COUNT],
}

/// One OHLC candle of a market, as every source's candle endpoint reports it
/// once its wire format is parsed away: the backfill's raw material.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    /// When the candle opens, in Unix seconds; it spans one candle width.
    pub start: i64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Traded volume in base currency.
    pub volume: f64,
    /// Traded volume in quote currency, where the source reports it (Binance,
    /// Cryptowatch) or it follows exactly (Kraken: vwap x volume).
    pub quote_volume: Option<f64>,
}

/// The latest candle start [`Candle::checked`] accepts (year 5000).
pub const MAX_CANDLE_START: i64 = 95_617_584_000;

impl Candle {
    /// A candle whose values are all finite and not negative, or `None`:
    /// upstream's bad row is dropped, never taken for a price.
    pub fn checked(
        start: i64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
        quote_volume: Option<f64>,
    ) -> Option<Self> {
        let fine = |v: f64| v.is_finite() && v >= 0.0;
        // A time before 1970 or after the year 5000 is no candle's: and it
        // keeps `start + width` arithmetic far from overflow.
        let dated = (0..=MAX_CANDLE_START).contains(&start);
        (dated
            && fine(high)
            && fine(low)
            && fine(close)
            && fine(volume)
            && quote_volume.is_none_or(fine))
        .then_some(Self {
            start,
            high,
            low,
            close,
            volume,
            quote_volume,
        })
    }
}

/// The two currencies of a pair, lowercase as in Cryptowatch (`btc`, `usdt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    pub base: String,
    pub quote: String,
}

impl Assets {
    pub fn new(base: &str, quote: &str) -> Self {
        Self {
            base: base.to_ascii_lowercase(),
            quote: quote.to_ascii_lowercase(),
        }
    }

    /// The pair symbol in Cryptowatch's style: base then quote, lowercase.
    pub fn pair(&self) -> String {
        format!("{}{}", self.base, self.quote)
    }
}

impl Market {
    pub fn get(&self, gauge: MarketGauge) -> Option<f64> {
        self.values[gauge as usize]
    }
}

/// Why a value was not exported. A closed set: it becomes a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Nan,
    Infinite,
    Negative,
    /// A whole market entry whose key or shape could not be read.
    InvalidKey,
    /// A market missing from the source's pair listing (Kraken AssetPairs,
    /// Binance exchangeInfo), so its base/quote are unknown until the next refresh.
    UnknownPair,
    /// A listed market whose data could not be fetched this poll (Coinbase
    /// per-product stats).
    Unavailable,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::Nan,
        RejectReason::Infinite,
        RejectReason::Negative,
        RejectReason::InvalidKey,
        RejectReason::UnknownPair,
        RejectReason::Unavailable,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            RejectReason::Nan => "nan",
            RejectReason::Infinite => "infinite",
            RejectReason::Negative => "negative",
            RejectReason::InvalidKey => "invalid_key",
            RejectReason::UnknownPair => "unknown_pair",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

/// What validation of one poll's markets dropped, for the self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Values (or whole entries) dropped, indexed by `RejectReason as usize`.
    pub values: [u64; RejectReason::ALL.len()],
    /// Markets whose last price was 0 (no trade in 24 h): exported without price gauges.
    pub no_trades: u64,
}

impl Rejections {
    pub fn add(&mut self, other: &Rejections) {
        for (a, b) in self.values.iter_mut().zip(other.values) {
            *a += b;
        }
        self.no_trades += other.no_trades;
    }

    pub fn count(&mut self, reason: RejectReason) {
        self.values[reason as usize] += 1;
    }
}

/// Longest exchange or pair name exported, in bytes: the longest of the
/// 14,462 Cryptowatch markets is 41 bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Validates one market. Bad values are dropped one by one (a NaN volume does
/// not hide a good price); a market left with no value at all is dropped.
pub fn admit(raw: RawMarket, rejections: &mut Rejections) -> Option<Market> {
    // U+FFFD stands where upstream sent a lone surrogate or a byte that is not
    // UTF-8 (source::repair); control characters have no place in a symbol;
    // and a label value of kilobytes would bloat every series of the market
    // (real ones are under 50 bytes). Either way the key names no real market.
    let garbled =
        |s: &str| s.len() > MAX_KEY_LEN || s.chars().any(|c| c == '\u{fffd}' || c.is_control());
    if garbled(&raw.exchange) || garbled(&raw.pair) {
        rejections.count(RejectReason::InvalidKey);
        return None;
    }
    let mut values = raw.values;
    for gauge in MarketGauge::ALL {
        let slot = &mut values[gauge as usize];
        let Some(v) = *slot else { continue };
        let reason = if v.is_nan() {
            Some(RejectReason::Nan)
        } else if v.is_infinite() {
            Some(RejectReason::Infinite)
        } else if v < 0.0 && !gauge.may_be_negative() {
            Some(RejectReason::Negative)
        } else {
            None
        };
        if let Some(reason) = reason {
            rejections.count(reason);
            *slot = None;
        }
    }
    // A last price of exactly 0 means "no trade in 24h", not "worth nothing":
    // exporting it would put a fake crash on every graph and alert.
    if values[MarketGauge::Price as usize] == Some(0.0) {
        rejections.no_trades += 1;
        for gauge in MarketGauge::ALL.into_iter().filter(|g| g.is_price()) {
            values[gauge as usize] = None;
        }
    }
    if values.iter().all(Option::is_none) {
        return None;
    }
    Some(Market {
        exchange: raw.exchange,
        pair: raw.pair,
        assets: raw.assets,
        values,
    })
}

/// Validates a whole poll's markets, accumulating what was dropped.
pub fn admit_all(raw: Vec<RawMarket>, rejections: &mut Rejections) -> Vec<Market> {
    raw.into_iter()
        .filter_map(|m| admit(m, rejections))
        .collect()
}

macro_rules! source_kinds {
    ($($(#[$attr:meta])* $kind:ident => $module:ident::$ty:ident,)*) => {
        /// The sources this build knows, in the order `--help` lists them
        /// ([`crate::for_each_source!`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SourceKind {
            $($(#[$attr])* $kind,)*
        }

        impl SourceKind {
            pub const ALL: &[SourceKind] = &[$($(#[$attr])* SourceKind::$kind,)*];

            /// Its name: `--source=NAME`, and its section of the options.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($(#[$attr])* SourceKind::$kind => stringify!($module),)*
                }
            }
        }
    };
}
crate::for_each_source!(source_kinds);

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
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

/// Remaining API credits, for upstreams that meter them (Cryptowatch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Credits {
    /// Credits the last call cost.
    pub cost: f64,
    /// Credits left until the next reset.
    pub remaining: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candle_is_finite_non_negative_and_dated_in_range() {
        assert!(Candle::checked(60, 2.0, 1.0, 1.5, 0.0, None).is_some());
        assert!(Candle::checked(60, f64::NAN, 1.0, 1.5, 0.0, None).is_none());
        assert!(Candle::checked(60, 2.0, -1.0, 1.5, 0.0, None).is_none());
        assert!(Candle::checked(60, 2.0, 1.0, 1.5, 0.0, Some(f64::INFINITY)).is_none());
        assert!(Candle::checked(-60, 2.0, 1.0, 1.5, 0.0, None).is_none());
        assert!(Candle::checked(i64::MAX, 2.0, 1.0, 1.5, 0.0, None).is_none());
    }

    fn raw(values: [Option<f64>; 7]) -> RawMarket {
        RawMarket {
            exchange: "kraken".into(),
            pair: "btcusd".into(),
            assets: None,
            values,
        }
    }

    #[test]
    fn keeps_good_values_and_negative_change() {
        let mut r = Rejections::default();
        let v = [
            Some(1.0),
            Some(2.0),
            Some(0.5),
            Some(-0.1),
            Some(3.0),
            Some(4.0),
            None,
        ];
        let m = admit(raw(v), &mut r).unwrap();
        assert_eq!(m.values, v);
        assert_eq!(r, Rejections::default());
    }

    #[test]
    fn garbled_or_overlong_keys_reject_the_market() {
        for (exchange, pair) in [
            ("kraken", "btc\u{fffd}usd".to_owned()),
            ("kraken", "btc\nusd".to_owned()),
            ("kraken", "x".repeat(MAX_KEY_LEN + 1)),
            ("k\u{7}", "btcusd".to_owned()),
        ] {
            let mut r = Rejections::default();
            let m = RawMarket {
                exchange: exchange.into(),
                pair,
                assets: None,
                values: [Some(1.0); 7],
            };
            assert!(admit(m, &mut r).is_none());
            assert_eq!(r.values[RejectReason::InvalidKey as usize], 1);
        }
        let mut r = Rejections::default();
        let long_but_fine = RawMarket {
            exchange: "kraken-futures".into(),
            pair: "x".repeat(MAX_KEY_LEN),
            assets: None,
            values: [Some(1.0); 7],
        };
        assert!(admit(long_but_fine, &mut r).is_some());
    }

    #[test]
    fn rejects_each_bad_value_by_reason() {
        let mut r = Rejections::default();
        let v = [
            Some(1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(-3.0),
            Some(4.0),
            None,
        ];
        let m = admit(raw(v), &mut r).unwrap();
        assert_eq!(
            m.values,
            [Some(1.0), None, None, None, None, Some(4.0), None]
        );
        assert_eq!(r.values, [1, 2, 1, 0, 0, 0]);
    }

    #[test]
    fn zero_price_drops_price_gauges_but_keeps_volumes() {
        let mut r = Rejections::default();
        let v = [
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
        ];
        let m = admit(raw(v), &mut r).unwrap();
        assert_eq!(
            m.values,
            [None, None, None, None, Some(0.0), Some(0.0), Some(0.0)]
        );
        assert_eq!(r.no_trades, 1);
    }

    #[test]
    fn market_without_values_is_dropped() {
        let mut r = Rejections::default();
        assert_eq!(
            admit(
                raw([Some(f64::NAN), None, None, None, None, None, None]),
                &mut r
            ),
            None
        );
        assert_eq!(r.values[RejectReason::Nan as usize], 1);
    }
}
