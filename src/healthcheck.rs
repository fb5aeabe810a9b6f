//! `crypto-market-exporter healthcheck`: a self-probe for container
//! HEALTHCHECKs. The runtime image has no shell or curl, so the binary checks
//! its own `/-/healthy` over plain HTTP/1.1 with std only, or over TLS when
//! `--web.config.file` turns it on.
//!
//! With basic auth on, the probe cannot log in (the file holds only bcrypt
//! hashes), so a `401` counts as healthy: the server is up and answering. With
//! TLS, the certificate is not verified: the probe talks to this very process
//! on loopback, where the certificate's names rarely match. A server that
//! requires client certificates rejects the probe; use a TCP probe there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::listen::ListenAddress;
use crate::web_config::WebConfig;

/// Probes `/-/healthy` where a local client reaches `listen` (a wildcard
/// address on loopback); healthy if any of its addresses answers.
pub fn probe(listen: &ListenAddress, web: Option<&WebConfig>) -> Result<(), String> {
    let targets = listen
        .local_targets()
        .map_err(|e| format!("resolve {listen}: {e}"))?;
    let tls = web.is_some_and(|w| w.tls.is_some());
    let mut last = format!("{listen} resolves to no address");
    for addr in targets {
        match probe_one(addr, tls) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn probe_one(addr: SocketAddr, tls: bool) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!("GET /-/healthy HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = if tls {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnProcess::new()))
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let connection = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(rustls::StreamOwned::new(connection, stream), &request)?
    } else {
        exchange(stream, &request)?
    };
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.1 401") {
        Ok(())
    } else {
        Err(format!("unhealthy: {status_line:?}"))
    }
}

fn exchange(mut stream: impl Read + Write, request: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    // A TLS peer may close without close_notify after `Connection: close`;
    // what was read by then is the answer.
    match stream.take(4096).read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(_) if !response.is_empty() => Ok(response),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Accepts the certificate of the process being probed: see the module docs.
#[derive(Debug)]
struct OwnProcess(Arc<rustls::crypto::CryptoProvider>);

impl OwnProcess {
    fn new() -> Self {
        Self(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl rustls::client::danger::ServerCertVerifier for OwnProcess {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
