//! `crypto-market-exporter backfill`: the recent past of every selected
//! market as OpenMetrics, for `promtool tsdb create-blocks-from openmetrics`
//! (or VictoriaMetrics' `/api/v1/import/prometheus`), so averages, ranks and
//! alerts have history from the first minute.
//!
//! The series are the live exporter's: same names and labels (plus the
//! `job` and `instance` Prometheus adds when it scrapes, `--label`), one
//! sample per poll interval (or `--step`), and the same admission
//! (validation, filters, `markets.max`): the markets of one live poll.
//!
//! - [`demo`]: the demo replays its own past (its values are a function of
//!   the step alone, so the history ends exactly where the live exporter goes on).
//! - [`network`]: the network sources read their candle endpoints
//!   ([`crate::source::History`]) market by market, under the source's own
//!   governor quota, waiting out 429s and upstream's limits.
//! - [`series`]: candles to gauges at each instant, and which candles to ask for.
//! - [`parts`]: one file per family, filled market by market with binary
//!   records and written as text once at the end; it is also what makes an
//!   interrupted backfill resumable.

mod demo;
mod network;
pub mod parts;
pub mod series;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::Config;
pub use crate::config::options::BackfillArgs;
use crate::domain::{Market, MarketGauge, SourceKind};
use crate::exposition::{push_label_value, push_value};
pub use crate::settings::value::{Label, UnixTime};

pub const DEFAULT_SINCE: Duration = Duration::from_secs(25 * 3600);

/// Why a backfill failed: one line.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("--since: {0}")]
    Range(String),
    #[error("{path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error(transparent)]
    Parts(#[from] parts::PartsError),
    #[error("source {source_name}: {error}")]
    Source {
        source_name: &'static str,
        error: crate::error::SourceError,
    },
    #[error(
        "{failed} of {markets} markets could not be read (first: {first}); the {done} read are kept in {parts}: rerun the same command to fetch the rest"
    )]
    Incomplete {
        failed: usize,
        markets: usize,
        done: usize,
        first: String,
        parts: String,
    },
}

/// What a backfill wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Markets in the history (including those a resumed run had written).
    pub markets: usize,
    /// Series and samples this run wrote.
    pub series: usize,
    pub samples: usize,
    /// Markets upstream had no candles for (delisted since the listing).
    pub skipped: usize,
}

/// Writes the history the configuration and `args` describe. With
/// `--output`, work in progress is kept in `FILE.parts/` until the history is
/// complete, so an interrupted or failed run resumes where it stopped.
pub async fn run(
    config: &Config,
    args: &BackfillArgs,
    now: SystemTime,
) -> Result<Written, BackfillError> {
    let until = args.until.map_or(now, |u| u.0);
    let since = args.since.unwrap_or(DEFAULT_SINCE);
    let from = until.checked_sub(since).ok_or_else(|| {
        BackfillError::Range(format!("{since:?} before {until:?} is before 1970"))
    })?;
    let params = parts::Params {
        sources: config
            .sources
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        from: unix_seconds(from),
        until: unix_seconds(until),
        // The step in force: `--step`, else the poll interval, so that a
        // rerun at another interval is not taken for the same backfill.
        step_ms: u64::try_from(args.step.unwrap_or(config.poll.interval).as_millis())
            .unwrap_or(u64::MAX),
        labels: args
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
    };
    let (dir, resumable) = match &args.output {
        Some(file) => (suffixed(file, ".parts"), true),
        None => (
            std::env::temp_dir().join(format!(
                "crypto-market-exporter-backfill-{}",
                std::process::id()
            )),
            false,
        ),
    };
    if !resumable {
        // A leftover of a crashed run with the same PID is not ours to resume.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (mut parts, params) = parts::Parts::open(&dir, params, args.until.is_some())?;
    if parts.done() > 0 {
        tracing::info!(parts = %dir.display(), markets = parts.done(), "resuming: markets already written are skipped");
    }
    let window = Window {
        from: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(params.from).unwrap_or(0)),
        until: SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(params.until).unwrap_or(0)),
        step: args.step,
        labels: &args.labels,
        now,
    };
    let owned: Vec<&str> = config.sources.iter().filter_map(|k| k.exchange()).collect();
    let mut written = Written::default();
    let mut failures = network::Failures::default();
    for &kind in &config.sources {
        let filter = crate::filter_for(config, kind, &owned);
        let result = if kind == SourceKind::Demo {
            demo::write(config, filter, &window, &mut parts)
                .map(|w| (w, network::Failures::default()))
        } else {
            network::write(config, kind, filter, &window, &mut parts).await
        };
        let (w, f) = match result {
            Ok(done) => done,
            Err(e) => {
                // Nothing written yet (the listing failed): nothing to resume.
                if parts.done() == 0 || !resumable {
                    parts.remove()?;
                }
                return Err(e);
            }
        };
        written.series += w.series;
        written.samples += w.samples;
        written.skipped += w.skipped;
        written.markets += w.markets;
        failures.extend(f);
    }
    if let Some(first) = failures.first.take() {
        let error = BackfillError::Incomplete {
            failed: failures.count,
            markets: written.markets,
            done: parts.done(),
            first,
            parts: dir.display().to_string(),
        };
        if !resumable {
            parts.remove()?;
        }
        return Err(error);
    }
    write_out(args.output.as_deref(), &mut parts)?;
    parts.remove()?;
    Ok(written)
}

