//! Candles to the live exporter's gauges, instant by instant, and which
//! candles to ask for: the arithmetic of a network source's backfill, free of
//! I/O so that it is tested on its own.
//!
//! At an instant `t` the gauges are what a poll at `t` would have read:
//! - price: the close of the newest candle counted at `t`;
//! - 24h high/low: the highest high and lowest low of the candles counted at
//!   `t` that opened within the 24 h before it;
//! - 24h volume and quote volume: the sums of the same candles' volumes;
//! - 24h change ratio: the price over the price at `t - 24h`, minus one.
//!
//! A candle counts at `t` once it has closed (`start + width <= t`), so the
//! history never shows a value before it happened. The one exception is the
//! last instant: there the candle still open counts too, because its close is
//! the last trade, which is what the live exporter serves at that moment.

use std::collections::VecDeque;

use crate::domain::{Candle, MarketGauge};
use crate::source::CandleApi;

pub const DAY: i64 = 86_400;

/// The gauges at each instant of `times` (ascending, Unix seconds), from
/// `candles` `width` seconds wide (sorted by start, no duplicates). An
/// instant before the first candle has no values and is skipped.
pub fn gauges(
    candles: &[Candle],
    width: i64,
    times: &[i64],
    mut emit: impl FnMut(i64, [Option<f64>; MarketGauge::COUNT]),
) {
    let Some(&last) = times.last() else {
        return;
    };
    // candles[first..next] is the 24 h window; candles[..reference] have
    // closed by `t - 24h`.
    let (mut first, mut next, mut reference) = (0, 0, 0);
    // Indices of the window's candles with falling highs and rising lows: the
    // fronts are the window's high and low (a sliding-window maximum).
    let mut highs: VecDeque<usize> = VecDeque::new();
    let mut lows: VecDeque<usize> = VecDeque::new();
    let (mut volume, mut quote) = (0.0_f64, 0.0_f64);
    // Candles in the window without a quote volume: any makes the sum unknown.
    let mut quote_missing = 0usize;
    for &t in times {
        while let Some(c) = candles.get(next) {
            let counted = c.start + width <= t || (t == last && c.start <= t);
            if !counted {
                break;
            }
            while highs.back().is_some_and(|&i| candles[i].high <= c.high) {
                highs.pop_back();
            }
            highs.push_back(next);
            while lows.back().is_some_and(|&i| candles[i].low >= c.low) {
                lows.pop_back();
            }
            lows.push_back(next);
            volume += c.volume;
            match c.quote_volume {
                Some(q) => quote += q,
                None => quote_missing += 1,
            }
            next += 1;
        }
        while first < next && candles[first].start < t - DAY {
            let c = &candles[first];
            if highs.front() == Some(&first) {
                highs.pop_front();
            }
            if lows.front() == Some(&first) {
                lows.pop_front();
            }
            volume -= c.volume;
            match c.quote_volume {
                Some(q) => quote -= q,
                None => quote_missing -= 1,
            }
            first += 1;
        }
        if first == next {
            // An empty window sums to exactly zero, not to the rounding
            // residue of everything added and taken away.
            (volume, quote) = (0.0, 0.0);
        }
        while candles
            .get(reference)
            .is_some_and(|c| c.start + width <= t - DAY)
        {
            reference += 1;
        }
        let Some(newest) = next.checked_sub(1).map(|i| &candles[i]) else {
            continue;
        };
        let mut values = [None; MarketGauge::COUNT];
        values[MarketGauge::Price as usize] = Some(newest.close);
        if let (Some(&h), Some(&l)) = (highs.front(), lows.front()) {
            values[MarketGauge::PriceHigh24h as usize] = Some(candles[h].high);
            values[MarketGauge::PriceLow24h as usize] = Some(candles[l].low);
            // Rounding residue must not make a sum of non-negative volumes negative.
            values[MarketGauge::Volume24h as usize] = Some(volume.max(0.0));
            values[MarketGauge::VolumeQuote24h as usize] =
                (quote_missing == 0).then_some(quote.max(0.0));
        }
        if let Some(before) = reference.checked_sub(1).map(|i| candles[i].close)
            && before > 0.0
        {
            values[MarketGauge::PriceChangeRatio24h as usize] = Some(newest.close / before - 1.0);
        }
        emit(t, values);
    }
}

/// The instants of a backfill: every multiple of `step` in `[from, until]`,
/// so that runs at different times sample the same instants.
pub fn instants(from: i64, until: i64, step: i64) -> Vec<i64> {
    let step = step.max(1);
    let first = from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
    (0..)
        .map(|k| first + k * step)
        .take_while(|&t| t <= until)
        .collect()
}

