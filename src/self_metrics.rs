//! The exporter's own metrics (`crypto_market_exporter_*`): per-source poll
//! outcomes, upstream latency, rate limiting, credits and market counts.
//!
//! Each source's poller and HTTP client write into its [`SourceMetrics`];
//! [`render`] turns all of them into one exposition block per format at
//! publish time, so scrapes never touch these locks.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::domain::{Credits, SourceKind};
use crate::domain::{RejectReason, Rejections};
use crate::error::SourceError;
use crate::exposition::{Format, MetricType, write_header, write_sample};

const PREFIX: &str = "crypto_market_exporter";

/// Upstream request latency buckets, in seconds: a summaries call is a few
/// MB, so the interesting range is 50 ms to tens of seconds.
pub const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Plain values; copied out under the lock for rendering.
#[derive(Debug, Clone, Default)]
pub struct SourceValues {
    pub polls_success: u64,
    pub polls_failure: u64,
    /// Indexed like `SourceError::REASONS`.
    pub failures: [u64; SourceError::REASONS.len()],
    pub request_buckets: [u64; BUCKETS.len()],
    pub request_count: u64,
    pub request_sum: f64,
    pub last_success_unix: Option<f64>,
    pub up: bool,
    pub markets: usize,
    pub markets_excluded: usize,
    pub markets_truncated: usize,
    pub no_trades: u64,
    /// Cumulative, indexed by `RejectReason as usize`.
    pub rejected: [u64; RejectReason::ALL.len()],
    pub limiter_wait_seconds: f64,
    pub credits: Option<Credits>,
    pub next_poll_delay: Duration,
    /// Wall time and HTTP requests of the last successful poll (a full
    /// refresh: for Coinbase, one request per product under the quota).
    pub last_poll_seconds: f64,
    pub last_poll_requests: u32,
}

#[derive(Debug)]
pub struct SourceMetrics {
    pub source: SourceKind,
    values: Mutex<SourceValues>,
}

/// What a successful poll reports.
#[derive(Debug, Clone, Copy)]
pub struct PollReport {
    pub markets: usize,
    pub excluded: usize,
    pub truncated: usize,
    pub rejections: Rejections,
    pub credits: Option<Credits>,
    pub duration: Duration,
    pub requests: u32,
}

impl SourceMetrics {
    pub fn new(source: SourceKind) -> Self {
        Self {
            source,
            values: Mutex::new(SourceValues::default()),
        }
    }

