//! Test helpers: a fake upstream on 127.0.0.1:0 that replays recorded bodies
//! (or misbehaves on demand), and the exporter itself on 127.0.0.1:0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use crypto_market_exporter::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Whether the external tools a test needs (Debian's prometheus, promtool,
/// alertmanager, amtool, jsonnet) are on PATH. Missing ones skip the test with a
/// message, so a plain `cargo test` passes on a laptop; with
/// `CME_REQUIRE_TOOLS=1` (set by `.ci/test`) they fail it instead.
pub fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !std::process::Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{test}: needs {} (apt-get install prometheus prometheus-alertmanager jsonnet; .ci/run does)",
        missing.join(", ")
    );
    assert!(
        std::env::var_os("CME_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
        "{message}"
    );
    eprintln!("skipped {message}");
    false
}

/// Generous bound for "eventually": only a hung test ever waits this long.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn fixture(path: &str) -> Bytes {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    Bytes::from(std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display())))
}

/// A recorded summaries body with its `allowance.remaining` raised, so that
/// credit pacing (which the recording's 9.695 credits would trigger) does not
/// stretch a test's short poll interval to minutes.
pub fn unmetered(path: &str) -> Bytes {
    let text = String::from_utf8(fixture(path).to_vec()).unwrap();
    let i = text.rfind("\"remaining\":").expect("allowance.remaining");
    let end = i + text[i..].find(',').unwrap();
    Bytes::from(format!(
        "{}\"remaining\":1000000000{}",
        &text[..i],
        &text[end..]
    ))
}

/// What the fake upstream answers.
#[derive(Clone, Debug)]
pub enum Reply {
    Json(Bytes),
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// Never answers within any sane timeout.
    Hang,
    /// Answers by the request's URI (path and query): an upstream whose
    /// answer depends on its parameters (candle windows).
    Dynamic(Responder),
}

/// The function behind [`Reply::Dynamic`].
#[derive(Clone)]
pub struct Responder(pub Arc<dyn Fn(&axum::http::Uri) -> Reply + Send + Sync>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl Reply {
    pub fn dynamic(f: impl Fn(&axum::http::Uri) -> Reply + Send + Sync + 'static) -> Self {
        Reply::Dynamic(Responder(Arc::new(f)))
    }
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    pub uri: String,
    pub headers: HeaderMap,
}

pub struct FakeUpstream {
    pub url: String,
    reply: Arc<Mutex<Reply>>,
    /// Per-path replies (path without query); other paths get `reply`.
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeUpstream {
    pub async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, reply).await
    }

    pub async fn start_on(listener: TcpListener, reply: Reply) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let reply = Arc::new(Mutex::new(reply));
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (r, rt, h) = (reply.clone(), routes.clone(), hits.clone());
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let (r, rt, h) = (r.clone(), rt.clone(), h.clone());
            async move {
                h.lock().unwrap().push(Hit {
                    at: Instant::now(),
                    uri: req.uri().to_string(),
                    headers: req.headers().clone(),
                });
                let routed = rt.lock().unwrap().get(req.uri().path()).cloned();
                let mut reply = routed.unwrap_or_else(|| r.lock().unwrap().clone());
                if let Reply::Dynamic(f) = &reply {
                    reply = (f.0)(req.uri());
                }
                respond(reply).await
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            url,
            reply,
            routes,
            hits,
            stop: Some(stop),
        }
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Answers `path` (no query) with `reply` from now on.
    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    /// Requests whose path starts with `prefix`.
    pub fn hits_on(&self, prefix: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.uri.starts_with(prefix))
            .collect()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Json(body) => ([("content-type", "application/json")], body).into_response(),
        Reply::Status {
            status,
            headers,
            body,
        } => {
            let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Reply::Dynamic(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The exporter under test, serving on 127.0.0.1:0.
pub struct Exporter {
    pub url: String,
    /// From `--web.telemetry-path=`, else `/metrics`.
    metrics_path: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), crypto_market_exporter::Error>>>,
}

impl Exporter {
    pub async fn start(args: &[&str]) -> Self {
        let mut argv = vec!["crypto-market-exporter"];
        argv.extend_from_slice(args);
        let metrics_path = args
            .iter()
            .find_map(|a| a.strip_prefix("--web.telemetry-path="))
            .unwrap_or("/metrics")
            .to_owned();
        let config = Config::from_args_without_env(argv).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crypto_market_exporter::run(config, listener, async {
            let _ = stopped.await;
        }));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().no_gzip().build().unwrap();
        Self {
            url,
            metrics_path,
            client,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A plain-HTTP GET on a raw socket: whatever came back (empty if the
    /// server closed or reset the connection), for servers that speak TLS.
    pub async fn client_get_plain(&self, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://");
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            return String::new();
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if s.write_all(request.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get(&self.metrics_path, &[])
            .await
            .text()
            .await
            .unwrap()
    }

    /// Scrapes until `pred` holds; panics after [`PATIENCE`].
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let m = Metrics(self.metrics().await);
            if pred(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last scrape:\n{}",
                m.self_metrics()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A scraped text exposition.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series written exactly as `series` (name plus labels in exposition order).
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
            Some(rest.parse().unwrap())
        })
    }

    pub fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    }

    /// Counts sample lines of one metric name.
    pub fn count(&self, name: &str) -> usize {
        let prefix = format!("{name}{{");
        self.0.lines().filter(|l| l.starts_with(&prefix)).count()
    }

    pub fn failures(&self, reason: &str) -> f64 {
        self.failures_of("cryptowatch", reason)
    }

    pub fn failures_of(&self, source: &str, reason: &str) -> f64 {
        self.get(&format!(
            "crypto_market_exporter_poll_failures_total{{source=\"{source}\",reason=\"{reason}\"}}"
        ))
        .unwrap_or(0.0)
    }

    pub fn successes(&self) -> f64 {
        self.successes_of("cryptowatch")
    }

    pub fn successes_of(&self, source: &str) -> f64 {
        self.get(&format!(
            "crypto_market_exporter_polls_total{{source=\"{source}\",result=\"success\"}}"
        ))
        .unwrap_or(0.0)
    }

    pub fn up(&self) -> f64 {
        self.value("crypto_market_exporter_up{source=\"cryptowatch\"}")
    }

    /// A source's value of a per-source self-metric.
    pub fn of(&self, name: &str, source: &str) -> f64 {
        self.value(&format!(
            "crypto_market_exporter_{name}{{source=\"{source}\"}}"
        ))
    }

    pub fn rejected(&self, source: &str, reason: &str) -> f64 {
        self.value(&format!(
            "crypto_market_exporter_values_rejected_total{{source=\"{source}\",reason=\"{reason}\"}}"
        ))
    }

    /// A gauge of a market that carries base/quote labels.
    pub fn labelled(&self, metric: &str, exchange: &str, base: &str, quote: &str) -> Option<f64> {
        self.get(&format!(
            "{metric}{{exchange=\"{exchange}\",pair=\"{base}{quote}\",base=\"{base}\",quote=\"{quote}\"}}"
        ))
    }

    pub fn price(&self, exchange: &str, pair: &str) -> Option<f64> {
        self.get(&format!(
            "crypto_market_price{{exchange=\"{exchange}\",pair=\"{pair}\"}}"
        ))
    }

    pub fn self_metrics(&self) -> String {
        self.0
            .lines()
            .filter(|l| l.starts_with("crypto_market_exporter_"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