/// Which candles to ask for, and in how many calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Candle width in seconds.
    pub width: u32,
    /// One `[from, until)` per call.
    pub calls: Vec<(i64, i64)>,
    /// Whether the endpoint cannot reach back to the start of the history
    /// even at its coarsest width (Kraken, asked for more than 720 candles
    /// back): the early history then lacks its 24 h values.
    pub truncated: bool,
}

/// Plans the candles for a history of `[from, until]` sampled every `step`
/// seconds, at `now`: the 24 h before `from` too, for the first instants'
/// 24 h values. The width is the coarsest no coarser than the step (finer
/// candles cost calls and add nothing the samples show); an endpoint that
/// only serves its newest candles gets the finest width that still reaches
/// back far enough.
pub fn plan(api: CandleApi, step: i64, from: i64, until: i64, now: i64) -> Plan {
    let start = from - DAY;
    let preferred = api
        .widths
        .iter()
        .rposition(|&w| i64::from(w) <= step)
        .unwrap_or(0);
    let mut truncated = false;
    let width = if api.newest_only {
        let reaches = |w: u32| i64::from(w) * i64::from(api.per_call) >= now.max(until) - start;
        match api.widths[preferred..].iter().find(|&&w| reaches(w)) {
            Some(&w) => w,
            None => {
                truncated = true;
                api.widths.last().copied().unwrap_or(60)
            }
        }
    } else {
        api.widths.get(preferred).copied().unwrap_or(60)
    };
    // The candle open at `until` is wanted too: its close is the last price.
    let end = until + 1;
    let calls = if api.newest_only {
        vec![(start, end)]
    } else {
        let span = i64::from(width) * i64::from(api.per_call.max(1));
        let mut calls = Vec::new();
        let mut at = start.div_euclid(i64::from(width)) * i64::from(width);
        while at < end {
            calls.push((at, (at + span).min(end)));
            at += span;
        }
        calls
    };
    Plan {
        width,
        calls,
        truncated,
    }
}

