//! Configuration: command-line flags, `CRYPTO_MARKET_EXPORTER_*` environment
//! variables and a YAML file, merged with precedence flag > env > file > default,
//! then validated into a [`Config`] that the rest of the crate can trust.
//!
//! Every option exists in all three forms (docs/configuration.md lists them).
//! The one exception is the Cryptowatch API key itself, which is accepted only
//! from a file or an environment variable: a flag would show up in `ps`.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use tracing::level_filters::LevelFilter;

use crate::domain::SourceKind;
use crate::filter::MarketFilter;
use crate::glob::Glob;
use crate::listen::ListenAddress;
// Outbound HTTP settings live with the client that uses them.
use crate::units::{parse_bytes, parse_duration};
pub use crate::upstream::HttpConfig;
use crate::web_config::WebConfig;

/// The source polled when none is configured: live, public, no key.
pub const DEFAULT_SOURCE: SourceKind = SourceKind::Kraken;

/// Environment variable holding the Cryptowatch API key (never logged).
pub const CRYPTOWATCH_API_KEY_ENV: &str = "CRYPTO_MARKET_EXPORTER_CRYPTOWATCH_API_KEY";

/// A configuration error: one line that names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// The flags every network source has, under its own prefix (`--kraken.url`,
/// `--kraken.rate-limit.period`, ...). A macro because clap needs the flag
/// names as literals; each source gets its own `Args` struct from it.
macro_rules! network_source_args {
    ($ty:ident, $name:literal, $env:literal, $url:literal, $period:literal) => {
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct $ty {
            #[arg(
                id = concat!($name, ".url"),
                long = concat!($name, ".url"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_URL"),
                value_name = "URL",
                help = concat!("Base URL of the ", $name, " API. [default: ", $url, "]")
            )]
            pub url: Option<String>,
            #[arg(
                id = concat!($name, ".poll-interval"),
                long = concat!($name, ".poll-interval"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_POLL_INTERVAL"),
                value_name = "DURATION",
                help = concat!("Interval between polls of ", $name, ". [default: --poll.interval]")
            )]
            pub poll_interval: Option<String>,
            #[arg(
                id = concat!($name, ".timeout"),
                long = concat!($name, ".timeout"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_TIMEOUT"),
                value_name = "DURATION",
                help = concat!("Whole-request timeout for ", $name, ", body included. [default: 30s]")
            )]
            pub timeout: Option<String>,
            #[arg(
                id = concat!($name, ".connect-timeout"),
                long = concat!($name, ".connect-timeout"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_CONNECT_TIMEOUT"),
                value_name = "DURATION",
                help = concat!("TCP+TLS connect timeout for ", $name, ". [default: 5s]")
            )]
            pub connect_timeout: Option<String>,
            #[arg(
                id = concat!($name, ".max-body-size"),
                long = concat!($name, ".max-body-size"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_MAX_BODY_SIZE"),
                value_name = "SIZE",
                help = concat!("Largest response body accepted from ", $name, ". [default: 64MiB]")
            )]
            pub max_body_size: Option<String>,
            #[arg(
                id = concat!($name, ".rate-limit.period"),
                long = concat!($name, ".rate-limit.period"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_RATE_LIMIT_PERIOD"),
                value_name = "DURATION",
                help = concat!("Rate limiter of ", $name, ": one request per this period after the burst. [default: ", $period, "]")
            )]
            pub rate_limit_period: Option<String>,
            #[arg(
                id = concat!($name, ".rate-limit.burst"),
                long = concat!($name, ".rate-limit.burst"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_RATE_LIMIT_BURST"),
                value_name = "N",
                help = concat!("Rate limiter of ", $name, ": requests allowed back to back. [default: 1]")
            )]
            pub rate_limit_burst: Option<String>,
        }

        impl From<&$ty> for NetworkArgs {
            fn from(a: &$ty) -> Self {
                NetworkArgs {
                    url: a.url.clone(),
                    poll_interval: a.poll_interval.clone(),
                    timeout: a.timeout.clone(),
                    connect_timeout: a.connect_timeout.clone(),
                    max_body_size: a.max_body_size.clone(),
                    rate_limit_period: a.rate_limit_period.clone(),
                    rate_limit_burst: a.rate_limit_burst.clone(),
                }
            }
        }
    };
}

network_source_args!(
    CryptowatchArgs,
    "cryptowatch",
    "CRYPTOWATCH",
    "https://api.cryptowat.ch",
    "1s"
);
network_source_args!(
    KrakenArgs,
    "kraken",
    "KRAKEN",
    "https://api.kraken.com",
    "1s"
);
network_source_args!(
    BinanceArgs,
    "binance",
    "BINANCE",
    "https://api.binance.com",
    "1s"
);
network_source_args!(
    CoinbaseArgs,
    "coinbase",
    "COINBASE",
    "https://api.exchange.coinbase.com",
    "125ms"
);

