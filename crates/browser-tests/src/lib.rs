//! Drives a real headless Chromium from Rust tests, through chromedriver and
//! the W3C WebDriver protocol, so the lessons' browser pages are checked the
//! way a learner uses them: open the page, post an update or send a message,
//! see it appear.
//!
//! WebDriver is JSON over HTTP: `POST /session` starts a browser, `POST
//! /session/{id}/url` opens a page, `POST /session/{id}/execute/sync` runs a
//! script and returns its result. That is all these tests need, so the client
//! here is a few small functions over the harness's raw HTTP client rather
//! than a WebDriver crate.
//!
//! The tests:
//!
//! * `tests/smoke.rs`: the driver itself (a page served from the test, a
//!   click, the text read back).
//! * `tests/pages.rs`: one test per lesson page served at `/`, by
//!   short-polling, long-polling, sse, websocket-chat and push-notifications.
//!   Each starts the lesson's real server in-process on 127.0.0.1:0, opens
//!   the page, posts an update through the page's own form (the chat test
//!   also uses a second tab and a Rust client from `harness::ws`), and waits
//!   for it to appear. Each checks one thing true only of its technique,
//!   from the server's own counters: repeated polls answered `304`, a poll
//!   held open, one `EventSource` stream for every update, messages crossing
//!   between clients, events delivered only to their subscribers.
//! * `tests/book.rs`: the chapters as an mdBook. It builds `docs/`, serves
//!   the repository on 127.0.0.1:0, opens every page and checks that each
//!   Mermaid diagram became an SVG, that nothing logged an error, and that
//!   every internal link and anchor resolves. It also needs `mdbook` and
//!   `mdbook-mermaid`; [`book`] is the book's link preprocessor.
//!
//! Every wait is bounded ([`BROWSER_DEADLINE`], or the test's own), so a
//! broken page fails with what the page showed instead of hanging. Each test
//! starts its own chromedriver on a free port with a fresh profile, so they
//! run in parallel, and dropping the [`Browser`] ends the session and
//! chromedriver, so no browser outlives its test.
//!
//! The tests need `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver` packages). They are `#[ignore]`d so that
//! `cargo test --workspace` on a machine without a browser skips them and
//! says why; run them with `just browser`, which is
//! `cargo test -p browser-tests -- --ignored`. CI installs Chromium and runs
//! them every time.

pub mod book;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where Debian's chromium package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's chromium-driver package puts chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long to wait for chromedriver to start answering, and for a page
/// condition to become true. Chromium's first start on a cold CI machine takes
/// a few seconds.
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(30);

/// The flags every test browser gets. Headless, no sandbox (CI runs as root,
/// where Chromium's sandbox refuses to start), no GPU, and none of the
/// background traffic to Google's servers that this offline machine refuses.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
];

/// Whether this machine has what the browser tests need; if not, the reason.
pub fn missing() -> Option<String> {
    for path in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(path).exists() {
            return Some(format!(
                "{path} not found: install Debian's chromium and chromium-driver packages \
                 (apt-get install chromium chromium-driver), then run `just browser`"
            ));
        }
    }
    None
}

/// A running chromedriver and one browser session. Dropping it ends the
/// session and kills chromedriver (and with it the browser).
#[derive(Debug)]
pub struct Browser {
    _driver: Driver,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// with a fresh, empty profile. Panics with a clear message if the
    /// browser is missing or does not start.
    pub async fn start() -> Self {
        Self::start_with_args(&[]).await
    }

