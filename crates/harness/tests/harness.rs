//! The harness's own tests: each helper does what its docs promise, and fails
//! the way its docs promise when the thing it waits for never happens.

use std::io::{self, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use harness::http::{self, HttpConn};
use harness::{
    BlockingServer, Direction, TaskServer, TcpClient, UdpClient, WireTap, eventually,
    eventually_blocking, hexdump, within, within_blocking,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

/// A minimal blocking echo server, one client at a time, stopping on the flag.
fn echo(listener: TcpListener, stop: Arc<AtomicBool>) -> io::Result<()> {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut conn = conn?;
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn within_returns_the_output() {
    assert_eq!(within(LONG, "a ready future", async { 7 }).await, 7);
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms: a future that never ends")]
async fn within_panics_with_the_reason() {
    within(SHORT, "a future that never ends", std::future::pending::<()>()).await;
}

#[test]
fn within_blocking_returns_the_output() {
    assert_eq!(within_blocking(LONG, "a quick closure", || 7), 7);
}

#[test]
#[should_panic(expected = "timed out after 50ms: a read that never returns")]
fn within_blocking_panics_with_the_reason() {
    // A receive with the sender kept alive blocks until the test unwinds
    // (dropping the sender lets the thread finish).
    let (_sender, receiver) = std::sync::mpsc::channel::<()>();
    let _never = within_blocking(SHORT, "a read that never returns", move || receiver.recv());
}

#[test]
#[should_panic(expected = "inner failure")]
fn within_blocking_passes_on_a_panic() {
    within_blocking(LONG, "a closure that panics", || panic!("inner failure"));
}

#[tokio::test]
async fn eventually_sees_a_condition_become_true() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&counter);
    tokio::spawn(async move {
        for _ in 0..3 {
            tokio::task::yield_now().await;
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    eventually(LONG, "counter reaches 3", || counter.load(Ordering::SeqCst) == 3).await;
}

#[tokio::test]
#[should_panic(expected = "condition not met after 50ms: never")]
async fn eventually_panics_with_the_reason() {
    eventually(SHORT, "never", || false).await;
}

#[test]
#[should_panic(expected = "condition not met after 50ms: never")]
fn eventually_blocking_panics_with_the_reason() {
    eventually_blocking(SHORT, "never", || false);
}

#[test]
fn blocking_server_serves_and_stops() {
    let server = BlockingServer::start_tcp("echo", echo).expect("start");
    assert!(server.addr().ip().is_loopback(), "test servers bind loopback");
    let mut c = TcpClient::connect(server.addr()).expect("connect");
    c.send(b"ping").expect("send");
    assert_eq!(c.recv_exact(4).expect("echo"), b"ping");
    c.shutdown_write().expect("half-close");
    assert_eq!(c.recv_to_end().expect("end"), b"");
    drop(c);
    server.shutdown().expect("echo returns Ok after stop");
}

#[test]
fn blocking_udp_server_is_woken_to_stop() {
    let server = BlockingServer::start_udp("udp", |socket: UdpSocket, stop| {
        let mut buf = [0u8; 64];
        loop {
            let (n, from) = socket.recv_from(&mut buf)?;
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            socket.send_to(&buf[..n], from)?;
        }
    })
    .expect("start");
    let c = UdpClient::connect(server.addr()).expect("client");
    c.send(b"hi").expect("send");
    assert_eq!(c.recv(64).expect("echo"), b"hi");
    server.shutdown().expect("stops cleanly");
}

#[test]
fn udp_recv_within_reports_silence_as_none() {
    // A socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let c = UdpClient::connect(silent.local_addr().expect("addr")).expect("client");
    assert_eq!(c.recv_within(64, SHORT).expect("no error"), None);
}

#[tokio::test]
async fn task_server_stops_on_cancel_and_returns_its_output() {
    let server = TaskServer::start(|listener, token| async move {
        let mut accepted = 0usize;
        loop {
            tokio::select! {
                () = token.cancelled() => return accepted,
                r = listener.accept() => if let Ok((mut s, _)) = r {
                    accepted += 1;
                    let _ = s.write_all(b"!").await;
                },
            }
        }
    })
    .await
    .expect("start");
    let mut c = within(LONG, "connect", tokio::net::TcpStream::connect(server.addr()))
        .await
        .expect("connect");
    // The greeting proves the server task accepted us before we cancel it.
    let mut greeting = [0u8; 1];
    within(LONG, "greeting", c.read_exact(&mut greeting)).await.expect("greeting");
    assert_eq!(server.shutdown().await, 1, "shutdown hands back what the task returned");
}

#[test]
fn wire_tap_counts_connections_and_bytes_each_way() {
    let server = BlockingServer::start_tcp("echo", echo).expect("start");
    let tap = WireTap::start(server.addr()).expect("tap");
    for i in 0..3u8 {
        let mut c = TcpClient::connect(tap.addr()).expect("connect via tap");
        c.send(&[i; 10]).expect("send");
        assert_eq!(c.recv_exact(10).expect("echo"), vec![i; 10]);
        c.shutdown_write().expect("half-close through the tap");
        assert_eq!(c.recv_to_end().expect("FIN passed on"), b"");
    }
    let s = tap.stats();
    assert_eq!(s.connections, 3);
    assert_eq!(s.to_server, 30);
    assert_eq!(s.to_client, 30);
    eventually_blocking(LONG, "all tap connections closed", || tap.stats().open == 0);
    assert_eq!(tap.bytes(1, Direction::ToServer), vec![1u8; 10]);
    assert_eq!(tap.bytes(2, Direction::ToClient), vec![2u8; 10]);
    let dump = tap.dump();
    assert!(dump.contains("#0 >> 10 bytes"), "{dump}");
    assert!(dump.contains("#2 << 10 bytes"), "{dump}");
}

#[test]
fn hexdump_matches_hexdump_c() {
    let d = hexdump(b"0123456789abcdefXY\n");
    assert_eq!(
        d,
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
         00000010  58 59 0a                                          |XY.|\n"
    );
}

/// A one-shot server that reads one request head and answers with `reply`.
async fn canned(reply: &'static [u8]) -> TaskServer<()> {
    TaskServer::start(move |listener, token| async move {
        tokio::select! {
            () = token.cancelled() => {}
            Ok((mut s, _)) = listener.accept() => {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply).await;
            }
        }
    })
    .await
    .expect("start")
}

#[tokio::test]
async fn http_client_reads_content_length_bodies() {
    let server = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: a: b\r\n\r\nhello").await;
    let r = within(LONG, "response", http::get(server.addr(), "/")).await.expect("response");
    assert_eq!((r.status, r.reason.as_str(), r.version.as_str()), (200, "OK", "HTTP/1.1"));
    assert_eq!(r.header("x-test"), Some("a: b"));
    assert_eq!(r.text(), "hello");
    assert!(r.raw_head.ends_with(b"\r\n\r\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn http_client_dechunks() {
    let server = canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n",
    )
    .await;
    let r = within(LONG, "response", http::get(server.addr(), "/")).await.expect("response");
    assert_eq!(r.text(), "Wikipedia ");
    server.shutdown().await;
}

#[tokio::test]
async fn http_client_reads_pipelined_responses_one_at_a_time() {
    let server = canned(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nB",
    )
    .await;
    let mut conn = HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let a = within(LONG, "first", conn.read_response(false)).await.expect("first");
    let b = within(LONG, "second", conn.read_response(false)).await.expect("second");
    assert_eq!((a.status, a.text().as_str()), (200, "A"));
    assert_eq!((b.status, b.text().as_str()), (404, "B"));
    server.shutdown().await;
}

#[test]
fn parse_head_rejects_what_is_not_http() {
    assert!(http::parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    assert!(http::parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
}
