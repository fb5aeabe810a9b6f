//! The settings every network source has, under its own prefix
//! (`--kraken.url`, `kraken:` → `url:` in the file). Each source module
//! declares its own [`Options`](crate::source::kraken::Options) with
//! [`network_options!`](crate::network_options) and its [`NetworkDefaults`];
//! [`resolve`] turns them into the [`NetworkConfig`] the source is built from.

use std::num::NonZeroU32;
use std::time::Duration;

use super::value::ByteSize;
use super::{ConfigError, Origins};
use crate::units::format_duration;
use crate::upstream::HttpConfig;

/// Defaults that differ between network sources: each source module has one.
#[derive(Debug)]
pub struct NetworkDefaults {
    pub url: &'static str,
    /// One request per this period, after the burst.
    pub rate_limit_period: Duration,
}

/// Defaults every network source shares.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_BODY_SIZE: u64 = 64 << 20;

/// Where and how to reach one network source, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub url: reqwest::Url,
    pub http: HttpConfig,
    /// This source's poll interval, when it overrides `poll.interval`.
    pub poll_interval: Option<Duration>,
}

impl NetworkConfig {
    /// The URL of an endpoint under the base URL: `path` starts with `/`,
    /// and a base given with a trailing slash gets no second one.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.as_str().trim_end_matches('/'))
    }
}

/// One network source's options as given (flags and env over the file), the
/// same fields whichever source: what [`network_options!`] structs lend out.
#[derive(Debug, Default)]
pub struct Given {
    pub url: Option<reqwest::Url>,
    pub poll_interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub max_body_size: Option<ByteSize>,
    pub rate_limit_period: Option<Duration>,
    pub rate_limit_burst: Option<NonZeroU32>,
}

/// Applies the defaults and the rules between one source's settings.
pub fn resolve(
    name: &str,
    given: Given,
    defaults: &NetworkDefaults,
    origins: &Origins,
) -> Result<NetworkConfig, ConfigError> {
    let url = match given.url {
        Some(url) => url,
        None => reqwest::Url::parse(defaults.url)
            .map_err(|e| ConfigError::new(format!("{name}: default URL: {e}")))?,
    };
    let timeout = given.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let connect_timeout = given
        .connect_timeout
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT.min(timeout));
    if connect_timeout > timeout {
        return Err(ConfigError::new(format!(
            "{}: must not exceed the {name} timeout ({})",
            origins.name(&format!("{name}.connect-timeout")),
            format_duration(timeout)
        )));
    }
    Ok(NetworkConfig {
        url,
        http: HttpConfig {
            timeout,
            connect_timeout,
            max_body_size: given.max_body_size.map_or(DEFAULT_MAX_BODY_SIZE, |b| b.0),
            rate_limit_period: given
                .rate_limit_period
                .unwrap_or(defaults.rate_limit_period),
            rate_limit_burst: given.rate_limit_burst.unwrap_or(NonZeroU32::MIN),
        },
        poll_interval: given.poll_interval,
    })
}

