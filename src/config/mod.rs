//! Configuration: command-line flags, `CRYPTO_MARKET_EXPORTER_*` environment
//! variables and a YAML file, merged with precedence flag > env > file > default,
//! then validated into a [`Config`] that the rest of the crate can trust.
//!
//! - [`options`]: every option declared once, typed; clap and serde read
//!   the same structs (docs/configuration.md is checked against them).
//! - [`crate::settings::value`]: the value types and their one parser each.
//! - [`crate::settings::network`]: the settings every network source has;
//!   each source module declares its own section with [`crate::network_options!`].
//! - this file: the defaults and the rules between options.
//!
//! The one option without a flag is the Cryptowatch API key itself, accepted
//! only from a file or an environment variable: a flag would show up in `ps`.

pub mod options;

use std::time::Duration;

use tracing::level_filters::LevelFilter;

use crate::domain::SourceKind;
use crate::filter::MarketFilter;
use crate::listen::ListenAddress;
use crate::units::format_duration;
use crate::web_config::WebConfig;
// Outbound HTTP settings live with the client that uses them.
pub use crate::settings::network::NetworkConfig;
pub use crate::settings::{ConfigError, Secret};
use crate::settings::{Origins, Resolve};
use crate::source;
pub use crate::upstream::HttpConfig;
use options::ArgsError;
pub use options::Options;

/// The source polled when none is configured: live, public, no key.
pub const DEFAULT_SOURCE: SourceKind = SourceKind::Kraken;
pub const DEFAULT_LISTEN_PORT: u16 = 9795;
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Backoff's cap; never below the poll interval, so `--poll.interval=1h` alone is valid.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);
pub const DEFAULT_MIN_MARKETS_RATIO: f64 = 0.1;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PollConfig {
    pub interval: Duration,
    pub max_backoff: Duration,
    /// `--poll.max-retry-after` when set; see [`PollConfig::retry_after_cap`].
    pub max_retry_after: Option<Duration>,
    /// A poll with fewer markets than this share of the last good one fails.
    pub min_markets_ratio: f64,
}

