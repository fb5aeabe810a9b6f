//! A source that exists only in this crate's unit tests: the proof that a
//! source is its file and one line in [`for_each_source!`](crate::for_each_source).
//! Nothing else in the crate names it, yet it has a [`SourceKind`] and
//! `--source=canned`, its `--canned.*` flags, env vars and `canned:` file
//! section, a place in `--help`, in reloads and in [`super::Settings::build`],
//! and the exporter serves what it polls.
//!
//! It serves one market, `canned`/`btcusd`, at the price it is given.

use std::time::Duration;

use super::{Build, Entry, Fetched, PollFuture, Source, SourceError, SourceKind};
use crate::admission::Admission;
use crate::domain::{MarketGauge, RawMarket};
use crate::settings::value;
use crate::settings::{ConfigError, Resolve, SourceOptions};

/// Its options, declared once for clap and serde, as every source's are.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[group(skip)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The price of its one market, in whole units. [default: 1]
    #[arg(
        long = "canned.price",
        env = "CRYPTO_MARKET_EXPORTER_CANNED_PRICE",
        value_name = "PRICE",
        value_parser = value::parse::<u64>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub price: Option<u64>,
    /// How often it is polled. [default: --poll.interval]
    #[arg(
        long = "canned.poll-interval",
        env = "CRYPTO_MARKET_EXPORTER_CANNED_POLL_INTERVAL",
        value_name = "DURATION",
        value_parser = value::parse::<Duration>
    )]
    #[serde(default, deserialize_with = "value::one")]
    pub poll_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CannedConfig {
    pub price: f64,
    pub poll_interval: Option<Duration>,
}

impl SourceOptions for Options {
    type Config = CannedConfig;

    fn resolve(&self, cx: &mut Resolve<'_>) -> Result<CannedConfig, ConfigError> {
        let price = self.price.unwrap_or(1);
        if price == 0 {
            return Err(ConfigError::new(format!(
                "{}: must be a positive price, got 0",
                cx.origins.name("canned.price")
            )));
        }
        Ok(CannedConfig {
            price: price as f64,
            poll_interval: self.poll_interval,
        })
    }

    fn poll_interval(config: &CannedConfig) -> Option<Duration> {
        config.poll_interval
    }
}

#[derive(Debug)]
pub struct Canned {
    price: f64,
}

impl Entry for Canned {
    type Options = Options;
    const EXCHANGE: Option<&'static str> = Some("canned");

    fn build(config: &CannedConfig, _cx: Build) -> Result<Self, SourceError> {
        Ok(Canned {
            price: config.price,
        })
    }
}

impl Source for Canned {
    fn poll(&mut self, mut admission: Admission) -> PollFuture<'_> {
        let mut values = [None; MarketGauge::COUNT];
        values[MarketGauge::Price as usize] = Some(self.price);
        admission.offer(RawMarket {
            exchange: "canned".into(),
            pair: "btcusd".into(),
            assets: None,
            values,
        });
        Box::pin(async move { Ok(Fetched::new(admission)) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::CommandFactory;

    use super::*;
    use crate::config::{Config, Options as Tree};
    use crate::self_metrics::SourceMetrics;

    #[test]
    fn the_line_in_the_list_gives_it_a_kind_a_name_and_an_exchange() {
        assert!(SourceKind::ALL.contains(&SourceKind::Canned));
        assert_eq!("canned".parse::<SourceKind>(), Ok(SourceKind::Canned));
        assert_eq!(SourceKind::Canned.as_str(), "canned");
        assert_eq!(SourceKind::Canned.exchange(), Some("canned"));
    }

    #[test]
    fn its_options_are_flags_env_vars_and_a_file_section() {
        let c = Config::from_args_without_env([
            "x",
            "--source=canned",
            "--canned.price=25",
            "--canned.poll-interval=2m",
        ])
        .unwrap();
        assert_eq!(c.sources, [SourceKind::Canned]);
        assert_eq!(c.settings.canned.price, 25.0);
        assert_eq!(c.poll_for(SourceKind::Canned).interval, Duration::from_secs(120));

        let c = Config::from_yaml("source: [canned]\ncanned:\n  price: 3\n").unwrap();
        assert_eq!(c.settings.canned.price, 3.0);
        assert_eq!(
            Config::from_yaml("canned:\n  prize: 3\n").unwrap_err().to_string(),
            "canned.prize: unknown key, expected one of price, poll_interval at line 2, column 3"
        );
        assert_eq!(
            Config::from_args_without_env(["x", "--canned.price=0"])
                .unwrap_err()
                .to_string(),
            "--canned.price: must be a positive price, got 0"
        );

        let env = Tree::command()
            .get_arguments()
            .find(|a| a.get_long() == Some("canned.price"))
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned());
        assert_eq!(env.as_deref(), Some("CRYPTO_MARKET_EXPORTER_CANNED_PRICE"));
        let help = Tree::command().render_long_help().to_string();
        assert!(help.contains("--canned.price <PRICE>"), "{help}");
    }

    #[test]
    fn a_reload_that_changes_it_needs_a_restart() {
        let old = Config::from_args_without_env(["x", "--source=canned"]).unwrap();
        let new =
            Config::from_args_without_env(["x", "--source=canned", "--canned.price=2"]).unwrap();
        assert_eq!(old.needs_restart(&new), ["canned"]);
        assert!(old.needs_restart(&old.clone()).is_empty());
    }

    /// The claim itself: no file but this one and the list names it.
    #[test]
    fn the_list_is_the_only_other_place_that_names_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut naming = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for line in text.lines().filter(|l| l.to_lowercase().contains("canned")) {
                    let file = path.strip_prefix(&src).unwrap().display().to_string();
                    if file != "source/canned.rs" {
                        naming.push(format!("{file}: {}", line.trim()));
                    }
                }
            }
        }
        assert_eq!(naming, ["source/mod.rs: Canned => canned::Canned,"]);
    }

    #[tokio::test]
    async fn the_exporter_serves_what_it_polls() {
        let config =
            Config::from_args_without_env(["x", "--source=canned", "--canned.price=25"]).unwrap();
        let metrics = Arc::new(SourceMetrics::new(SourceKind::Canned));
        assert!(config.build_source(SourceKind::Canned, metrics).is_ok());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::run(config, listener, async {
            stopped.await.ok();
        }));
        let url = format!("http://{addr}/metrics");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let mut body = String::new();
        for _ in 0..200 {
            body = client.get(&url).send().await.unwrap().text().await.unwrap();
            if body.contains("crypto_market_price{") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            body.contains(r#"crypto_market_price{exchange="canned",pair="btcusd"} 25"#),
            "{body}"
        );
        assert!(body.contains(r#"source="canned""#), "{body}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
