//! Every integration test, in one crate (one link of tokio, axum and reqwest
//! instead of one per file), a module per behaviour:
//!
//! - [`http`]: `/metrics` and the probes, golden exposition, web config (TLS, auth)
//! - [`cryptowatch`], [`live_sources`]: each source against a loopback fake serving
//!   recorded answers
//! - [`faults`]: hostile and broken upstreams; the last good data stays
//! - [`config`]: flags, env, file: precedence and one-line errors
//! - [`binary`]: the built binary: signals, reload, listen addresses, healthcheck
//! - [`stack`]: compose, provisioning and dashboard conventions, offline
//! - [`mixin`]: the rendered rules, alerts and dashboards (jsonnet, promtool)
//! - [`backfill`]: the demo's history, loaded with its rules into a real Prometheus;
//!   [`candles`]: the network sources' history from their candle endpoints
//! - [`e2e`]: the real Prometheus and Alertmanager binaries end to end
//! - [`scale`]: sharded scraping into VictoriaMetrics, vmalert, an Alertmanager HA
//!   pair, checked against Prometheus on the same samples
//!
//! Tests that need Debian's prometheus, prometheus-alertmanager or jsonnet skip with
//! a message when those are missing, unless `CME_REQUIRE_TOOLS=1` (set by
//! `.ci/test`), where a missing tool fails them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;
mod harness;

mod backfill;
mod binary;
mod candles;
mod config;
mod cryptowatch;
mod e2e;
mod faults;
mod http;
mod live_sources;
mod mixin;
mod scale;
mod stack;
