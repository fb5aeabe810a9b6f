//! crypto-market-exporter: a Prometheus exporter for crypto market data.
//!
//! Background pollers, one per source, fetch market data from upstream APIs
//! (Cryptowatch-compatible, Kraken, Binance, Coinbase) under a
//! rate limiter, and publish an immutable, pre-rendered exposition that
//! `/metrics` serves as-is.
//!
//! # Layout
//! - [`config`]: flags, env vars and the YAML file, merged and validated;
//!   [`settings`]: its building blocks (typed values, the network-source
//!   settings each source declares for itself).
//! - [`source`]: the explicit list of market sources ([`for_each_source!`]),
//!   one file each ([`source::cryptowatch`], [`source::kraken`],
//!   [`source::binance`], [`source::coinbase`], [`source::demo`]) with its
//!   options and wire DTOs; everything per source is generated from the list.
//! - [`upstream`]: outbound HTTP: governor quota, timeouts, body cap, 429.
//! - [`domain`]: `Market`, the metric contract ([`domain::MarketGauge`]), validation,
//!   `SourceKind` and `Credits`.
//! - [`error`]: `SourceError`, why a poll failed, and its bounded reasons.
//! - [`filter`]: include/exclude globs ([`glob`]) and the market cap;
//!   [`admission`] applies them, with validation, market by market.
//! - [`poller`]: one task per source: poll, pace, back off, publish.
//! - [`exposition`]: rendering, format negotiation types, gzip;
//!   [`shard`]: slices of `/metrics` for sharded scraping.
//! - [`self_metrics`]: the `crypto_market_exporter_*` self-metrics, encoded by
//!   prometheus-client.
//! - [`state`]: the slots and the atomically swapped exposition.
//! - [`server`]: the axum router; [`serve`]: the server loop with its
//!   timeouts and connection cap; [`accept`]: the listener that counts failed
//!   accepts; [`healthcheck`]: the container self-probe;
//!   [`listen`]: listen addresses as Go exporters accept them;
//!   [`web_config`]: TLS, basic auth and headers (`--web.config.file`).
//!
//! [`backfill`] writes the recent past as OpenMetrics (the `backfill` subcommand).
//!
//! [`run`] wires it together; `main.rs` only parses config and handles signals.

pub mod accept;
pub mod admission;
pub mod backfill;
pub mod config;
pub mod domain;
pub mod error;
pub mod exposition;
pub mod filter;
pub mod glob;
pub mod healthcheck;
pub mod listen;
pub mod logging;
pub mod poller;
pub mod self_metrics;
pub mod serve;
pub mod server;
pub mod settings;
pub mod shard;
pub mod source;
pub mod state;
pub mod units;
pub mod upstream;
pub mod web_config;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use server::{AppState, router};

/// Errors that stop the exporter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up source {source_name}: {error}")]
    Source {
        source_name: &'static str,
        error: source::SourceError,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// The market filter of one source: the configured one, plus, for sources
/// that report many exchanges, the exchanges another configured source owns.
pub fn filter_for(
    config: &Config,
    kind: source::SourceKind,
    owned: &[&str],
) -> filter::MarketFilter {
    let mut filter = config.filter.clone();
    if kind.exchange().is_none() {
        filter
            .exclude_exchanges
            .extend(owned.iter().map(|e| glob::Glob::new(e)));
    }
    filter
}

/// Starts one poller per configured source and serves HTTP on `listener`
/// until `shutdown` completes; then stops the pollers and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (_keep, reloads) = tokio::sync::mpsc::channel(1);
    run_reloadable(config, listener, shutdown, reloads).await
}

