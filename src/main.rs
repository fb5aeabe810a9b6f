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
        return match crypto_market_exporter::healthcheck::probe(&config.listen_address) {
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
    // Handlers are installed before the socket is bound, so a SIGTERM that
    // arrives right after "listening" is a clean shutdown, not a kill.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let listener = config
        .listen_address
        .bind()
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_address))?;
    run(config, listener, shutdown).await?;
    Ok(())
}

/// Completes on SIGTERM (Kubernetes, systemd, docker stop) or SIGINT (ctrl-c).
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received ctrl-c, shutting down"),
            _ = terminate.recv() => tracing::info!("received SIGTERM, shutting down"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received ctrl-c, shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    })
}
