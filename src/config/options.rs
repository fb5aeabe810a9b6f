//! Every option, declared once: one tree of structs that clap reads from
//! flags and environment variables and serde reads from the YAML file. A
//! field's flag is its file key with `-` for `_` (`--poll.max-backoff`,
//! `poll:` → `max_backoff:`), its env var the flag in capitals behind
//! `CRYPTO_MARKET_EXPORTER_`. The file is read into the tree first and the
//! flags and env vars given are laid over it, so precedence is flag > env >
//! file; the defaults are applied in [`super::Config`]'s constructor.
//!
//! Network sources declare their own section in their module
//! ([`crate::network_options!`]); the list below names each once.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use tracing::level_filters::LevelFilter;

use super::LogFormat;
use crate::domain::SourceKind;
use crate::glob::Glob;
use crate::listen::ListenAddress;
use crate::settings::value::{self, AtMost, Label, OptionValue, Ratio, TelemetryPath, UnixTime};
use crate::settings::{ConfigError, Origins, Resolve, SourceOptions};
use crate::source::{self, Entry};

// A macro only to take the list of sources (`crate::for_each_source!`):
// serde cannot flatten a sub-struct of them into a struct that denies unknown
// fields, so their sections are fields of this one.
macro_rules! options_tree {
    ($($(#[$attr:meta])* $kind:ident => $module:ident::$ty:ident,)*) => {
        /// The options of one run, as given: `None` where nobody set a value.
        #[derive(Debug, Default, Clone, Parser, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[command(
            name = "crypto-market-exporter",
            version,
            about = "Prometheus exporter for crypto market data",
            override_usage = "crypto-market-exporter [OPTIONS]\n       crypto-market-exporter healthcheck [OPTIONS]\n       crypto-market-exporter backfill [OPTIONS] [--since DURATION] [--until UNIX_SECONDS] [--step DURATION] [--output FILE] [--label NAME=VALUE]",
            after_help = "Commands:\n  healthcheck  Probe /-/healthy of the exporter that the same options describe \
                          (--web.listen-address, env vars, --config.file); exit 0 when healthy, 1 otherwise. \
                          The container image's HEALTHCHECK runs it: the image has no shell or curl.\n  \
                          backfill     Write the recent past of the selected markets as OpenMetrics, for promtool \
                          tsdb create-blocks-from openmetrics: the demo's own past, the other sources' candles \
                          (resumable; backfill --help, docs/backfill.md)."
        )]
        pub struct Options {
            /// Path to a YAML config file.
            #[arg(
                long = "config.file",
                env = "CRYPTO_MARKET_EXPORTER_CONFIG_FILE",
                value_name = "PATH"
            )]
            #[serde(skip)]
            pub config_file: Option<PathBuf>,
            /// Market data source(s) to poll, repeated or comma-separated: kraken, binance, coinbase, cryptowatch (needs a Cryptowatch-compatible --cryptowatch.url) or demo (offline). [default: kraken]
            #[arg(
                long = "source",
                env = "CRYPTO_MARKET_EXPORTER_SOURCE",
                value_name = "NAME",
                value_delimiter = ',',
                value_parser = value::parse::<SourceKind>
            )]
            #[serde(default, deserialize_with = "value::list")]
            pub source: Option<Vec<SourceKind>>,
            #[command(flatten)]
            #[serde(default)]
            pub web: WebOptions,
            #[command(flatten)]
            #[serde(default)]
            pub log: LogOptions,
            #[command(flatten)]
            #[serde(default)]
            pub poll: PollOptions,
            #[command(flatten)]
            #[serde(default)]
            pub markets: MarketsOptions,
            // The sources, each with its own section, from the list.
            $(
                $(#[$attr])*
                #[command(flatten)]
                #[serde(default)]
                pub $module: <source::$module::$ty as Entry>::Options,
            )*
        }

        impl Options {
            /// Every source's own settings, resolved from its section.
            pub fn resolve_sources(
                &self,
                cx: &mut Resolve<'_>,
            ) -> Result<source::Settings, ConfigError> {
                Ok(source::Settings {
                    $($(#[$attr])* $module: self.$module.resolve(cx)?,)*
                })
            }
        }
    };
}
crate::for_each_source!(options_tree);

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
    /// Time between samples of the history, on its whole multiples. For the demo, a multiple of its poll interval (rounded up to one): a coarser step keeps the history of a fast-polled demo small. For a network source it also picks the candles: the coarsest no coarser than the step. [default: the source's poll interval]
    #[arg(
        long = "step",
        env = "CRYPTO_MARKET_EXPORTER_BACKFILL_STEP",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    pub step: Option<Duration>,
    /// Write the OpenMetrics text to this file (replaced when complete) instead of standard output. Work in progress is kept in FILE.parts/: a rerun of the same command resumes, skipping the markets already written.
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