/// Sorts the candles of several calls by start, drops duplicates (calls may
/// overlap at their edges) and those outside `[from, until]`.
pub fn merge(mut candles: Vec<Candle>, from: i64, until: i64) -> Vec<Candle> {
    candles.retain(|c| c.start >= from && c.start <= until);
    candles.sort_by_key(|c| c.start);
    // The later answer of an overlap is the newer: keep the last of a run.
    let mut out: Vec<Candle> = Vec::with_capacity(candles.len());
    for c in candles {
        match out.last_mut() {
            Some(prev) if prev.start == c.start => *prev = c,
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn candle(start: i64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        Candle {
            start,
            high,
            low,
            close,
            volume,
            quote_volume: Some(volume * close),
        }
    }

    fn run(candles: &[Candle], width: i64, times: &[i64]) -> Vec<(i64, [Option<f64>; 7])> {
        let mut out = Vec::new();
        gauges(candles, width, times, |t, v| out.push((t, v)));
        out
    }

    const P: usize = MarketGauge::Price as usize;
    const H: usize = MarketGauge::PriceHigh24h as usize;
    const L: usize = MarketGauge::PriceLow24h as usize;
    const R: usize = MarketGauge::PriceChangeRatio24h as usize;
    const V: usize = MarketGauge::Volume24h as usize;
    const Q: usize = MarketGauge::VolumeQuote24h as usize;

    #[test]
    fn a_candle_counts_once_closed_and_the_open_one_only_at_the_last_instant() {
        let c = [
            candle(0, 11.0, 9.0, 10.0, 1.0),
            candle(60, 13.0, 10.0, 12.0, 2.0),
        ];
        let out = run(&c, 60, &[30, 60, 90]);
        // At 30 nothing has closed: skipped. At 60 the first has closed; at
        // 90, the last instant, the open second candle counts.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, 60);
        assert_eq!(out[0].1[P], Some(10.0));
        assert_eq!(out[0].1[H], Some(11.0));
        assert_eq!(out[1].1[P], Some(12.0));
        assert_eq!(out[1].1[H], Some(13.0));
        assert_eq!(out[1].1[L], Some(9.0));
        assert_eq!(out[1].1[V], Some(3.0));
        assert_eq!(out[1].1[Q], Some(10.0 + 24.0));
        assert_eq!(out[1].1[R], None, "nothing 24 h before");
    }

    #[test]
    fn the_window_is_24_hours_and_matches_a_recount() {
        // Five-minute candles over two days with a deterministic walk.
        let w = 300;
        let c: Vec<Candle> = (0..600)
            .map(|i| {
                let x = 100.0 + ((i * 37 % 101) as f64) - 50.0 * ((i / 97) % 2) as f64;
                candle(i * w, x + 1.5, x - 1.0, x, (i % 7) as f64 * 0.25)
            })
            .collect();
        let times = instants(DAY, 600 * w - 1, 60);
        let out = run(&c, w, &times);
        assert_eq!(out.len(), times.len());
        for (t, v) in &out {
            let last = *t == *times.last().unwrap();
            let counted: Vec<&Candle> = c
                .iter()
                .filter(|k| k.start + w <= *t || (last && k.start <= *t))
                .collect();
            let window: Vec<&&Candle> = counted.iter().filter(|k| k.start >= t - DAY).collect();
            let high = window.iter().map(|k| k.high).fold(f64::MIN, f64::max);
            let low = window.iter().map(|k| k.low).fold(f64::MAX, f64::min);
            let volume: f64 = window.iter().map(|k| k.volume).sum();
            assert_eq!(v[P], Some(counted.last().unwrap().close), "at {t}");
            assert_eq!(v[H], Some(high), "at {t}");
            assert_eq!(v[L], Some(low), "at {t}");
            assert!((v[V].unwrap() - volume).abs() < 1e-9, "at {t}");
            let before = c.iter().rfind(|k| k.start + w <= t - DAY);
            let ratio = before.map(|b| counted.last().unwrap().close / b.close - 1.0);
            assert_eq!(v[R], ratio, "at {t}");
        }
    }

    #[test]
    fn a_missing_quote_volume_makes_the_sum_unknown_until_it_leaves_the_window() {
        let mut c = vec![
            candle(0, 1.0, 1.0, 1.0, 1.0),
            candle(60, 1.0, 1.0, 1.0, 1.0),
        ];
        c[0].quote_volume = None;
        let out = run(&c, 60, &[120, DAY + 60]);
        assert_eq!(out[0].1[Q], None);
        assert_eq!(out[1].1[Q], Some(1.0));
        // Outside every window: price stays, the 24 h values go.
        let out = run(&c, 60, &[3 * DAY]);
        assert_eq!(out[0].1[P], Some(1.0));
        assert_eq!(out[0].1[H], None);
        assert_eq!(out[0].1[V], None);
    }

    #[test]
    fn instants_are_multiples_of_the_step() {
        assert_eq!(instants(61, 240, 60), vec![120, 180, 240]);
        assert_eq!(instants(60, 119, 60), vec![60]);
        assert!(instants(61, 100, 60).is_empty());
    }

    const KRAKEN: CandleApi = CandleApi {
        widths: &[60, 300, 900],
        per_call: 720,
        newest_only: true,
    };
    const PAGED: CandleApi = CandleApi {
        widths: &[60, 300],
        per_call: 1000,
        newest_only: false,
    };

    #[test]
    fn plans() {
        let now = 100 * DAY;
        // 25 h back plus the 24 h before: 1-minute candles reach only 12 h.
        let p = plan(KRAKEN, 60, now - 25 * 3600, now, now);
        assert_eq!((p.width, p.calls.len(), p.truncated), (300, 1, false));
        // A coarser step takes coarser candles.
        assert_eq!(plan(KRAKEN, 900, now - 3600, now, now).width, 900);
        // Too far back for any width: the coarsest, marked truncated.
        let p = plan(KRAKEN, 60, now - 20 * DAY, now, now);
        assert_eq!((p.width, p.truncated), (900, true));
        // Paged: 49 h of minutes in calls of 1,000 candles that tile the span.
        let p = plan(PAGED, 60, now - 25 * 3600, now, now);
        assert_eq!(p.width, 60);
        assert_eq!(p.calls.len(), 3);
        assert_eq!(p.calls[0].0, now - 49 * 3600);
        assert_eq!(p.calls[1].0, p.calls[0].1);
        assert_eq!(p.calls[2].1, now + 1);
    }

    #[test]
    fn merge_sorts_clips_and_keeps_the_newer_duplicate() {
        let c = vec![
            candle(120, 1.0, 1.0, 2.0, 1.0),
            candle(60, 1.0, 1.0, 1.0, 1.0),
            candle(120, 1.0, 1.0, 3.0, 1.0),
            candle(0, 1.0, 1.0, 0.5, 1.0),
        ];
        let m = merge(c, 60, 200);
        assert_eq!(
            m.iter().map(|c| (c.start, c.close)).collect::<Vec<_>>(),
            vec![(60, 1.0), (120, 3.0)]
        );
    }
}
