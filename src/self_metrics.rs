//! The exporter's own metrics (`crypto_market_exporter_*`): per-source poll
//! outcomes, upstream latency, rate limiting, credits and market counts.
//!
//! Each source's poller and HTTP client write into its [`SourceMetrics`];
//! [`render`] turns all of them into one exposition block per format at
//! publish time, so scrapes never touch these locks. The encoding is
//! prometheus-client's (a `Collector` over the values copied out, in the
//! Prometheus text format and in OpenMetrics): names, types, HELP and
//! escaping are the client library's, not ours.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::domain::{Credits, SourceKind};
use crate::domain::{RejectReason, Rejections};
use crate::error::SourceError;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder, NoLabelSet,
    prometheus_text, text,
};
use prometheus_client::metrics::MetricType as PcMetricType;
use prometheus_client::registry::Registry;

use crate::exposition::Format;

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
    /// Requests per bucket (not cumulative), the last one past every bound (+Inf).
    pub request_buckets: [u64; BUCKETS.len() + 1],
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
        let bucket = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        v.request_buckets[bucket] += 1;
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

/// The self-metrics of every source at one moment, encoded by prometheus-client.
#[derive(Debug)]
struct Snapshot {
    sources: Vec<(SourceKind, SourceValues)>,
    accept_errors: u64,
    connections_rejected: u64,
}

/// Labels of one sample: `source` first, as every family has it.
type Labels<'a> = Vec<(&'static str, &'a str)>;

