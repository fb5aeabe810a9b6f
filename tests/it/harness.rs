//! What the end-to-end tests share: real binaries started and killed by their own
//! PID, scratch directories, the shipped Alertmanager config derived for loopback,
//! an SMTP sink and a webhook sink, and PromQL over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

pub const DEADLINE: Duration = Duration::from_secs(150);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed (by its own PID) when the test ends, pass or fail.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn binary(candidates: &[&'static str]) -> &'static str {
    for c in candidates {
        if Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
        {
            return c;
        }
    }
    panic!(
        "none of {candidates:?} found: install Debian's prometheus and prometheus-alertmanager (.ci/run does)"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cme-{name}-{}-{}",
            std::process::id(),
            unix_now() as u64
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CME_E2E_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
/// The shipped Alertmanager config, receivers and templates included, with short
/// waits, e-mail to the SMTP sink and Slack to the webhook sink.
pub fn derived_alertmanager(dir: &Path, slack: &str, smtp_port: u16) -> PathBuf {
    let text = std::fs::read_to_string(root().join("alertmanager/alertmanager.yml")).unwrap();
    let config = text
        .lines()
        .map(|l| {
            let key = l.trim_start();
            if key.starts_with("smtp_smarthost:") {
                format!("  smtp_smarthost: 127.0.0.1:{smtp_port}")
            } else if key.starts_with("group_wait:") {
                "  group_wait: 1s".to_owned()
            } else if key.starts_with("group_interval:") {
                "  group_interval: 5s".to_owned()
            } else if key.starts_with("repeat_interval:") {
                "  repeat_interval: 1h".to_owned()
            } else if key.starts_with("- /etc/alertmanager/templates/") {
                format!("  - {}/alertmanager/templates/*.tmpl", root().display())
            } else if key.starts_with("- api_url_file:") {
                format!("      - api_url: {slack}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        config.contains(&format!("api_url: {slack}")),
        "no slack receiver"
    );
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, config).unwrap();
    let check = Command::new(binary(&["amtool"]))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "derived config invalid: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    path
}

/// Every `wants` is in `text` (a message), or the test fails showing it.
pub fn assert_says(what: &str, text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "{what} lacks {want:?}:\n{text}");
    }
}

/// A minimal SMTP server: accepts every message (no TLS, no auth, as
/// `smtp_require_tls: false` allows) and keeps its decoded text.
pub async fn start_smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            g.lock().unwrap().push(decode_mail(&data.take().unwrap()));
                            let _ = write.write_all(b"250 OK\r\n").await;
                        } else {
                            body.push_str(line.strip_prefix('.').unwrap_or(&line));
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 end with .\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (port, got)
}

/// A message as a reader sees it: headers, then every part with quoted-printable
/// soft breaks and escapes undone.
pub fn decode_mail(raw: &str) -> String {
    let joined = raw.replace("=\n", "");
    let mut out = String::new();
    let mut bytes = Vec::new();
    let mut chars = joined.chars().peekable();
    while let Some(c) = chars.next() {
        let hex: String = chars.clone().take(2).collect();
        if c == '='
            && hex.len() == 2
            && hex
                .chars()
                .all(|h| h.is_ascii_hexdigit() && !h.is_ascii_lowercase())
        {
            bytes.push(u8::from_str_radix(&hex, 16).unwrap());
            chars.next();
            chars.next();
        } else {
            if !bytes.is_empty() {
                out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut bytes)));
            }
            out.push(c);
        }
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

pub type Notifications = Arc<Mutex<Vec<(String, Value)>>>;

pub async fn start_sink() -> (String, Notifications) {
    let got: Notifications = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/{receiver}",
        axum::routing::post(
            move |axum::extract::Path(receiver): axum::extract::Path<String>, body: String| {
                let g = g.clone();
                async move {
                    g.lock()
                        .unwrap()
                        .push((receiver, serde_json::from_str(&body).unwrap()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// POSTs an HTML form; the answer's body.
pub async fn post_form(client: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> String {
    // The URL type's query serializer is application/x-www-form-urlencoded.
    let body = reqwest::Url::parse_with_params("http://form/", fields)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_owned();
    client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GETs JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

pub async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Vec<Value> {
    let text = post_form(client, &format!("{prom}/api/v1/query"), &[("query", expr)]).await;
    let resp: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resp["status"], "success", "{expr}: {resp}");
    resp["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether `url` answers 2xx: a server's readiness endpoint (`/-/ready`, `/health`).
pub async fn ready(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

pub async fn wait_until<F, Fut>(what: &str, started: Instant, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if f().await {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `promtool tsdb create-blocks-from openmetrics HISTORY DATA`; it must
/// succeed. Returns what it printed (the blocks and their series counts).
pub fn create_blocks(history: &Path, data: &Path) -> String {
    let blocks = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(history)
        .arg(data)
        .output()
        .unwrap();
    assert!(
        blocks.status.success(),
        "{}",
        String::from_utf8_lossy(&blocks.stderr)
    );
    String::from_utf8_lossy(&blocks.stdout).into_owned()
}
