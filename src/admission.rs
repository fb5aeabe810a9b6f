//! Admission of one poll's markets, one market at a time as a source reads
//! them: validation ([`domain::admit`]), the include/exclude filters, repeated
//! keys and the `markets.max` cap. Nothing is collected first, so a poll holds
//! at most `markets.max` markets however large or hostile the answer: memory
//! follows the markets kept, not the markets sent.

use std::sync::Arc;

use crate::domain::{self, Market, RawMarket, RejectReason, Rejections};
use crate::filter::MarketFilter;

/// One poll's admission. Sources [`offer`](Admission::offer) what they read;
/// the poller [`finish`](Admission::finish)es it into the new snapshot.
#[derive(Debug)]
pub struct Admission {
    filter: Arc<MarketFilter>,
    /// Markets that passed, in arrival order, compacted (sorted, repeated
    /// keys merged, cut to `max_markets`) whenever it reaches twice the cap:
    /// at most 2 x `max_markets` markets, and one sort per poll below that.
    kept: Vec<Market>,
    rejections: Rejections,
    /// Markets with at least one valid value, before the filters: what
    /// upstream really delivered (an answer of empty entries delivered nothing).
    valid: usize,
    excluded: usize,
    truncated: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(Arc::new(MarketFilter::default()))
    }
}

/// The outcome of one poll's admission.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Sorted by (exchange, pair), at most `max_markets` long.
    pub markets: Vec<Market>,
    pub rejections: Rejections,
    /// See [`Admission::valid`].
    pub valid: usize,
    /// Markets removed by the include/exclude globs.
    pub excluded: usize,
    /// Markets that passed the globs but fell beyond the cap.
    pub truncated: usize,
}

impl Admission {
    pub fn new(filter: Arc<MarketFilter>) -> Self {
        Self {
            filter,
            kept: Vec::new(),
            rejections: Rejections::default(),
            valid: 0,
            excluded: 0,
            truncated: 0,
        }
    }

    /// Validates, filters and keeps (or not) one market. Of a repeated key
    /// the last entry wins, as in JavaScript's JSON.parse and most JSON
    /// libraries.
    pub fn offer(&mut self, raw: RawMarket) {
        let Some(market) = domain::admit(raw, &mut self.rejections) else {
            return;
        };
        self.valid += 1;
        if !self.filter.allows(&market.exchange, &market.pair) {
            self.excluded += 1;
            return;
        }
        self.keep(market);
    }

    fn keep(&mut self, market: Market) {
        self.kept.push(market);
        if self.kept.len() >= self.filter.max_markets.saturating_mul(2).max(2) {
            self.compact();
        }
    }

