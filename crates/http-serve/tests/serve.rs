//! The promises of `http_serve::serve`, over real sockets: the limits
//! `axum::serve` has no setting for, upgrades, and a graceful stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use harness::http::HttpConn;
use harness::ws::WsClient;
use harness::{TaskServer, within};
use http_serve::{ServeConfig, serve};

const WAIT: Duration = Duration::from_secs(5);
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// `/` answers "ok", `/slow` after 300 ms (counting in `slow_started` when
/// it begins), `/ws` echoes WebSocket text, `POST /echo` reads the body and
/// sends it back, `/stream` sends 64 KiB chunks for as long as it is read.
fn app(slow_started: Arc<AtomicUsize>) -> Router {
    async fn echo(ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(|mut socket| async move {
            while let Some(Ok(Message::Text(t))) = socket.recv().await {
                if socket.send(Message::Text(t)).await.is_err() {
                    break;
                }
            }
        })
    }
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(move || async move {
                slow_started.fetch_add(1, Ordering::SeqCst);
                // Work that takes a while: the handler, not the test, sleeps.
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow ok"
            }),
        )
        .route("/ws", get(echo))
        .route("/echo", axum::routing::post(|body: String| async move { body }))
        .route(
            "/stream",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
}

/// GET `/` on a fresh connection until it answers 200 (a full server says
/// 503 meanwhile), within `WAIT`.
async fn served_within_wait(addr: std::net::SocketAddr) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        if let Ok(resp) = harness::http::get(addr, "/").await
            && resp.status == 200
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < WAIT, "no 200 for a new client within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(config: ServeConfig) -> TaskServer<std::io::Result<()>> {
    start_counting(config, Arc::default()).await
}

async fn start_counting(
    config: ServeConfig,
    slow_started: Arc<AtomicUsize>,
) -> TaskServer<std::io::Result<()>> {
    TaskServer::start(move |listener, token| serve(listener, app(slow_started), token, config))
        .await
        .expect("binding 127.0.0.1:0")
}

fn header_timeout(timeout: Duration) -> ServeConfig {
    ServeConfig { header_timeout: timeout, ..ServeConfig::default() }
}

