//! A network source's past, from its candle endpoint: one poll for the
//! markets the live exporter would serve, then each market's candles through
//! the source's own [`Upstream`](crate::upstream::Upstream) (governor quota,
//! timeouts), waiting out 429s and upstream's own limits, one market at a
//! time so that an interrupted run keeps every market it finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::parts::{Parts, Samples};
use super::series::{self, Plan};
use super::{BackfillError, Window, Written, series_labels, unix_seconds};
use crate::admission::Admission;
use crate::config::Config;
use crate::domain::{Candle, Market, SourceKind};
use crate::error::SourceError;
use crate::filter::MarketFilter;
use crate::self_metrics::SourceMetrics;
use crate::source::{CandleQuery, History};
use crate::units::format_duration;

/// Attempts per call when upstream fails in a way that passes (timeouts,
/// refused connections, 5xx); 429s are waited out up to [`RATE_LIMITED_TRIES`].
const TRIES: u32 = 4;
const RATE_LIMITED_TRIES: u32 = 10;
/// The wait after a 429 that names none (Kraken's in-body "Too many requests").
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(10);

/// Markets that could not be read: counted, and the first error kept for
/// the message.
#[derive(Debug, Default)]
pub(super) struct Failures {
    pub count: usize,
    pub first: Option<String>,
}

