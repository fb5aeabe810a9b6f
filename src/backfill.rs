//! `crypto-market-exporter backfill`: the recent past of every selected
//! market as OpenMetrics, for `promtool tsdb create-blocks-from openmetrics`
//! (or VictoriaMetrics' `/api/v1/import/prometheus`), so averages, ranks and
//! alerts have history from the first minute.
//!
//! The series are the live exporter's: same names and labels (plus the
//! `job` and `instance` Prometheus adds when it scrapes, `--label`), one
//! sample per poll interval, and the same admission (validation, filters,
//! `markets.max`). So far the demo source replays its own past (its values
//! are a function of the step alone, so the history ends exactly where the
//! live exporter goes on); the network sources' candle endpoints are not
//! read yet, and asking for one is refused with a message saying so.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::admission::Admission;
use crate::config::Config;
use crate::domain::{MarketGauge, SourceKind};
use crate::exposition::{push_label_value, push_value};
use crate::settings::value::{self, OptionValue};
use crate::source::demo::Demo;

/// The backfill's own flags, next to every option of the exporter.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct BackfillArgs {
    /// How far back the history starts. [default: 25h]
    #[arg(
        long = "since",
        env = "CRYPTO_MARKET_EXPORTER_BACKFILL_SINCE",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    pub since: Option<Duration>,
    /// Where the history ends, in Unix seconds. [default: now]
    #[arg(
        long = "until",
        env = "CRYPTO_MARKET_EXPORTER_BACKFILL_UNTIL",
        value_name = "UNIX_SECONDS",
        value_parser = value::parse::<UnixTime>
    )]
    pub until: Option<UnixTime>,
    /// Time between samples of the history: a multiple of the poll interval (rounded up to one). A coarser step keeps the history of a fast-polled demo small. [default: --poll.interval]
    #[arg(
        long = "step",
        env = "CRYPTO_MARKET_EXPORTER_BACKFILL_STEP",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    pub step: Option<Duration>,
    /// Write the OpenMetrics text to this file (replaced when complete) instead of standard output.
    #[arg(
        long = "output",
        env = "CRYPTO_MARKET_EXPORTER_BACKFILL_OUTPUT",
        value_name = "FILE"
    )]
    pub output: Option<PathBuf>,
    /// A label every series gets, NAME=VALUE, repeated: the `job` and `instance` Prometheus adds when it scrapes the exporter, so history and live data are the same series (e.g. --label=job=crypto-market-exporter --label=instance=exporter:9795).
    #[arg(
        long = "label",
        env = "CRYPTO_MARKET_EXPORTER_BACKFILL_LABELS",
        value_name = "NAME=VALUE",
        value_delimiter = ',',
        value_parser = value::parse::<Label>
    )]
    pub labels: Vec<Label>,
}

pub const DEFAULT_SINCE: Duration = Duration::from_secs(25 * 3600);

/// A point in time given as Unix seconds (`1790000000`, `1790000000.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnixTime(pub SystemTime);

impl OptionValue for UnixTime {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                Ok(Self(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s)))
            }
            _ => Err(format!("must be a time in Unix seconds, got {text:?}")),
        }
    }
}

/// One extra label, checked as Prometheus checks label names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl OptionValue for Label {
    fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("must be NAME=VALUE, got {text:?}"))?;
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid || name.starts_with("__") {
            return Err(format!(
                "invalid label name {name:?} (letters, digits and _, not starting with a digit or __)"
            ));
        }
        if matches!(name, "exchange" | "pair" | "base" | "quote") {
            return Err(format!("{name:?} is the exporter's own label"));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// Why a backfill failed: one line.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "source {0}: backfill reads only the demo source so far (the candle endpoints of the network sources are not implemented yet)"
    )]
    Unsupported(&'static str),
    #[error("--since: {0}")]
    Range(String),
    #[error("{path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// What a backfill wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub series: usize,
    pub samples: usize,
}