/// The per-source flags once out of their source-specific struct.
#[derive(Debug, Default)]
struct NetworkArgs {
    url: Option<String>,
    poll_interval: Option<String>,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    max_body_size: Option<String>,
    rate_limit_period: Option<String>,
    rate_limit_burst: Option<String>,
}

/// Defaults that differ between network sources.
struct NetworkDefaults {
    url: &'static str,
    rate_limit_period: Duration,
}

/// Command-line flags. Every field is optional so that "not given" can fall
/// through to the config file and then to the default.
#[derive(Debug, Default, Parser)]
#[command(
    name = "crypto-market-exporter",
    version,
    about = "Prometheus exporter for crypto market data",
    override_usage = "crypto-market-exporter [OPTIONS]\n       crypto-market-exporter healthcheck [OPTIONS]",
    after_help = "Commands:\n  healthcheck  Probe /-/healthy of the exporter that the same options describe \
                  (--web.listen-address, env vars, --config.file); exit 0 when healthy, 1 otherwise. \
                  The container image's HEALTHCHECK runs it: the image has no shell or curl."
)]
pub struct Cli {
    /// Path to a YAML config file.
    #[arg(
        long = "config.file",
        env = "CRYPTO_MARKET_EXPORTER_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub config_file: Option<PathBuf>,
    /// Address to listen on for the web interface and telemetry: [host]:port, e.g. :9795, 127.0.0.1:9795, [::1]:9795, localhost:9795. [default: :9795]
    #[arg(
        long = "web.listen-address",
        env = "CRYPTO_MARKET_EXPORTER_WEB_LISTEN_ADDRESS",
        value_name = "ADDR"
    )]
    pub web_listen_address: Option<String>,
    /// Path under which to expose metrics. [default: /metrics]
    #[arg(
        long = "web.telemetry-path",
        env = "CRYPTO_MARKET_EXPORTER_WEB_TELEMETRY_PATH",
        value_name = "PATH"
    )]
    pub web_telemetry_path: Option<String>,
    /// Market data source(s) to poll, repeated or comma-separated: kraken, binance, coinbase, cryptowatch (needs a Cryptowatch-compatible --cryptowatch.url) or demo (offline). [default: kraken]
    #[arg(
        long = "source",
        env = "CRYPTO_MARKET_EXPORTER_SOURCE",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub source: Vec<String>,
    /// Interval between polls of each source. [default: 60s]
    #[arg(
        long = "poll.interval",
        env = "CRYPTO_MARKET_EXPORTER_POLL_INTERVAL",
        value_name = "DURATION"
    )]
    pub poll_interval: Option<String>,
    /// Upper bound of the exponential backoff after consecutive failures. [default: 10m]
    #[arg(
        long = "poll.max-backoff",
        env = "CRYPTO_MARKET_EXPORTER_POLL_MAX_BACKOFF",
        value_name = "DURATION"
    )]
    pub poll_max_backoff: Option<String>,
    /// Longest wait an upstream's Retry-After may impose before the next poll; longer asks are capped (and logged). [default: the larger of --poll.max-backoff and 10x the poll interval]
    #[arg(
        long = "poll.max-retry-after",
        env = "CRYPTO_MARKET_EXPORTER_POLL_MAX_RETRY_AFTER",
        value_name = "DURATION"
    )]
    pub poll_max_retry_after: Option<String>,
    /// A poll returning fewer markets than this share of the last good poll (or none at all) fails with reason `collapsed` and the last good data stays; 0 turns the check off. [default: 0.1]
    #[arg(
        long = "poll.min-markets-ratio",
        env = "CRYPTO_MARKET_EXPORTER_POLL_MIN_MARKETS_RATIO",
        value_name = "RATIO"
    )]
    pub poll_min_markets_ratio: Option<String>,
    /// Web config file in the Prometheus exporter-toolkit format: TLS, client certificates, basic auth, response headers.
    #[arg(
        long = "web.config.file",
        env = "CRYPTO_MARKET_EXPORTER_WEB_CONFIG_FILE",
        value_name = "PATH"
    )]
    pub web_config_file: Option<PathBuf>,
    /// A request's headers must arrive within this; slow clients and idle keep-alive connections are closed after it. [default: 10s]
    #[arg(
        long = "web.header-read-timeout",
        env = "CRYPTO_MARKET_EXPORTER_WEB_HEADER_READ_TIMEOUT",
        value_name = "DURATION"
    )]
    pub web_header_read_timeout: Option<String>,
    /// Most HTTP connections open at once; further ones are closed at once, logged and counted. [default: 512]
    #[arg(
        long = "web.max-connections",
        env = "CRYPTO_MARKET_EXPORTER_WEB_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub web_max_connections: Option<String>,
    /// Slices of /metrics for sharded scraping: /metrics?shard=I&shards=N serves the markets whose pair hashes to slice I (docs/configuration.md). [default: 1]
    #[arg(
        long = "web.shards",
        env = "CRYPTO_MARKET_EXPORTER_WEB_SHARDS",
        value_name = "N"
    )]
    pub web_shards: Option<String>,
    /// On SIGTERM, how long in-flight responses may take before every connection is closed and the process exits. [default: 5s]
    #[arg(
        long = "web.shutdown-timeout",
        env = "CRYPTO_MARKET_EXPORTER_WEB_SHUTDOWN_TIMEOUT",
        value_name = "DURATION"
    )]
    pub web_shutdown_timeout: Option<String>,
    /// Log level: error, warn, info, debug or trace. [default: info]
    #[arg(
        long = "log.level",
        env = "CRYPTO_MARKET_EXPORTER_LOG_LEVEL",
        value_name = "LEVEL"
    )]
    pub log_level: Option<String>,
    /// Log format: logfmt or json. [default: logfmt]
    #[arg(
        long = "log.format",
        env = "CRYPTO_MARKET_EXPORTER_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,
    /// Only export markets whose exchange matches one of these globs. [default: all]
    #[arg(
        long = "markets.include-exchanges",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_INCLUDE_EXCHANGES",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub markets_include_exchanges: Vec<String>,
    /// Never export markets whose exchange matches one of these globs.
    #[arg(
        long = "markets.exclude-exchanges",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_EXCLUDE_EXCHANGES",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub markets_exclude_exchanges: Vec<String>,
    /// Only export markets whose pair matches one of these globs. [default: all]
    #[arg(
        long = "markets.include-pairs",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_INCLUDE_PAIRS",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub markets_include_pairs: Vec<String>,
    /// Never export markets whose pair matches one of these globs.
    #[arg(
        long = "markets.exclude-pairs",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_EXCLUDE_PAIRS",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub markets_exclude_pairs: Vec<String>,
    /// Hard cap on markets exported per source. [default: 50000]
    #[arg(
        long = "markets.max",
        env = "CRYPTO_MARKET_EXPORTER_MARKETS_MAX",
        value_name = "N"
    )]
    pub markets_max: Option<String>,
    #[command(flatten)]
    pub cryptowatch: CryptowatchArgs,
    /// File holding the Cryptowatch API key (sent as X-CW-API-Key).
    #[arg(
        long = "cryptowatch.api-key-file",
        env = "CRYPTO_MARKET_EXPORTER_CRYPTOWATCH_API_KEY_FILE",
        value_name = "PATH"
    )]
    pub cryptowatch_api_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub kraken: KrakenArgs,
    #[command(flatten)]
    pub binance: BinanceArgs,
    #[command(flatten)]
    pub coinbase: CoinbaseArgs,
    /// Seed of the demo source's random walks. [default: 1]
    #[arg(
        long = "demo.seed",
        env = "CRYPTO_MARKET_EXPORTER_DEMO_SEED",
        value_name = "N"
    )]
    pub demo_seed: Option<String>,
    /// Number of synthetic markets of the demo source. [default: 300]
    #[arg(
        long = "demo.markets",
        env = "CRYPTO_MARKET_EXPORTER_DEMO_MARKETS",
        value_name = "N"
    )]
    pub demo_markets: Option<String>,
    /// Which of the above came from environment variables (not a flag).
    #[arg(skip)]
    pub origins: Origins,
}

