//! The promises of docs/03-threads-vs-epoll.md, checked over real sockets for
//! every flavour: many concurrent clients, large payloads, resets, idle
//! clients, the connection limit, and (for the event loop) bounded buffers
//! under a client that never reads.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use common::{IO, connect, each_flavour, pattern, start};
use harness::{eventually_blocking, within_blocking};
use threads_vs_epoll::{BUSY, Config, Flavour, Stats, raise_nofile};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn echoes_and_closes_after_the_client_half_closes() {
    each_flavour(|flavour| {
        let (server, _) = start(flavour, Config::default());
        let got = threads_vs_epoll::echo(server.addr(), b"hello, loop\n", IO).expect("echo");
        assert_eq!(got, b"hello, loop\n", "{flavour:?}");
    });
}

#[test]
fn five_hundred_concurrent_clients_are_all_echoed() {
    raise_nofile().expect("raise the open-file limit");
    const CLIENTS: usize = 500;
    each_flavour(|flavour| {
        let (server, stats) = start(flavour, Config::default());
        let addr = server.addr();
        within_blocking(DEADLINE, "500 concurrent echoes", move || {
            // All connected before anyone speaks: the server holds 500 at once.
            let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
            eventually_blocking(IO, "the server to count 500 open connections", || {
                stats.open() == CLIENTS
            });
            for (i, c) in clients.iter_mut().enumerate() {
                c.write_all(format!("client {i:04} says hi\n").as_bytes()).expect("send");
            }
            for (i, c) in clients.iter_mut().enumerate() {
                let want = format!("client {i:04} says hi\n");
                let mut got = vec![0; want.len()];
                c.read_exact(&mut got).expect("read the echo");
                assert_eq!(got, want.as_bytes(), "{flavour:?}: client {i} got another's bytes");
            }
        });
    });
}

#[test]
fn one_mebibyte_comes_back_whole() {
    each_flavour(|flavour| {
        let (server, _) = start(flavour, Config::default());
        let payload = pattern(1 << 20);
        let got =
            threads_vs_epoll::echo_large(server.addr(), payload.clone(), IO).expect("large echo");
        assert_eq!(got.len(), payload.len(), "{flavour:?}");
        assert!(got == payload, "{flavour:?}: the echo differs from what was sent");
    });
}

#[test]
fn a_peer_that_resets_is_dropped_and_others_go_on() {
    each_flavour(|flavour| {
        let (server, stats) = start(flavour, Config::default());
        let c = connect(server.addr());
        (&c).write_all(b"about to vanish").expect("send");
        eventually_blocking(IO, "the connection to be open", || stats.open() == 1);
        // Linger zero: close() sends RST instead of FIN, like a crashed peer.
        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).expect("linger 0");
        drop(c);
        eventually_blocking(IO, "the reset connection to be closed", || stats.open() == 0);
        assert_eq!(stats.errors(), 1, "{flavour:?}: the reset should count as an error");
        let got = threads_vs_epoll::echo(server.addr(), b"still here?", IO).expect("echo");
        assert_eq!(got, b"still here?", "{flavour:?}");
    });
}

#[test]
fn past_the_limit_clients_are_told_busy_and_the_slot_comes_back() {
    each_flavour(|flavour| {
        let config = Config { max_connections: 3, ..Config::default() };
        let (server, stats) = start(flavour, config);
        let mut held: Vec<TcpStream> = (0..3).map(|_| connect(server.addr())).collect();
        for c in &mut held {
            c.write_all(b"x").expect("send");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("served");
        }
        let mut fourth = connect(server.addr());
        let mut said = Vec::new();
        fourth.read_to_end(&mut said).expect("read the refusal");
        assert_eq!(said, BUSY, "{flavour:?}");
        assert_eq!(stats.refused(), 1, "{flavour:?}");
        // One leaves; its slot is free again.
        drop(held.pop());
        eventually_blocking(IO, "the slot to free up", || stats.open() == 2);
        let got = threads_vs_epoll::echo(server.addr(), b"my turn", IO).expect("echo");
        assert_eq!(got, b"my turn", "{flavour:?}");
    });
}

