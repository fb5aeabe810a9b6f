//! Binary entry point: configuration, logging, signals. Everything else is in the library.

use std::process::ExitCode;

use anyhow::Context;
use crypto_market_exporter::{Config, logging, run};

#[tokio::main]
async fn main() -> ExitCode {
    // `crypto-market-exporter healthcheck [flags]`: probe the running exporter
    // configured by the same flags/env (for container HEALTHCHECKs).
    let mut args: Vec<String> = std::env::args().collect();
    let healthcheck = args.get(1).is_some_and(|a| a == "healthcheck");
    if healthcheck {
        args.remove(1);
    }
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crypto-market-exporter: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if healthcheck {
        return match crypto_market_exporter::healthcheck::probe(config.listen_address) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crypto-market-exporter: healthcheck failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    logging::init(config.log_level, config.log_format);
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_address))?;
    run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGTERM (Kubernetes, systemd, docker stop) or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received ctrl-c, shutting down"),
        _ = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}
