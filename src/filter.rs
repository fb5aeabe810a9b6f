//! Which markets get exported: include/exclude globs on exchange and pair, and
//! a hard cap that keeps the first N markets in a stable order.

use crate::domain::Market;
use crate::glob::Glob;

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
            max_markets: 50_000,
        }
    }
}

/// The outcome of filtering one poll's markets.
#[derive(Debug, Default)]
pub struct Filtered {
    /// Sorted by (exchange, pair), at most `max_markets` long.
    pub markets: Vec<Market>,
    /// Markets removed by the include/exclude globs.
    pub excluded: usize,
    /// Markets that passed the globs but fell beyond the cap.
    pub truncated: usize,
}

impl MarketFilter {
    pub fn allows(&self, exchange: &str, pair: &str) -> bool {
        let any = |globs: &[Glob], s: &str| globs.iter().any(|g| g.matches(s));
        (self.include_exchanges.is_empty() || any(&self.include_exchanges, exchange))
            && !any(&self.exclude_exchanges, exchange)
            && (self.include_pairs.is_empty() || any(&self.include_pairs, pair))
            && !any(&self.exclude_pairs, pair)
    }

    /// Filters, sorts and caps. Sorting here gives both a stable exposition
    /// order and a stable choice of which markets survive the cap.
    pub fn apply(&self, markets: Vec<Market>) -> Filtered {
        let before = markets.len();
        let mut kept: Vec<Market> = markets
            .into_iter()
            .filter(|m| self.allows(&m.exchange, &m.pair))
            .collect();
        let excluded = before - kept.len();
        // Stable, so that duplicates stay in the order upstream sent them.
        kept.sort_by(|a, b| (&a.exchange, &a.pair).cmp(&(&b.exchange, &b.pair)));
        // A key repeated in one response would repeat a series and void the
        // whole exposition, so one entry must go. The last one wins, as in
        // JavaScript's JSON.parse and most JSON libraries: a server that
        // appends updates means its latest value.
        kept.dedup_by(|later, kept| {
            let same = later.exchange == kept.exchange && later.pair == kept.pair;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        let truncated = kept.len().saturating_sub(self.max_markets);
        kept.truncate(self.max_markets);
        Filtered {
            markets: kept,
            excluded,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(exchange: &str, pair: &str) -> Market {
        Market {
            exchange: exchange.into(),
            pair: pair.into(),
            assets: None,
            values: [Some(1.0); 7],
        }
    }

    fn names(f: &Filtered) -> Vec<String> {
        f.markets
            .iter()
            .map(|m| format!("{}:{}", m.exchange, m.pair))
            .collect()
    }

    #[test]
    fn include_and_exclude() {
        let f = MarketFilter {
            include_exchanges: vec![Glob::new("kraken*"), Glob::new("bitstamp")],
            exclude_pairs: vec![Glob::new("*-futures")],
            ..MarketFilter::default()
        };
        let out = f.apply(vec![
            m("kraken", "btcusd"),
            m("kraken-futures", "btcusd-perpetual-futures"),
            m("bitstamp", "ethusd"),
            m("binance", "btcusdt"),
        ]);
        assert_eq!(names(&out), ["bitstamp:ethusd", "kraken:btcusd"]);
        assert_eq!(out.excluded, 2);
    }

    #[test]
    fn cap_keeps_first_in_stable_order() {
        let f = MarketFilter {
            max_markets: 2,
            ..MarketFilter::default()
        };
        let out = f.apply(vec![m("c", "x"), m("a", "y"), m("b", "z"), m("a", "x")]);
        assert_eq!(names(&out), ["a:x", "a:y"]);
        assert_eq!(out.truncated, 2);
    }

    #[test]
    fn duplicates_collapse_and_the_last_one_wins() {
        let mut first = m("a", "x");
        first.values[0] = Some(1.0);
        let mut second = m("a", "x");
        second.values[0] = Some(2.0);
        let mut third = m("a", "x");
        third.values[0] = Some(3.0);
        let out =
            MarketFilter::default().apply(vec![first, m("b", "y"), second, m("a", "w"), third]);
        assert_eq!(names(&out), ["a:w", "a:x", "b:y"]);
        assert_eq!(out.markets[1].values[0], Some(3.0));
    }
}
