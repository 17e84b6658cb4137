//! The client against canned servers: each test's server answers one request
//! with fixed bytes, so what the client makes of them is all that is tested.

use std::net::SocketAddr;
use std::time::Duration;

use raw_http::HttpConn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LONG: Duration = Duration::from_secs(5);

/// Awaits `fut`, failing the test if it takes longer than [`LONG`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LONG, fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A one-shot server on 127.0.0.1:0 that reads one request head and answers
/// with `reply`.
async fn canned(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(reply).await;
    });
    addr
}

#[tokio::test]
async fn http_client_reads_content_length_bodies() {
    let addr = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: a: b\r\n\r\nhello").await;
    let r = within("response", raw_http::get(addr, "/")).await.expect("response");
    assert_eq!((r.status, r.reason.as_str(), r.version.as_str()), (200, "OK", "HTTP/1.1"));
    assert_eq!(r.header("x-test"), Some("a: b"));
    assert_eq!(r.text(), "hello");
    assert!(r.raw_head.ends_with(b"\r\n\r\n"));
}

#[tokio::test]
async fn http_client_dechunks() {
    let addr = canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n",
    )
    .await;
    let r = within("response", raw_http::get(addr, "/")).await.expect("response");
    assert_eq!(r.text(), "Wikipedia ");
}

#[tokio::test]
async fn http_client_reads_pipelined_responses_one_at_a_time() {
    let addr = canned(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nB",
    )
    .await;
    let mut conn = HttpConn::connect(addr).await.expect("connect");
    conn.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let a = within("first", conn.read_response(false)).await.expect("first");
    let b = within("second", conn.read_response(false)).await.expect("second");
    assert_eq!((a.status, a.text().as_str()), (200, "A"));
    assert_eq!((b.status, b.text().as_str()), (404, "B"));
}

#[test]
fn parse_head_rejects_what_is_not_http() {
    assert!(raw_http::parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    assert!(raw_http::parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
}