impl Failures {
    pub fn extend(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

pub(super) async fn write(
    config: &Config,
    kind: SourceKind,
    filter: MarketFilter,
    window: &Window<'_>,
    parts: &mut Parts,
) -> Result<(Written, Failures), BackfillError> {
    let failed = |error: SourceError| BackfillError::Source {
        source_name: kind.as_str(),
        error,
    };
    let metrics = Arc::new(SourceMetrics::new(kind));
    let mut source = config.build_source(kind, metrics).map_err(failed)?;
    // One poll, through the same admission as the live exporter's: the
    // markets it serves are the ones to backfill.
    let filter = Arc::new(filter);
    let mut tries = 0;
    let fetched = loop {
        match source.poll(Admission::new(filter.clone())).await {
            Ok(fetched) => break fetched,
            Err(e) => {
                tries += 1;
                match retry_after(&e, tries) {
                    Some(wait) => {
                        tracing::info!(source = kind.as_str(), error = %e, wait = %format_duration(wait), "cannot read the listing yet; waiting");
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(failed(e)),
                }
            }
        }
    };
    let markets = fetched.admission.finish().markets;
    let Some((api, history)) = source.history() else {
        return Err(failed(SourceError::Internal(
            "the source has no candle endpoint".into(),
        )));
    };
    let step = window
        .step
        .unwrap_or(config.poll_for(kind).interval)
        .as_secs()
        .max(1);
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let (from, until, now) = (
        unix_seconds(window.from),
        unix_seconds(window.until),
        unix_seconds(window.now),
    );
    let plan = series::plan(api, step, from, until, now);
    if plan.truncated {
        tracing::warn!(
            source = kind.as_str(),
            "the candle endpoint serves only its newest candles, too few to reach back 24 h before --since: the first hours of the history lack their 24 h values"
        );
    }
    tracing::info!(
        source = kind.as_str(),
        markets = markets.len(),
        candle = %format_duration(Duration::from_secs(u64::from(plan.width))),
        calls_per_market = plan.calls.len(),
        "backfilling"
    );
    let times = series::instants(from, until, step);
    let pending = markets
        .iter()
        .filter(|m| !parts.is_done(&m.exchange, &m.pair))
        .count();
    let mut progress = Progress::new(kind, pending);
    let mut written = Written::default();
    let mut failures = Failures::default();
    let mut samples = Samples::default();
    for market in &markets {
        written.markets += 1;
        if parts.is_done(&market.exchange, &market.pair) {
            continue;
        }
        let candles = match candles(kind, history, market, &plan).await {
            Ok(c) => c,
            // Upstream does not know the market any more (delisted since
            // the listing): nothing to backfill, and nothing to retry.
            Err(
                e @ (SourceError::Api(_)
                | SourceError::HttpStatus {
                    status: 400 | 404, ..
                }),
            ) => {
                tracing::warn!(source = kind.as_str(), exchange = %market.exchange, pair = %market.pair, error = %e, "no candles for this market; skipped");
                written.skipped += 1;
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(source = kind.as_str(), exchange = %market.exchange, pair = %market.pair, reason = e.reason(), error = %e, "cannot read this market's candles");
                failures.count += 1;
                failures
                    .first
                    .get_or_insert_with(|| format!("{}:{}: {e}", market.exchange, market.pair));
                progress.tick();
                continue;
            }
        };
        let candles = series::merge(candles, from - series::DAY, until);
        samples.clear(series_labels(market, window.labels));
        series::gauges(&candles, i64::from(plan.width), &times, |t, values| {
            let ms = u64::try_from(t).unwrap_or(0) * 1000;
            for (g, v) in values.into_iter().enumerate() {
                // Only the gauges the live exporter serves for this market:
                // history must not invent a series that live data never has.
                if let (Some(v), Some(_)) = (v, market.values[g]) {
                    samples.by_gauge[g].push((ms, v));
                    written.samples += 1;
                }
            }
        });
        written.series += samples.series();
        parts.add(&market.exchange, &market.pair, &samples)?;
        progress.tick();
    }
    progress.finish();
    Ok((written, failures))
}

/// Every call of the plan for one market.
async fn candles(
    kind: SourceKind,
    history: &dyn History,
    market: &Market,
    plan: &Plan,
) -> Result<Vec<Candle>, SourceError> {
    let mut all = Vec::new();
    for &(from, until) in &plan.calls {
        let query = CandleQuery {
            market,
            width: plan.width,
            from,
            until,
        };
        let page = with_retries(kind, &market.pair, || history.candles(query)).await?;
        all.extend(page.candles);
        if let Some(wait) = page.slow_down {
            tracing::info!(source = kind.as_str(), wait = %format_duration(wait), "upstream's request budget is nearly spent; waiting");
            tokio::time::sleep(wait).await;
        }
    }
    Ok(all)
}

/// Runs `call` until it succeeds or fails for good.
async fn with_retries<T, F, Fut>(
    kind: SourceKind,
    what: &str,
    mut call: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tries += 1;
                let Some(wait) = retry_after(&e, tries) else {
                    return Err(e);
                };
                tracing::info!(source = kind.as_str(), what, error = %e, wait = %format_duration(wait), "retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// How long to wait before try `tries + 1` after `e`, or `None` to give up:
/// a 429 waits as long as upstream says (`Retry-After`), up to
/// [`RATE_LIMITED_TRIES`] times; a failure that passes (timeout, refused
/// connection, 5xx) waits 1, 2, 4 s; anything else is final.
fn retry_after(e: &SourceError, tries: u32) -> Option<Duration> {
    match e {
        SourceError::RateLimited { retry_after, .. } if tries < RATE_LIMITED_TRIES => {
            Some(retry_after.unwrap_or(RATE_LIMITED_WAIT))
        }
        SourceError::Timeout(_)
        | SourceError::Connect(_)
        | SourceError::Body(_)
        | SourceError::HttpStatus {
            status: 500..=599, ..
        } if tries < TRIES => Some(Duration::from_secs(1 << (tries - 1))),
        _ => None,
    }
}

/// Progress on standard error: a bar with the time left on a terminal,
/// else a log line every ten seconds, so a long backfill is never silent.
struct Progress {
    kind: SourceKind,
    total: usize,
    done: usize,
    started: Instant,
    last: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(kind: SourceKind, total: usize) -> Self {
        use std::io::IsTerminal;
        let now = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} markets, {elapsed} elapsed, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(kind.as_str());
            bar
        });
        Self {
            kind,
            total,
            done: 0,
            started: now,
            last: now,
            bar,
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            return;
        }
        if self.last.elapsed() >= Duration::from_secs(10) {
            self.last = Instant::now();
            let left = time_left(self.started.elapsed(), self.done, self.total);
            tracing::info!(source = self.kind.as_str(), done = self.done, markets = self.total, eta = %format_duration(left), "backfilling");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(source = self.kind.as_str(), markets = self.done, took = %format_duration(self.started.elapsed()), "backfilled");
    }
}

/// The time left when `done` of `total` markets took `elapsed`: the pace so
/// far, which the quota sets, for the markets still to come.
fn time_left(elapsed: Duration, done: usize, total: usize) -> Duration {
    let left = total.saturating_sub(done) as f64;
    Duration::from_secs_f64(elapsed.as_secs_f64() / done.max(1) as f64 * left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_at_the_pace_so_far() {
        let s = Duration::from_secs;
        assert_eq!(time_left(s(100), 100, 1_400), s(1_300));
        assert_eq!(time_left(s(30), 10, 10), s(0));
        assert_eq!(time_left(s(0), 0, 5), s(0));
    }

    #[test]
    fn what_is_retried_and_for_how_long() {
        let limited = SourceError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(retry_after(&limited, 1), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&limited, RATE_LIMITED_TRIES), None);
        let silent = SourceError::RateLimited {
            status: 200,
            retry_after: None,
        };
        assert_eq!(retry_after(&silent, 1), Some(RATE_LIMITED_WAIT));
        let timeout = SourceError::Timeout(Duration::from_secs(1));
        assert_eq!(retry_after(&timeout, 1), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&timeout, 3), Some(Duration::from_secs(4)));
        assert_eq!(retry_after(&timeout, TRIES), None);
        let unavailable = SourceError::HttpStatus {
            status: 503,
            body: String::new(),
        };
        assert_eq!(retry_after(&unavailable, 2), Some(Duration::from_secs(2)));
        let gone = SourceError::HttpStatus {
            status: 404,
            body: String::new(),
        };
        assert_eq!(retry_after(&gone, 1), None);
        assert_eq!(retry_after(&SourceError::Api("EQuery".into()), 1), None);
    }
}
