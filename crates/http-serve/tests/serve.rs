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
/// it begins), `/ws` echoes WebSocket text.
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
async fn past_the_cap_a_client_waits_for_a_slot() {
    let config = ServeConfig {
        max_connections: 1,
        header_timeout: Duration::from_secs(60),
        ..ServeConfig::default()
    };
    let server = start(config).await;
    let mut first = HttpConn::connect(server.addr()).await.expect("connect");
    first.send(GET).await.expect("request");
    assert_eq!(first.read_response(false).await.expect("answer").status, 200);

    let mut second = HttpConn::connect(server.addr()).await.expect("the backlog takes it");
    second.send(GET).await.expect("request");
    let early = tokio::time::timeout(Duration::from_millis(300), second.read_response(false)).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    drop(first);
    let resp = within(WAIT, "the second client's answer", second.read_response(false))
        .await
        .expect("answered once the slot is free");
    assert_eq!(resp.status, 200);
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
