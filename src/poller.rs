//! One poller task per source: poll, validate, filter, render, publish, then
//! sleep for the interval (stretched by credit pacing, `Retry-After` or
//! exponential backoff). Exactly one poll per source is ever in flight.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::config::PollConfig;
use crate::exposition::MarketFragments;
use crate::filter::MarketFilter;
use crate::self_metrics::PollReport;
use crate::source::{Credits, Fetched, Source, SourceError};
use crate::state::{Shared, Slot};
use crate::units::format_duration;

const DAY: Duration = Duration::from_secs(86_400);

/// Logged while a source has never been reached (connection or DNS errors only).
pub const UNREACHABLE_HINT: &str = "upstream unreachable: check DNS and outbound access (HTTPS_PROXY is honoured), pick another source with --source (kraken, binance, coinbase), or run offline with --source=demo";

#[derive(Debug)]
pub struct Poller {
    pub source: Box<dyn Source>,
    pub slot: Arc<Slot>,
    pub shared: Arc<Shared>,
    pub poll: PollConfig,
    /// Swapped by a config reload (SIGHUP); read once per poll.
    pub filter: Arc<ArcSwap<MarketFilter>>,
}

impl std::fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Source")
    }
}

impl Poller {
    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let name = self.slot.metrics.source.as_str();
        let mut failures: u32 = 0;
        // Whether every poll so far failed to reach upstream at all: a first
        // run without network, DNS or proxy deserves a hint, not just an error.
        let mut never_reached = true;
        // Markets kept by the last good poll: the yardstick of a collapsed answer.
        let mut last_good: Option<usize> = None;
        let mut filter_seen = self.filter.load_full();
        let mut pacing = false;
        let mut rng = fastrand::Rng::new();
        loop {
            // New filters (a reload) keep a different number of markets: the
            // last good count is no yardstick for them.
            let filter = self.filter.load_full();
            if !Arc::ptr_eq(&filter, &filter_seen) {
                last_good = None;
                filter_seen = filter.clone();
            }
            let started = Instant::now();
            let polled = tokio::select! {
                r = self.source.poll(Admission::new(filter)) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let took = started.elapsed();
            let outcome = match polled {
                Ok(fetched) => {
                    let upstream = fetched.admission.valid();
                    self.ingest(fetched, took).await.and_then(|ingested| {
                        check_not_collapsed(
                            upstream,
                            ingested.1.markets,
                            last_good,
                            self.poll.min_markets_ratio,
                        )?;
                        Ok(ingested)
                    })
                }
                Err(e) => Err(e),
            };
            let delay = match outcome {
                Ok((markets, report, slow_down)) => {
                    never_reached = false;
                    last_good = Some(report.markets);
                    let was_failing = failures > 0;
                    failures = 0;
                    let credits = report.credits;

                    self.slot.markets.store(Some(Arc::new(markets)));
                    self.slot.metrics.poll_succeeded(report, SystemTime::now());
                    if was_failing {
                        tracing::info!(
                            source = name,
                            markets = report.markets,
                            "upstream recovered"
                        );
                    }
                    if report.truncated > 0 {
                        tracing::warn!(
                            source = name,
                            kept = report.markets,
                            dropped = report.truncated,
                            "market cap reached (markets.max); keeping the first markets in sorted order"
                        );
                    }
                    let paced =
                        credits.map(|c| paced_interval(self.poll.interval, c, SystemTime::now()));
                    let interval = paced.unwrap_or(self.poll.interval);
                    if let Some(wait) = slow_down {
                        tracing::info!(source = name, wait = %format_duration(wait), "upstream's rate limit is nearly used up; delaying the next poll");
                    }
                    let interval = slow_down.map_or(interval, |wait| {
                        interval.max(started.elapsed().saturating_add(wait))
                    });
                    let now_pacing = interval > self.poll.interval;
                    if now_pacing && !pacing {
                        tracing::info!(source = name, interval = %format_duration(self.poll.interval), paced = %format_duration(interval), "slowing polls so the API credits last until the daily reset");
                    } else if !now_pacing && pacing {
                        tracing::info!(source = name, interval = %format_duration(self.poll.interval), "credits allow the configured poll interval again");
                    }
                    pacing = now_pacing;
                    // Measured from the start of the poll: a steady cadence.
                    interval.saturating_sub(started.elapsed())
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    self.slot.metrics.poll_failed(&error);
                    let delay = backoff(&self.poll, failures, &error, rng.f64());
                    never_reached &= matches!(error, SourceError::Connect(_));
                    if let Some(asked) = error.retry_after()
                        && asked > self.poll.retry_after_cap()
                    {
                        tracing::warn!(source = name, retry_after = %format_duration(asked), cap = %format_duration(self.poll.retry_after_cap()), "upstream's Retry-After exceeds --poll.max-retry-after; waiting only the cap");
                    }
                    let retry_in = format_duration(delay);
                    let reason = error.reason();
                    if self.slot.markets.load().is_some() {
                        tracing::warn!(source = name, reason, error = %error, consecutive_failures = failures, retry_in = %retry_in, "poll failed; serving the last good data");
                    } else if never_reached {
                        tracing::warn!(source = name, reason, error = %error, consecutive_failures = failures, retry_in = %retry_in, hint = UNREACHABLE_HINT, "poll failed; no data to serve yet");
                    } else {
                        tracing::warn!(source = name, reason, error = %error, consecutive_failures = failures, retry_in = %retry_in, "poll failed; no data to serve yet");
                    }
                    delay
                }
            };
            self.slot.metrics.set_next_poll_delay(delay);
            let shared = self.shared.clone();
            // Publishing gzips megabytes: keep it off the async workers.
            if tokio::task::spawn_blocking(move || shared.publish())
                .await
                .is_err()
            {
                tracing::error!(source = name, "publishing the exposition failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Rendering of the admitted markets, on a blocking thread.
    async fn ingest(
        &self,
        fetched: Fetched,
        duration: Duration,
    ) -> Result<(MarketFragments, PollReport, Option<Duration>), SourceError> {
        let shards = self.shared.shards();
        tokio::task::spawn_blocking(move || {
            let admitted = fetched.admission.finish();
            let fragments = MarketFragments::render(&admitted.markets, shards);
            let report = PollReport {
                markets: admitted.markets.len(),
                excluded: admitted.excluded,
                truncated: admitted.truncated,
                rejections: admitted.rejections,
                credits: fetched.credits,
                duration,
                requests: fetched.requests,
            };
            (fragments, report, fetched.slow_down)
        })
        .await
        // Only a bug could make this task fail; it then counts as a failed poll
        // and the last good data stays.
        .map_err(|e| SourceError::Internal(format!("processing the response failed: {e}")))
    }
}

/// An answer with no market at all from upstream, or with fewer kept markets
/// than `min_ratio` of the last good poll, is a failed poll: an empty
/// `{"result":{}}` would otherwise blank every dashboard and silence every
/// market alert while looking healthy. A filter that keeps few markets keeps
/// few every time, so it never trips the ratio.
pub fn check_not_collapsed(
    upstream: usize,
    kept: usize,
    last_good: Option<usize>,
    min_ratio: f64,
) -> Result<(), SourceError> {
    let previous = last_good.unwrap_or(0);
    if upstream == 0 || (min_ratio > 0.0 && (kept as f64) < min_ratio * previous as f64) {
        return Err(SourceError::Collapsed {
            markets: if upstream == 0 { 0 } else { kept },
            previous,
            min_ratio,
        });
    }
    Ok(())
}

/// The delay after a failed poll: never sooner than the interval, doubled
/// per consecutive failure (from the first one for a 429 without
/// `Retry-After`), capped at `max_backoff`, with ±20% jitter so that many
/// exporters do not retry in lockstep. `Retry-After` wins when it is longer,
/// up to [`PollConfig::retry_after_cap`].
pub fn backoff(poll: &PollConfig, failures: u32, error: &SourceError, jitter: f64) -> Duration {
    let doublings = match error {
        SourceError::RateLimited {
            retry_after: None, ..
        } => failures,
        _ => failures.saturating_sub(1),
    };
    let base = poll
        .interval
        .saturating_mul(1u32 << doublings.min(16))
        .min(poll.max_backoff);
    let jittered = base
        .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
        .max(poll.interval);
    match error.retry_after() {
        Some(after) => after.min(poll.retry_after_cap()).max(poll.interval),
        None => jittered,
    }
}

/// The interval that makes the remaining credits last until the next daily
/// reset (midnight UTC), never shorter than the configured one. Out of
/// credits, the next poll waits for the reset.
pub fn paced_interval(interval: Duration, credits: Credits, now: SystemTime) -> Duration {
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let until_reset = DAY - Duration::from_secs(since_epoch.as_secs() % DAY.as_secs());
    if credits.cost.is_nan() || credits.cost <= 0.0 || !credits.remaining.is_finite() {
        return interval;
    }
    let calls_left = (credits.remaining / credits.cost).floor();
    if calls_left < 1.0 {
        return until_reset.max(interval);
    }
    until_reset.div_f64(calls_left).max(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> PollConfig {
        PollConfig {
            interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(600),
            max_retry_after: None,
            min_markets_ratio: 0.1,
        }
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let timeout = SourceError::Timeout(Duration::from_secs(1));
        assert_eq!(backoff(&poll(), 1, &timeout, 0.5), Duration::from_secs(60));
        assert_eq!(backoff(&poll(), 2, &timeout, 0.5), Duration::from_secs(120));
        assert_eq!(backoff(&poll(), 3, &timeout, 0.5), Duration::from_secs(240));
        assert_eq!(
            backoff(&poll(), 30, &timeout, 0.5),
            Duration::from_secs(600)
        );
        assert_eq!(
            backoff(&poll(), 30, &timeout, 1.0),
            Duration::from_secs(720)
        );
        assert_eq!(
            backoff(&poll(), 1, &timeout, 0.0),
            Duration::from_secs(60),
            "never below the interval"
        );
        let limited = SourceError::RateLimited {
            status: 429,
            retry_after: None,
        };
        assert_eq!(backoff(&poll(), 1, &limited, 0.5), Duration::from_secs(120));
        let told = SourceError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(300)),
        };
        assert_eq!(backoff(&poll(), 1, &told, 0.5), Duration::from_secs(300));
        let short = SourceError::RateLimited {
            status: 418,
            retry_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(backoff(&poll(), 1, &short, 0.5), Duration::from_secs(60));
    }

    #[test]
    fn collapsed_answers_are_failures() {
        // Nothing from upstream: never data, first poll or not.
        assert!(check_not_collapsed(0, 0, None, 0.1).is_err());
        assert!(check_not_collapsed(0, 0, Some(13_421), 0.1).is_err());
        assert!(check_not_collapsed(0, 0, Some(13_421), 0.0).is_err());
        // Far fewer than last time.
        let e = check_not_collapsed(14_462, 900, Some(13_421), 0.1).unwrap_err();
        assert_eq!(e.reason(), "collapsed");
        assert!(e.to_string().contains("900 markets"), "{e}");
        // Ordinary churn, a first poll, a filter that keeps few, the check off.
        assert!(check_not_collapsed(14_462, 13_000, Some(13_421), 0.1).is_ok());
        assert!(check_not_collapsed(14_462, 5, None, 0.1).is_ok());
        assert!(check_not_collapsed(14_462, 4, Some(5), 0.1).is_ok());
        assert!(check_not_collapsed(14_462, 1, Some(13_421), 0.0).is_ok());
        // Upstream answered, the filters kept nothing: not upstream's fault.
        assert!(check_not_collapsed(14_462, 0, None, 0.1).is_ok());
    }

    #[test]
    fn retry_after_is_capped() {
        let day = SourceError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(86_400)),
        };
        // Default cap: the larger of max_backoff (10m) and 10 intervals (10m).
        assert_eq!(backoff(&poll(), 1, &day, 0.5), Duration::from_secs(600));
        let slow = PollConfig {
            interval: Duration::from_secs(300),
            ..poll()
        };
        assert_eq!(backoff(&slow, 1, &day, 0.5), Duration::from_secs(3_000));
        let set = PollConfig {
            max_retry_after: Some(Duration::from_secs(7_200)),
            ..poll()
        };
        assert_eq!(backoff(&set, 1, &day, 0.5), Duration::from_secs(7_200));
        let within = SourceError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(300)),
        };
        assert_eq!(backoff(&set, 1, &within, 0.5), Duration::from_secs(300));
    }

    #[test]
    fn pacing_spreads_credits_until_reset() {
        let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_006_400); // a UTC midnight
        let noon = midnight + Duration::from_secs(43_200);
        // Seconds between polls for a 60 s interval, `cost` a call, `remaining` left.
        let paced = |cost, remaining, at| {
            paced_interval(Duration::from_secs(60), Credits { cost, remaining }, at).as_secs()
        };
        // 666 calls over 24h: one every ~129.7s.
        assert_eq!(paced(0.015, 10.0, midnight), 129);
        // Plenty of credits: the configured interval stands.
        assert_eq!(paced(0.015, 1_000.0, midnight), 60);
        // Out of credits at noon: wait for the reset, 12h.
        assert_eq!(paced(0.015, 0.01, noon), 43_200);
        // A zero cost means unmetered.
        assert_eq!(paced(0.0, 0.0, noon), 60);
    }
}
