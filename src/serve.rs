//! The HTTP server loop, with the bounds an exporter on a network needs and
//! `axum::serve` does not offer: a header-read timeout that also closes idle
//! keep-alive connections, a cap on concurrent connections, and a shutdown
//! that completes within a deadline whatever the clients do.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

use crate::accept;
use crate::units::format_duration;

/// Connections refused because `--web.max-connections` were open.
static REJECTED: AtomicU64 = AtomicU64::new(0);

pub fn connections_rejected() -> u64 {
    REJECTED.load(Ordering::Relaxed)
}

/// Inbound limits (`--web.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A request's headers must arrive within this, counted from when the
    /// connection starts waiting for them: slow clients and idle keep-alive
    /// connections alike are closed after it.
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// On shutdown, how long in-flight responses may take.
    pub shutdown_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets in-flight responses finish for `shutdown_timeout`, and
/// returns, leaving any connection still open to be dropped.
pub async fn serve(
    mut listener: accept::Listener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warned: Option<tokio::time::Instant> = None;
    loop {
        let (io, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor; the client sees a reset
            // and its next try may find a free slot.
            REJECTED.fetch_add(1, Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if last_warned.is_none_or(|t| now - t >= Duration::from_secs(10)) {
                last_warned = Some(now);
                tracing::warn!(
                    max_connections = limits.max_connections,
                    rejected_total = connections_rejected(),
                    "connection limit reached (--web.max-connections); closing new connections"
                );
            }
            drop(io);
            continue;
        };
        if let Err(e) = io.set_nodelay(true) {
            // No Nagle: the last small chunk of a multi-megabyte body would
            // otherwise wait for a delayed ACK on some scrapes.
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone().into_service::<hyper::body::Incoming>());
        let builder = builder.clone();
        let closing = closing_rx.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&builder, io, service, closing).await,
                // The handshake is bounded like the headers: a client that
                // opens a TLS connection and stalls is closed as a slow one.
                Some(tls) => match tokio::time::timeout(handshake_timeout, tls.accept(io)).await {
                    Ok(Ok(stream)) => serve_connection(&builder, stream, service, closing).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection task holds a permit: all permits back means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!(
            timeout = %format_duration(limits.shutdown_timeout),
            open = limits.max_connections - slots.available_permits(),
            "connections still open after the shutdown timeout; closing them"
        );
    }
}

/// One connection until it ends, or until shutdown: then the response in
/// flight finishes and the connection closes (an idle one at once).
async fn serve_connection<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut closing: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        () = closed => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
