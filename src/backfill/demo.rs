//! The demo's past: its values are a function of the step alone, so its
//! history is replayed, not reconstructed, and ends exactly where the live
//! exporter goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::parts::{Parts, Samples};
use super::{BackfillError, Window, Written, series_labels};
use crate::admission::Admission;
use crate::config::Config;
use crate::filter::MarketFilter;
use crate::source::demo::Demo;

/// Every market the live demo would serve (the same admission: filters and
/// the cap), sampled every poll interval or every `--step`.
pub(super) fn write(
    config: &Config,
    filter: MarketFilter,
    window: &Window<'_>,
    parts: &mut Parts,
) -> Result<Written, BackfillError> {
    let mut demo = Demo::new(&config.settings.demo);
    // Every `stride`-th step, on steps that are multiples of it, so that runs
    // at different times sample the same instants.
    let interval_ms = demo.time_of(1).max(1);
    let stride = window.step.map_or(1, |s| {
        u64::try_from(s.as_millis())
            .unwrap_or(u64::MAX)
            .div_ceil(interval_ms)
            .max(1)
    });
    let (first, last) = (
        // The first step starting at or after `from`.
        demo.step_at(window.from + Duration::from_millis(interval_ms - 1)),
        demo.step_at(window.until),
    );
    let last = last - last % stride;
    let first = first.div_ceil(stride).saturating_mul(stride);
    let mut written = Written::default();
    if first > last {
        return Ok(written);
    }
    // The admission at the last step: the filters and the cap do not depend
    // on the values.
    let mut admission = Admission::new(Arc::new(filter));
    admission.extend(demo.at(last));
    let admitted = admission.finish().markets;
    let index: HashMap<(&str, &str), usize> = (0..demo.markets())
        .map(|m| {
            let (exchange, pair, _, _) = demo.labels(m);
            ((exchange, pair), m)
        })
        .collect();
    let mut samples = Samples::default();
    for market in &admitted {
        written.markets += 1;
        if parts.is_done(&market.exchange, &market.pair) {
            continue;
        }
        let Some(&m) = index.get(&(market.exchange.as_str(), market.pair.as_str())) else {
            continue;
        };
        let (_, _, _, quote_usd) = demo.labels(m);
        samples.clear(series_labels(market, window.labels));
        let series = demo.series(m, first..=last);
        for (step, values) in (first..=last).zip(series).step_by(stride as usize) {
            let ms = demo.time_of(step);
            for (g, v) in Demo::gauges(values, quote_usd).into_iter().enumerate() {
                if let Some(v) = v {
                    samples.by_gauge[g].push((ms, v));
                    written.samples += 1;
                }
            }
        }
        written.series += samples.series();
        parts.add(&market.exchange, &market.pair, &samples)?;
    }
    Ok(written)
}