#[test]
fn a_silent_client_is_hung_up_on() {
    each_flavour(|flavour| {
        let config = Config { idle_timeout: Duration::from_millis(300), ..Config::default() };
        let (server, stats) = start(flavour, config);
        let mut c = connect(server.addr());
        let mut buf = [0u8; 8];
        // Read returns 0 (a close) long before our own 10 s timeout.
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{flavour:?}");
        eventually_blocking(IO, "the server to forget it", || stats.open() == 0);
    });
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_event_loops_buffer() {
    let cap = 64 * 1024;
    let config = Config { write_buf_cap: cap, ..Config::default() };
    let (server, stats) = start(Flavour::Evented, config);
    let c = connect(server.addr());
    // More than every socket buffer between us and the server can hold
    // (a few MiB each way on loopback), so the writer must get stuck.
    let payload = pattern(32 << 20);
    let mut writer = c.try_clone().expect("clone");
    let sending = {
        let payload = payload.clone();
        thread::spawn(move || -> io::Result<()> {
            writer.set_write_timeout(Some(Duration::from_secs(60)))?;
            writer.write_all(&payload)?;
            writer.shutdown(std::net::Shutdown::Write)
        })
    };
    eventually_blocking(IO, "the server's buffer to fill to the cap", || stats.buffered() == cap);
    assert!(stats.peak_buffered() <= cap, "peak {} over cap {cap}", stats.peak_buffered());
    assert!(!sending.is_finished(), "the client's writes should be stuck: back-pressure");
    // Now read: everything comes back, in order, and the buffer empties.
    let got = within_blocking(DEADLINE, "the whole echo", move || {
        let mut got = Vec::with_capacity(payload.len());
        (&c).read_to_end(&mut got).expect("read the echo");
        (got, payload)
    });
    sending.join().expect("writer thread").expect("writer");
    assert!(got.0 == got.1, "the echo differs from what was sent");
    assert!(stats.peak_buffered() <= cap, "peak {} over cap {cap}", stats.peak_buffered());
    eventually_blocking(IO, "the buffer to drain", || stats.buffered() == 0);
}

#[tokio::test]
async fn the_tokio_server_closes_open_connections_when_cancelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = threads_vs_epoll::listen("127.0.0.1:0".parse().expect("literal address"))
        .expect("bind an ephemeral port");
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("into tokio");
    let stats = Stats::shared();
    let watched = Arc::clone(&stats);
    let server = harness::TaskServer::start_with(listener, move |l, token| {
        threads_vs_epoll::serve_tokio(l, Config::default(), watched, token)
    })
    .expect("start");
    let mut c = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    c.write_all(b"hi").await.expect("send");
    let mut two = [0u8; 2];
    harness::within(IO, "the echo", c.read_exact(&mut two)).await.expect("echo");
    // Cancel while the client is still connected: the server must tell it
    // (a FIN, so read returns 0) and finish within the harness's deadline.
    server.shutdown().await.expect("serve_tokio returns Ok");
    let n = harness::within(IO, "the server's close", c.read(&mut two)).await.expect("read");
    assert_eq!(n, 0, "the client should see an orderly close");
    assert_eq!(stats.open(), 0);
}

#[test]
fn a_listener_that_cannot_accept_stops_the_server_with_its_error() {
    // A socket bound but never `listen`ed: every `accept` on it fails with
    // EINVAL, as on a listener that broke. No retry can help, so the accept
    // policy says stop. Before it, the threaded loop retried at once forever
    // (a core at 100%) and the event loops every 10 ms forever.
    each_flavour(|flavour| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        socket.bind(&addr.into()).expect("bind");
        let not_listening: std::net::TcpListener = socket.into();
        let outcome = within_blocking(DEADLINE, "serve to give up on the listener", move || {
            let stop = Arc::new(AtomicBool::new(false));
            flavour.serve(not_listening, &Config::default(), &Stats::shared(), &stop)
        });
        let err = outcome.expect_err("a listener that cannot accept is an error");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{flavour:?}: {err}");
    });
}
