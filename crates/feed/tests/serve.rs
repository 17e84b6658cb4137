//! `feed::serve_with`, the loop the three feed lessons run on: the limits
//! `axum::serve` does not have, over real sockets.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use feed::{ServeConfig, serve_with};
use harness::http::HttpConn;
use harness::{TaskServer, within};

const WAIT: Duration = Duration::from_secs(5);
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

async fn start(config: ServeConfig) -> TaskServer<std::io::Result<()>> {
    let app = Router::new().route("/", get(|| async { "ok" }));
    TaskServer::start(move |listener, token| serve_with(listener, app, token, config))
        .await
        .expect("binding 127.0.0.1:0")
}

#[tokio::test]
async fn a_head_that_never_finishes_is_cut_off_and_others_are_served() {
    let timeout = Duration::from_millis(300);
    let server = start(ServeConfig { header_timeout: timeout, ..ServeConfig::default() }).await;
    let mut slow = HttpConn::connect(server.addr()).await.expect("connect");
    slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("half a head");
    let started = std::time::Instant::now();
    let answer = within(WAIT, "the server to give up on the head", slow.read_until_close())
        .await
        .expect("closed");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() >= timeout / 2, "closed after {:?}", started.elapsed());
    let ok = harness::http::get(server.addr(), "/").await.expect("GET");
    assert_eq!(ok.status, 200);
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