    /// Sorts by (exchange, pair), merges repeated keys (the later one wins)
    /// and cuts to the cap. Stable, so that arrival order decides among repeats.
    fn compact(&mut self) {
        self.kept
            .sort_by(|a, b| (&a.exchange, &a.pair).cmp(&(&b.exchange, &b.pair)));
        self.kept.dedup_by(|later, kept| {
            let same = later.exchange == kept.exchange && later.pair == kept.pair;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        let max = self.filter.max_markets;
        self.truncated += self.kept.len().saturating_sub(max);
        self.kept.truncate(max);
    }

    pub fn extend(&mut self, raws: impl IntoIterator<Item = RawMarket>) {
        for raw in raws {
            self.offer(raw);
        }
    }

    /// Counts a value or entry the source dropped before it became a market.
    pub fn reject(&mut self, reason: RejectReason) {
        self.rejections.count(reason);
    }

    pub fn add_rejections(&mut self, rejections: &Rejections) {
        self.rejections.add(rejections);
    }

    pub fn rejections(&self) -> &Rejections {
        &self.rejections
    }

    /// Markets with at least one valid value offered so far, filtered or not.
    pub fn valid(&self) -> usize {
        self.valid
    }

    /// The filter this admission applies (for per-page admissions).
    pub fn filter(&self) -> Arc<MarketFilter> {
        self.filter.clone()
    }

    /// Takes in another admission of the same poll (a later page): its
    /// markets as if offered here, in its order after ours, and its counts.
    pub fn absorb(&mut self, later: Admission) {
        if self.kept.is_empty() && self.valid == 0 && self.rejections == Rejections::default() {
            let filter = self.filter.clone();
            *self = later;
            self.filter = filter;
            return;
        }
        self.rejections.add(&later.rejections);
        self.valid += later.valid;
        self.excluded += later.excluded;
        self.truncated += later.truncated;
        for market in later.kept {
            self.keep(market);
        }
    }

    pub fn finish(mut self) -> Admitted {
        self.compact();
        Admitted {
            markets: self.kept,
            rejections: self.rejections,
            valid: self.valid,
            excluded: self.excluded,
            truncated: self.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(exchange: &str, pair: &str, price: f64) -> RawMarket {
        RawMarket {
            exchange: exchange.into(),
            pair: pair.into(),
            assets: None,
            values: [Some(price); 7],
        }
    }

    fn admitted(filter: MarketFilter, raws: Vec<RawMarket>) -> Admitted {
        let mut a = Admission::new(Arc::new(filter));
        a.extend(raws);
        a.finish()
    }

    fn names(a: &Admitted) -> Vec<String> {
        a.markets
            .iter()
            .map(|m| format!("{}:{}", m.exchange, m.pair))
            .collect()
    }

    /// Markets at price 1, by (exchange, pair).
    fn at_one(keys: &[(&str, &str)]) -> Vec<RawMarket> {
        keys.iter().map(|&(e, p)| m(e, p, 1.0)).collect()
    }

    #[test]
    fn include_and_exclude() {
        let out = admitted(
            MarketFilter::example(),
            at_one(&[
                ("kraken", "btcusd"),
                ("kraken-futures", "btcusd-perpetual-futures"),
                ("bitstamp", "ethusd"),
                ("binance", "btcusdt"),
            ]),
        );
        assert_eq!(names(&out), ["bitstamp:ethusd", "kraken:btcusd"]);
        assert_eq!(out.excluded, 2);
        assert_eq!(out.valid, 4);
    }

    #[test]
    fn cap_keeps_the_first_in_sorted_order_whatever_the_arrival_order() {
        let cap = MarketFilter {
            max_markets: 2,
            ..MarketFilter::default()
        };
        let arrivals = at_one(&[("c", "x"), ("a", "y"), ("b", "z"), ("a", "x")]);
        let out = admitted(cap, arrivals);
        assert_eq!(names(&out), ["a:x", "a:y"]);
        assert_eq!(out.truncated, 2);
    }

    #[test]
    fn repeated_keys_collapse_and_the_last_one_wins() {
        let out = admitted(
            MarketFilter::default(),
            vec![
                m("a", "x", 1.0),
                m("b", "y", 5.0),
                m("a", "x", 2.0),
                m("a", "w", 4.0),
                m("a", "x", 3.0),
            ],
        );
        assert_eq!(names(&out), ["a:w", "a:x", "b:y"]);
        assert_eq!(out.markets[1].values[0], Some(3.0));
    }

    #[test]
    fn pages_absorbed_in_order_act_as_one_admission() {
        let f = Arc::new(MarketFilter {
            max_markets: 3,
            ..MarketFilter::default()
        });
        let mut whole = Admission::new(f.clone());
        let mut first = Admission::new(f.clone());
        first.extend([m("b", "x", 1.0), m("d", "x", 1.0), m("a", "x", 1.0)]);
        let mut second = Admission::new(f.clone());
        second.extend([m("c", "x", 1.0), m("a", "x", 2.0), m("e", "x", 1.0)]);
        whole.absorb(first);
        whole.absorb(second);
        let out = whole.finish();
        assert_eq!(names(&out), ["a:x", "b:x", "c:x"]);
        assert_eq!(
            out.markets[0].values[0],
            Some(2.0),
            "the later page's duplicate wins"
        );
        assert_eq!(out.valid, 6);
        assert_eq!(out.truncated, 2);
    }

    #[test]
    fn holds_at_most_twice_the_cap_whatever_the_answer() {
        let f = Arc::new(MarketFilter {
            max_markets: 10,
            ..MarketFilter::default()
        });
        let mut a = Admission::new(f);
        // 1,000 markets in scrambled order; key 5 repeats with a later value.
        for i in 0..1_000u32 {
            let k = (i * 7_919) % 1_000;
            a.offer(m("x", &format!("p{k:04}"), 1.0));
            assert!(a.kept.len() < 20, "{} held after {i}", a.kept.len());
        }
        a.offer(m("x", "p0005", 9.0));
        let out = a.finish();
        let want: Vec<String> = (0..10).map(|k| format!("x:p{k:04}")).collect();
        assert_eq!(names(&out), want);
        assert_eq!(out.markets[5].values[0], Some(9.0));
        assert_eq!(out.truncated, 990);
    }

    #[test]
    fn entries_without_a_valid_value_are_not_upstream_data() {
        let mut empty = m("a", "x", 1.0);
        empty.values = [None; 7];
        let mut nan = m("a", "y", 1.0);
        nan.values = [Some(f64::NAN); 7];
        let out = admitted(MarketFilter::default(), vec![empty, nan]);
        assert!(out.markets.is_empty());
        assert_eq!(out.valid, 0);
        assert_eq!(out.rejections.values[RejectReason::Nan as usize], 7);
    }
}
