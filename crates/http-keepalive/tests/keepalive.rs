//! The hand-written server's promises about connections: HTTP/1.0 closes,
//! HTTP/1.1 keeps, pipelined requests are answered in order, a slow response
//! holds up the ones pipelined behind it, and kept connections end (idle
//! timeout, request cap, graceful shutdown).

use std::time::{Duration, Instant};

mod common;

use common::{DEADLINE, fetch_counted, get, read, read_to_close, start};
use harness::{WireTap, within};
use http_keepalive::Config;
use http_keepalive::client::{self, Mode};
use raw_http::HttpConn;

#[tokio::test]
async fn ten_requests_on_a_kept_connection_open_one_tcp_connection() {
    let server = start(Config::default()).await;
    let tap = WireTap::start(server.addr()).expect("tap");
    let mut conn = HttpConn::connect(tap.addr()).await.expect("connect");
    for i in 0..10 {
        conn.send(&get(&format!("/resource/{i}"))).await.expect("send");
        let r = read(&mut conn).await;
        assert_eq!((r.status, r.text()), (200, format!("resource {i}\n")));
        assert_eq!(r.header("connection"), None, "1.1 keeps by default; nothing to say");
    }
    assert_eq!(tap.stats().connections, 1);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn http_1_0_style_opens_a_connection_per_request() {
    let server = start(Config::default()).await;
    let tap = WireTap::start(server.addr()).expect("tap");
    for i in 0..10 {
        let mut conn = HttpConn::connect(tap.addr()).await.expect("connect");
        let req = format!("GET /resource/{i} HTTP/1.0\r\n\r\n");
        conn.send(req.as_bytes()).await.expect("send");
        let r = read(&mut conn).await;
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
        assert!(read_to_close(&mut conn).await.is_empty(), "1.0 without keep-alive: server closes");
    }
    assert_eq!(tap.stats().connections, 10);
    // The page client's HTTP/1.0 mode does the same.
    let (_, stats) =
        fetch_counted(server.addr(), &client::page_paths(10), Mode::NewConnections).await;
    assert_eq!(stats.connections, 10);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn http_1_0_keeps_the_connection_when_asked() {
    let server = start(Config::default()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    for _ in 0..2 {
        conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.expect("send");
        let r = read(&mut conn).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn http_1_1_closes_when_asked() {
    let server = start(Config::default()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.expect("send");
    let r = read(&mut conn).await;
    assert_eq!(r.header("connection"), Some("close"));
    assert!(read_to_close(&mut conn).await.is_empty());
    drop(conn); // the server lingers until we close too (see lingering_close)
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn the_three_client_modes_count_connections_and_bytes() {
    let server = start(Config::default()).await;
    let paths = client::page_paths(10);
    let mut seen = Vec::new();
    for mode in Mode::ALL {
        let (responses, stats) = fetch_counted(server.addr(), &paths, mode).await;
        assert!(responses.iter().all(|r| r.status == 200));
        seen.push((stats.connections, stats.to_server, stats.to_client));
    }
    assert_eq!(seen[0].0, 10);
    assert_eq!(seen[1].0, 1);
    assert_eq!(seen[2].0, 1);
    // Same requests and responses in all three: the bytes are the same; what
    // differs is the number of connections (and what TCP pays for them).
    assert!(seen[0].1 == seen[1].1 && seen[1].1 == seen[2].1, "{seen:?}");
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn pipelined_responses_come_back_in_request_order() {
    let server = start(Config::default()).await;
    let tap = WireTap::start(server.addr()).expect("tap");
    let mut conn = HttpConn::connect(tap.addr()).await.expect("connect");
    // A slow one in the middle, and a POST with a body, all in one write.
    let mut all = Vec::new();
    for i in [9, 3, 7] {
        all.extend(get(&format!("/resource/{i}")));
    }
    all.extend(get("/slow?ms=50"));
    all.extend(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    all.extend(get("/resource/0"));
    conn.send(&all).await.expect("send");
    let mut bodies = Vec::new();
    for _ in 0..6 {
        bodies.push(read(&mut conn).await.text());
    }
    assert_eq!(
        bodies,
        ["resource 9\n", "resource 3\n", "resource 7\n", "slept 50 ms\n", "hello", "resource 0\n"]
    );
    assert_eq!(tap.stats().connections, 1);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn pipelined_fast_requests_wait_behind_a_slow_one() {
    let slow = Duration::from_millis(400);
    let server = start(Config::default()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    let mut all = get(&format!("/slow?ms={}", slow.as_millis()));
    all.extend(get("/resource/1"));
    all.extend(get("/resource/2"));
    let sent = Instant::now();
    conn.send(&all).await.expect("send");
    let first = read(&mut conn).await;
    let second = read(&mut conn).await;
    let third = read(&mut conn).await;
    let waited = sent.elapsed();
    assert_eq!(first.text(), "slept 400 ms\n");
    assert_eq!((second.text().as_str(), third.text().as_str()), ("resource 1\n", "resource 2\n"));
    // The server writes nothing before the slow response, so the fast ones
    // cannot have arrived sooner than `slow`: a lower bound that cannot flake.
    assert!(
        waited >= slow,
        "fast responses arrived after {waited:?}, before the slow one was done"
    );
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn on_separate_connections_fast_requests_do_not_wait() {
    // A generous slow delay: the fast request on its own connection needs a
    // few milliseconds; it would have to stall 2 s for this test to fail.
    let slow = Duration::from_secs(2);
    let server = start(Config::default()).await;
    let addr = server.addr();
    let slow_task = tokio::spawn(async move {
        let started = Instant::now();
        let r = raw_http::get(addr, "/slow?ms=2000").await.expect("slow response");
        (r, started.elapsed())
    });
    let started = Instant::now();
    let fast = within(DEADLINE, "a fast response", raw_http::get(addr, "/resource/1"))
        .await
        .expect("fast response");
    let fast_took = started.elapsed();
    assert_eq!(fast.text(), "resource 1\n");
    assert!(!slow_task.is_finished(), "the slow response came first after all");
    assert!(fast_took < slow, "fast request took {fast_took:?}");
    let (r, slow_took) = within(DEADLINE, "the slow response", slow_task).await.expect("task");
    assert_eq!(r.text(), "slept 2000 ms\n");
    assert!(slow_took >= slow);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn an_idle_kept_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(150);
    let server = start(Config { idle_timeout: idle, ..Config::default() }).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(&get("/")).await.expect("send");
    assert_eq!(read(&mut conn).await.status, 200);
    let answered = Instant::now();
    // Closed quietly: no 408, because no request was started.
    assert!(read_to_close(&mut conn).await.is_empty());
    assert!(answered.elapsed() >= idle, "closed after {:?}", answered.elapsed());
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_connection_carries_at_most_max_requests() {
    let server = start(Config { max_requests: 3, ..Config::default() }).await;
    let tap = WireTap::start(server.addr()).expect("tap");
    let mut conn = HttpConn::connect(tap.addr()).await.expect("connect");
    let all: Vec<u8> = (0..5).flat_map(|i| get(&format!("/resource/{i}"))).collect();
    conn.send(&all).await.expect("send");
    for i in 0..3 {
        let r = read(&mut conn).await;
        assert_eq!(r.text(), format!("resource {i}\n"));
        let expected = if i == 2 { Some("close") } else { None };
        assert_eq!(r.header("connection"), expected, "response {i}");
    }
    // Requests 4 and 5 are not answered: the client must retry them on a new
    // connection (that is why only idempotent requests should be pipelined).
    assert!(read_to_close(&mut conn).await.is_empty());
    assert_eq!(tap.stats().connections, 1);
    drop(conn);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn head_answers_the_length_without_the_body_and_keeps_framing() {
    let server = start(Config::default()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("send");
    let head = within(DEADLINE, "HEAD", conn.read_response(true)).await.expect("head");
    let expected = http_keepalive::page_html().len().to_string();
    assert_eq!(head.header("content-length"), Some(expected.as_str()));
    // If the server had sent the body anyway, it would be read as the next
    // response here and fail to parse.
    conn.send(&get("/resource/5")).await.expect("send");
    assert_eq!(read(&mut conn).await.text(), "resource 5\n");
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_closes_idle_ones() {
    let server = start(Config::default()).await;
    let mut idle = HttpConn::connect(server.addr()).await.expect("connect");
    idle.send(&get("/")).await.expect("send");
    assert_eq!(read(&mut idle).await.status, 200);
    let mut busy = HttpConn::connect(server.addr()).await.expect("connect");
    let mut two = get("/resource/1");
    two.extend(get("/slow?ms=300"));
    busy.send(&two).await.expect("send");
    // Once the first answer is here, the slow request has reached the server
    // (it was in the same write), so stopping now catches it in flight.
    assert_eq!(read(&mut busy).await.header("connection"), None);
    let token = server.token();
    let stopped = tokio::spawn(server.shutdown());
    let r = read(&mut busy).await;
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(read_to_close(&mut busy).await.is_empty());
    drop(busy); // ends the server's lingering close at once
    assert!(read_to_close(&mut idle).await.is_empty(), "idle connection closed on shutdown");
    within(DEADLINE, "server to stop", stopped).await.expect("task").expect("clean stop");
    assert!(token.is_cancelled());
}
