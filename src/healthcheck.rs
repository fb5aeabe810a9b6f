//! `crypto-market-exporter healthcheck`: a self-probe for container
//! HEALTHCHECKs. The runtime image has no shell or curl, so the binary checks
//! its own `/-/healthy` over plain HTTP/1.1 with std only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::listen::ListenAddress;

/// Probes `/-/healthy` where a local client reaches `listen` (a wildcard
/// address on loopback); healthy if any of its addresses answers 200.
pub fn probe(listen: &ListenAddress) -> Result<(), String> {
    let targets = listen
        .local_targets()
        .map_err(|e| format!("resolve {listen}: {e}"))?;
    let mut last = format!("{listen} resolves to no address");
    for addr in targets {
        match probe_one(addr) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn probe_one(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET /-/healthy HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(4096)
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if status_line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("unhealthy: {status_line:?}"))
    }
}
