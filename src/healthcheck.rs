//! `crypto-market-exporter healthcheck`: a self-probe for container
//! HEALTHCHECKs. The runtime image has no shell or curl, so the binary checks
//! its own `/-/healthy` with the HTTP client it polls upstreams with, over TLS
//! when `--web.config.file` turns it on.
//!
//! With basic auth on, the probe cannot log in (the file holds only bcrypt
//! hashes), so a `401` counts as healthy: the server is up and answering. With
//! TLS, the certificate is not verified: the probe talks to this very process
//! on loopback, where the certificate's names rarely match. A server that
//! requires client certificates rejects the probe; use a TCP probe there.

use std::net::SocketAddr;
use std::time::Duration;

use crate::listen::ListenAddress;
use crate::web_config::WebConfig;

/// Probes `/-/healthy` where a local client reaches `listen` (a wildcard
/// address on loopback); healthy if any of its addresses answers.
pub async fn probe(listen: &ListenAddress, web: Option<&WebConfig>) -> Result<(), String> {
    let targets = listen
        .local_targets()
        .map_err(|e| format!("resolve {listen}: {e}"))?;
    let tls = web.is_some_and(|w| w.tls.is_some());
    // reqwest is built without a bundled crypto provider (src/upstream.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        // This very process, on loopback: see the module docs.
        .tls_danger_accept_invalid_certs(tls)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let mut last = format!("{listen} resolves to no address");
    for addr in targets {
        match probe_one(&client, addr, tls).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn probe_one(client: &reqwest::Client, addr: SocketAddr, tls: bool) -> Result<(), String> {
    let url = format!("{}://{addr}/-/healthy", if tls { "https" } else { "http" });
    let status = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .status();
    match status.as_u16() {
        200 | 401 => Ok(()),
        _ => Err(format!("unhealthy: GET {url} answered {status}")),
    }
}
