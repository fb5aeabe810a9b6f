//! The typed values options take. Each type has one parser, and both readers
//! call it: clap for flags and environment variables (`value_parser =
//! value::parse::<T>`), serde for the YAML file (`deserialize_with =
//! "value::one"` or `"value::list"`). So `30s` means the same everywhere,
//! and each reader names the culprit in its own terms: clap the flag (or, as
//! `config::options` rewrites it, the env var), serde the key path.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, SystemTime};

use serde::Deserializer;
use serde::de::{self, Visitor};
use tracing::level_filters::LevelFilter;

use crate::domain::SourceKind;
use crate::glob::Glob;
use crate::listen::ListenAddress;
use crate::units::{parse_bytes, parse_duration};

/// A value an option can take, parsed from the text a user typed.
pub trait OptionValue: Sized {
    fn parse(text: &str) -> Result<Self, String>;
}

/// The clap value parser of every option: `value_parser = value::parse::<T>`.
pub fn parse<T: OptionValue>(text: &str) -> Result<T, String> {
    T::parse(text)
}

/// The serde reader of a file option: any YAML scalar (`burst: 5` and
/// `burst: "5"` alike), parsed by the same [`OptionValue::parse`] as the flag.
pub fn one<'de, D: Deserializer<'de>, T: OptionValue>(d: D) -> Result<Option<T>, D::Error> {
    let text = d.deserialize_any(ScalarText)?;
    T::parse(&text).map(Some).map_err(de::Error::custom)
}

/// The serde reader of a list option: a YAML sequence of scalars, or one scalar.
pub fn list<'de, D: Deserializer<'de>, T: OptionValue>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    struct Items<T>(std::marker::PhantomData<T>);
    impl<'de, T: OptionValue> Visitor<'de> for Items<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or a single value")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            T::parse(v).map(|t| vec![t]).map_err(E::custom)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(text) = seq.next_element_seed(ScalarText)? {
                out.push(T::parse(&text).map_err(de::Error::custom)?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Items(std::marker::PhantomData)).map(Some)
}

/// A YAML scalar as the text it was written as: the parsers take text.
struct ScalarText;

impl<'de> Visitor<'de> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> de::DeserializeSeed<'de> for ScalarText {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

/// Durations: always greater than zero (`1h30m`, `250ms`).
impl OptionValue for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        match parse_duration(text)? {
            d if d.is_zero() => Err(format!("must be greater than 0, got {text:?}")),
            d => Ok(d),
        }
    }
}

/// A byte size greater than zero (`65536`, `512KiB`, `64MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl OptionValue for ByteSize {
    fn parse(text: &str) -> Result<Self, String> {
        match parse_bytes(text)? {
            0 => Err(format!("must be greater than 0, got {text:?}")),
            n => Ok(Self(n)),
        }
    }
}

fn whole_positive<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("must be a whole number greater than 0, got {text:?}"))
}

impl OptionValue for NonZeroU32 {
    fn parse(text: &str) -> Result<Self, String> {
        whole_positive(text)
    }
}

impl OptionValue for NonZeroUsize {
    fn parse(text: &str) -> Result<Self, String> {
        whole_positive(text)
    }
}

/// A count from 1 to `MAX`: the bound is part of the option's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtMost<const MAX: usize>(pub usize);

impl<const MAX: usize> OptionValue for AtMost<MAX> {
    fn parse(text: &str) -> Result<Self, String> {
        match NonZeroUsize::parse(text)?.get() {
            n if n > MAX => Err(format!("must be at most {MAX}, got {n}")),
            n => Ok(Self(n)),
        }
    }
}

impl OptionValue for u64 {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("must be a whole number, got {text:?}"))
    }
}

/// A share from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl OptionValue for Ratio {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(Self(r)),
            _ => Err(format!("must be a number from 0 to 1, got {text:?}")),
        }
    }
}

/// The base URL of an upstream API: http or https, with a host.
impl OptionValue for reqwest::Url {
    fn parse(text: &str) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "invalid URL {text:?}: must be http:// or https:// with a host"
            ));
        }
        Ok(url)
    }
}

/// The path `/metrics` is served under: not `/`, not the `/-/` admin paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryPath(pub String);

impl OptionValue for TelemetryPath {
    fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') || s == "/" || s.starts_with("/-/") || s.contains(['?', '#', ' ']) {
            Err(format!(
                "invalid telemetry path {s:?} (must start with / and not be / or /-/...)"
            ))
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

impl OptionValue for LevelFilter {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "error" => Ok(LevelFilter::ERROR),
            "warn" => Ok(LevelFilter::WARN),
            "info" => Ok(LevelFilter::INFO),
            "debug" => Ok(LevelFilter::DEBUG),
            "trace" => Ok(LevelFilter::TRACE),
            _ => Err(format!(
                "invalid log level {s:?} (expected error, warn, info, debug or trace)"
            )),
        }
    }
}

impl OptionValue for ListenAddress {
    fn parse(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

impl OptionValue for SourceKind {
    fn parse(s: &str) -> Result<Self, String> {
        s.trim().parse()
    }
}

/// A glob; blank ones (`--markets.include-pairs=`) are dropped when the
/// filter is built, so they mean "no glob".
impl OptionValue for Glob {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(Glob::new(s.trim()))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_messages() {
        assert_eq!(AtMost::<10>::parse("10"), Ok(AtMost(10)));
        assert_eq!(
            AtMost::<10>::parse("11"),
            Err("must be at most 10, got 11".to_owned())
        );
        assert_eq!(
            NonZeroU32::parse("0"),
            Err("must be a whole number greater than 0, got \"0\"".to_owned())
        );
        assert_eq!(
            Duration::parse("0s"),
            Err("must be greater than 0, got \"0s\"".to_owned())
        );
        assert_eq!(Ratio::parse("0"), Ok(Ratio(0.0)));
        assert!(Ratio::parse("1.5").is_err());
        assert!(
            reqwest::Url::parse("ftp://x").is_ok(),
            "the type itself takes ftp"
        );
        assert!(<reqwest::Url as OptionValue>::parse("ftp://x").is_err());
        assert!(TelemetryPath::parse("/-/healthy").is_err());
    }
}
