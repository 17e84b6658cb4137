//! The hyper server keeps the same promises about connections as the
//! hand-written one, on the same routes.

use std::time::{Duration, Instant};

mod common;

use common::{DEADLINE, fetch_counted, get, read, start_hyper as start};
use harness::{WireTap, within};
use http_keepalive::Config;
use http_keepalive::client::{self, Mode};
use raw_http::HttpConn;

#[tokio::test]
async fn keep_alive_uses_one_connection_and_http_1_0_style_uses_ten() {
    let server = start(Config::default()).await;
    let paths = client::page_paths(10);
    let (kept, kept_stats) = fetch_counted(server.addr(), &paths, Mode::KeepAlive).await;
    let (new, new_stats) = fetch_counted(server.addr(), &paths, Mode::NewConnections).await;
    assert_eq!((kept_stats.connections, new_stats.connections), (1, 10));
    for (i, r) in kept.iter().enumerate() {
        assert_eq!(r.text(), format!("resource {i}\n"));
    }
    // hyper answers a 1.0 request with a 1.0 status line, and adds a Date.
    assert_eq!(new[0].version, "HTTP/1.0");
    assert!(new[0].header("date").is_some());
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_behind_a_slow_one() {
    let server = start(Config::default()).await;
    let tap = WireTap::start(server.addr()).expect("tap");
    let mut conn = HttpConn::connect(tap.addr()).await.expect("connect");
    let mut all = get("/slow?ms=300");
    all.extend(get("/resource/1"));
    all.extend(get("/resource/2"));
    let sent = Instant::now();
    conn.send(&all).await.expect("send");
    let bodies =
        [read(&mut conn).await, read(&mut conn).await, read(&mut conn).await].map(|r| r.text());
    assert!(sent.elapsed() >= Duration::from_millis(300));
    assert_eq!(bodies, ["slept 300 ms\n", "resource 1\n", "resource 2\n"]);
    assert_eq!(tap.stats().connections, 1);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn the_request_cap_and_the_head_limit_hold_on_hyper_too() {
    let config = Config { max_requests: 2, ..Config::default() };
    let server = start(config).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(&[get("/resource/0"), get("/resource/1"), get("/resource/2")].concat())
        .await
        .expect("send");
    assert_eq!(read(&mut conn).await.header("connection"), None);
    assert_eq!(read(&mut conn).await.header("connection"), Some("close"));
    let rest = within(DEADLINE, "close", conn.read_until_close()).await.expect("clean close");
    assert!(rest.is_empty(), "third pipelined request not answered");

    let mut big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', config.max_head * 2));
    big.extend(b"\r\n\r\n");
    let r =
        within(DEADLINE, "431", raw_http::exchange(server.addr(), &big)).await.expect("a response");
    assert_eq!(r.status, 431);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn hyper_closes_an_idle_connection_after_its_header_timeout_without_a_408() {
    let timeout = Duration::from_millis(200);
    let server = start(Config { header_timeout: timeout, ..Config::default() }).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(&get("/")).await.expect("send");
    assert_eq!(read(&mut conn).await.status, 200);
    let answered = Instant::now();
    let rest = within(DEADLINE, "close", conn.read_until_close()).await.expect("clean close");
    assert!(rest.is_empty());
    assert!(answered.elapsed() >= timeout);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_connections() {
    let server = start(Config::default()).await;
    let mut idle = HttpConn::connect(server.addr()).await.expect("connect");
    idle.send(&get("/")).await.expect("send");
    assert_eq!(read(&mut idle).await.status, 200);
    let stopped = tokio::spawn(server.shutdown());
    let rest = within(DEADLINE, "close", idle.read_until_close()).await.expect("clean close");
    assert!(rest.is_empty());
    within(DEADLINE, "server to stop", stopped).await.expect("task").expect("clean stop");
}

/// 1,000 pipelined requests against a cap of 100 per connection: every one
/// of the 100 promised answers arrives, the last says `Connection: close`,
/// and the connection then ends with a clean close, not a reset. (Closing
/// with the other 900 requests unread would make the kernel send a reset,
/// which can destroy answers the client has not read yet.)
#[tokio::test]
async fn a_pipelined_burst_past_the_request_cap_gets_every_promised_answer() {
    let config = Config::default();
    let server = start(config).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    let burst: Vec<u8> = (0..1000).flat_map(|i| get(&format!("/resource/{}", i % 10))).collect();
    conn.send(&burst).await.expect("send the burst");
    for i in 0..config.max_requests {
        let r = read(&mut conn).await;
        assert_eq!(r.text(), format!("resource {}\n", i % 10), "answer {i}");
        let last = i + 1 == config.max_requests;
        assert_eq!(r.header("connection"), last.then_some("close"), "answer {i}");
    }
    let rest = within(DEADLINE, "the close", conn.read_until_close())
        .await
        .expect("a clean close after the last promised answer, not a reset");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    server.shutdown().await.expect("clean stop");
}

/// A complete head that promises a body, then silence: 408 once the header
/// timeout has passed again (the hand-written server does the same), and the
/// connection is closed.
#[tokio::test]
async fn a_body_that_never_arrives_gets_408_on_hyper_too() {
    let timeout = Duration::from_millis(300);
    let server = start(Config { header_timeout: timeout, ..Config::default() }).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 16000\r\n\r\nsome")
        .await
        .expect("a head and a little of the body");
    let started = Instant::now();
    let r = read(&mut conn).await;
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(started.elapsed() >= timeout / 2, "after only {:?}", started.elapsed());
    assert_eq!(r.header("connection"), Some("close"));
    server.shutdown().await.expect("clean stop");
}

/// Two malformed requests hyper itself lets through: HTTP/1.1 without `Host`
/// (RFC 9112 section 3.2 says 400), and a chunked body whose chunk size is
/// not hex (a syntax error, so 400, not "too large").
#[tokio::test]
async fn no_host_and_a_malformed_chunked_body_get_400_on_hyper_too() {
    let server = start(Config::default()).await;
    let no_host = b"GET /resource/1 HTTP/1.1\r\n\r\n";
    let r = within(DEADLINE, "400", raw_http::exchange(server.addr(), no_host))
        .await
        .expect("a response");
    assert_eq!(r.status, 400, "{}", r.text());
    let chunked =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n";
    let r = within(DEADLINE, "400", raw_http::exchange(server.addr(), chunked))
        .await
        .expect("a response");
    assert_eq!(r.status, 400, "{}", r.text());
    server.shutdown().await.expect("clean stop");
}
