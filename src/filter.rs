//! Which markets get exported: include/exclude globs on exchange and pair, and
//! a hard cap on how many; [`crate::admission`] applies them as markets arrive.

use crate::glob::Glob;

/// `--markets.max` unless set: far above any exchange's market count today,
/// low enough to protect Prometheus from a runaway upstream.
pub const DEFAULT_MAX_MARKETS: usize = 50_000;

#[derive(Debug, Clone, PartialEq)]
pub struct MarketFilter {
    /// Empty means "all exchanges".
    pub include_exchanges: Vec<Glob>,
    pub exclude_exchanges: Vec<Glob>,
    /// Empty means "all pairs".
    pub include_pairs: Vec<Glob>,
    pub exclude_pairs: Vec<Glob>,
    pub max_markets: usize,
}

impl Default for MarketFilter {
    fn default() -> Self {
        Self {
            include_exchanges: Vec::new(),
            exclude_exchanges: Vec::new(),
            include_pairs: Vec::new(),
            exclude_pairs: Vec::new(),
            max_markets: DEFAULT_MAX_MARKETS,
        }
    }
}

impl MarketFilter {
    pub fn allows(&self, exchange: &str, pair: &str) -> bool {
        let any = |globs: &[Glob], s: &str| globs.iter().any(|g| g.matches(s));
        (self.include_exchanges.is_empty() || any(&self.include_exchanges, exchange))
            && !any(&self.exclude_exchanges, exchange)
            && (self.include_pairs.is_empty() || any(&self.include_pairs, pair))
            && !any(&self.exclude_pairs, pair)
    }
}

#[cfg(test)]
impl MarketFilter {
    /// Kraken's and Bitstamp's spot markets: for tests here and in `admission`.
    pub(crate) fn example() -> Self {
        MarketFilter {
            include_exchanges: vec![Glob::new("kraken*"), Glob::new("bitstamp")],
            exclude_pairs: vec![Glob::new("*-futures")],
            ..MarketFilter::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude() {
        let f = MarketFilter::example();
        assert!(f.allows("kraken", "btcusd"));
        assert!(f.allows("bitstamp", "ethusd"));
        assert!(!f.allows("kraken-futures", "btcusd-perpetual-futures"));
        assert!(!f.allows("binance", "btcusdt"));
        assert!(MarketFilter::default().allows("anything", "at-all"));
    }
}
