//! The real binary: logs, serves the demo source, and shuts down cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

/// Lines of the child's stderr, read on a thread so a silent child fails the
/// test after [`PATIENCE`] instead of hanging it.
fn lines(stderr: std::process::ChildStderr) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The exporter process; killed on drop, so a failed assertion never leaves it running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(format: &str) -> (Running, String, Receiver<String>) {
    spawn(&[
        "--source=demo",
        "--web.listen-address=127.0.0.1:0",
        "--poll.interval=100ms",
        &format!("--log.format={format}"),
    ])
}

/// Starts the binary with exactly `args` and no inherited `CRYPTO_MARKET_EXPORTER_*`
/// variable; returns it with its first log line and the rest of its stderr.
fn spawn(args: &[&str]) -> (Running, String, Receiver<String>) {
    spawn_with(
        Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter")),
        args,
    )
}

/// [`spawn`] under `ulimit -n {limit}` (the exporter alone, through `sh`).
fn spawn_with_nofile(limit: u32, args: &[&str]) -> (Running, String, Receiver<String>) {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        // Raising may fail under a lower hard limit: the test then runs with what there is.
        &format!("ulimit -n {limit} 2>/dev/null; exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_crypto-market-exporter"),
    ]);
    spawn_with(cmd, args)
}

fn spawn_with(mut cmd: Command, args: &[&str]) -> (Running, String, Receiver<String>) {
    for (k, _) in std::env::vars() {
        if k.starts_with("CRYPTO_MARKET_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let rx = lines(running.0.stderr.take().unwrap());
    let first = rx
        .recv_timeout(PATIENCE)
        .expect("no log line from the exporter");
    (running, first, rx)
}

fn address(line: &str) -> String {
    let start = line
        .find("127.0.0.1:")
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect()
}

fn get(addr: &str, path: &str) -> String {
    try_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn try_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn sigterm_and_wait(mut running: Running, stderr: Receiver<String>) -> String {
    let child = &mut running.0;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code.code(), Some(0), "clean exit on SIGTERM");
    stderr.iter().collect::<Vec<_>>().join("\n")
}

#[test]
fn logfmt_serve_and_sigterm() {
    let (child, first, stderr) = start("logfmt");
    assert!(
        first.contains("level=info") && first.contains("message=listening"),
        "{first}"
    );
    let addr = address(&first);
    let deadline = Instant::now() + PATIENCE;
    while !get(&addr, "/-/ready").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let healthcheck = |addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
            .args(["healthcheck", &format!("--web.listen-address={addr}")])
            .status()
            .unwrap()
            .success()
    };
    assert!(healthcheck(&addr), "healthcheck against a running exporter");
    let metrics = get(&addr, "/metrics");
    assert!(metrics.contains(
        "crypto_market_price{exchange=\"alphaex\",pair=\"btcusd\",base=\"btc\",quote=\"usd\"}"
    ));
    let rest = sigterm_and_wait(child, stderr);
    assert!(!healthcheck(&addr), "healthcheck after shutdown");
    assert!(rest.contains("received SIGTERM"), "{rest}");
    assert!(rest.contains("message=stopped"), "{rest}");
}

#[test]
fn json_logs() {
    let (child, first, stderr) = start("json");
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "listening");
    sigterm_and_wait(child, stderr);
}

/// Waits for a log line containing `what`; panics after [`PATIENCE`].
fn line_with(rx: &Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {what:?}"),
        }
    }
}

