//! `--web.config.file`: TLS (with client certificates), basic auth and
//! response headers, in the file format of the Prometheus exporter-toolkit,
//! so that the files users already keep for node_exporter work here too
//! (docs/configuration.md lists what is supported).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDto {
    tls_server_config: Option<TlsDto>,
    http_server_config: Option<HttpDto>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsDto {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpDto {
    /// Accepted for compatibility; this exporter serves HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers exporter-toolkit lets a web config set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
];

/// A loaded, validated web config.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where it came from and what it said: a reload compares these.
    source: (PathBuf, String),
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl PartialEq for WebConfig {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl WebConfig {
    /// Reads and validates `path`; the error is one line naming the key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, text)
    }

    /// Validates the text of a web config read from `path` (which anchors
    /// relative certificate paths).
    pub fn parse(path: &Path, text: String) -> Result<Self, String> {
        let dto: FileDto = if text.trim().is_empty() {
            FileDto::default()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| {
                let msg = e.without_snippet().to_string();
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            })?
        };
        // Relative paths are relative to the web config file, as in exporter-toolkit.
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = dto
            .tls_server_config
            .map(|t| tls_config(t, base))
            .transpose()?
            .map(Arc::new);
        let auth = dto
            .basic_auth_users
            .filter(|u| !u.is_empty())
            .map(BasicAuth::new)
            .transpose()?
            .map(Arc::new);
        let mut headers = Vec::new();
        for (name, value) in dto
            .http_server_config
            .and_then(|h| h.headers)
            .unwrap_or_default()
        {
            let Some(allowed) = ALLOWED_HEADERS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&name))
            else {
                return Err(format!(
                    "http_server_config.headers: {name:?} cannot be set (allowed: {})",
                    ALLOWED_HEADERS.join(", ")
                ));
            };
            let value = HeaderValue::from_str(&value).map_err(|_| {
                format!("http_server_config.headers.{name}: invalid value {value:?}")
            })?;
            let name = HeaderName::from_bytes(allowed.to_ascii_lowercase().as_bytes())
                .map_err(|e| format!("http_server_config.headers.{name}: {e}"))?;
            headers.push((name, value));
        }
        Ok(Self {
            source: (path.to_owned(), text),
            tls,
            auth,
            headers,
        })
    }
}

fn tls_version(key: &str, v: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {v} is not supported (TLS 1.2 and 1.3 only)"
        )),
        _ => Err(format!(
            "tls_server_config.{key}: unknown version {v:?} (expected TLS12 or TLS13)"
        )),
    }
}

fn tls_config(t: TlsDto, base: &Path) -> Result<rustls::ServerConfig, String> {
    let path = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let cert_file = t
        .cert_file
        .map(path)
        .ok_or("tls_server_config.cert_file: required for TLS")?;
    let key_file = t
        .key_file
        .map(path)
        .ok_or("tls_server_config.key_file: required for TLS")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|i| i.collect())
        .map_err(|e| format!("tls_server_config.cert_file: {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file: {}: no certificate in it",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| format!("tls_server_config.key_file: {}: {e}", key_file.display()))?;

    // Ordered oldest first: the index is the version's rank.
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    let rank =
        |v: &rustls::SupportedProtocolVersion| all.iter().position(|a| a.version == v.version);
    let min = rank(tls_version(
        "min_version",
        t.min_version.as_deref().unwrap_or("TLS12"),
    )?);
    let max = rank(tls_version(
        "max_version",
        t.max_version.as_deref().unwrap_or("TLS13"),
    )?);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) >= min && Some(*i) <= max)
        .map(|(_, v)| v)
        .collect();
    if versions.is_empty() {
        return Err("tls_server_config.min_version: is above max_version".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let file = t.client_ca_file.clone().map(path).ok_or_else(|| {
            format!("tls_server_config.client_ca_file: required with client_auth_type {auth_type}")
        })?;
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&file)
            .map_err(|e| format!("tls_server_config.client_ca_file: {}: {e}", file.display()))?
        {
            let cert = cert.map_err(|e| {
                format!("tls_server_config.client_ca_file: {}: {e}", file.display())
            })?;
            store.add(cert).map_err(|e| {
                format!("tls_server_config.client_ca_file: {}: {e}", file.display())
            })?;
        }
        Ok(Arc::new(store))
    };
    let verifier = |optional: bool| -> Result<_, String> {
        let builder =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots()?, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))
    };
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        "VerifyClientCertIfGiven" => builder.with_client_cert_verifier(verifier(true)?),
        "RequireAndVerifyClientCert" => builder.with_client_cert_verifier(verifier(false)?),
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type: {auth_type} accepts certificates nobody verified; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: unknown {other:?} (expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ));
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `basic_auth_users`: user name → bcrypt hash. Verifying bcrypt costs tens
/// of milliseconds by design, so a successful check is remembered (as a
/// SHA-256 of user, hash and password, never the password) and a scraper that
/// sends the same credentials every scrape pays it once.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<Vec<[u8; 32]>>,
}

/// Remembered successful logins at most; the oldest is forgotten first.
const CACHE: usize = 64;

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!("basic_auth_users: user name {user:?} contains ':'"));
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("basic_auth_users.{user}: not a bcrypt hash ({e})"))?;
        }
        Ok(Self {
            users,
            verified: Mutex::new(Vec::new()),
        })
    }

    /// Whether an `Authorization` header value names a user with the right
    /// password. Runs bcrypt: call it off the async workers.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        use base64::Engine as _;
        let Some(encoded) = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        // An unknown user costs a bcrypt check too, so response times do not
        // tell which user names exist.
        const DUMMY: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
        let hash = self.users.get(user).map_or(DUMMY, String::as_str);
        let fingerprint: [u8; 32] = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [
                user.as_bytes(),
                b"\0",
                hash.as_bytes(),
                b"\0",
                password.as_bytes(),
            ] {
                ctx.update(part);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.contains(&fingerprint) {
            return true;
        }
        drop(cache);
        let ok = self.users.contains_key(user) && bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE {
                cache.remove(0);
            }
            cache.push(fingerprint);
        }
        ok
    }
}