    /// Like [`Browser::start`], with `extra` Chromium flags after
    /// [`CHROMIUM_ARGS`] (the TLS test passes the one certificate to trust).
    pub async fn start_with_args(extra: &[String]) -> Self {
        if let Some(why) = missing() {
            panic!("{why}");
        }
        let port = free_port().expect("a free port for chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // In a guard from the start, so a panic below still kills it.
        let driver = Driver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver"),
        );
        let profile = TempDir::new().expect("a fresh profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        args.extend(extra.iter().cloned());
        // chromedriver takes a moment to listen; ask its status until it is ready.
        let started = Instant::now();
        loop {
            if let Ok(v) = request(addr, "GET", "/status", None).await
                && v["value"]["ready"] == json!(true)
            {
                break;
            }
            assert!(
                started.elapsed() < BROWSER_DEADLINE,
                "chromedriver did not start in time: {:?}",
                request(addr, "GET", "/status", None).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            // Keep the page's console, so a test can ask for its errors.
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = request(addr, "POST", "/session", Some(caps)).await.expect("POST /session");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_owned();
        Self { _driver: driver, addr, session, _profile: profile }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let v = request(self.addr, method, &full, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {full}: {e}"));
        if let Some(err) = v["value"]["error"].as_str() {
            panic!("{method} {full}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    /// Opens `url` in the current tab and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments[0]`... are `args`) in the
    /// page and returns what it returns.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// What the browser logged since the last call (the pages' console and
    /// failed loads), as `(level, message)`: chromedriver's log endpoint,
    /// kept because the session asks for `goog:loggingPrefs`.
    pub async fn log(&self) -> Vec<(String, String)> {
        let v = self.call("POST", "/se/log", Some(json!({"type": "browser"}))).await;
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                        (field("level"), field("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The page's visible text (`document.body.innerText`).
    pub async fn text(&self) -> String {
        let v = self.eval("return document.body ? document.body.innerText : '';", json!([])).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the page's text contains `needle`, or panics with the text
    /// it had.
    pub async fn wait_for_text(&self, needle: &str) {
        let started = Instant::now();
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return;
            }
            assert!(
                started.elapsed() < BROWSER_DEADLINE,
                "the page never showed {needle:?}; it shows:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets the value of the form field matched by `selector` (as if typed).
    pub async fn fill(&self, selector: &str, value: &str) {
        let ok = self
            .eval(
                "const e = document.querySelector(arguments[0]); if (!e) return false; \
                 e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true})); \
                 return true;",
                json!([selector, value]),
            )
            .await;
        assert_eq!(ok, json!(true), "no element matches {selector:?}");
    }

    /// Clicks the element matched by `selector`, through WebDriver's own
    /// click (which scrolls it into view and checks it can be clicked).
    pub async fn click(&self, selector: &str) {
        let found = self
            .call("POST", "/element", Some(json!({"using": "css selector", "value": selector})))
            .await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element matches {selector:?}"))
            .to_owned();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Opens a new tab and switches to it; returns the previous tab's handle.
    pub async fn new_tab(&self) -> String {
        let previous = self.call("GET", "/window", None).await;
        let tab = self.call("POST", "/window/new", Some(json!({"type": "tab"}))).await;
        let handle = tab["handle"].clone();
        self.call("POST", "/window", Some(json!({"handle": handle}))).await;
        previous.as_str().unwrap_or_default().to_owned()
    }

    /// Switches to the tab with `handle`.
    pub async fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", Some(json!({"handle": handle}))).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session is what closes Chromium; killing chromedriver
        // alone would leave the browser running as an orphan. Drop cannot
        // await, so this one call is a blocking one, with a short deadline.
        let _ = end_session_blocking(self.addr, &self.session);
        // Then `self.driver` drops, which kills chromedriver.
    }
}

/// The chromedriver process; killed (and reaped) on drop.
#[derive(Debug)]
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `DELETE /session/{id}`, blocking, waiting at most a few seconds for the
/// first bytes of the answer (by then the browser is closing).
fn end_session_blocking(addr: SocketAddr, session: &str) -> io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n")?;
    let mut first = [0u8; 64];
    s.read(&mut first).map(drop)
}

/// One WebDriver call: JSON in, JSON out.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> io::Result<Value> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Starting a browser can take several seconds on a cold machine, longer
    // than the harness client's per-read timeout; so read the answer here,
    // under the browser deadline. chromedriver keeps the connection open even
    // after `Connection: close`, so the body is framed by Content-Length (or
    // chunked), never by the close.
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(invalid("chromedriver closed before a whole answer"));
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(body) = complete_body(&raw)? {
                return Ok(body);
            }
        }
    };
    let body = tokio::time::timeout(BROWSER_DEADLINE, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "chromedriver did not answer"))??;
    serde_json::from_slice(&body).map_err(|e| invalid(&e.to_string()))
}

/// The body of the response in `raw`, once all of it has arrived.
fn complete_body(raw: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = harness::http::parse_head(&raw[..split])?;
    let rest = &raw[split..];
    if head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        // Complete once the last (zero-size) chunk and its blank line are in.
        return rest.ends_with(b"0\r\n\r\n").then(|| dechunk(rest)).transpose();
    }
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| invalid("chromedriver's answer has no length"))?;
    Ok((rest.len() >= len).then(|| rest[..len].to_vec()))
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| invalid("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or_else(|| invalid("short chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh, empty directory removed on drop: the browser profile.
#[derive(Debug)]
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("browser-tests-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