impl Cli {
    /// Parses argv (program name first) and the environment, remembering
    /// which values came from environment variables.
    pub fn try_parse_with_origins(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    ) -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let cmd = Self::command();
        let matches = cmd.clone().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.origins = Origins::from_matches(&cmd, &matches);
        Ok(cli)
    }

    /// [`Cli::try_parse_with_origins`]; `--help`, `--version` and usage
    /// errors print and exit, as usual.
    pub fn parse_with_origins(args: Vec<String>) -> Self {
        Self::try_parse_with_origins(args).unwrap_or_else(|e| e.exit())
    }
}

// ---- The YAML file: same options, nested by the dotted flag prefix. ----
// Values are read as strings (or lists of strings) and parsed by the same code
// as flags, so "30s" means the same thing everywhere.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    web: FileWeb,
    #[serde(default)]
    log: FileLog,
    source: Option<OneOrMany>,
    #[serde(default)]
    poll: FilePoll,
    #[serde(default)]
    markets: FileMarkets,
    #[serde(default)]
    cryptowatch: FileNetwork,
    #[serde(default)]
    kraken: FileNetwork,
    #[serde(default)]
    binance: FileNetwork,
    #[serde(default)]
    coinbase: FileNetwork,
    #[serde(default)]
    demo: FileDemo,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWeb {
    listen_address: Option<Scalar>,
    telemetry_path: Option<Scalar>,
    shutdown_timeout: Option<Scalar>,
    header_read_timeout: Option<Scalar>,
    max_connections: Option<Scalar>,
    shards: Option<Scalar>,
    config_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<Scalar>,
    format: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePoll {
    interval: Option<Scalar>,
    max_backoff: Option<Scalar>,
    max_retry_after: Option<Scalar>,
    min_markets_ratio: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMarkets {
    include_exchanges: Option<Vec<String>>,
    exclude_exchanges: Option<Vec<String>>,
    include_pairs: Option<Vec<String>>,
    exclude_pairs: Option<Vec<String>>,
    max: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    url: Option<Scalar>,
    /// Cryptowatch only; rejected with a clear message elsewhere.
    api_key_file: Option<PathBuf>,
    poll_interval: Option<Scalar>,
    timeout: Option<Scalar>,
    connect_timeout: Option<Scalar>,
    max_body_size: Option<Scalar>,
    #[serde(default)]
    rate_limit: FileRateLimit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRateLimit {
    period: Option<Scalar>,
    burst: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDemo {
    seed: Option<Scalar>,
    markets: Option<Scalar>,
}

/// A YAML scalar accepted as text whatever its YAML type (`burst: 5` and
/// `burst: "5"` both work); parsing into the real type happens in one place.
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- The validated result. ----

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where and how to reach one network source.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub url: reqwest::Url,
    pub http: HttpConfig,
    /// This source's poll interval, when it overrides `poll.interval`.
    pub poll_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CryptowatchConfig {
    pub network: NetworkConfig,
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub seed: u64,
    pub markets: usize,
    /// The poll interval, which the simulation's spikes are timed against.
    pub interval: Duration,
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
    pub cryptowatch: CryptowatchConfig,
    pub kraken: NetworkConfig,
    pub binance: NetworkConfig,
    pub coinbase: NetworkConfig,
    pub demo: DemoConfig,
}

impl Config {
    /// The settings that differ between `self` and `new` but cannot change
    /// without a restart (everything but the `markets.*` filters and cap), by file key.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |changed: bool, key: &'static str| {
            if changed {
                out.push(key);
            }
        };
        check(
            self.listen_address != new.listen_address,
            "web.listen_address",
        );
        check(
            self.telemetry_path != new.telemetry_path,
            "web.telemetry_path",
        );
        check(
            self.shutdown_timeout != new.shutdown_timeout,
            "web.shutdown_timeout",
        );
        check(self.log_level != new.log_level, "log.level");
        check(self.log_format != new.log_format, "log.format");
        check(self.sources != new.sources, "source");
        check(self.poll != new.poll, "poll");
        check(self.cryptowatch != new.cryptowatch, "cryptowatch");
        check(self.kraken != new.kraken, "kraken");
        check(self.binance != new.binance, "binance");
        check(self.coinbase != new.coinbase, "coinbase");
        // The demo's interval is poll.interval's, reported under "poll".
        check(
            (self.demo.seed, self.demo.markets) != (new.demo.seed, new.demo.markets),
            "demo",
        );
        check(
            self.header_read_timeout != new.header_read_timeout,
            "web.header_read_timeout",
        );
        check(
            self.max_connections != new.max_connections,
            "web.max_connections",
        );
        check(self.shards != new.shards, "web.shards");
        check(self.web_config != new.web_config, "web.config_file");
        out
    }

    /// The polling settings of one source: its own interval where it has one.
    pub fn poll_for(&self, kind: SourceKind) -> PollConfig {
        let own = match kind {
            SourceKind::Cryptowatch => self.cryptowatch.network.poll_interval,
            SourceKind::Kraken => self.kraken.poll_interval,
            SourceKind::Binance => self.binance.poll_interval,
            SourceKind::Coinbase => self.coinbase.poll_interval,
            SourceKind::Demo => None,
        };
        match own {
            Some(interval) => PollConfig {
                interval,
                max_backoff: self.poll.max_backoff.max(interval),
                ..self.poll.clone()
            },
            None => self.poll.clone(),
        }
    }
}

/// Which options got their value from an environment variable rather than
/// the command line: `--log.level` → `CRYPTO_MARKET_EXPORTER_LOG_LEVEL`. Clap
/// merges the two into one field; errors must name the one the user set.
#[derive(Debug, Default, Clone)]
pub struct Origins(std::collections::HashMap<String, String>);

impl Origins {
    /// Reads the value sources of every argument clap matched.
    fn from_matches(cmd: &clap::Command, matches: &clap::ArgMatches) -> Self {
        let mut map = std::collections::HashMap::new();
        for arg in cmd.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            if matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::EnvVariable)
            {
                map.insert(format!("--{long}"), env.to_string_lossy().into_owned());
            }
        }
        Self(map)
    }

    /// The name to put in a message about `flag`: the env var if the value came from there.
    fn name(&self, flag: &str) -> String {
        self.0.get(flag).cloned().unwrap_or_else(|| flag.to_owned())
    }

    /// Picks flag/env first, then the file; remembers which one for the message.
    fn pick(
        &self,
        cli: Option<&str>,
        flag: &str,
        file: Option<&Scalar>,
        key: &str,
    ) -> Option<(String, String)> {
        match (cli, file) {
            (Some(v), _) => Some((v.to_owned(), self.name(flag))),
            (None, Some(s)) => Some((s.0.clone(), key.to_owned())),
            (None, None) => None,
        }
    }
}