/// Declares a network source's `Options`: the same fields for clap (flags
/// `--<name>.*`, env vars `CRYPTO_MARKET_EXPORTER_<ENV>_*`) and serde (the
/// `<name>:` section of the file). A macro because clap needs each source's
/// flag names as literals. `keyed: true` shows `--<name>.api-key-file`; on
/// the other sources the option exists only to be refused with a reason.
#[macro_export]
macro_rules! network_options {
    // A keyed source resolves to more than its network settings and says how
    // itself (Cryptowatch); the others resolve to exactly these.
    (@resolve true) => {};
    (@resolve false) => {
        impl $crate::settings::SourceOptions for Options {
            type Config = $crate::settings::network::NetworkConfig;

            fn resolve(
                &self,
                cx: &mut $crate::settings::Resolve<'_>,
            ) -> Result<Self::Config, $crate::settings::ConfigError> {
                self.resolve_network(cx.origins)
            }

            fn poll_interval(config: &Self::Config) -> Option<std::time::Duration> {
                config.poll_interval
            }
        }
    };
    ($name:literal, $env:literal, $defaults:expr, keyed: $keyed:tt) => {
        /// This source's settings: `--
        #[doc = $name]
        /// .*` flags, the `
        #[doc = $name]
        /// :` section of the config file.
        #[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
        #[group(skip)]
        #[serde(deny_unknown_fields)]
        pub struct Options {
            #[arg(
                id = concat!($name, ".url"),
                long = concat!($name, ".url"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_URL"),
                value_name = "URL",
                value_parser = $crate::settings::value::parse::<reqwest::Url>,
                help = format!("Base URL of the {} API. [default: {}]", $name, $defaults.url)
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub url: Option<reqwest::Url>,
            #[arg(
                id = concat!($name, ".api-key-file"),
                long = concat!($name, ".api-key-file"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_API_KEY_FILE"),
                value_name = "PATH",
                hide = !$keyed,
                help = concat!("File holding the ", $name, " API key.")
            )]
            #[serde(default)]
            pub api_key_file: Option<std::path::PathBuf>,
            #[arg(
                id = concat!($name, ".poll-interval"),
                long = concat!($name, ".poll-interval"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_POLL_INTERVAL"),
                value_name = "DURATION",
                value_parser = $crate::settings::value::parse::<std::time::Duration>,
                help = concat!("Interval between polls of ", $name, ". [default: --poll.interval]")
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub poll_interval: Option<std::time::Duration>,
            #[arg(
                id = concat!($name, ".timeout"),
                long = concat!($name, ".timeout"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_TIMEOUT"),
                value_name = "DURATION",
                value_parser = $crate::settings::value::parse::<std::time::Duration>,
                help = format!(
                    "Whole-request timeout for {}, body included. [default: {}]",
                    $name,
                    $crate::units::format_duration($crate::settings::network::DEFAULT_TIMEOUT)
                )
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub timeout: Option<std::time::Duration>,
            #[arg(
                id = concat!($name, ".connect-timeout"),
                long = concat!($name, ".connect-timeout"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_CONNECT_TIMEOUT"),
                value_name = "DURATION",
                value_parser = $crate::settings::value::parse::<std::time::Duration>,
                help = format!(
                    "TCP+TLS connect timeout for {}. [default: {}]",
                    $name,
                    $crate::units::format_duration($crate::settings::network::DEFAULT_CONNECT_TIMEOUT)
                )
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub connect_timeout: Option<std::time::Duration>,
            #[arg(
                id = concat!($name, ".max-body-size"),
                long = concat!($name, ".max-body-size"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_MAX_BODY_SIZE"),
                value_name = "SIZE",
                value_parser = $crate::settings::value::parse::<$crate::settings::value::ByteSize>,
                help = format!(
                    "Largest response body accepted from {}. [default: {}MiB]",
                    $name,
                    $crate::settings::network::DEFAULT_MAX_BODY_SIZE >> 20
                )
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub max_body_size: Option<$crate::settings::value::ByteSize>,
            #[command(flatten)]
            #[serde(default)]
            pub rate_limit: RateLimitOptions,
        }

        /// This source's rate limiter (`rate_limit:` in its file section).
        #[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
        #[group(skip)]
        #[serde(deny_unknown_fields)]
        pub struct RateLimitOptions {
            #[arg(
                id = concat!($name, ".rate-limit.period"),
                long = concat!($name, ".rate-limit.period"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_RATE_LIMIT_PERIOD"),
                value_name = "DURATION",
                value_parser = $crate::settings::value::parse::<std::time::Duration>,
                help = format!(
                    "Rate limiter of {}: one request per this period after the burst. [default: {}]",
                    $name,
                    $crate::units::format_duration($defaults.rate_limit_period)
                )
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub period: Option<std::time::Duration>,
            #[arg(
                id = concat!($name, ".rate-limit.burst"),
                long = concat!($name, ".rate-limit.burst"),
                env = concat!("CRYPTO_MARKET_EXPORTER_", $env, "_RATE_LIMIT_BURST"),
                value_name = "N",
                value_parser = $crate::settings::value::parse::<std::num::NonZeroU32>,
                help = concat!("Rate limiter of ", $name, ": requests allowed back to back. [default: 1]")
            )]
            #[serde(default, deserialize_with = "crate::settings::value::one")]
            pub burst: Option<std::num::NonZeroU32>,
        }

        $crate::network_options!(@resolve $keyed);

        impl Options {
            /// The settings as given, with defaults and rules applied.
            pub fn resolve_network(
                &self,
                origins: &$crate::settings::Origins,
            ) -> Result<$crate::settings::network::NetworkConfig, $crate::settings::ConfigError> {
                if !$keyed && self.api_key_file.is_some() {
                    return Err($crate::settings::ConfigError::new(format!(
                        "{}: only the cryptowatch source takes an API key (the {} source reads public endpoints)",
                        origins.name(concat!($name, ".api-key-file")),
                        $name
                    )));
                }
                $crate::settings::network::resolve(
                    $name,
                    $crate::settings::network::Given {
                        url: self.url.clone(),
                        poll_interval: self.poll_interval,
                        timeout: self.timeout,
                        connect_timeout: self.connect_timeout,
                        max_body_size: self.max_body_size,
                        rate_limit_period: self.rate_limit.period,
                        rate_limit_burst: self.rate_limit.burst,
                    },
                    &$defaults,
                    origins,
                )
            }
        }
    };
}
