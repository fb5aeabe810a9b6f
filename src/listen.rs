//! Listen addresses in the forms every Go exporter accepts, so that flags and
//! files carry over: `:9795` (every interface), `host:9795` with an IPv4
//! address or a host name, and `[v6]:9795`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// `:PORT`: every interface, IPv6 and IPv4 where the host has IPv6.
    Any,
    Ip(IpAddr),
    /// Resolved when the listener is bound, as Go's `net.Listen` does.
    Name(String),
}

/// A validated `[host]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    host: Host,
    port: u16,
}

impl ListenAddress {
    pub const fn any(port: u16) -> Self {
        Self {
            host: Host::Any,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The addresses to try, in order. `:PORT` tries the IPv6 wildcard first
    /// (on Linux it accepts IPv4 too) and falls back to IPv4 where IPv6 is off,
    /// as in many containers.
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(match &self.host {
            Host::Any => vec![
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, self.port)),
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)),
            ],
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await?
                .collect(),
        })
    }

    /// Where a client on this machine reaches a server listening here: the
    /// wildcards become loopback (used by the `healthcheck` subcommand).
    pub fn local_targets(&self) -> io::Result<Vec<SocketAddr>> {
        use std::net::ToSocketAddrs;
        let loopback = |ip: IpAddr| match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Ok(match &self.host {
            Host::Any => vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, self.port)),
            ],
            Host::Ip(ip) => vec![SocketAddr::new(loopback(*ip), self.port)],
            Host::Name(name) => (name.as_str(), self.port)
                .to_socket_addrs()?
                .map(|a| SocketAddr::new(loopback(a.ip()), a.port()))
                .collect(),
        })
    }

    /// Binds the first address that works; the error names the last failure.
    pub async fn bind(&self) -> io::Result<TcpListener> {
        let mut last = None;
        for addr in self.resolve().await? {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Ok(listener),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{self} resolves to no address"),
            )
        }))
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Any => write!(f, ":{}", self.port),
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for ListenAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid listen address {s:?}: {why} (expected [host]:port, e.g. :9795, 127.0.0.1:9795, [::1]:9795 or localhost:9795)"
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
        let host = if host.is_empty() {
            Host::Any
        } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Host::Ip(IpAddr::V6(
                v6.parse()
                    .map_err(|_| bad("not an IPv6 address in brackets"))?,
            ))
        } else if host.contains(':') {
            return Err(bad("an IPv6 address needs brackets"));
        } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(v4))
        } else if is_host_name(host) {
            Host::Name(host.to_ascii_lowercase())
        } else {
            return Err(bad("not an IP address or host name"));
        };
        Ok(Self { host, port })
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // "1.2.3" is neither an address nor a sensible name.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ListenAddress, String> {
        s.parse()
    }

    #[test]
    fn go_exporter_forms() {
        assert_eq!(parse(":9745").unwrap(), ListenAddress::any(9745));
        assert_eq!(parse(":9745").unwrap().to_string(), ":9745");
        assert_eq!(parse("0.0.0.0:9795").unwrap().to_string(), "0.0.0.0:9795");
        assert_eq!(parse("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse("[::1]:9795").unwrap().to_string(), "[::1]:9795");
        assert_eq!(parse("[::]:9795").unwrap().to_string(), "[::]:9795");
        assert_eq!(
            parse("localhost:9795").unwrap().to_string(),
            "localhost:9795"
        );
        assert_eq!(
            parse("Exporter-1.example.com:80").unwrap().to_string(),
            "exporter-1.example.com:80"
        );
    }

    #[test]
    fn rejected_with_the_reason() {
        for (input, why) in [
            ("localhost", "no port"),
            ("9795", "no port"),
            (":http", "the port must be a number"),
            (":70000", "the port must be a number"),
            ("::1:9795", "an IPv6 address needs brackets"),
            ("[nope]:9795", "not an IPv6 address in brackets"),
            ("bad host:9795", "not an IP address or host name"),
            ("-x.example:9795", "not an IP address or host name"),
            ("1.2.3:9795", "not an IP address or host name"),
        ] {
            let e = parse(input).unwrap_err();
            assert!(e.contains(why), "{input}: {e}");
            assert!(e.contains(&format!("{input:?}")), "{input}: {e}");
        }
    }

    #[tokio::test]
    async fn binds_every_form() {
        for s in ["127.0.0.1:0", "localhost:0", ":0"] {
            let listener = parse(s).unwrap().bind().await.unwrap();
            let port = listener.local_addr().unwrap().port();
            assert_ne!(port, 0, "{s}");
            // Reachable where the healthcheck would look.
            let bound = ListenAddress {
                port,
                ..parse(s).unwrap()
            };
            let reached = bound
                .local_targets()
                .unwrap()
                .into_iter()
                .any(|a| std::net::TcpStream::connect(a).is_ok());
            assert!(reached, "{s}: nothing reachable at {bound}");
        }
    }

    #[test]
    fn wildcards_are_probed_on_loopback() {
        let t = parse("0.0.0.0:9795").unwrap().local_targets().unwrap();
        assert_eq!(t, vec![SocketAddr::from(([127, 0, 0, 1], 9795))]);
        let t = parse(":9795").unwrap().local_targets().unwrap();
        assert_eq!(t[0], SocketAddr::from(([127, 0, 0, 1], 9795)));
    }
}