impl Snapshot {
    /// One family: its descriptor, then `samples` gives each source's
    /// (labels, value) pairs, encoded by `encode`.
    fn family<T>(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        metric_type: PcMetricType,
        samples: impl Fn(&str, &SourceValues) -> Vec<(Labels<'static>, T)>,
        encode: impl Fn(&mut MetricEncoder, &T) -> fmt::Result,
    ) -> fmt::Result {
        let mut family = enc.encode_descriptor(name, help, None, metric_type)?;
        for (kind, values) in &self.sources {
            for (extra, value) in samples(kind.as_str(), values) {
                let mut labels: Labels = vec![("source", kind.as_str())];
                labels.extend(extra);
                encode(&mut family.encode_family(&labels)?, &value)?;
            }
        }
        Ok(())
    }
}

fn counter<T: EncodeCounterValue>(m: &mut MetricEncoder, v: &T) -> fmt::Result {
    m.encode_counter::<NoLabelSet, _, u64>(v, None)
}

fn gauge<T: EncodeGaugeValue>(m: &mut MetricEncoder, v: &T) -> fmt::Result {
    m.encode_gauge(v)
}

/// A gauge family with one sample per source, no other label.
fn per_source<T>(
    value: impl Fn(&SourceValues) -> T,
) -> impl Fn(&str, &SourceValues) -> Vec<(Labels<'static>, T)> {
    move |_, v| vec![(Vec::new(), value(v))]
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let e = &mut enc;
        let n = |s: &str| format!("{PREFIX}_{s}");
        self.family(
            e,
            &n("polls"),
            "Polls of the upstream API, by outcome.",
            PcMetricType::Counter,
            |_, v| {
                vec![
                    (vec![("result", "success")], v.polls_success),
                    (vec![("result", "failure")], v.polls_failure),
                ]
            },
            counter,
        )?;
        self.family(
            e,
            &n("poll_failures"),
            "Failed polls, by bounded reason.",
            PcMetricType::Counter,
            |_, v| {
                SourceError::REASONS
                    .iter()
                    .zip(v.failures)
                    .map(|(r, c)| (vec![("reason", *r)], c))
                    .collect()
            },
            counter,
        )?;
        self.family(
            e,
            &n("upstream_request_duration_seconds"),
            "Duration of upstream HTTP requests, body included, rate-limiter wait excluded.",
            PcMetricType::Histogram,
            |_, v| vec![(Vec::new(), v.clone())],
            |m, v: &SourceValues| {
                let buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(v.request_buckets)
                    .collect();
                m.encode_histogram::<NoLabelSet>(v.request_sum, v.request_count, &buckets, None)
            },
        )?;
        self.family(
            e,
            &n("last_success_timestamp_seconds"),
            "Unix time of the last successful poll; 0 before the first one.",
            PcMetricType::Gauge,
            per_source(|v| v.last_success_unix.unwrap_or(0.0)),
            gauge,
        )?;
        self.family(e, &n("last_poll_duration_seconds"),
            "Wall time of the last successful poll: every request of a full refresh, rate-limiter waits included.",
            PcMetricType::Gauge, per_source(|v| v.last_poll_seconds), gauge)?;
        self.family(
            e,
            &n("last_poll_requests"),
            "Upstream HTTP requests made by the last successful poll.",
            PcMetricType::Gauge,
            per_source(|v| v.last_poll_requests),
            gauge,
        )?;
        self.family(
            e,
            &n("up"),
            "1 if the last poll of the source succeeded, else 0.",
            PcMetricType::Gauge,
            per_source(|v| i64::from(v.up)),
            gauge,
        )?;
        self.family(
            e,
            &n("markets"),
            "Markets exported from the last successful poll.",
            PcMetricType::Gauge,
            per_source(|v| v.markets),
            gauge,
        )?;
        self.family(e, &n("markets_no_trades"),
            "Markets of the last successful poll with a last price of 0 (no trade in 24h), exported without price gauges.",
            PcMetricType::Gauge, per_source(|v| v.no_trades), gauge)?;
        self.family(
            e,
            &n("markets_excluded"),
            "Markets of the last successful poll removed by the include/exclude filters.",
            PcMetricType::Gauge,
            per_source(|v| v.markets_excluded),
            gauge,
        )?;
        self.family(
            e,
            &n("markets_truncated"),
            "Markets of the last successful poll dropped because the markets.max cap was reached.",
            PcMetricType::Gauge,
            per_source(|v| v.markets_truncated),
            gauge,
        )?;
        self.family(
            e,
            &n("values_rejected"),
            "Values (or entries) rejected by validation, by reason.",
            PcMetricType::Counter,
            |_, v| {
                RejectReason::ALL
                    .iter()
                    .map(|r| (vec![("reason", r.reason())], v.rejected[*r as usize]))
                    .collect()
            },
            counter,
        )?;
        self.family(
            e,
            &n("rate_limiter_wait_seconds"),
            "Time spent waiting on the outbound rate limiter.",
            PcMetricType::Counter,
            per_source(|v| v.limiter_wait_seconds),
            counter,
        )?;
        self.family(
            e,
            &n("next_poll_delay_seconds"),
            "Delay before the next poll, after credit pacing, Retry-After and backoff.",
            PcMetricType::Gauge,
            per_source(|v| v.next_poll_delay.as_secs_f64()),
            gauge,
        )?;
        // Credits only for the sources an upstream meters: no family at all otherwise.
        let metered = Snapshot {
            sources: self
                .sources
                .iter()
                .filter(|(_, v)| v.credits.is_some())
                .cloned()
                .collect(),
            accept_errors: 0,
            connections_rejected: 0,
        };
        if !metered.sources.is_empty() {
            metered.family(
                e,
                &n("credits_remaining"),
                "API credits left until the upstream's daily reset.",
                PcMetricType::Gauge,
                per_source(|v| v.credits.map_or(0.0, |c| c.remaining)),
                gauge,
            )?;
            metered.family(
                e,
                &n("credits_cost"),
                "API credits the last poll request cost.",
                PcMetricType::Gauge,
                per_source(|v| v.credits.map_or(0.0, |c| c.cost)),
                gauge,
            )?;
        }
        counter(
            &mut e.encode_descriptor(&n("accept_errors"),
                "Failed accepts of HTTP connections (most often: out of file descriptors); updated once per poll.",
                None, PcMetricType::Counter)?,
            &self.accept_errors,
        )?;
        counter(
            &mut e.encode_descriptor(&n("connections_rejected"),
                "HTTP connections closed at once because --web.max-connections were open; updated once per poll.",
                None, PcMetricType::Counter)?,
            &self.connections_rejected,
        )?;
        e.encode_descriptor(
            &n("build"),
            "Build information of the exporter; the value is always 1.",
            None,
            PcMetricType::Info,
        )?
        .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }
}

/// Renders the self-metrics of every source, in one format (OpenMetrics
/// without its `# EOF`: the exposition ends the whole body).
pub fn render(format: Format, sources: &[(SourceKind, SourceValues)]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        sources: sources.to_vec(),
        accept_errors: crate::accept::accept_errors(),
        connections_rejected: crate::serve::connections_rejected(),
    }));
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail, and the collector returns no error of its own.
    let _ = match format {
        Format::Text => prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => text::encode_registry(&mut out, &registry),
    };
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
            "crypto_market_exporter_last_success_timestamp_seconds{source=\"cryptowatch\"} 100.0",
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
