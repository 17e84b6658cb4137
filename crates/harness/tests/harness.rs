//! The harness's own tests: each helper does what its docs promise, and fails
//! the way its docs promise when the thing it waits for never happens.

use std::io::{self, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

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
