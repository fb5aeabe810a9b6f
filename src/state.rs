//! Shared state between the pollers and the HTTP server: one slot per source
//! (its latest rendered markets and its self-metrics) and the current
//! [`Exposition`], swapped atomically on every publish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::domain::SourceKind;
use crate::exposition::{Exposition, Format, MarketFragments};
use crate::self_metrics::{self, SourceMetrics};

/// One source's latest data and its metrics.
#[derive(Debug)]
pub struct Slot {
    pub metrics: Arc<SourceMetrics>,
    /// `None` until the first successful poll; afterwards always the last good data.
    pub markets: ArcSwapOption<MarketFragments>,
}

#[derive(Debug)]
pub struct Shared {
    pub slots: Vec<Arc<Slot>>,
    exposition: ArcSwap<Exposition>,
    /// Serialises publishers so an older composition never overwrites a newer one.
    publish_lock: Mutex<()>,
    /// Set once a published exposition holds market data: readiness follows
    /// what `/metrics` serves, not what a poller has stored but not yet published.
    serving_markets: AtomicBool,
    /// Slices of `/metrics` (`--web.shards`); 1 = not sliced.
    shards: usize,
}

impl Shared {
    pub fn new(sources: &[SourceKind], shards: usize) -> Self {
        let slots = sources
            .iter()
            .map(|&kind| {
                Arc::new(Slot {
                    metrics: Arc::new(SourceMetrics::new(kind)),
                    markets: ArcSwapOption::empty(),
                })
            })
            .collect();
        let shared = Self {
            slots,
            exposition: ArcSwap::from_pointee(Exposition::default()),
            publish_lock: Mutex::new(()),
            serving_markets: AtomicBool::new(false),
            shards: shards.max(1),
        };
        shared.publish();
        shared
    }

    /// Rebuilds the exposition from every slot. Runs once per poll, on a
    /// blocking thread: with 14k markets it gzips several MB.
    pub fn publish(&self) {
        let _guard = self.publish_lock.lock().unwrap_or_else(|e| e.into_inner());
        let markets: Vec<Arc<MarketFragments>> = self
            .slots
            .iter()
            .filter_map(|s| s.markets.load_full())
            .collect();
        let refs: Vec<&MarketFragments> = markets.iter().map(Arc::as_ref).collect();
        let values: Vec<_> = self
            .slots
            .iter()
            .map(|s| (s.metrics.source, s.metrics.values()))
            .collect();
        let self_metrics = Format::ALL.map(|f| self_metrics::render(f, &values));
        self.exposition.store(Arc::new(Exposition::compose(
            &refs,
            self_metrics,
            self.shards,
        )));
        if !markets.is_empty() {
            self.serving_markets.store(true, Ordering::Release);
        }
    }

    /// Slices of `/metrics` every poll renders its markets into.
    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn exposition(&self) -> Arc<Exposition> {
        self.exposition.load_full()
    }

    /// Ready once `/metrics` serves any source's data (published, not just
    /// polled), even if another source is still failing.
    pub fn ready(&self) -> bool {
        self.serving_markets.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_the_data_is_published() {
        let shared = Shared::new(&[SourceKind::Demo], 1);
        assert!(!shared.ready());
        // A poller stores its markets, then publishes on a blocking thread:
        // in between, /metrics does not show them yet, so not ready either.
        shared.slots[0]
            .markets
            .store(Some(Arc::new(MarketFragments::render(&[], 1))));
        assert!(!shared.ready(), "ready before /metrics serves the data");
        shared.publish();
        assert!(shared.ready());
    }
}