#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebOptions {
    /// Address to listen on for the web interface and telemetry: [host]:port, e.g. :9795, 127.0.0.1:9795, [::1]:9795, localhost:9795. [default: :9795]
    #[arg(
        long = "web.listen-address",
        env = "CRYPTO_MARKET_EXPORTER_WEB_LISTEN_ADDRESS",
        value_name = "ADDR",
        value_parser = value::parse::<ListenAddress>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub listen_address: Option<ListenAddress>,
    /// Path under which to expose metrics. [default: /metrics]
    #[arg(
        long = "web.telemetry-path",
        env = "CRYPTO_MARKET_EXPORTER_WEB_TELEMETRY_PATH",
        value_name = "PATH",
        value_parser = value::parse::<TelemetryPath>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub telemetry_path: Option<TelemetryPath>,
    /// Web config file in the Prometheus exporter-toolkit format: TLS, client certificates, basic auth, response headers.
    #[arg(
        id = "web.config.file",
        long = "web.config.file",
        env = "CRYPTO_MARKET_EXPORTER_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// A request's headers must arrive within this; slow clients and idle keep-alive connections are closed after it. [default: 10s]
    #[arg(
        long = "web.header-read-timeout",
        env = "CRYPTO_MARKET_EXPORTER_WEB_HEADER_READ_TIMEOUT",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub header_read_timeout: Option<Duration>,
    /// Most HTTP connections open at once; further ones are closed at once, logged and counted. [default: 512]
    #[arg(
        long = "web.max-connections",
        env = "CRYPTO_MARKET_EXPORTER_WEB_MAX_CONNECTIONS",
        value_name = "N",
        value_parser = value::parse::<AtMost<1_000_000>>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub max_connections: Option<AtMost<1_000_000>>,
    /// Slices of /metrics for sharded scraping: /metrics?shard=I&shards=N serves the markets whose pair hashes to slice I (docs/configuration.md). [default: 1]
    #[arg(
        long = "web.shards",
        env = "CRYPTO_MARKET_EXPORTER_WEB_SHARDS",
        value_name = "N",
        value_parser = value::parse::<AtMost<{ crate::shard::MAX_SHARDS }>>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub shards: Option<AtMost<{ crate::shard::MAX_SHARDS }>>,
    /// On SIGTERM, how long in-flight responses may take before every connection is closed and the process exits. [default: 5s]
    #[arg(
        long = "web.shutdown-timeout",
        env = "CRYPTO_MARKET_EXPORTER_WEB_SHUTDOWN_TIMEOUT",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub shutdown_timeout: Option<Duration>,
}

#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogOptions {
    /// Log level: error, warn, info, debug or trace. [default: info]
    #[arg(
        long = "log.level",
        env = "CRYPTO_MARKET_EXPORTER_LOG_LEVEL",
        value_name = "LEVEL",
        value_parser = value::parse::<LevelFilter>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub level: Option<LevelFilter>,
    /// Log format: logfmt or json. [default: logfmt]
    #[arg(
        long = "log.format",
        env = "CRYPTO_MARKET_EXPORTER_LOG_FORMAT",
        value_name = "FORMAT",
        value_parser = value::parse::<LogFormat>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub format: Option<LogFormat>,
}