fn wait_ready(addr: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !get(addr, "/-/ready").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With no source configured the exporter polls Kraken (live, no key) and
/// becomes ready on its data; here Kraken is a fake on loopback.
#[test]
fn default_source_is_kraken_and_becomes_ready() {
    use crate::common::{FakeUpstream, Reply, fixture};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(FakeUpstream::start(Reply::Status {
        status: 404,
        headers: vec![],
        body: bytes::Bytes::from_static(b"{\"error\":[\"EGeneral:Unknown method\"]}"),
    }));
    up.route(
        "/0/public/AssetPairs",
        Reply::Json(fixture("kraken/asset_pairs.excerpt.2026-01.json")),
    );
    up.route(
        "/0/public/Ticker",
        Reply::Json(fixture("kraken/ticker.all.synthetic.json")),
    );
    let (child, first, stderr) = spawn(&[
        "--web.listen-address=127.0.0.1:0",
        &format!("--kraken.url={}", up.url),
    ]);
    assert!(first.contains("sources=kraken"), "{first}");
    let addr = address(&first);
    wait_ready(&addr);
    let metrics = get(&addr, "/metrics");
    assert!(
        metrics.contains("crypto_market_price{exchange=\"kraken\",pair=\"btcusdt\""),
        "{metrics}"
    );
    assert!(!up.hits_on("/0/public/Ticker").is_empty());
    sigterm_and_wait(child, stderr);
}

/// A first run that cannot reach upstream says what to try, and does not
/// claim to serve data it never had.
#[test]
fn unreachable_upstream_gets_a_hint_and_no_false_claim() {
    // A port that was free a moment ago: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (child, _first, stderr) = spawn(&[
        "--web.listen-address=127.0.0.1:0",
        &format!("--kraken.url=http://{closed}"),
        "--poll.interval=100ms",
        "--poll.max-backoff=100ms",
    ]);
    let failed = line_with(&stderr, "poll failed");
    assert!(failed.contains("no data to serve yet"), "{failed}");
    assert!(!failed.contains("last good data"), "{failed}");
    assert!(failed.contains("reason=connect"), "{failed}");
    assert!(failed.contains("--source=demo"), "{failed}");
    assert!(failed.contains("HTTPS_PROXY"), "{failed}");
    sigterm_and_wait(child, stderr);
}

/// Go exporters' listen address forms: `:PORT` and a host name.
#[test]
fn listens_on_go_style_addresses() {
    for form in [":{port}", "localhost:{port}"] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = form.replace("{port}", &port.to_string());
        let (child, first, stderr) = spawn(&[
            "--source=demo",
            &format!("--web.listen-address={listen}"),
            "--poll.interval=100ms",
        ]);
        assert!(first.contains("message=listening"), "{first}");
        let addr = format!("127.0.0.1:{port}");
        wait_ready(&addr);
        let probe = Command::new(env!("CARGO_BIN_EXE_crypto-market-exporter"))
            .args(["healthcheck", &format!("--web.listen-address={listen}")])
            .status()
            .unwrap();
        assert!(probe.success(), "healthcheck against {listen}");
        sigterm_and_wait(child, stderr);
    }
}

/// SIGTERM completes whatever clients do: a half-sent request, a download
/// the client stopped reading, and an idle keep-alive connection are all
/// closed after `--web.shutdown-timeout`, and the pollers stop at once.
#[test]
fn sigterm_completes_despite_clients_holding_connections() {
    use std::io::{Read, Write};
    let (child, first, stderr) = spawn(&[
        "--source=demo",
        "--demo.markets=20000",
        "--web.listen-address=127.0.0.1:0",
        "--poll.interval=1h",
        "--web.shutdown-timeout=1s",
    ]);
    let addr = address(&first);
    wait_ready(&addr);
    // Half a request: the headers never end.
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A download of megabytes that the client stops reading after a few bytes.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut some = [0u8; 16];
    stalled.read_exact(&mut some).unwrap();
    assert!(some.starts_with(b"HTTP/1.1 200"));
    // A complete exchange, then the connection left open and idle.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = [0u8; 12];
    idle.read_exact(&mut reply).unwrap();
    let started = Instant::now();
    let rest = sigterm_and_wait(child, stderr);
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    assert!(rest.contains("message=stopped"), "{rest}");
    drop((half, stalled, idle));
}