/// Writes the history the configuration and `args` describe.
pub fn run(
    config: &Config,
    args: &BackfillArgs,
    now: SystemTime,
) -> Result<Written, BackfillError> {
    for kind in &config.sources {
        if *kind != SourceKind::Demo {
            return Err(BackfillError::Unsupported(kind.as_str()));
        }
    }
    let (path, mut out): (String, Box<dyn Write>) = match &args.output {
        Some(file) => {
            let tmp = partial(file);
            let f = std::fs::File::create(&tmp).map_err(|error| BackfillError::Write {
                path: tmp.display().to_string(),
                error,
            })?;
            (
                tmp.display().to_string(),
                Box::new(std::io::BufWriter::new(f)),
            )
        }
        None => (
            "standard output".to_owned(),
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        ),
    };
    let until = args.until.map_or(now, |u| u.0);
    let since = args.since.unwrap_or(DEFAULT_SINCE);
    let from = until.checked_sub(since).ok_or_else(|| {
        BackfillError::Range(format!("{since:?} before {until:?} is before 1970"))
    })?;
    let written =
        write_demo(config, from, until, args.step, &args.labels, &mut out).map_err(|error| {
            BackfillError::Write {
                path: path.clone(),
                error,
            }
        })?;
    out.flush().map_err(|error| BackfillError::Write {
        path: path.clone(),
        error,
    })?;
    drop(out);
    if let Some(file) = &args.output {
        // Complete: only now under its name, so an interrupted run leaves no
        // file that looks whole.
        std::fs::rename(partial(file), file).map_err(|error| BackfillError::Write {
            path: file.display().to_string(),
            error,
        })?;
    }
    Ok(written)
}

fn partial(file: &std::path::Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The demo's past: every admitted market, gauge by gauge (OpenMetrics wants
/// each family's samples together, and each series' in time order).
fn write_demo(
    config: &Config,
    from: SystemTime,
    until: SystemTime,
    step: Option<Duration>,
    extra: &[Label],
    out: &mut dyn Write,
) -> std::io::Result<Written> {
    let mut demo = Demo::new(&config.demo);
    // Every `stride`-th step, on steps that are multiples of it, so that runs at
    // different times sample the same instants.
    let interval_ms = demo.time_of(1).max(1);
    let stride = step.map_or(1, |s| {
        u64::try_from(s.as_millis())
            .unwrap_or(u64::MAX)
            .div_ceil(interval_ms)
            .max(1)
    });
    let (first, last) = (
        // The first step starting at or after `from`.
        demo.step_at(from + Duration::from_millis(interval_ms - 1)),
        demo.step_at(until),
    );
    let last = last - last % stride;
    let first = first.div_ceil(stride).saturating_mul(stride);
    let mut written = Written::default();
    if first > last {
        out.write_all(b"# EOF\n")?;
        return Ok(written);
    }
    // The markets the live exporter would serve: the same admission, at the
    // last step (the filters and the cap do not depend on the values).
    let filter = crate::filter_for(config, SourceKind::Demo, &[]);
    let mut admission = Admission::new(Arc::new(filter));
    admission.extend(demo.at(last));
    let admitted = admission.finish().markets;
    let index: std::collections::HashMap<(&str, &str), usize> = (0..demo.markets())
        .map(|m| {
            let (exchange, pair, _, _) = demo.labels(m);
            ((exchange, pair), m)
        })
        .collect();
    let markets: Vec<usize> = admitted
        .iter()
        .filter_map(|m| index.get(&(m.exchange.as_str(), m.pair.as_str())).copied())
        .collect();
    let mut line = String::with_capacity(256);
    for gauge in MarketGauge::ALL {
        writeln!(out, "# HELP {} {}", gauge.name(), gauge.help())?;
        writeln!(out, "# TYPE {} gauge", gauge.name())?;
        for &m in &markets {
            let (exchange, pair, assets, quote_usd) = demo.labels(m);
            let mut labels = String::new();
            for (name, value) in [
                ("exchange", exchange),
                ("pair", pair),
                ("base", assets.base.as_str()),
                ("quote", assets.quote.as_str()),
            ]
            .into_iter()
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
            written.series += 1;
            let series = demo.series(m, first..=last);
            for (step, values) in (first..=last).zip(series).step_by(stride as usize) {
                let Some(v) = Demo::gauges(values, quote_usd)[gauge as usize] else {
                    continue;
                };
                line.clear();
                line.push_str(gauge.name());
                line.push('{');
                line.push_str(&labels);
                line.push_str("} ");
                push_value(&mut line, v);
                let ms = demo.time_of(step);
                let _ = writeln!(line, " {}.{:03}", ms / 1000, ms % 1000);
                out.write_all(line.as_bytes())?;
                written.samples += 1;
            }
        }
    }
    out.write_all(b"# EOF\n")?;
    Ok(written)
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
