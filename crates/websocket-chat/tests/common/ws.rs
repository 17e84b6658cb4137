//! What the tests of every WebSocket lesson share: they all run on
//! `websocket_chat::conn`, so they check its promises the same way. Lesson
//! 9's tests include this file too (`#[path]` in their `common/mod.rs`), so
//! there is one copy of it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use harness::ws::{Frame, RawWs, SAMPLE_KEY, opcode};
use harness::{CancellationToken, TaskServer};
use tokio::net::TcpListener;
use websocket_chat::conn::Limits;

/// How long a test waits for any one thing the server should do at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// The close grace the tests run with: the server waits only briefly for a
/// client to answer its close frame (test clients that are not reading never
/// will, and the default grace would only make the tests slow).
pub const QUICK_CLOSE_GRACE: Duration = Duration::from_millis(300);

/// `limits` with [`QUICK_CLOSE_GRACE`].
pub fn quick(limits: Limits) -> Limits {
    Limits { close_grace: QUICK_CLOSE_GRACE, ..limits }
}

/// `limits` with a heartbeat fast enough to watch: a ping every 50 ms, and
/// a close after 200 ms without a word from the peer.
pub fn fast_heartbeat(limits: Limits) -> Limits {
    Limits {
        ping_interval: Duration::from_millis(50),
        pong_timeout: Duration::from_millis(200),
        ..limits
    }
}

/// The URL of a lesson's WebSocket.
pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// A lesson's server, on a free loopback port.
pub type Server = TaskServer<std::io::Result<()>>;

/// Runs `serve(app, listener, token)` on a free loopback port, and hands
/// back the server and `app` (a cheap clone), to read its counters.
pub async fn start<T, F, Fut>(app: T, serve: F) -> (Server, T)
where
    T: Clone,
    F: FnOnce(T, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let server_app = app.clone();
    let server = TaskServer::start(move |listener, token| serve(server_app, listener, token))
        .await
        .expect("bind a loopback port");
    (server, app)
}

/// The upgrade request a browser would send for `path` from a page at
/// `origin` (none: not a browser), to a server it knows as `host`.
pub fn upgrade_from(host: &str, path: &str, origin: Option<&str>) -> String {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// The status a handshake on `/ws` from `origin` gets (101 if upgraded).
pub async fn handshake_status(addr: SocketAddr, host: &str, origin: Option<&str>) -> u16 {
    let req = upgrade_from(host, "/ws", origin);
    harness::http::exchange(addr, req.as_bytes()).await.expect("an answer to the upgrade").status
}

/// RFC 6455 says a receiver that sees a frame break the protocol fails the
/// connection, and 1002 is the close code for it. Each case is one frame a
/// well-behaved client never sends.
pub fn protocol_violations() -> Vec<(&'static str, Vec<u8>)> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let unmasked = Frame { mask: None, ..Frame::client(opcode::TEXT, b"hi", key) };
    let mut rsv = Frame::client(opcode::TEXT, b"hi", key).encode();
    rsv[0] |= 0x40; // RSV1, with no extension negotiated to give it a meaning
    let fragmented_ping = Frame { fin: false, ..Frame::client(opcode::PING, b"p", key) };
    vec![
        ("an unmasked client frame", unmasked.encode()),
        ("RSV1 set", rsv),
        ("reserved data opcode 0x3", Frame::client(0x3, b"hi", key).encode()),
        ("reserved control opcode 0xB", Frame::client(0xB, b"", key).encode()),
        ("a ping of 126 bytes", Frame::client(opcode::PING, &[b'p'; 126], key).encode()),
        ("a fragmented ping", fragmented_ping.encode()),
        ("a continuation with nothing to continue", {
            Frame::client(opcode::CONTINUATION, b"x", key).encode()
        }),
        ("a close frame with a 1-byte payload", Frame::client(opcode::CLOSE, &[3], key).encode()),
    ]
}

/// Sends each of [`protocol_violations`] on a connection of its own, and
/// fails with a list of those not answered with close 1002 and a reason.
pub async fn assert_violations_closed_with_1002(addr: SocketAddr) {
    let mut wrong = Vec::new();
    for (what, bytes) in protocol_violations() {
        let mut raw = RawWs::connect(addr, "/ws").await.expect("upgrade");
        raw.send_bytes(&bytes).await.expect("send");
        match raw.read_until_close(WAIT).await.expect("read") {
            Some(f) if f.close_code() == Some(1002) && !f.close_reason().is_empty() => {}
            Some(f) => {
                wrong.push(format!("{what}: close {:?} {:?}", f.close_code(), f.close_reason()))
            }
            None => wrong.push(format!("{what}: the connection ended without a close frame")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Runs a lesson's demo binary (`env!("CARGO_BIN_EXE_...")`), checks that
/// it exits 0 within a minute, and returns what it printed.
pub fn run_demo(binary: &str) -> String {
    let binary = binary.to_owned();
    let out = harness::within_blocking(Duration::from_secs(60), "the demo to finish", move || {
        Command::new(binary).output().expect("running the demo")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stdout}\n{stderr}");
    stdout
}