fn parse_or<T>(
    picked: Option<(String, String)>,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match picked {
        None => Ok(default),
        Some((raw, origin)) => parse(&raw).map_err(|e| ConfigError::new(format!("{origin}: {e}"))),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        Err(format!("must be greater than 0, got {s:?}"))
    } else {
        Ok(d)
    }
}

fn positive_int<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err(format!("must be a whole number greater than 0, got {s:?}")),
    }
}

impl Config {
    /// Parses the given argv (program name first) and the environment, then
    /// the config file they name. `--help`/`--version` print and exit, as usual.
    pub fn from_args(args: Vec<String>) -> Result<Self, ConfigError> {
        Self::from_cli(Cli::parse_with_origins(args))
    }

    /// Merges already-parsed flags with the config file they name and validates.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// The configuration a YAML file's text gives on its own (no flags or
    /// environment): for tests and the config fuzz target.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::merge(Cli::default(), parse_file(text).map_err(ConfigError::new)?)
    }

    fn merge(cli: Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let o = &cli.origins;
        let listen_address = parse_or(
            o.pick(
                cli.web_listen_address.as_deref(),
                "--web.listen-address",
                file.web.listen_address.as_ref(),
                "web.listen_address",
            ),
            ListenAddress::any(9795),
            str::parse,
        )?;
        let telemetry_path = parse_or(
            o.pick(
                cli.web_telemetry_path.as_deref(),
                "--web.telemetry-path",
                file.web.telemetry_path.as_ref(),
                "web.telemetry_path",
            ),
            "/metrics".to_owned(),
            |s| {
                if !s.starts_with('/')
                    || s == "/"
                    || s.starts_with("/-/")
                    || s.contains(['?', '#', ' '])
                {
                    Err(format!(
                        "invalid telemetry path {s:?} (must start with / and not be / or /-/...)"
                    ))
                } else {
                    Ok(s.to_owned())
                }
            },
        )?;
        let log_level = parse_or(
            o.pick(
                cli.log_level.as_deref(),
                "--log.level",
                file.log.level.as_ref(),
                "log.level",
            ),
            LevelFilter::INFO,
            |s| match s {
                "error" => Ok(LevelFilter::ERROR),
                "warn" => Ok(LevelFilter::WARN),
                "info" => Ok(LevelFilter::INFO),
                "debug" => Ok(LevelFilter::DEBUG),
                "trace" => Ok(LevelFilter::TRACE),
                _ => Err(format!(
                    "invalid log level {s:?} (expected error, warn, info, debug or trace)"
                )),
            },
        )?;
        let log_format = parse_or(
            o.pick(
                cli.log_format.as_deref(),
                "--log.format",
                file.log.format.as_ref(),
                "log.format",
            ),
            LogFormat::Logfmt,
            |s| match s {
                "logfmt" => Ok(LogFormat::Logfmt),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!(
                    "invalid log format {s:?} (expected logfmt or json)"
                )),
            },
        )?;

        let (names, origin) = if !cli.source.is_empty() {
            (cli.source.clone(), o.name("--source"))
        } else {
            match file.source {
                Some(OneOrMany::One(s)) => (vec![s], "source".to_owned()),
                Some(OneOrMany::Many(v)) => (v, "source".to_owned()),
                None => (
                    vec![DEFAULT_SOURCE.as_str().to_owned()],
                    "source".to_owned(),
                ),
            }
        };
        if names.is_empty() {
            return Err(ConfigError::new(format!(
                "{origin}: at least one source is required"
            )));
        }
        let mut sources = Vec::with_capacity(names.len());
        for name in &names {
            let kind: SourceKind = name
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(format!("{origin}: {e}")))?;
            if sources.contains(&kind) {
                return Err(ConfigError::new(format!(
                    "{origin}: source {name:?} is listed twice"
                )));
            }
            sources.push(kind);
        }

        let interval_picked = o.pick(
            cli.poll_interval.as_deref(),
            "--poll.interval",
            file.poll.interval.as_ref(),
            "poll.interval",
        );
        let interval_origin = interval_picked
            .as_ref()
            .map_or_else(|| "the default".to_owned(), |(_, o)| format!("set by {o}"));
        let interval = parse_or(interval_picked, Duration::from_secs(60), positive_duration)?;
        // The default grows with the interval so that `--poll.interval=1h` alone is valid.
        let backoff_picked = o.pick(
            cli.poll_max_backoff.as_deref(),
            "--poll.max-backoff",
            file.poll.max_backoff.as_ref(),
            "poll.max_backoff",
        );
        let backoff_origin = backoff_picked
            .as_ref()
            .map_or_else(|| "poll.max_backoff".to_owned(), |(_, o)| o.clone());
        let explicit_backoff = backoff_picked.is_some();
        let max_backoff = parse_or(
            backoff_picked,
            Duration::from_secs(600).max(interval),
            positive_duration,
        )?;
        if max_backoff < interval {
            return Err(ConfigError::new(format!(
                "{backoff_origin}: must be at least the poll interval ({}, {interval_origin}), got {}",
                crate::units::format_duration(interval),
                crate::units::format_duration(max_backoff)
            )));
        }

        let max_retry_after = match o.pick(
            cli.poll_max_retry_after.as_deref(),
            "--poll.max-retry-after",
            file.poll.max_retry_after.as_ref(),
            "poll.max_retry_after",
        ) {
            None => None,
            picked => Some(parse_or(picked, Duration::ZERO, positive_duration)?),
        };
        let min_markets_ratio = parse_or(
            o.pick(
                cli.poll_min_markets_ratio.as_deref(),
                "--poll.min-markets-ratio",
                file.poll.min_markets_ratio.as_ref(),
                "poll.min_markets_ratio",
            ),
            0.1,
            |s| match s.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!("must be a number from 0 to 1, got {s:?}")),
            },
        )?;
        let shutdown_timeout = parse_or(
            o.pick(
                cli.web_shutdown_timeout.as_deref(),
                "--web.shutdown-timeout",
                file.web.shutdown_timeout.as_ref(),
                "web.shutdown_timeout",
            ),
            Duration::from_secs(5),
            positive_duration,
        )?;

        let header_read_timeout = parse_or(
            o.pick(
                cli.web_header_read_timeout.as_deref(),
                "--web.header-read-timeout",
                file.web.header_read_timeout.as_ref(),
                "web.header_read_timeout",
            ),
            Duration::from_secs(10),
            positive_duration,
        )?;
        let max_connections = parse_or(
            o.pick(
                cli.web_max_connections.as_deref(),
                "--web.max-connections",
                file.web.max_connections.as_ref(),
                "web.max_connections",
            ),
            512usize,
            |s| match positive_int::<usize>(s)? {
                n if n > 1_000_000 => Err(format!("must be at most 1000000, got {n}")),
                n => Ok(n),
            },
        )?;
        let shards = parse_or(
            o.pick(
                cli.web_shards.as_deref(),
                "--web.shards",
                file.web.shards.as_ref(),
                "web.shards",
            ),
            1usize,
            |s| match positive_int::<usize>(s)? {
                n if n > crate::shard::MAX_SHARDS => Err(format!(
                    "must be at most {}, got {n}",
                    crate::shard::MAX_SHARDS
                )),
                n => Ok(n),
            },
        )?;

        let web_config = match (&cli.web_config_file, &file.web.config_file) {
            (Some(p), _) => Some((p.clone(), o.name("--web.config.file"))),
            (None, Some(p)) => Some((p.clone(), "web.config_file".to_owned())),
            (None, None) => None,
        }
        .map(|(path, origin)| {
            WebConfig::load(&path).map_err(|e| ConfigError::new(format!("{origin}: {e}")))
        })
        .transpose()?;

        let globs = |cli: &[String], file: &Option<Vec<String>>| -> Vec<Glob> {
            let list = if cli.is_empty() {
                file.clone().unwrap_or_default()
            } else {
                cli.to_vec()
            };
            list.iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(Glob::new)
                .collect()
        };
        let max_markets = parse_or(
            o.pick(
                cli.markets_max.as_deref(),
                "--markets.max",
                file.markets.max.as_ref(),
                "markets.max",
            ),
            50_000usize,
            positive_int,
        )?;
        let filter = MarketFilter {
            include_exchanges: globs(
                &cli.markets_include_exchanges,
                &file.markets.include_exchanges,
            ),
            exclude_exchanges: globs(
                &cli.markets_exclude_exchanges,
                &file.markets.exclude_exchanges,
            ),
            include_pairs: globs(&cli.markets_include_pairs, &file.markets.include_pairs),
            exclude_pairs: globs(&cli.markets_exclude_pairs, &file.markets.exclude_pairs),
            max_markets,
        };

        let cw = &file.cryptowatch;
        let cryptowatch_network = network(
            o,
            "cryptowatch",
            (&cli.cryptowatch).into(),
            cw,
            &NetworkDefaults {
                url: "https://api.cryptowat.ch",
                rate_limit_period: Duration::from_secs(1),
            },
        )?;
        let (key_file, key_origin) = match (&cli.cryptowatch_api_key_file, &cw.api_key_file) {
            (Some(p), _) => (Some(p.clone()), "--cryptowatch.api-key-file"),
            (None, Some(p)) => (Some(p.clone()), "cryptowatch.api_key_file"),
            (None, None) => (None, ""),
        };
        let mut warnings = Vec::new();
        let api_key = match key_file {
            Some(path) => {
                if let Some(mode) = readable_by_others(&path) {
                    warnings.push(format!(
                        "{key_origin}: {} is readable by other users (mode {mode:o}); chmod 600 it",
                        path.display()
                    ));
                }
                Some(
                    read_secret(&path)
                        .map_err(|e| ConfigError::new(format!("{key_origin}: {e}")))?,
                )
            }
            None => match std::env::var(CRYPTOWATCH_API_KEY_ENV) {
                Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
                _ => None,
            },
        };
        let kraken = network(
            o,
            "kraken",
            (&cli.kraken).into(),
            &file.kraken,
            &NetworkDefaults {
                url: "https://api.kraken.com",
                rate_limit_period: Duration::from_secs(1),
            },
        )?;
        let binance = network(
            o,
            "binance",
            (&cli.binance).into(),
            &file.binance,
            &NetworkDefaults {
                url: "https://api.binance.com",
                rate_limit_period: Duration::from_secs(1),
            },
        )?;
        // Coinbase allows 10 requests/s per IP; 8/s leaves room for clock skew.
        let coinbase = network(
            o,
            "coinbase",
            (&cli.coinbase).into(),
            &file.coinbase,
            &NetworkDefaults {
                url: "https://api.exchange.coinbase.com",
                rate_limit_period: Duration::from_millis(125),
            },
        )?;
        for (name, f) in [
            ("kraken", &file.kraken),
            ("binance", &file.binance),
            ("coinbase", &file.coinbase),
        ] {
            if f.api_key_file.is_some() {
                return Err(ConfigError::new(format!(
                    "{name}.api_key_file: only the cryptowatch source takes an API key (the {name} source reads public endpoints)"
                )));
            }
        }
        // Backoff must be able to wait at least one interval of every source.
        let longest = [&cryptowatch_network, &kraken, &binance, &coinbase]
            .iter()
            .filter_map(|n| n.poll_interval)
            .max();
        if let Some(longest) = longest
            && explicit_backoff
            && max_backoff < longest
        {
            return Err(ConfigError::new(format!(
                "{backoff_origin}: must be at least the longest per-source poll interval ({}), got {}",
                crate::units::format_duration(longest),
                crate::units::format_duration(max_backoff)
            )));
        }

        let seed = parse_or(
            o.pick(
                cli.demo_seed.as_deref(),
                "--demo.seed",
                file.demo.seed.as_ref(),
                "demo.seed",
            ),
            1u64,
            |s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("must be a whole number, got {s:?}"))
            },
        )?;
        let demo_markets = parse_or(
            o.pick(
                cli.demo_markets.as_deref(),
                "--demo.markets",
                file.demo.markets.as_ref(),
                "demo.markets",
            ),
            300usize,
            |s| match positive_int::<usize>(s)? {
                n if n > 100_000 => Err(format!("must be at most 100000, got {n}")),
                n => Ok(n),
            },
        )?;

        Ok(Config {
            listen_address,
            telemetry_path,
            log_level,
            log_format,
            sources,
            poll: PollConfig {
                interval,
                max_backoff,
                max_retry_after,
                min_markets_ratio,
            },
            shutdown_timeout,
            header_read_timeout,
            max_connections,
            shards,
            web_config,
            warnings,
            filter,
            cryptowatch: CryptowatchConfig {
                network: cryptowatch_network,
                api_key,
            },
            kraken,
            binance,
            coinbase,
            demo: DemoConfig {
                seed,
                markets: demo_markets,
                interval,
            },
        })
    }
}

