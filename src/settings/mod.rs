//! The building blocks of configuration that sources and the config
//! module share, so that neither imports the other's insides: the typed
//! option values and their parsers ([`value`]), the settings every network
//! source has ([`network`]), one-line errors, secrets, and [`Origins`]
//! (what the user called each option they set).
//!
//! [`crate::config`] assembles the options of every source into one tree;
//! each source declares its own section with these blocks.

pub mod network;
pub mod value;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A source's section of the options tree (`--<name>.*` flags, env vars, the
/// `<name>:` file section), as given, and what it resolves to. Implemented
/// by [`crate::network_options!`] for the network sources and by hand for
/// the others; the options tree and `Config` reach every source through it.
pub trait SourceOptions {
    /// The source's settings resolved: all it is built from.
    type Config: Clone + PartialEq + fmt::Debug;

    /// Applies the defaults and the rules between the source's own options.
    fn resolve(&self, cx: &mut Resolve<'_>) -> Result<Self::Config, ConfigError>;

    /// The source's own poll interval, where it overrides `poll.interval`.
    fn poll_interval(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// Whether changing `old` into `new` takes a restart (a reload keeps
    /// the sources it built).
    fn needs_restart(old: &Self::Config, new: &Self::Config) -> bool {
        old != new
    }
}

/// What resolving a source's options may read beyond them, and where it
/// leaves its warnings.
#[derive(Debug)]
pub struct Resolve<'a> {
    pub origins: &'a Origins,
    /// `poll.interval`, resolved.
    pub poll_interval: Duration,
    /// Logged once logging is set up.
    pub warnings: &'a mut Vec<String>,
}

/// A configuration error: one line that names the offending option.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
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

    /// Reads a secret from the file `origin` names; warns (into `warnings`)
    /// when group or others may read it.
    pub fn read_file(
        path: &Path,
        origin: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        if let Some(mode) = readable_by_others(path) {
            warnings.push(format!(
                "{origin}: {} is readable by other users (mode {mode:o}); chmod 600 it",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("{origin}: cannot read {}: {e}", path.display()))
        })?;
        match text.trim() {
            "" => Err(ConfigError::new(format!(
                "{origin}: {} is empty",
                path.display()
            ))),
            key => Ok(Self::new(key)),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
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

/// The file key of an option: its flag with `_` for `-`. One exception:
/// `--web.config.file` follows the exporter-toolkit's flag name, and its key
/// is `web.config_file`.
pub fn file_key(flag: &str) -> String {
    match flag {
        "web.config.file" => "web.config_file".to_owned(),
        flag => flag.replace('-', "_"),
    }
}

/// What the user called each option they set: the flag (`--log.level`) or
/// the env var (`CRYPTO_MARKET_EXPORTER_LOG_LEVEL`), whichever clap took the
/// value from; any other value came from the file (or is a default), and is
/// called by its file key. Errors name what the user actually wrote.
#[derive(Debug, Default, Clone)]
pub struct Origins(HashMap<String, String>);

impl Origins {
    pub fn from_matches(cmd: &clap::Command, matches: &clap::ArgMatches) -> Self {
        use clap::parser::ValueSource;
        let mut map = HashMap::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let name = match matches.value_source(arg.get_id().as_str()) {
                Some(ValueSource::CommandLine) => format!("--{long}"),
                Some(ValueSource::EnvVariable) => match arg.get_env() {
                    Some(env) => env.to_string_lossy().into_owned(),
                    None => continue,
                },
                _ => continue,
            };
            map.insert(long.to_owned(), name);
        }
        Self(map)
    }

    /// The name of the option whose flag is `--{flag}`, as the user gave it.
    pub fn name(&self, flag: &str) -> String {
        self.0.get(flag).cloned().unwrap_or_else(|| file_key(flag))
    }
}