#[tokio::test]
async fn a_head_that_never_finishes_is_cut_off_and_others_are_served() {
    let timeout = Duration::from_millis(300);
    let server = start(header_timeout(timeout)).await;
    let mut slow = HttpConn::connect(server.addr()).await.expect("connect");
    slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("half a head");
    let started = std::time::Instant::now();
    let answer = within(WAIT, "the server to give up on the head", slow.read_until_close())
        .await
        .expect("closed, not reset");
    // hyper closes without an answer (lesson 4's server sends a 408 first).
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() >= timeout / 2, "closed after {:?}", started.elapsed());
    let ok = harness::http::get(server.addr(), "/").await.expect("GET");
    assert_eq!(ok.status, 200);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let server = start(header_timeout(Duration::from_millis(300))).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(GET).await.expect("a request");
    assert_eq!(conn.read_response(false).await.expect("an answer").status, 200);
    let rest = within(WAIT, "the idle connection to be closed", conn.read_until_close())
        .await
        .expect("closed, not reset");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_timeout_does_not_cut_a_handler_that_takes_longer() {
    // The clock runs while the head is awaited, not while the answer is made.
    let server = start(header_timeout(Duration::from_millis(100))).await;
    let resp = harness::http::get(server.addr(), "/slow").await.expect("GET /slow");
    assert_eq!((resp.status, resp.text()), (200, "slow ok".to_owned()));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn past_the_cap_a_new_client_is_told_503_at_once() {
    let config = ServeConfig {
        max_connections: 1,
        header_timeout: Duration::from_secs(60),
        ..ServeConfig::default()
    };
    let server = start(config).await;
    let mut first = HttpConn::connect(server.addr()).await.expect("connect");
    first.send(GET).await.expect("request");
    assert_eq!(first.read_response(false).await.expect("answer").status, 200);

    // The one slot is held by `first`: the next client hears so at once,
    // rather than waiting in the listen backlog with no word.
    let mut second = HttpConn::connect(server.addr()).await.expect("connect");
    second.send(GET).await.expect("request");
    let busy = within(Duration::from_secs(1), "the 503", second.read_response(false))
        .await
        .expect("an answer, not a reset");
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.header("retry-after"), Some("1"));
    drop(first);
    served_within_wait(server.addr()).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_and_frees_its_slot() {
    let timeout = Duration::from_millis(300);
    let config =
        ServeConfig { max_connections: 1, body_timeout: timeout, ..ServeConfig::default() };
    let server = start(config).await;
    let mut silent = HttpConn::connect(server.addr()).await.expect("connect");
    // A complete head that promises 16,000 bytes, and then nothing.
    let head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16000\r\n\r\n";
    silent.send(head).await.expect("the head");
    silent.send(b"only this much").await.expect("a little of the body");
    let started = std::time::Instant::now();
    let resp = within(WAIT, "the 408", silent.read_response(false)).await.expect("an answer");
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert!(started.elapsed() >= timeout / 2, "408 after only {:?}", started.elapsed());
    let rest = within(WAIT, "the close", silent.read_until_close()).await.expect("closed");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // Its slot is free again: the one-slot server serves someone else.
    served_within_wait(server.addr()).await;
    // A body that does arrive in time is served as before.
    let mut ok = HttpConn::connect(server.addr()).await.expect("connect");
    ok.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .expect("send");
    let resp = within(WAIT, "the echo", ok.read_response(false)).await.expect("an answer");
    assert_eq!((resp.status, resp.text()), (200, "hello".to_owned()));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_write_timeout() {
    let timeout = Duration::from_millis(300);
    let config =
        ServeConfig { max_connections: 1, write_timeout: timeout, ..ServeConfig::default() };
    let server = start(config).await;
    let mut stalled = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stalled.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
    // It never reads: the buffers fill, the server's write waits, and after
    // the write timeout the server gives up and frees the slot.
    let waited = served_within_wait(server.addr()).await;
    assert!(waited >= timeout / 2, "served after only {waited:?}; was the slot ever held?");
    // Reading now finds what the buffers held, then the end: the server
    // closed. (Without the timeout the stream would go on for ever; the
    // count stops the test from reading it for ever.)
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let closed = within(WAIT, "the server to have closed", async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => total += n,
            }
            if total > 256 * 1024 * 1024 {
                return false;
            }
        }
    })
    .await;
    assert!(closed, "read {total} bytes and the stream still goes on");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_http11_request_without_host_is_400() {
    let server = start(ServeConfig::default()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(b"GET / HTTP/1.1\r\n\r\n").await.expect("a request with no Host");
    let resp = within(WAIT, "the answer", conn.read_response(false)).await.expect("an answer");
    assert_eq!(resp.status, 400, "{}", resp.text());
    // HTTP/1.0 had no Host header; it is still served.
    let mut old = HttpConn::connect(server.addr()).await.expect("connect");
    old.send(b"GET / HTTP/1.0\r\n\r\n").await.expect("an HTTP/1.0 request");
    let resp = within(WAIT, "the answer", old.read_response(false)).await.expect("an answer");
    assert_eq!(resp.status, 200, "{}", resp.text());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_websocket_upgrade_works_and_gives_its_slot_back() {
    let config = ServeConfig { max_connections: 1, ..ServeConfig::default() };
    let server = start(config).await;
    let mut ws = WsClient::connect(&format!("ws://{}/ws", server.addr())).await.expect("upgrade");
    ws.send_text("hello").await.expect("send");
    assert_eq!(ws.recv_text(WAIT).await.expect("echo"), "hello");
    // The WebSocket is open, yet with one slot a plain request is served.
    let ok =
        within(WAIT, "a request beside the open WebSocket", harness::http::get(server.addr(), "/"))
            .await
            .expect("GET");
    assert_eq!(ok.status, 200);
    ws.close().await.expect("close");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_refuses_new_ones() {
    let slow_started = Arc::new(AtomicUsize::new(0));
    let server = start_counting(ServeConfig::default(), Arc::clone(&slow_started)).await;
    let addr = server.addr();
    let mut busy = HttpConn::connect(addr).await.expect("connect");
    busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
    harness::eventually(WAIT, "the server to start on the request", || {
        slow_started.load(Ordering::SeqCst) == 1
    })
    .await;
    server.token().cancel();
    harness::eventually(WAIT, "the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    let resp =
        within(WAIT, "the answer in flight", busy.read_response(false)).await.expect("answer");
    assert_eq!((resp.status, resp.text()), (200, "slow ok".to_owned()));
    // Then the server closes the connection instead of keeping it alive,
    // well before the shutdown grace (5 s) would have given up on it.
    let rest = within(Duration::from_secs(2), "the connection to close after its answer", async {
        busy.read_until_close().await
    })
    .await
    .expect("closed, not reset");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    server.shutdown().await.expect("serve returned Ok");
}

/// The write timeout lives in the socket, so it outlasts the upgrade: a
/// WebSocket peer that stops reading makes the server's send fail after it,
/// and the connection's task ends instead of waiting for ever.
#[tokio::test]
async fn a_websocket_peer_that_stops_reading_is_closed_after_the_write_timeout() {
    let ended = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ended);
    let flood = get(move |ws: WebSocketUpgrade| async move {
        ws.on_upgrade(move |mut socket| async move {
            let chunk = "x".repeat(64 * 1024);
            // Send until a send fails; a bound keeps a broken timeout from
            // filling memory (the peer's buffers take a few MB at most).
            for _ in 0..100_000 {
                if socket.send(Message::text(chunk.clone())).await.is_err() {
                    break;
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
        })
    });
    let config =
        ServeConfig { write_timeout: Duration::from_millis(300), ..ServeConfig::default() };
    let server = TaskServer::start(move |listener, token| {
        serve(listener, Router::new().route("/flood", flood), token, config)
    })
    .await
    .expect("binding 127.0.0.1:0");
    let silent =
        WsClient::connect(&format!("ws://{}/flood", server.addr())).await.expect("upgrade");
    // It never reads. The server's sends stall, then fail.
    harness::eventually(WAIT, "the flooding task to end", || ended.load(Ordering::SeqCst) == 1)
        .await;
    drop(silent);
    server.shutdown().await.expect("clean shutdown");
}