/// Reads one network source's settings: `--<name>.*` flags and env vars
/// over the `<name>:` section of the file over the defaults.
fn network(
    o: &Origins,
    name: &str,
    cli: NetworkArgs,
    file: &FileNetwork,
    defaults: &NetworkDefaults,
) -> Result<NetworkConfig, ConfigError> {
    let flag = |opt: &str| format!("--{name}.{opt}");
    let key = |opt: &str| format!("{name}.{opt}");
    let url = parse_or(
        o.pick(
            cli.url.as_deref(),
            &flag("url"),
            file.url.as_ref(),
            &key("url"),
        ),
        reqwest::Url::parse(defaults.url).map_err(|e| ConfigError::new(e.to_string()))?,
        parse_base_url,
    )?;
    let poll_interval = match o.pick(
        cli.poll_interval.as_deref(),
        &flag("poll-interval"),
        file.poll_interval.as_ref(),
        &key("poll_interval"),
    ) {
        None => None,
        picked => Some(parse_or(picked, Duration::ZERO, positive_duration)?),
    };
    let timeout = parse_or(
        o.pick(
            cli.timeout.as_deref(),
            &flag("timeout"),
            file.timeout.as_ref(),
            &key("timeout"),
        ),
        Duration::from_secs(30),
        positive_duration,
    )?;
    let connect_picked = o.pick(
        cli.connect_timeout.as_deref(),
        &flag("connect-timeout"),
        file.connect_timeout.as_ref(),
        &key("connect_timeout"),
    );
    let connect_origin = connect_picked
        .as_ref()
        .map_or_else(|| key("connect_timeout"), |(_, o)| o.clone());
    let connect_timeout = parse_or(
        connect_picked,
        Duration::from_secs(5).min(timeout),
        positive_duration,
    )?;
    if connect_timeout > timeout {
        return Err(ConfigError::new(format!(
            "{connect_origin}: must not exceed the {name} timeout ({})",
            crate::units::format_duration(timeout)
        )));
    }
    let max_body_size = parse_or(
        o.pick(
            cli.max_body_size.as_deref(),
            &flag("max-body-size"),
            file.max_body_size.as_ref(),
            &key("max_body_size"),
        ),
        64 << 20,
        |s| match parse_bytes(s)? {
            0 => Err(format!("must be greater than 0, got {s:?}")),
            n => Ok(n),
        },
    )?;
    let rate_limit_period = parse_or(
        o.pick(
            cli.rate_limit_period.as_deref(),
            &flag("rate-limit.period"),
            file.rate_limit.period.as_ref(),
            &key("rate_limit.period"),
        ),
        defaults.rate_limit_period,
        positive_duration,
    )?;
    let rate_limit_burst = parse_or(
        o.pick(
            cli.rate_limit_burst.as_deref(),
            &flag("rate-limit.burst"),
            file.rate_limit.burst.as_ref(),
            &key("rate_limit.burst"),
        ),
        NonZeroU32::MIN,
        |s| {
            positive_int::<u32>(s)
                .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be greater than 0".to_owned()))
        },
    )?;
    Ok(NetworkConfig {
        url,
        http: HttpConfig {
            timeout,
            connect_timeout,
            max_body_size,
            rate_limit_period,
            rate_limit_burst,
        },
        poll_interval,
    })
}