#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollOptions {
    /// Interval between polls of each source. [default: 60s]
    #[arg(
        long = "poll.interval",
        env = "CRYPTO_MARKET_EXPORTER_POLL_INTERVAL",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub interval: Option<Duration>,
    /// Upper bound of the exponential backoff after consecutive failures. [default: 10m]
    #[arg(
        long = "poll.max-backoff",
        env = "CRYPTO_MARKET_EXPORTER_POLL_MAX_BACKOFF",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub max_backoff: Option<Duration>,
    /// Longest wait an upstream's Retry-After may impose before the next poll; longer asks are capped (and logged). [default: the larger of --poll.max-backoff and 10x the poll interval]
    #[arg(
        long = "poll.max-retry-after",
        env = "CRYPTO_MARKET_EXPORTER_POLL_MAX_RETRY_AFTER",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub max_retry_after: Option<Duration>,
    /// A poll returning fewer markets than this share of the last good poll (or none at all) fails with reason `collapsed` and the last good data stays; 0 turns the check off. [default: 0.1]
    #[arg(
        long = "poll.min-markets-ratio",
        env = "CRYPTO_MARKET_EXPORTER_POLL_MIN_MARKETS_RATIO",
        value_name = "RATIO",
        value_parser = value::parse::<Ratio>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub min_markets_ratio: Option<Ratio>,
}

#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketsOptions {
    /// Only export markets whose exchange matches one of these globs. [default: all]
    #[arg(
        long = "markets.include-exchanges",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_INCLUDE_EXCHANGES",
        value_name = "GLOB",
        value_delimiter = ',',
        value_parser = value::parse::<Glob>
    )]
    #[serde(default, deserialize_with = "value::list")]
    pub include_exchanges: Option<Vec<Glob>>,
    /// Never export markets whose exchange matches one of these globs.
    #[arg(
        long = "markets.exclude-exchanges",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_EXCLUDE_EXCHANGES",
        value_name = "GLOB",
        value_delimiter = ',',
        value_parser = value::parse::<Glob>
    )]
    #[serde(default, deserialize_with = "value::list")]
    pub exclude_exchanges: Option<Vec<Glob>>,
    /// Only export markets whose pair matches one of these globs. [default: all]
    #[arg(
        long = "markets.include-pairs",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_INCLUDE_PAIRS",
        value_name = "GLOB",
        value_delimiter = ',',
        value_parser = value::parse::<Glob>
    )]
    #[serde(default, deserialize_with = "value::list")]
    pub include_pairs: Option<Vec<Glob>>,
    /// Never export markets whose pair matches one of these globs.
    #[arg(
        long = "markets.exclude-pairs",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_EXCLUDE_PAIRS",
        value_name = "GLOB",
        value_delimiter = ',',
        value_parser = value::parse::<Glob>
    )]
    #[serde(default, deserialize_with = "value::list")]
    pub exclude_pairs: Option<Vec<Glob>>,
    /// Hard cap on markets exported per source. [default: 50000]
    #[arg(
        long = "markets.max",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_MAX",
        value_name = "N",
        value_parser = value::parse::<NonZeroUsize>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub max: Option<NonZeroUsize>,
}

impl OptionValue for LogFormat {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "logfmt" => Ok(LogFormat::Logfmt),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "invalid log format {s:?} (expected logfmt or json)"
            )),
        }
    }
}

/// Why the arguments were refused: a usage error or `--help` for clap to
/// print (and exit), or a value that names its culprit.
#[derive(Debug)]
pub enum ArgsError {
    Clap(clap::Error),
    Config(ConfigError),
}

impl Options {
    /// Reads argv (program name first) and the environment, then the config
    /// file they name, and lays the first over the second.
    pub fn load(
        cmd: clap::Command,
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    ) -> Result<(Self, Origins), ArgsError> {
        Self::load_with_matches(cmd, args).map(|(options, origins, _)| (options, origins))
    }

