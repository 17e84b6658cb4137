//! The lessons' HTTP client against a server that closes a kept-alive
//! connection just as the next request arrives (what an idle timeout does
//! when the client's timing is unlucky).

use std::time::Duration;

use bytes::Bytes;
use feed::client::HttpClient;
use hyper::Method;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(5);

/// Reads one request head (the tests send no bodies the server must read).
async fn read_head(conn: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = conn.read_line(&mut line).await.expect("read");
        if n == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

/// Answers the first request on the first connection, closes it when the
/// second request arrives, and answers "second" on the next connection.
async fn closes_after_one() -> std::net::SocketAddr {
    let listener = TcpListener::bind(harness::EPHEMERAL).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (first, _) = listener.accept().await.expect("accept");
        let mut first = BufReader::new(first);
        read_head(&mut first).await;
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst";
        first.get_mut().write_all(ok).await.expect("answer");
        read_head(&mut first).await;
        drop(first); // the request is read, and the connection closed unanswered
        if let Ok((second, _)) = listener.accept().await {
            let mut second = BufReader::new(second);
            read_head(&mut second).await;
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond";
            let _ = second.get_mut().write_all(ok).await;
            let _ = tokio::time::timeout(WAIT, read_head(&mut second)).await;
        }
    });
    addr
}

#[tokio::test]
async fn a_get_on_a_connection_closed_under_it_is_sent_again_once() {
    let mut client = HttpClient::new(closes_after_one().await);
    assert_eq!(client.get("/", &[]).await.expect("first GET").body, "first");
    let reply = harness::within(WAIT, "the second GET", client.get("/", &[])).await;
    assert_eq!(reply.expect("retried on a new connection").body, "second");
    assert_eq!((client.connections, client.requests), (2, 3));
}

#[tokio::test]
async fn a_post_on_a_connection_closed_under_it_is_not_sent_again() {
    // The server may have acted on it: the caller decides.
    let mut client = HttpClient::new(closes_after_one().await);
    assert_eq!(client.get("/", &[]).await.expect("first GET").body, "first");
    let body = Some(("application/json", Bytes::from_static(b"{}")));
    let reply = harness::within(WAIT, "the POST", client.send(Method::POST, "/", &[], body)).await;
    assert!(reply.is_err(), "{reply:?}");
    assert_eq!((client.connections, client.requests), (1, 2));
}