fn parse_base_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "invalid URL {s:?}: must be http:// or https:// with a host"
        ));
    }
    Ok(url)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("config file {}: {e}", path.display())))?;
    parse_file(&text).map_err(|e| ConfigError::new(format!("config file {}: {e}", path.display())))
}

/// Parses YAML text; the error is flattened to one line with its position.
fn parse_file(text: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
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
    serde_saphyr::from_str::<FileConfig>(text).map_err(|e| {
        let mut msg = one_line(&e);
        // Type errors carry a position but not the key: quote the line.
        let line = e.location().and_then(|l| usize::try_from(l.line()).ok());
        if let Some(src) = line.and_then(|n| text.lines().nth(n.checked_sub(1)?)) {
            msg.push_str(&format!(" (near `{}`)", src.trim()));
        }
        msg
    })
}

/// The permission bits of a file that group or others may read, if so.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<u32> {
    None
}

fn read_secret(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(args: &[&str], yaml: &str) -> Result<Config, ConfigError> {
        let mut argv = vec!["crypto-market-exporter"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        Config::merge(cli, parse_file(yaml).map_err(ConfigError::new)?)
    }

    #[test]
    fn defaults() {
        let c = merge(&[], "").unwrap();
        assert_eq!(c.listen_address.to_string(), ":9795");
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.sources, vec![SourceKind::Kraken]);
        assert_eq!(c.poll.interval, Duration::from_secs(60));
        assert_eq!(
            c.cryptowatch.network.url.as_str(),
            "https://api.cryptowat.ch/"
        );
        assert_eq!(c.cryptowatch.network.http.max_body_size, 64 << 20);
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
        assert_eq!(c.cryptowatch.network.http.rate_limit_burst.get(), 3);
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
        assert_eq!(c.kraken.http.rate_limit_period, Duration::from_secs(2));
        assert_eq!(c.kraken.http.rate_limit_burst.get(), 3);
        assert_eq!(
            c.poll_for(SourceKind::Kraken).interval,
            Duration::from_secs(120)
        );
        assert_eq!(
            c.poll_for(SourceKind::Binance).interval,
            Duration::from_secs(30)
        );
        // The flag beats the file; the file's other keys still apply.
        assert_eq!(c.binance.url.as_str(), "http://127.0.0.1:1/");
        assert_eq!(c.binance.http.timeout, Duration::from_secs(10));
        // Coinbase's own default quota: 8 requests/s.
        assert_eq!(
            c.coinbase.http.rate_limit_period,
            Duration::from_millis(125)
        );
        assert_eq!(
            c.coinbase.url.as_str(),
            "https://api.exchange.coinbase.com/"
        );
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let e = merge(&["--poll.interval=soon"], "")
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