impl PollConfig {
    /// The longest `Retry-After` obeyed: a misbehaving proxy must not silence
    /// the exporter for a day.
    pub fn retry_after_cap(&self) -> Duration {
        self.max_retry_after
            .unwrap_or_else(|| self.max_backoff.max(self.interval.saturating_mul(10)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen_address: ListenAddress,
    pub telemetry_path: String,
    /// How long a SIGTERM waits for in-flight responses.
    pub shutdown_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// `--web.shards`: slices of `/metrics` (1 = not sliced).
    pub shards: usize,
    /// `--web.config.file`, loaded: TLS, basic auth, headers.
    pub web_config: Option<WebConfig>,
    /// Found while loading, logged once logging is set up (`main.rs`).
    pub warnings: Vec<String>,
    pub log_level: LevelFilter,
    pub log_format: LogFormat,
    pub sources: Vec<SourceKind>,
    pub poll: PollConfig,
    pub filter: MarketFilter,
    /// Every source's own settings, selected or not.
    pub settings: source::Settings,
}

impl Config {
    /// Parses the given argv (program name first), the environment and the
    /// config file they name. `--help`, `--version` and usage errors print
    /// and exit, as usual.
    pub fn from_args(args: Vec<String>) -> Result<Self, ConfigError> {
        match Options::load(<Options as clap::CommandFactory>::command(), args) {
            Ok((options, origins)) => Self::build(options, &origins),
            Err(ArgsError::Clap(e)) => e.exit(),
            Err(ArgsError::Config(e)) => Err(e),
        }
    }

    /// [`Config::from_args`], with every refusal returned as one line (for a
    /// reload on SIGHUP, and tests).
    pub fn try_from_args(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    ) -> Result<Self, ConfigError> {
        Self::load(<Options as clap::CommandFactory>::command(), args)
    }

    /// [`Config::try_from_args`] ignoring the environment: what tests read,
    /// whatever the environment they run in.
    pub fn from_args_without_env(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    ) -> Result<Self, ConfigError> {
        Self::load(Options::command_without_env(), args)
    }

    fn load(
        cmd: clap::Command,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    ) -> Result<Self, ConfigError> {
        match Options::load(cmd, args) {
            Ok((options, origins)) => Self::build(options, &origins),
            Err(ArgsError::Clap(e)) => Err(ConfigError::new(
                e.to_string().lines().next().unwrap_or_default().to_owned(),
            )),
            Err(ArgsError::Config(e)) => Err(e),
        }
    }

    /// The configuration a YAML file's text gives on its own (no flags or
    /// environment): for tests and the config fuzz target.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::build(Options::from_yaml(text)?, &Origins::default())
    }

    /// Applies the defaults and the rules between options.
    pub fn build(options: Options, o: &Origins) -> Result<Self, ConfigError> {
        let Options {
            web,
            log,
            poll,
            markets,
            ..
        } = &options;
        let sources = options
            .source
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_SOURCE]);
        if sources.is_empty() {
            return Err(ConfigError::new(format!(
                "{}: at least one source is required",
                o.name("source")
            )));
        }
        for (i, kind) in sources.iter().enumerate() {
            if sources[..i].contains(kind) {
                return Err(ConfigError::new(format!(
                    "{}: source {:?} is listed twice",
                    o.name("source"),
                    kind.as_str()
                )));
            }
        }

        let interval = poll.interval.unwrap_or(DEFAULT_POLL_INTERVAL);
        let max_backoff = poll
            .max_backoff
            .unwrap_or(DEFAULT_MAX_BACKOFF.max(interval));
        if max_backoff < interval {
            let interval_origin = match poll.interval {
                Some(_) => format!("set by {}", o.name("poll.interval")),
                None => "the default".to_owned(),
            };
            return Err(ConfigError::new(format!(
                "{}: must be at least the poll interval ({}, {interval_origin}), got {}",
                o.name("poll.max-backoff"),
                format_duration(interval),
                format_duration(max_backoff)
            )));
        }

        let web_config = web
            .config_file
            .as_ref()
            .map(|path| {
                WebConfig::load(path)
                    .map_err(|e| ConfigError::new(format!("{}: {e}", o.name("web.config.file"))))
            })
            .transpose()?;

        // Blank globs (`--markets.include-pairs=`) mean none.
        let globs = |list: &Option<Vec<crate::glob::Glob>>| {
            list.iter()
                .flatten()
                .filter(|g| !g.as_str().is_empty())
                .cloned()
                .collect()
        };
        let filter = MarketFilter {
            include_exchanges: globs(&markets.include_exchanges),
            exclude_exchanges: globs(&markets.exclude_exchanges),
            include_pairs: globs(&markets.include_pairs),
            exclude_pairs: globs(&markets.exclude_pairs),
            max_markets: markets
                .max
                .map_or(crate::filter::DEFAULT_MAX_MARKETS, |n| n.get()),
        };

        let mut warnings = Vec::new();
        let settings = options.resolve_sources(&mut Resolve {
            origins: o,
            poll_interval: interval,
            warnings: &mut warnings,
        })?;
        // Backoff must be able to wait at least one interval of every source.
        let longest = SourceKind::ALL
            .iter()
            .filter_map(|&kind| settings.poll_interval(kind))
            .max();
        if let Some(longest) = longest
            && poll.max_backoff.is_some()
            && max_backoff < longest
        {
            return Err(ConfigError::new(format!(
                "{}: must be at least the longest per-source poll interval ({}), got {}",
                o.name("poll.max-backoff"),
                format_duration(longest),
                format_duration(max_backoff)
            )));
        }

        Ok(Config {
            listen_address: web
                .listen_address
                .clone()
                .unwrap_or(ListenAddress::any(DEFAULT_LISTEN_PORT)),
            telemetry_path: web
                .telemetry_path
                .clone()
                .map_or_else(|| DEFAULT_TELEMETRY_PATH.to_owned(), |p| p.0),
            shutdown_timeout: web.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            header_read_timeout: web
                .header_read_timeout
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            max_connections: web.max_connections.map_or(DEFAULT_MAX_CONNECTIONS, |n| n.0),
            shards: web.shards.map_or(1, |n| n.0),
            web_config,
            warnings,
            log_level: log.level.unwrap_or(LevelFilter::INFO),
            log_format: log.format.unwrap_or(LogFormat::Logfmt),
            sources,
            poll: PollConfig {
                interval,
                max_backoff,
                max_retry_after: poll.max_retry_after,
                min_markets_ratio: poll
                    .min_markets_ratio
                    .map_or(DEFAULT_MIN_MARKETS_RATIO, |r| r.0),
            },
            filter,
            settings,
        })
    }

