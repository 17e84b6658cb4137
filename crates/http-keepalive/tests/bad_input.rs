//! Bad input gets a clear status and never takes the hand-written server down.

use std::time::{Duration, Instant};

mod common;

use common::{DEADLINE, Server, start, start_hyper};
use harness::within;
use http_keepalive::Config;
use raw_http::{HttpConn, Response, parse_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short timeouts so the slow-client tests finish in well under a second.
fn fast() -> Config {
    Config {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        linger: Duration::from_millis(300),
        ..Config::default()
    }
}

/// Sends `bytes` on a new connection; expects one response and then the
/// server closing the connection.
async fn rejected(server: &Server, bytes: &[u8]) -> Response {
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(bytes).await.expect("send");
    let r = within(DEADLINE, "an error response", conn.read_response(false))
        .await
        .expect("a well-formed error response");
    assert_eq!(r.header("connection"), Some("close"), "an error closes: {r:?}");
    let rest = within(DEADLINE, "close", conn.read_until_close()).await.expect("clean close");
    assert!(rest.is_empty(), "nothing after the error response");
    r
}

/// The server is still up and answering.
async fn still_serves(server: &Server) {
    let r = within(DEADLINE, "a normal request", raw_http::get(server.addr(), "/resource/1"))
        .await
        .expect("the server still answers");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn malformed_request_lines_get_400() {
    let server = start(fast()).await;
    for bad in [
        &b"HELLO\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 trailing\r\nHost: t\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // a TLS hello on a plain port
    ] {
        let r = rejected(&server, bad).await;
        assert_eq!(r.status, 400, "for {:?}", String::from_utf8_lossy(bad));
    }
    still_serves(&server).await;
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn framing_ambiguities_get_400_or_501() {
    let server = start(fast()).await;
    let r = rejected(&server, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 400, "1.1 without Host");
    let r =
        rejected(&server, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n").await;
    assert_eq!(r.status, 400);
    let two = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    assert_eq!(rejected(&server, two).await.status, 400);
    let chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(rejected(&server, chunked).await.status, 501);
    assert_eq!(rejected(&server, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").await.status, 505);
    still_serves(&server).await;
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431() {
    let config = fast();
    let server = start(config).await;
    // One huge header field, and the head never even ends.
    let mut big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', config.max_head * 2));
    assert_eq!(rejected(&server, &big).await.status, 431);
    // Many small fields.
    let mut many = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..100 {
        many.extend(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(rejected(&server, &many).await.status, 431);
    still_serves(&server).await;
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_before_it_is_sent() {
    let config = fast();
    let server = start(config).await;
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        config.max_body + 1
    );
    // No body bytes sent at all: the server decides from the header.
    assert_eq!(rejected(&server, req.as_bytes()).await.status, 413);
    // At the limit it is fine, and the connection stays open.
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    let body = vec![b'x'; config.max_body];
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len());
    conn.send(head.as_bytes()).await.expect("send");
    conn.send(&body).await.expect("send");
    let r = within(DEADLINE, "echo", conn.read_response(false)).await.expect("echo");
    assert_eq!((r.status, r.body.len()), (200, config.max_body));
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn unsupported_methods_get_405_or_501() {
    let server = start(fast()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    // 405: a method HTTP defines, that this resource does not take. Not a
    // framing problem, so the connection stays open.
    conn.send(b"DELETE /resource/1 HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("send");
    let r = within(DEADLINE, "405", conn.read_response(false)).await.expect("response");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("send");
    let r = within(DEADLINE, "405", conn.read_response(false)).await.expect("response");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    // 501: a method this server has never heard of.
    conn.send(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("send");
    let r = within(DEADLINE, "501", conn.read_response(false)).await.expect("response");
    assert_eq!(r.status, 501);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_slowloris_client_gets_408_after_the_header_timeout_and_is_closed() {
    let config = fast();
    let server = start(config).await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    let started = Instant::now();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.expect("send");
    // One header line every 50 ms, forever: each arrives well inside any
    // per-read timeout, but the head never ends.
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    for i in 0.. {
        assert!(started.elapsed() < DEADLINE, "no answer to a slowloris client");
        let line = format!("X-Drip-{i}: still here\r\n");
        if stream.write_all(line.as_bytes()).await.is_err() {
            break; // the server closed; the response (if any) is in `got`
        }
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut chunk)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&chunk[..n]);
                break;
            }
        }
    }
    let waited = started.elapsed();
    // Read the rest until the server closes.
    loop {
        match within(DEADLINE, "close after 408", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole response head") + 4;
    let r = parse_head(&got[..end]).expect("a response");
    assert_eq!((r.status, r.header("connection")), (408, Some("close")));
    assert!(waited >= config.header_timeout, "408 after only {waited:?}");
    still_serves(&server).await;
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_body_that_never_comes_gets_408() {
    let server = start(fast()).await;
    let r =
        rejected(&server, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc").await;
    assert_eq!(r.status, 408);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_silent_connection_is_closed_without_a_408() {
    let server = start(fast()).await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    // Nothing sent: no request was started, so there is nobody to answer.
    let rest = within(DEADLINE, "idle close", conn.read_until_close()).await.expect("clean close");
    assert!(rest.is_empty());
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn clients_vanishing_mid_request_do_not_disturb_the_server() {
    let server = start(fast()).await;
    for partial in [
        &b"GET /resource/1 HTTP/1.1\r\nHo"[..],
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly some",
        b"GET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n", // gone before the answer
    ] {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(partial).await.expect("send");
        drop(stream);
    }
    // Also a reset instead of a clean close.
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let std = stream.into_std().expect("std stream");
    let sock = socket2::SockRef::from(&std);
    sock.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0 makes close send RST");
    drop(std);
    still_serves(&server).await;
    // The vanished client's slow response is written to a closed socket
    // while this one waits; once this one is answered, that write has
    // happened too (it started earlier and is shorter), and did no harm.
    let r = within(DEADLINE, "slow", raw_http::get(server.addr(), "/slow?ms=150"))
        .await
        .expect("the server still answers");
    assert_eq!(r.status, 200);
    still_serves(&server).await;
    server.shutdown().await.expect("clean stop");
}

const WAIT: Duration = Duration::from_secs(5);

/// Past the connection cap a new client is told 503 at once, by both
/// servers, instead of waiting unanswered in the listen backlog; once a
/// slot frees it is served again.
#[tokio::test]
async fn past_the_connection_cap_both_servers_answer_503_at_once() {
    let config = Config { max_connections: 1, ..Config::default() };
    for hyper in [false, true] {
        let server = if hyper { start_hyper(config).await } else { start(config).await };
        let mut first = HttpConn::connect(server.addr()).await.expect("connect");
        first.send(b"GET /resource/1 HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("send");
        assert_eq!(
            within(WAIT, "first", first.read_response(false)).await.expect("ok").status,
            200
        );
        let busy = within(
            Duration::from_secs(1),
            "the 503",
            raw_http::exchange(server.addr(), b"GET /resource/2 HTTP/1.1\r\nHost: t\r\n\r\n"),
        )
        .await
        .expect("an answer, not a hang");
        assert_eq!(busy.status, 503, "hyper: {hyper}: {}", busy.text());
        assert_eq!(busy.header("retry-after"), Some("1"));
        drop(first);
        let started = Instant::now();
        loop {
            let req = b"GET /resource/3 HTTP/1.1\r\nHost: t\r\n\r\n";
            if raw_http::exchange(server.addr(), req).await.is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(started.elapsed() < WAIT, "hyper: {hyper}: the slot never came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.shutdown().await.expect("clean stop");
    }
}