    /// [`Options::load`], also returning clap's matches: a subcommand's own
    /// flags (`backfill --since`) are read from them.
    pub fn load_with_matches(
        cmd: clap::Command,
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    ) -> Result<(Self, Origins, clap::ArgMatches), ArgsError> {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = cmd
            .clone()
            .try_get_matches_from(&args)
            .map_err(|e| value_error(&cmd, &args, e))?;
        let mut options = match matches.get_one::<PathBuf>("config_file") {
            Some(path) => read_file(path).map_err(ArgsError::Config)?,
            None => Self::default(),
        };
        options
            .update_from_arg_matches(&matches)
            .map_err(ArgsError::Clap)?;
        let origins = Origins::from_matches(&cmd, &matches);
        Ok((options, origins, matches))
    }

    /// The options a YAML text gives on its own.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        parse_file(text).map_err(ConfigError::new)
    }

    /// The command without environment variables: what a test or the fuzz
    /// target reads, whatever the environment it runs in.
    pub fn command_without_env() -> clap::Command {
        Self::command().mut_args(|a| a.env(None::<&str>))
    }
}

/// A value clap refused becomes one line naming what the user set: clap
/// itself names the flag even when the value came from its env var.
fn value_error(cmd: &clap::Command, args: &[OsString], e: clap::Error) -> ArgsError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation {
        return ArgsError::Clap(e);
    }
    let (Some(ContextValue::String(arg)), Some(why)) = (
        e.get(ContextKind::InvalidArg),
        std::error::Error::source(&e),
    ) else {
        return ArgsError::Clap(e);
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or(arg)
        .trim_start_matches('-');
    let on_command_line = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a.strip_prefix("--")
            .and_then(|a| a.strip_prefix(long))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    });
    let env = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    let name = match env {
        Some(env) if !on_command_line => env,
        _ => format!("--{long}"),
    };
    ArgsError::Config(ConfigError::new(format!("{name}: {why}")))
}

fn read_file(path: &Path) -> Result<Options, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("config file {}: {e}", path.display())))?;
    parse_file(&text).map_err(|e| ConfigError::new(format!("config file {}: {e}", path.display())))
}

/// Parses YAML text; the error is one line with the key and position.
fn parse_file(text: &str) -> Result<Options, String> {
    if text.trim().is_empty() {
        return Ok(Options::default());
    }
    let one_line = |e: &serde_saphyr::Error| {
        let msg = e.without_snippet().to_string();
        msg.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // Syntax first: the typed pass reads as it goes and would report the first
    // key of a broken file as "unknown field" before reaching the real error.
    if let Err(e) = serde_saphyr::from_str::<serde::de::IgnoredAny>(text) {
        let at = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        let msg = one_line(&e);
        // saphyr's message may already carry the position; say it once.
        let msg = match msg.find(" at line ") {
            Some(i) if !at.is_empty() => &msg[..i],
            _ => &msg,
        };
        return Err(format!("YAML syntax error{at}: {msg}"));
    }
    let mut track = serde_path_to_error::Track::new();
    serde_saphyr::with_deserializer_from_str(text, |de| {
        Options::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    })
    .map_err(|e| {
        let msg = one_line(&e);
        let path = track.path().to_string();
        match path.as_str() {
            // Structural errors (unknown key, wrong shape) at the top: the
            // message names the key; quote the line too.
            "." | "" => {
                let line = e.location().and_then(|l| usize::try_from(l.line()).ok());
                match line.and_then(|n| text.lines().nth(n.checked_sub(1)?)) {
                    Some(src) => format!("{msg} (near `{}`)", src.trim()),
                    None => msg,
                }
            }
            // serde names the key it does not know; the path already does.
            path => match msg.strip_prefix("unknown field `") {
                Some(rest) => match rest.split_once("`, ") {
                    Some((_, expected)) => format!("{path}: unknown key, {expected}"),
                    None => format!("{path}: unknown key"),
                },
                None => format!("{path}: {msg}"),
            },
        }
    })
}
