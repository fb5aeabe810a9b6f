//! The HTTP listener. axum's own retries failed accepts silently; this one
//! counts them (`crypto_market_exporter_accept_errors_total`) and logs them,
//! because the usual cause, running out of file descriptors to idle or slow
//! clients, otherwise shows only as scrapes that time out.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Failed accepts since start: process-wide, like the listener.
static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// How often the accept-error warning may repeat: a full descriptor table
/// fails every accept until connections close.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Pause after a failed accept, so a full table is not retried in a busy loop.
const BACKOFF: Duration = Duration::from_millis(100);

pub fn accept_errors() -> u64 {
    ACCEPT_ERRORS.load(Ordering::Relaxed)
}

/// A [`TcpListener`] for `axum::serve` that counts and logs failed accepts.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    last_logged: Option<Instant>,
}

impl Listener {
    pub fn new(inner: TcpListener) -> Self {
        Self {
            inner,
            last_logged: None,
        }
    }

    fn failed(&mut self, e: &io::Error) {
        ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self.last_logged.is_none_or(|t| now - t >= LOG_EVERY) {
            self.last_logged = Some(now);
            let descriptors = matches!(e.raw_os_error(), Some(23 | 24)); // ENFILE, EMFILE
            tracing::warn!(
                error = %e,
                accept_errors_total = accept_errors(),
                hint = if descriptors {
                    "out of file descriptors: too many open connections; raise the limit (systemd LimitNOFILE, ulimit -n) or find the clients holding them"
                } else {
                    "the listener cannot take new connections"
                },
                "cannot accept a connection; retrying"
            );
        }
    }
}

/// Errors that concern only the connection being accepted (the peer left
/// before we took it): retried at once, not counted.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for Listener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok(accepted) => return accepted,
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    self.failed(&e);
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