/// [`run`], applying each configuration received on `reloads` (SIGHUP in
/// `main.rs`): the market filters change from the next poll of each source;
/// any other change is logged as needing a restart and not applied.
pub async fn run_reloadable(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reloads: tokio::sync::mpsc::Receiver<Config>,
) -> Result<(), Error> {
    let shared = Arc::new(state::Shared::new(&config.sources, config.shards));
    // Exchanges that have their own source in this run: an aggregator's copy
    // of them (Cryptowatch's `kraken:btcusd` next to the kraken source's) is
    // left out, so no series is exported twice.
    let owned: Vec<&str> = config.sources.iter().filter_map(|k| k.exchange()).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pollers = tokio::task::JoinSet::new();
    let mut filters = Vec::with_capacity(shared.slots.len());
    for slot in &shared.slots {
        let kind = slot.metrics.source;
        let source = config
            .build_source(kind, slot.metrics.clone())
            .map_err(|error| Error::Source {
                source_name: kind.as_str(),
                error,
            })?;
        let filter = Arc::new(arc_swap::ArcSwap::from_pointee(filter_for(
            &config, kind, &owned,
        )));
        filters.push((kind, filter.clone()));
        let poller = poller::Poller {
            source,
            slot: slot.clone(),
            shared: shared.clone(),
            poll: config.poll_for(kind),
            filter,
        };
        pollers.spawn(poller.run(stop_rx.clone()));
    }
    if let Ok(addr) = listener.local_addr() {
        let sources: Vec<&str> = config.sources.iter().map(|s| s.as_str()).collect();
        tracing::info!(address = %addr, telemetry_path = %config.telemetry_path, sources = %sources.join(","), "listening");
    }
    let web = config.web_config.clone();
    let app = router(AppState {
        shared,
        telemetry_path: config.telemetry_path.clone(),
        auth: web.as_ref().and_then(|w| w.auth.clone()),
        headers: web
            .as_ref()
            .map(|w| w.headers.clone())
            .unwrap_or_default()
            .into(),
    });
    // On the signal the pollers stop at once, the listener closes, and
    // in-flight responses get `shutdown_timeout` to finish (src/serve.rs).
    let signalled = {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }
    };
    let reloader = {
        let owned: Vec<&'static str> = config.sources.iter().filter_map(|k| k.exchange()).collect();
        let current = config.clone();
        async move {
            let mut current = current;
            while let Some(new) = reloads.recv().await {
                let restart = current.needs_restart(&new);
                for (kind, filter) in &filters {
                    filter.store(Arc::new(filter_for(&new, *kind, &owned)));
                }
                if restart.is_empty() {
                    tracing::info!(
                        "configuration reloaded; market filters apply from each source's next poll"
                    );
                } else {
                    tracing::warn!(needs_restart = %restart.join(","), "configuration reloaded; market filters apply from each source's next poll, the other changed settings only after a restart");
                }
                // Keep what runs as the reference, with the new filters.
                current.filter = new.filter;
            }
            std::future::pending::<()>().await;
        }
    };
    let limits = serve::Limits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        shutdown_timeout: config.shutdown_timeout,
    };
    let tls = web.and_then(|w| w.tls);
    tokio::select! {
        () = reloader => {}
        () = serve::serve(accept::Listener::new(listener), app, limits, tls, signalled) => {}
    }
    let _ = stop_tx.send(true);
    while pollers.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Modules import each other without cycles: leaf types (`domain`, `error`) have
    /// one home each, HTTP settings live in `upstream`, a source declares its own
    /// settings from the blocks in `settings`, and `config` assembles them (it knows
    /// the sources; they do not know it). (`source/*.rs` count as `source`, and so on.)
    #[test]
    fn modules_import_each_other_without_cycles() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files = Vec::new();
        for dir in [
            src.clone(),
            src.join("source"),
            src.join("config"),
            src.join("settings"),
        ] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let module = rel.split(['/', '.']).next().unwrap().to_owned();
            if matches!(module.as_str(), "lib" | "main") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            // Production code only: tests may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for part in line.split("crate::").skip(1) {
                    let to: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !to.is_empty() && to != module {
                        edges.entry(module.clone()).or_default().insert(to);
                    }
                }
            }
        }
        assert!(
            edges.contains_key("source")
                && edges.contains_key("config")
                && edges.contains_key("settings"),
            "{edges:?}"
        );
        // Depth-first search for a back edge.
        fn visit(
            m: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) {
            if done.contains(m) {
                return;
            }
            if let Some(i) = path.iter().position(|p| p == m) {
                panic!("module cycle: {} -> {m}", path[i..].join(" -> "));
            }
            path.push(m.to_owned());
            for next in edges.get(m).into_iter().flatten() {
                visit(next, edges, path, done);
            }
            path.pop();
            done.insert(m.to_owned());
        }
        let mut done = BTreeSet::new();
        for m in edges.keys() {
            visit(m, &edges, &mut Vec::new(), &mut done);
        }
    }
}