fn signal(running: &Running, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(running.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGHUP reloads the config file: new filters apply, an invalid file is
/// logged and the running configuration stays; SIGUSR1 is logged and ignored;
/// SIGQUIT shuts down cleanly.
#[test]
fn sighup_reloads_filters_and_survives_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("cme-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yml");
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    write("source: demo\nmarkets:\n  include_pairs: [\"btc*\"]\n");
    let (mut child, first, stderr) = spawn(&[
        &format!("--config.file={}", file.display()),
        "--web.listen-address=127.0.0.1:0",
        "--poll.interval=100ms",
    ]);
    let addr = address(&first);
    wait_ready(&addr);
    let metrics = get(&addr, "/metrics");
    assert!(metrics.contains("pair=\"btcusd\""));
    assert!(!metrics.contains("pair=\"ethusd\""));

    write("source: demo\nmarkets:\n  include_pairs: [\"eth*\"]\n");
    signal(&child, "HUP");
    let line = line_with(&stderr, "configuration reloaded");
    assert!(!line.contains("needs_restart"), "{line}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = get(&addr, "/metrics");
        if m.contains("pair=\"ethusd\"") && !m.contains("pair=\"btcusd\"") {
            break;
        }
        assert!(Instant::now() < deadline, "new filters never applied");
        std::thread::sleep(Duration::from_millis(50));
    }

    write("source: demo\nmarkets:\n  max: -1\n");
    signal(&child, "HUP");
    let line = line_with(&stderr, "reload failed");
    assert!(line.contains("markets.max"), "{line}");
    assert!(get(&addr, "/-/ready").starts_with("HTTP/1.1 200"));
    let m = get(&addr, "/metrics");
    assert!(m.contains("pair=\"ethusd\"") && !m.contains("pair=\"btcusd\""));

    // The flag's --poll.interval still beats the file; the demo's size changes.
    write(
        "source: demo\npoll:\n  interval: 1m\ndemo:\n  markets: 50\nmarkets:\n  include_pairs: [\"eth*\"]\n",
    );
    signal(&child, "HUP");
    let line = line_with(&stderr, "configuration reloaded");
    assert!(line.contains("needs_restart=demo"), "{line}");

    signal(&child, "USR1");
    line_with(&stderr, "received SIGUSR1; ignored");
    assert!(get(&addr, "/-/healthy").starts_with("HTTP/1.1 200"));

    signal(&child, "QUIT");
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Some(code) = child.0.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "no exit after SIGQUIT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code.code(), Some(0));
    line_with(&stderr, "received SIGQUIT");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Idle clients that exhaust the file-descriptor limit: the failed accepts
/// are logged with what to do and counted, and scrapes work again once the
/// clients leave.
#[test]
fn descriptor_exhaustion_is_logged_and_counted() {
    let (child, first, stderr) = spawn_with_nofile(
        48,
        &[
            "--source=demo",
            "--demo.markets=20",
            "--web.listen-address=127.0.0.1:0",
            "--poll.interval=100ms",
        ],
    );
    let addr = address(&first);
    wait_ready(&addr);
    let idle: Vec<_> = (0..60)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    let line = line_with(&stderr, "cannot accept a connection");
    assert!(line.contains("out of file descriptors"), "{line}");
    assert!(line.contains("LimitNOFILE"), "{line}");
    drop(idle);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = try_get(&addr, "/metrics").unwrap_or_default();
        let errors = m
            .lines()
            .find_map(|l| l.strip_prefix("crypto_market_exporter_accept_errors_total "))
            .and_then(|v| v.parse::<f64>().ok());
        if errors.is_some_and(|e| e > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "accept errors never counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm_and_wait(child, stderr);
}

/// Reads until the server closes the connection; true if it did within `PATIENCE`.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Slow clients (2,000 connections dripping a request's first line) and an
/// idle keep-alive connection are closed after `--web.header-read-timeout`,
/// while a normal scrape still succeeds meanwhile.
#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    use std::io::Write;
    let (child, first, stderr) = spawn_with_nofile(
        8192,
        &[
            "--source=demo",
            "--demo.markets=20",
            "--web.listen-address=127.0.0.1:0",
            "--poll.interval=1h",
            "--web.header-read-timeout=1s",
            "--web.max-connections=5000",
        ],
    );
    let addr = address(&first);
    wait_ready(&addr);
    let mut slow: Vec<std::net::TcpStream> = (0..2_000)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(slow.len() >= 200, "only {} connections opened", slow.len());
    for s in &mut slow {
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n");
    }
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Meanwhile, a normal scrape.
    assert!(get(&addr, "/metrics").starts_with("HTTP/1.1 200"));
    let open = slow.len();
    let closed = slow.iter_mut().map(closed_by_server).filter(|c| *c).count();
    assert_eq!(closed, open, "slow connections left open");
    assert!(
        closed_by_server(&mut idle),
        "idle keep-alive connection left open"
    );
    assert!(get(&addr, "/-/ready").starts_with("HTTP/1.1 200"));
    sigterm_and_wait(child, stderr);
}

/// Past `--web.max-connections`, new connections are closed at once, with a
/// warning and a count, and served again once others close.
#[test]
fn connections_past_the_cap_are_refused_logged_and_counted() {
    use std::io::Write;
    let (child, first, stderr) = spawn(&[
        "--source=demo",
        "--demo.markets=20",
        "--web.listen-address=127.0.0.1:0",
        "--poll.interval=100ms",
        "--web.max-connections=4",
    ]);
    let addr = address(&first);
    wait_ready(&addr);
    let mut held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    for s in &mut held {
        s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    }
    let deadline = Instant::now() + PATIENCE;
    let line = loop {
        let mut extra = std::net::TcpStream::connect(&addr).unwrap();
        let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            closed_by_server(&mut extra),
            "a fifth connection was served"
        );
        if let Ok(line) = stderr.recv_timeout(Duration::from_millis(100))
            && line.contains("connection limit reached")
        {
            break line;
        }
        assert!(Instant::now() < deadline, "no warning about the limit");
    };
    assert!(line.contains("max_connections=4"), "{line}");
    drop(held);
    // The server frees the slots once it sees those connections close; until
    // then a scrape may still be refused.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = try_get(&addr, "/metrics").unwrap_or_default();
        let rejected = m
            .lines()
            .find_map(|l| l.strip_prefix("crypto_market_exporter_connections_rejected_total "))
            .and_then(|v| v.parse::<f64>().ok());
        if rejected.is_some_and(|r| r >= 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "rejections never counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm_and_wait(child, stderr);
}

/// A planted API key appears nowhere: not in the logs (even when upstream
/// echoes it in an error body), not in /metrics, not on the landing page; and
/// a key file others can read gets a warning.
#[test]
fn the_api_key_never_leaks_and_a_loose_key_file_is_flagged() {
    use crate::common::{FakeUpstream, Reply};
    use std::os::unix::fs::PermissionsExt;
    const KEY: &str = "PLANTED-KEY-4f1c9e";
    let dir = std::env::temp_dir().join(format!("cme-leak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(FakeUpstream::start(Reply::Status {
        status: 401,
        headers: vec![],
        body: bytes::Bytes::from(format!(r#"{{"error":"invalid API key {KEY}"}}"#)),
    }));
    let (child, first, stderr) = spawn(&[
        "--source=cryptowatch",
        &format!("--cryptowatch.url={}", up.url),
        &format!("--cryptowatch.api-key-file={}", key_file.display()),
        "--web.listen-address=127.0.0.1:0",
        "--poll.interval=100ms",
        "--poll.max-backoff=100ms",
        "--cryptowatch.rate-limit.period=10ms",
    ]);
    assert!(
        first.contains("readable by other users") && first.contains("mode 644"),
        "{first}"
    );
    let listening = line_with(&stderr, "message=listening");
    let addr = address(&listening);
    let failed = line_with(&stderr, "poll failed");
    assert!(failed.contains("invalid API key <redacted>"), "{failed}");
    // The key went to upstream, as it should.
    assert!(
        up.hits()
            .iter()
            .any(|h| h.headers.get("x-cw-api-key").is_some_and(|v| v == KEY))
    );
    let pages = [get(&addr, "/metrics"), get(&addr, "/")];
    let rest = sigterm_and_wait(child, stderr);
    for text in [
        first.as_str(),
        listening.as_str(),
        failed.as_str(),
        rest.as_str(),
    ]
    .into_iter()
    .chain(pages.iter().map(String::as_str))
    {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