/// The history's span and sampling, as [`run`] settled them.
#[derive(Debug)]
pub(crate) struct Window<'a> {
    pub from: SystemTime,
    pub until: SystemTime,
    /// `--step`; `None`: each source's poll interval.
    pub step: Option<Duration>,
    pub labels: &'a [Label],
    pub now: SystemTime,
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The finished history: to `FILE.partial`, renamed to `FILE` once complete
/// (an interrupted run leaves no file that looks whole), or to standard output.
fn write_out(output: Option<&Path>, parts: &mut parts::Parts) -> Result<(), BackfillError> {
    let Some(file) = output else {
        let mut out = std::io::stdout().lock();
        parts.write_text(&mut out)?;
        return out.flush().map_err(|error| BackfillError::Write {
            path: "standard output".to_owned(),
            error,
        });
    };
    let tmp = suffixed(file, ".partial");
    let failed = |error| BackfillError::Write {
        path: tmp.display().to_string(),
        error,
    };
    // `write_text` writes in pieces of a megabyte: no buffer needed.
    let mut out = std::fs::File::create(&tmp).map_err(failed)?;
    parts.write_text(&mut out)?;
    out.sync_all().map_err(failed)?;
    drop(out);
    std::fs::rename(&tmp, file).map_err(|error| BackfillError::Write {
        path: file.display().to_string(),
        error,
    })
}

fn suffixed(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The labels of one market's series, rendered once: the live exporter's
/// (`exchange`, `pair`, `base`, `quote`) and the `--label`s.
pub(crate) fn series_labels(market: &Market, extra: &[Label]) -> String {
    let mut labels = String::new();
    let assets = market
        .assets
        .as_ref()
        .map(|a| [("base", a.base.as_str()), ("quote", a.quote.as_str())]);
    for (name, value) in [
        ("exchange", market.exchange.as_str()),
        ("pair", market.pair.as_str()),
    ]
    .into_iter()
    .chain(assets.into_iter().flatten())
    .chain(extra.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    {
        if !labels.is_empty() {
            labels.push(',');
        }
        labels.push_str(name);
        labels.push_str("=\"");
        push_label_value(&mut labels, value);
        labels.push('"');
    }
    labels
}

/// One OpenMetrics sample line, `ms` after the epoch (whole seconds without
/// a fraction). Written without `fmt`: at millions of lines per history, its
/// machinery was a measurable share of the CPU.
pub(crate) fn push_sample(out: &mut String, gauge: MarketGauge, labels: &str, v: f64, ms: u64) {
    out.push_str(gauge.name());
    out.push('{');
    out.push_str(labels);
    out.push_str("} ");
    push_value(out, v);
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(ms / 1000));
    let fraction = ms % 1000;
    if fraction != 0 {
        out.push('.');
        out.push_str(&itoa::Buffer::new().format(1000 + fraction)[1..]);
    }
    out.push('\n');
}

/// Reads `crypto-market-exporter backfill [OPTIONS]` (argv without the word
/// `backfill`): every option of the exporter, its file and env vars, and the
/// backfill's own flags. `--help` prints and exits.
pub fn parse(args: Vec<String>) -> Result<(Config, BackfillArgs), crate::config::ConfigError> {
    use crate::config::options::{ArgsError, Options};
    use clap::{Args, CommandFactory, FromArgMatches};
    let cmd = BackfillArgs::augment_args(Options::command())
        .override_usage("crypto-market-exporter backfill [OPTIONS]")
        .about(
            "Writes the recent past of every selected market as OpenMetrics, \
             for promtool tsdb create-blocks-from openmetrics (docs/backfill.md)",
        )
        .after_help("");
    match Options::load_with_matches(cmd, args) {
        Ok((options, origins, matches)) => {
            let backfill = BackfillArgs::from_arg_matches(&matches)
                .map_err(|e| crate::config::ConfigError::new(e.to_string().trim().to_owned()))?;
            Ok((Config::build(options, &origins)?, backfill))
        }
        Err(ArgsError::Clap(e)) => e.exit(),
        Err(ArgsError::Config(e)) => Err(e),
    }
}
