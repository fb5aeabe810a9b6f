//! Binary entry point: configuration, logging, signals. Everything else is in the library.

use std::process::ExitCode;

use anyhow::Context;
use crypto_market_exporter::{Config, logging, run_reloadable};
use tokio::sync::mpsc;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let backfill_command = args.get(1).is_some_and(|a| a == "backfill");
    // The backfill reads one answer at a time: on one thread the connection's
    // tasks run where the answer is parsed, instead of waking a worker for
    // every call (a fifth of its CPU; docs/performance.md). The exporter
    // serves scrapes while a poll is parsed, on every core.
    let runtime = if backfill_command {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("crypto-market-exporter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if backfill_command {
        args.remove(1);
        return runtime.block_on(backfill(args));
    }
    runtime.block_on(exporter(args))
}

/// The exporter, or `healthcheck`.
async fn exporter(mut args: Vec<String>) -> ExitCode {
    // `crypto-market-exporter healthcheck [flags]`: probe the running exporter
    // configured by the same flags/env (for container HEALTHCHECKs).
    let healthcheck = args.get(1).is_some_and(|a| a == "healthcheck");
    if healthcheck {
        args.remove(1);
    }
    let config = match Config::from_args(args.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crypto-market-exporter: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if healthcheck {
        return match crypto_market_exporter::healthcheck::probe(
            &config.listen_address,
            config.web_config.as_ref(),
        )
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crypto-market-exporter: healthcheck failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    logging::init(config.log_level, config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    match serve(config, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

/// `crypto-market-exporter backfill`: history as OpenMetrics, then exit.
async fn backfill(args: Vec<String>) -> ExitCode {
    use crypto_market_exporter::backfill;
    let (config, flags) = match backfill::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("crypto-market-exporter: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level, config.log_format);
    match backfill::run(&config, &flags, std::time::SystemTime::now()).await {
        Ok(written) => {
            tracing::info!(
                series = written.series,
                samples = written.samples,
                "backfill written"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crypto-market-exporter: backfill failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, args: Vec<String>) -> anyhow::Result<()> {
    // Handlers are installed before the socket is bound, so a SIGTERM that
    // arrives right after "listening" is a clean shutdown, not a kill.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let reloads = reload_on_sighup(args).context("cannot install signal handlers")?;
    let listener = config
        .listen_address
        .bind()
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_address))?;
    run_reloadable(config, listener, shutdown, reloads).await?;
    Ok(())
}

/// Completes on SIGTERM (Kubernetes, systemd, docker stop), SIGINT (ctrl-c)
/// or SIGQUIT. SIGUSR1 is logged and ignored rather than killing the process
/// (its default action): docs/runbook.md lists the signals.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => { tracing::info!("received ctrl-c, shutting down"); break }
                _ = terminate.recv() => { tracing::info!("received SIGTERM, shutting down"); break }
                _ = quit.recv() => { tracing::info!("received SIGQUIT, shutting down"); break }
                _ = usr1.recv() => tracing::info!("received SIGUSR1; ignored (SIGHUP reloads the config file, SIGTERM stops)"),
            }
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

/// On SIGHUP, reads flags, environment and config file again, as at startup.
/// A valid result goes to the running exporter; an invalid one is logged and
/// the running configuration stays.
#[cfg(unix)]
fn reload_on_sighup(args: Vec<String>) -> std::io::Result<mpsc::Receiver<Config>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("received SIGHUP, reloading the configuration");
            match Config::try_from_args(args.clone()) {
                Ok(config) => {
                    if tx.send(config).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; keeping the running configuration")
                }
            }
        }
    });
    Ok(rx)
}

#[cfg(not(unix))]
fn reload_on_sighup(_args: Vec<String>) -> std::io::Result<mpsc::Receiver<Config>> {
    let (tx, rx) = mpsc::channel(1);
    std::mem::forget(tx);
    Ok(rx)
}