    /// The settings that differ between `self` and `new` but cannot change
    /// without a restart (everything but the `markets.*` filters and cap), by file key.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut changed: Vec<&'static str> = [
            (
                self.listen_address != new.listen_address,
                "web.listen_address",
            ),
            (
                self.telemetry_path != new.telemetry_path,
                "web.telemetry_path",
            ),
            (
                self.shutdown_timeout != new.shutdown_timeout,
                "web.shutdown_timeout",
            ),
            (self.log_level != new.log_level, "log.level"),
            (self.log_format != new.log_format, "log.format"),
            (self.sources != new.sources, "source"),
            (self.poll != new.poll, "poll"),
            (
                self.header_read_timeout != new.header_read_timeout,
                "web.header_read_timeout",
            ),
            (
                self.max_connections != new.max_connections,
                "web.max_connections",
            ),
            (self.shards != new.shards, "web.shards"),
            (self.web_config != new.web_config, "web.config_file"),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect();
        changed.extend(self.settings.needs_restart(&new.settings));
        changed
    }

    /// Builds the source of `kind` from its own settings.
    pub fn build_source(
        &self,
        kind: SourceKind,
        metrics: std::sync::Arc<crate::self_metrics::SourceMetrics>,
    ) -> Result<Box<dyn source::Source>, source::SourceError> {
        let interval = self.poll_for(kind).interval;
        self.settings
            .build(kind, source::Build { interval, metrics })
    }

    /// The polling settings of one source: its own interval where it has one.
    pub fn poll_for(&self, kind: SourceKind) -> PollConfig {
        match self.settings.poll_interval(kind) {
            Some(interval) => PollConfig {
                interval,
                max_backoff: self.poll.max_backoff.max(interval),
                ..self.poll.clone()
            },
            None => self.poll.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::glob::Glob;
    use clap::FromArgMatches;

    /// Flags over a YAML text, as a run with a config file reads them.
    fn merge(args: &[&str], yaml: &str) -> Result<Config, ConfigError> {
        let cmd = Options::command_without_env();
        let mut argv = vec!["crypto-market-exporter"];
        argv.extend_from_slice(args);
        let matches = cmd.clone().try_get_matches_from(argv).unwrap();
        let mut options = Options::from_yaml(yaml)?;
        options.update_from_arg_matches(&matches).unwrap();
        Config::build(options, &Origins::from_matches(&cmd, &matches))
    }

    #[test]
    fn defaults() {
        let c = merge(&[], "").unwrap();
        assert_eq!(c.listen_address.to_string(), ":9795");
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.sources, vec![SourceKind::Kraken]);
        assert_eq!(c.poll.interval, Duration::from_secs(60));
        assert_eq!(
            c.settings.cryptowatch.network.url.as_str(),
            "https://api.cryptowat.ch/"
        );
        assert_eq!(c.settings.cryptowatch.network.http.max_body_size, 64 << 20);
        assert_eq!(c.filter.max_markets, 50_000);
    }

    #[test]
    fn flag_beats_file() {
        let c = merge(
            &["--poll.interval=5s"],
            "poll:\n  interval: 30s\nsource: demo\n",
        )
        .unwrap();
        assert_eq!(c.poll.interval, Duration::from_secs(5));
        assert_eq!(c.sources, vec![SourceKind::Demo]);
        let c = merge(&[], "poll:\n  interval: 30s\n").unwrap();
        assert_eq!(c.poll.interval, Duration::from_secs(30));
    }

    #[test]
    fn numbers_in_yaml_are_accepted() {
        let c = merge(&[], "cryptowatch:\n  rate_limit:\n    burst: 3\n").unwrap();
        assert_eq!(
            c.settings.cryptowatch.network.http.rate_limit_burst.get(),
            3
        );
    }

    #[test]
    fn lists_from_flags() {
        let c = merge(
            &[
                "--markets.include-pairs=btc*,eth*",
                "--source=demo,cryptowatch",
            ],
            "",
        )
        .unwrap();
        assert_eq!(
            c.filter.include_pairs,
            vec![Glob::new("btc*"), Glob::new("eth*")]
        );
        assert_eq!(c.sources, vec![SourceKind::Demo, SourceKind::Cryptowatch]);
    }

    #[test]
    fn several_sources_with_their_own_settings() {
        let c = merge(
            &["--binance.url=http://127.0.0.1:1/"],
            "source: [kraken, binance, coinbase]\n\
             poll:\n  interval: 30s\n\
             kraken:\n  poll_interval: 2m\n  rate_limit:\n    period: 2s\n    burst: 3\n\
             binance:\n  url: https://mirror.example\n  timeout: 10s\n",
        )
        .unwrap();
        assert_eq!(
            c.sources,
            vec![
                SourceKind::Kraken,
                SourceKind::Binance,
                SourceKind::Coinbase
            ]
        );
        assert_eq!(
            c.settings.kraken.http.rate_limit_period,
            Duration::from_secs(2)
        );
        assert_eq!(c.settings.kraken.http.rate_limit_burst.get(), 3);
        assert_eq!(
            c.poll_for(SourceKind::Kraken).interval,
            Duration::from_secs(120)
        );
        assert_eq!(
            c.poll_for(SourceKind::Binance).interval,
            Duration::from_secs(30)
        );
        // The flag beats the file; the file's other keys still apply.
        assert_eq!(c.settings.binance.url.as_str(), "http://127.0.0.1:1/");
        assert_eq!(c.settings.binance.http.timeout, Duration::from_secs(10));
        // Coinbase's own default quota: 8 requests/s.
        assert_eq!(
            c.settings.coinbase.http.rate_limit_period,
            Duration::from_millis(125)
        );
        assert_eq!(
            c.settings.coinbase.url.as_str(),
            "https://api.exchange.coinbase.com/"
        );
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let e = Config::from_args_without_env(["x", "--poll.interval=soon"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--poll.interval: invalid duration"), "{e}");
    }

    #[test]
    fn a_reload_names_what_needs_a_restart() {
        let base = merge(&[], "").unwrap();
        let filters = merge(&[], "markets:\n  include_pairs: [\"btc*\"]\n  max: 10\n").unwrap();
        assert!(base.needs_restart(&filters).is_empty());
        let other = merge(
            &[],
            "web:\n  max_connections: 9\n  header_read_timeout: 3s\npoll:\n  interval: 2m\n",
        )
        .unwrap();
        assert_eq!(
            base.needs_restart(&other),
            ["poll", "web.header_read_timeout", "web.max_connections"]
        );
    }

    #[test]
    fn secret_is_not_debug_printed() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
