//! The HTTP surface: content negotiation, gzip, probes, landing page, errors,
//! and the golden exposition (regenerate with `UPDATE_GOLDEN=1 cargo test --test it http::`).

use std::io::Read;
use std::path::PathBuf;

use crate::common::{Exporter, FakeUpstream, Reply, fixture};

const EXCERPT: &str = "cryptowatch/markets_summaries.excerpt.2023-08-19.json";

async fn exporter_on_excerpt(extra: &[&str]) -> (FakeUpstream, Exporter) {
    let upstream = FakeUpstream::start(Reply::Json(fixture(EXCERPT))).await;
    // The pair listing names base/quote for half of the excerpt's markets.
    upstream.route(
        "/pairs",
        Reply::Json(fixture("cryptowatch/pairs.synthetic.json")),
    );
    let url = format!("--cryptowatch.url={}", upstream.url);
    let mut args = vec![url.as_str(), "--poll.interval=1h"];
    if !extra.iter().any(|a| a.starts_with("--source")) {
        args.push("--source=cryptowatch");
    }
    args.extend_from_slice(extra);
    let exporter = Exporter::start(&args).await;
    (upstream, exporter)
}

/// Values that depend on the clock or the machine's speed are set to 0 so
/// the golden file is stable; what remains is still a valid exposition.
fn normalize(body: &str) -> String {
    const VOLATILE: [&str; 6] = [
        "crypto_market_exporter_upstream_request_duration_seconds_bucket{source=\"cryptowatch\",le=\"0",
        "crypto_market_exporter_upstream_request_duration_seconds_sum",
        "crypto_market_exporter_last_success_timestamp_seconds",
        "crypto_market_exporter_rate_limiter_wait_seconds_total",
        "crypto_market_exporter_next_poll_delay_seconds",
        "crypto_market_exporter_last_poll_duration_seconds",
    ];
    let mut out = String::new();
    for line in body.lines() {
        let volatile = VOLATILE.iter().any(|v| line.starts_with(v))
            || (line
                .starts_with("crypto_market_exporter_upstream_request_duration_seconds_bucket")
                && !line.contains("+Inf"));
        match line.rsplit_once(' ') {
            Some((series, _)) if volatile && !line.starts_with('#') => {
                out.push_str(series);
                out.push_str(" 0");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.replace(
        concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""),
        "version=\"VERSION\"",
    )
}

fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        let new = path.with_extension("new");
        std::fs::write(&new, actual).unwrap();
        panic!(
            "{} differs from the golden file; got {} (run with UPDATE_GOLDEN=1 to accept)",
            path.display(),
            new.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_exposition_in_both_formats() {
    let (_upstream, exporter) = exporter_on_excerpt(&[]).await;
    exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;

    let text = exporter.get("/metrics", &[]).await;
    assert_eq!(
        text.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    check_golden("metrics.txt", &normalize(&text.text().await.unwrap()));

    let om = exporter
        .get(
            "/metrics",
            &[(
                "accept",
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.4",
            )],
        )
        .await;
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = om.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"));
    check_golden("metrics.openmetrics.txt", &normalize(&body));
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_when_accepted_identical_content() {
    let (_upstream, exporter) = exporter_on_excerpt(&[]).await;
    exporter
        .wait_for("first poll", |m| m.successes() >= 1.0)
        .await;
    let plain = exporter.metrics().await;
    for (accept, fmt_check) in [
        ("text/plain", false),
        ("application/openmetrics-text", true),
    ] {
        let resp = exporter
            .get(
                "/metrics",
                &[("accept-encoding", "gzip"), ("accept", accept)],
            )
            .await;
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        assert_eq!(resp.headers()["vary"], "Accept, Accept-Encoding");
        let bytes = resp.bytes().await.unwrap();
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped.ends_with("# EOF\n"), fmt_check);
        if !fmt_check {
            assert_eq!(unzipped, plain);
        }
    }
    let resp = exporter
        .get("/metrics", &[("accept-encoding", "gzip;q=0, identity")])
        .await;
    assert!(resp.headers().get("content-encoding").is_none());
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        len,
        resp.bytes().await.unwrap().len(),
        "exact Content-Length"
    );
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_landing_page_and_errors() {
    // An upstream that never answers well: the exporter is alive but not ready.
    let upstream = FakeUpstream::start(Reply::Json(bytes::Bytes::from_static(b"nope"))).await;
    let exporter = Exporter::start(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", upstream.url),
        "--web.telemetry-path=/custom/metrics",
        "--poll.interval=1h",
    ])
    .await;
    let healthy = exporter.get("/-/healthy", &[]).await;
    assert_eq!(healthy.status(), 200);
    let ready = exporter.get("/-/ready", &[]).await;
    assert_eq!(ready.status(), 503);

    let landing = exporter.get("/", &[]).await;
    assert_eq!(landing.status(), 200);
    assert!(
        landing
            .text()
            .await
            .unwrap()
            .contains("<a href=\"/custom/metrics\">")
    );

    let missing = exporter.get("/metrics", &[]).await;
    assert_eq!(missing.status(), 404, "telemetry path moved");
    assert_eq!(missing.text().await.unwrap(), "404 not found: /metrics\n");

    let m = exporter
        .wait_for("the failed first poll", |m| {
            m.failures("invalid_response") >= 1.0
        })
        .await;
    assert_eq!(m.failures("invalid_response"), 1.0);
    assert_eq!(m.count("crypto_market_price"), 0);
    assert_eq!(
        m.value("crypto_market_exporter_up{source=\"cryptowatch\"}"),
        0.0
    );

    let post = reqwest::Client::new()
        .post(format!("{}/custom/metrics", exporter.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_source_needs_no_network() {
    let exporter = Exporter::start(&[
        "--source=demo",
        "--demo.markets=250",
        "--poll.interval=50ms",
    ])
    .await;
    let m = exporter
        .wait_for("two demo polls", |m| {
            m.get("crypto_market_exporter_polls_total{source=\"demo\",result=\"success\"}")
                .unwrap_or(0.0)
                >= 2.0
        })
        .await;
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"demo\"}"),
        250.0
    );
    assert_eq!(m.count("crypto_market_price"), 250);
    assert!(
        m.labelled("crypto_market_price", "alphaex", "btc", "usd")
            .unwrap()
            > 1000.0
    );
    assert!(!m.0.contains("credits"), "demo has no credits");
    assert_eq!(exporter.get("/-/ready", &[]).await.status(), 200);
    exporter.stop().await;
}

/// Waits until the cryptowatch and demo sources have each had a successful poll.
async fn both_sources_polled(exporter: &Exporter) -> crate::common::Metrics {
    exporter
        .wait_for("both sources", |m| {
            m.successes() >= 1.0
                && m.get("crypto_market_exporter_polls_total{source=\"demo\",result=\"success\"}")
                    .unwrap_or(0.0)
                    >= 1.0
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sources_share_one_valid_exposition() {
    let (_upstream, exporter) =
        exporter_on_excerpt(&["--source=cryptowatch,demo", "--demo.markets=20"]).await;
    let m = both_sources_polled(&exporter).await;
    // Each family appears once, with both sources' samples under it.
    for name in [
        "crypto_market_price",
        "crypto_market_volume_24h",
        "crypto_market_exporter_up",
    ] {
        let headers =
            m.0.lines()
                .filter(|l| *l == format!("# TYPE {name} gauge"))
                .count();
        assert_eq!(headers, 1, "{name}");
    }
    assert_eq!(m.count("crypto_market_price"), 11 + 20);
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"demo\"}"),
        20.0
    );
    assert_eq!(
        m.value("crypto_market_exporter_markets{source=\"cryptowatch\"}"),
        12.0
    );
    exporter.stop().await;
}

// ---- --web.config.file: TLS, client certificates, basic auth, headers ----

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

/// Writes a web config (cert paths absolute) into a fresh temp dir.
fn web_config(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cme-web-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        body.replace("TLS_DIR", &tls_dir().display().to_string()),
    )
    .unwrap();
    path
}

/// One HTTP/1.1 GET over TLS (rustls, blocking), trusting the test CA.
/// Returns the whole response, or the TLS/IO error.
fn tls_get(
    addr: &str,
    path: &str,
    client_cert: bool,
    auth: Option<&str>,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Write;
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(tls_dir().join("ca.crt")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if client_cert {
        let chain = vec![CertificateDer::from_pem_file(tls_dir().join("client.crt")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(tls_dir().join("client.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(crate::common::PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = auth
        .map(|a| {
            use base64::Engine as _;
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        })
        .unwrap_or_default();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(_) if !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The demo exporter behind `--web.config.file=file`, and its host:port.
async fn demo_with_web_config(file: &std::path::Path) -> (Exporter, String) {
    let exporter = Exporter::start(&[
        "--source=demo",
        "--poll.interval=1h",
        &format!("--web.config.file={}", file.display()),
    ])
    .await;
    let addr = exporter.url.trim_start_matches("http://").to_owned();
    (exporter, addr)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_basic_auth_and_headers() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let file = web_config(
        "auth",
        &format!(
            "tls_server_config:\n  cert_file: TLS_DIR/server.crt\n  key_file: TLS_DIR/server.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    );
    let (exporter, addr) = demo_with_web_config(&file).await;
    let get = |path: &'static str, auth: Option<&'static str>| {
        let addr = addr.clone();
        blocking(move || tls_get(&addr, path, false, auth))
    };
    // Wait for the first poll, authenticated.
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    while !get("/-/ready", Some("prometheus:s3cret"))
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200")
    {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let none = get("/metrics", None).await.unwrap();
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(
        none.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{none}"
    );
    assert!(
        none.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{none}"
    );
    let wrong = get("/metrics", Some("prometheus:guess")).await.unwrap();
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let unknown = get("/metrics", Some("nobody:s3cret")).await.unwrap();
    assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");
    let ok = get("/metrics", Some("prometheus:s3cret")).await.unwrap();
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "{}",
        &ok[..ok.len().min(300)]
    );
    assert!(ok.contains("crypto_market_price{"));
    assert!(ok.to_ascii_lowercase().contains("x-frame-options: deny"));
    // As with exporter-toolkit, the probes need credentials too.
    let healthy = get("/-/healthy", None).await.unwrap();
    assert!(healthy.starts_with("HTTP/1.1 401"), "{healthy}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = exporter.client_get_plain("/metrics").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    // The container healthcheck works with TLS and auth on: 401 means alive.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
        .args([
            "healthcheck",
            &format!("--web.listen-address={addr}"),
            &format!("--web.config.file={}", file.display()),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "healthcheck with TLS and basic auth");
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let file = web_config(
        "mtls",
        "tls_server_config:\n  cert_file: TLS_DIR/server.crt\n  key_file: TLS_DIR/server.key\n\
         \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: TLS_DIR/ca.crt\n",
    );
    let (exporter, addr) = demo_with_web_config(&file).await;
    let a = addr.clone();
    let with_cert = blocking(move || tls_get(&a, "/-/healthy", true, None)).await;
    assert!(
        with_cert
            .as_deref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "{with_cert:?}"
    );
    let a = addr.clone();
    let without = blocking(move || tls_get(&a, "/-/healthy", false, None)).await;
    assert!(
        without.as_ref().is_err()
            || without
                .as_deref()
                .is_ok_and(|r| !r.starts_with("HTTP/1.1 200")),
        "served without a client certificate: {without:?}"
    );
    exporter.stop().await;
}

// ---- --web.shards: slices of /metrics ----

/// `/metrics?shard=i&shards=n` serves each market in exactly one slice, all of a
/// pair's exchanges together, the self-metrics in slice 0 only; a query that does
/// not match the exporter's slices is a 400 naming the culprit.
#[tokio::test]
async fn slices_of_metrics_partition_the_markets() {
    let (_upstream, exporter) = exporter_on_excerpt(&[
        "--source=cryptowatch,demo",
        "--demo.markets=40",
        "--web.shards=3",
    ])
    .await;
    let m = both_sources_polled(&exporter).await;
    let markets = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|l| {
                l.starts_with("crypto_market_") && !l.starts_with("crypto_market_exporter_")
            })
            .map(str::to_owned)
            .collect()
    };
    let mut all = markets(&m.0);
    assert!(all.len() > 100, "{}", all.len());
    let mut union = Vec::new();
    let mut slice_of_pair = std::collections::HashMap::new();
    for i in 0..3 {
        let response = exporter
            .get(&format!("/metrics?shard={i}&shards=3"), &[])
            .await;
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        assert_eq!(
            body.contains("crypto_market_exporter_up{"),
            i == 0,
            "slice {i}"
        );
        for line in markets(&body) {
            let pair = line
                .split("pair=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            assert_eq!(*slice_of_pair.entry(pair).or_insert(i), i, "{line}");
            union.push(line);
        }
    }
    all.sort();
    union.sort();
    assert_eq!(union, all);
    for (query, message) in [
        (
            "shard=0&shards=4",
            "shards=4, but this exporter serves 3 slice(s) (--web.shards); scrape with shards=3",
        ),
        (
            "shard=3&shards=3",
            "shard=3 is out of range: slices are 0 to 2",
        ),
        ("shard=0", "query parameter \"shard\" needs \"shards\" too"),
    ] {
        let response = exporter.get(&format!("/metrics?{query}"), &[]).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.text().await.unwrap(), format!("{message}\n"));
    }
    exporter.stop().await;
}