    /// A poisoned lock only means another thread panicked mid-update of plain
    /// numbers; the numbers are still the best we have.
    fn lock(&self) -> MutexGuard<'_, SourceValues> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn values(&self) -> SourceValues {
        self.lock().clone()
    }

    pub fn add_limiter_wait(&self, d: Duration) {
        self.lock().limiter_wait_seconds += d.as_secs_f64();
    }

    pub fn observe_request(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut v = self.lock();
        for (bucket, le) in v.request_buckets.iter_mut().zip(BUCKETS) {
            if secs <= le {
                *bucket += 1;
            }
        }
        v.request_count += 1;
        v.request_sum += secs;
    }

    pub fn poll_succeeded(&self, report: PollReport, now: SystemTime) {
        let mut v = self.lock();
        v.polls_success += 1;
        v.up = true;
        v.last_success_unix = Some(unix_seconds(now));
        v.markets = report.markets;
        v.markets_excluded = report.excluded;
        v.markets_truncated = report.truncated;
        v.no_trades = report.rejections.no_trades;
        for (total, new) in v.rejected.iter_mut().zip(report.rejections.values) {
            *total += new;
        }
        if report.credits.is_some() {
            v.credits = report.credits;
        }
        v.last_poll_seconds = report.duration.as_secs_f64();
        v.last_poll_requests = report.requests;
    }

    pub fn poll_failed(&self, error: &SourceError) {
        let mut v = self.lock();
        v.polls_failure += 1;
        v.up = false;
        if let Some(i) = SourceError::REASONS
            .iter()
            .position(|r| *r == error.reason())
        {
            v.failures[i] += 1;
        }
    }

    pub fn set_next_poll_delay(&self, d: Duration) {
        self.lock().next_poll_delay = d;
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One self-metric family: header once, then one call per source.
fn family(
    out: &mut String,
    format: Format,
    name: &str,
    kind: MetricType,
    help: &str,
    sources: &[(SourceKind, SourceValues)],
    mut samples: impl FnMut(&mut String, &str, &SourceValues),
) {
    write_header(out, format, &format!("{PREFIX}_{name}"), kind, help);
    for (kind, values) in sources {
        samples(out, kind.as_str(), values);
    }
}

/// Renders the self-metrics of every source, in one format.
pub fn render(format: Format, sources: &[(SourceKind, SourceValues)]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;
    let n = |s: &str| format!("{PREFIX}_{s}");

    family(
        o,
        format,
        "polls",
        MetricType::Counter,
        "Polls of the upstream API, by outcome.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("polls_total"),
                &[("source", s), ("result", "success")],
                v.polls_success as f64,
            );
            write_sample(
                o,
                &n("polls_total"),
                &[("source", s), ("result", "failure")],
                v.polls_failure as f64,
            );
        },
    );
    family(
        o,
        format,
        "poll_failures",
        MetricType::Counter,
        "Failed polls, by bounded reason.",
        sources,
        |o, s, v| {
            for (reason, count) in SourceError::REASONS.iter().zip(v.failures) {
                write_sample(
                    o,
                    &n("poll_failures_total"),
                    &[("source", s), ("reason", reason)],
                    count as f64,
                );
            }
        },
    );
    family(
        o,
        format,
        "upstream_request_duration_seconds",
        MetricType::Histogram,
        "Duration of upstream HTTP requests, body included, rate-limiter wait excluded.",
        sources,
        |o, s, v| {
            let name = n("upstream_request_duration_seconds_bucket");
            for (le, count) in BUCKETS.iter().zip(v.request_buckets) {
                write_sample(
                    o,
                    &name,
                    &[("source", s), ("le", &le.to_string())],
                    count as f64,
                );
            }
            write_sample(
                o,
                &name,
                &[("source", s), ("le", "+Inf")],
                v.request_count as f64,
            );
            write_sample(
                o,
                &n("upstream_request_duration_seconds_sum"),
                &[("source", s)],
                v.request_sum,
            );
            write_sample(
                o,
                &n("upstream_request_duration_seconds_count"),
                &[("source", s)],
                v.request_count as f64,
            );
        },
    );
    family(
        o,
        format,
        "last_success_timestamp_seconds",
        MetricType::Gauge,
        "Unix time of the last successful poll; 0 before the first one.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("last_success_timestamp_seconds"),
                &[("source", s)],
                v.last_success_unix.unwrap_or(0.0),
            )
        },
    );
    family(
        o,
        format,
        "last_poll_duration_seconds",
        MetricType::Gauge,
        "Wall time of the last successful poll: every request of a full refresh, rate-limiter waits included.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("last_poll_duration_seconds"),
                &[("source", s)],
                v.last_poll_seconds,
            )
        },
    );
    family(
        o,
        format,
        "last_poll_requests",
        MetricType::Gauge,
        "Upstream HTTP requests made by the last successful poll.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("last_poll_requests"),
                &[("source", s)],
                f64::from(v.last_poll_requests),
            )
        },
    );
    family(
        o,
        format,
        "up",
        MetricType::Gauge,
        "1 if the last poll of the source succeeded, else 0.",
        sources,
        |o, s, v| {
            write_sample(o, &n("up"), &[("source", s)], if v.up { 1.0 } else { 0.0 });
        },
    );
    family(
        o,
        format,
        "markets",
        MetricType::Gauge,
        "Markets exported from the last successful poll.",
        sources,
        |o, s, v| {
            write_sample(o, &n("markets"), &[("source", s)], v.markets as f64);
        },
    );
    family(
        o,
        format,
        "markets_no_trades",
        MetricType::Gauge,
        "Markets of the last successful poll with a last price of 0 (no trade in 24h), exported without price gauges.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("markets_no_trades"),
                &[("source", s)],
                v.no_trades as f64,
            )
        },
    );
    family(
        o,
        format,
        "markets_excluded",
        MetricType::Gauge,
        "Markets of the last successful poll removed by the include/exclude filters.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("markets_excluded"),
                &[("source", s)],
                v.markets_excluded as f64,
            )
        },
    );
    family(
        o,
        format,
        "markets_truncated",
        MetricType::Gauge,
        "Markets of the last successful poll dropped because the markets.max cap was reached.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("markets_truncated"),
                &[("source", s)],
                v.markets_truncated as f64,
            )
        },
    );
    family(
        o,
        format,
        "values_rejected",
        MetricType::Counter,
        "Values (or entries) rejected by validation, by reason.",
        sources,
        |o, s, v| {
            for reason in RejectReason::ALL {
                write_sample(
                    o,
                    &n("values_rejected_total"),
                    &[("source", s), ("reason", reason.reason())],
                    v.rejected[reason as usize] as f64,
                );
            }
        },
    );
    family(
        o,
        format,
        "rate_limiter_wait_seconds",
        MetricType::Counter,
        "Time spent waiting on the outbound rate limiter.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("rate_limiter_wait_seconds_total"),
                &[("source", s)],
                v.limiter_wait_seconds,
            )
        },
    );
    family(
        o,
        format,
        "next_poll_delay_seconds",
        MetricType::Gauge,
        "Delay before the next poll, after credit pacing, Retry-After and backoff.",
        sources,
        |o, s, v| {
            write_sample(
                o,
                &n("next_poll_delay_seconds"),
                &[("source", s)],
                v.next_poll_delay.as_secs_f64(),
            )
        },
    );
    let metered: Vec<(SourceKind, SourceValues)> = sources
        .iter()
        .filter(|(_, v)| v.credits.is_some())
        .cloned()
        .collect();
    if !metered.is_empty() {
        family(
            o,
            format,
            "credits_remaining",
            MetricType::Gauge,
            "API credits left until the upstream's daily reset.",
            &metered,
            |o, s, v| {
                if let Some(c) = v.credits {
                    write_sample(o, &n("credits_remaining"), &[("source", s)], c.remaining);
                }
            },
        );
        family(
            o,
            format,
            "credits_cost",
            MetricType::Gauge,
            "API credits the last poll request cost.",
            &metered,
            |o, s, v| {
                if let Some(c) = v.credits {
                    write_sample(o, &n("credits_cost"), &[("source", s)], c.cost);
                }
            },
        );
    }
    write_header(
        o,
        format,
        &n("accept_errors"),
        MetricType::Counter,
        "Failed accepts of HTTP connections (most often: out of file descriptors); updated once per poll.",
    );
    write_sample(
        o,
        &n("accept_errors_total"),
        &[],
        crate::accept::accept_errors() as f64,
    );
    write_header(
        o,
        format,
        &n("connections_rejected"),
        MetricType::Counter,
        "HTTP connections closed at once because --web.max-connections were open; updated once per poll.",
    );
    write_sample(
        o,
        &n("connections_rejected_total"),
        &[],
        crate::serve::connections_rejected() as f64,
    );
    write_header(
        o,
        format,
        &n("build"),
        MetricType::Info,
        "Build information of the exporter; the value is always 1.",
    );
    write_sample(
        o,
        &n("build_info"),
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = SourceMetrics::new(SourceKind::Cryptowatch);
        m.observe_request(Duration::from_millis(300));
        m.poll_failed(&SourceError::Timeout(Duration::from_secs(1)));
        m.poll_succeeded(
            PollReport {
                markets: 3,
                excluded: 1,
                truncated: 0,
                rejections: Rejections {
                    values: [1, 0, 2, 0, 0, 0],
                    no_trades: 4,
                },
                credits: Some(Credits {
                    cost: 0.015,
                    remaining: 9.5,
                }),
                duration: Duration::from_millis(1500),
                requests: 2,
            },
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        );
        let text = render(Format::Text, &[(SourceKind::Cryptowatch, m.values())]);
        for line in [
            "crypto_market_exporter_polls_total{source=\"cryptowatch\",result=\"success\"} 1",
            "crypto_market_exporter_polls_total{source=\"cryptowatch\",result=\"failure\"} 1",
            "crypto_market_exporter_poll_failures_total{source=\"cryptowatch\",reason=\"timeout\"} 1",
            "crypto_market_exporter_poll_failures_total{source=\"cryptowatch\",reason=\"connect\"} 0",
            "crypto_market_exporter_upstream_request_duration_seconds_bucket{source=\"cryptowatch\",le=\"0.25\"} 0",
            "crypto_market_exporter_upstream_request_duration_seconds_bucket{source=\"cryptowatch\",le=\"0.5\"} 1",
            "crypto_market_exporter_upstream_request_duration_seconds_bucket{source=\"cryptowatch\",le=\"+Inf\"} 1",
            "crypto_market_exporter_last_success_timestamp_seconds{source=\"cryptowatch\"} 100",
            "crypto_market_exporter_up{source=\"cryptowatch\"} 1",
            "crypto_market_exporter_last_poll_duration_seconds{source=\"cryptowatch\"} 1.5",
            "crypto_market_exporter_last_poll_requests{source=\"cryptowatch\"} 2",
            "crypto_market_exporter_markets_no_trades{source=\"cryptowatch\"} 4",
            "crypto_market_exporter_values_rejected_total{source=\"cryptowatch\",reason=\"negative\"} 2",
            "crypto_market_exporter_credits_remaining{source=\"cryptowatch\"} 9.5",
            "# TYPE crypto_market_exporter_build_info gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let om = render(
            Format::OpenMetrics,
            &[(
                SourceKind::Demo,
                SourceMetrics::new(SourceKind::Demo).values(),
            )],
        );
        assert!(om.contains("# TYPE crypto_market_exporter_polls counter\n"));
        assert!(
            !om.contains("credits"),
            "no credits family for a source without credits"
        );
    }
}
