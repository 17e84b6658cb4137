//! The promises of docs/01-tcp-echo.md, checked over real sockets.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use harness::{BlockingServer, TcpClient, WireTap, within_blocking};
use socket2::{Domain, Socket, Type};
use tcp_echo::{Config, Ending};

const DEADLINE: Duration = Duration::from_secs(10);

fn start(config: Config) -> BlockingServer {
    let listener = tcp_echo::listen("127.0.0.1:0".parse().expect("literal address"))
        .expect("bind an ephemeral port");
    BlockingServer::start_tcp_with("tcp-echo", listener, move |l, stop| {
        tcp_echo::serve(l, &config, &stop)
    })
    .expect("start the server")
}

fn fast_config() -> Config {
    Config {
        idle_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_secs(2),
        nodelay: true,
    }
}

#[test]
fn echoes_a_message_and_half_closes() {
    let server = start(Config::default());
    let got = within_blocking(DEADLINE, "the echo", {
        let addr = server.addr();
        move || tcp_echo::echo(addr, b"hello, server", Duration::from_secs(5))
    })
    .expect("echo");
    assert_eq!(got, b"hello, server");
}

#[test]
fn a_stream_has_no_message_boundaries() {
    let server = start(Config::default());
    let tap = WireTap::start(server.addr()).expect("tap");
    let mut c = TcpClient::connect(tap.addr()).expect("connect");
    // Three writes...
    for piece in [&b"one "[..], b"two ", b"three"] {
        c.send(piece).expect("send");
    }
    c.shutdown_write().expect("half-close");
    // ...and the client reads the echo in whatever pieces arrive; only the
    // bytes and their order are promised, not where the pieces break.
    let mut got = Vec::new();
    let mut byte_by_byte = [0u8; 3];
    loop {
        let n = c.stream().read(&mut byte_by_byte).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&byte_by_byte[..n]);
    }
    assert_eq!(got, b"one two three");
    assert_eq!(tap.stats().to_server, 13);
    assert_eq!(tap.stats().to_client, 13);
}

#[test]
fn half_close_still_delivers_the_rest_of_the_echo() {
    let server = start(Config::default());
    let mut c = TcpClient::connect(server.addr()).expect("connect");
    c.send(&[b'x'; 100_000]).expect("send");
    // We have sent everything and say so with FIN, before reading a byte.
    c.shutdown_write().expect("half-close");
    let echoed = c.recv_to_end().expect("the rest of the echo, then the server's FIN");
    assert_eq!(echoed.len(), 100_000);
}

#[test]
fn a_large_payload_needs_reading_while_writing() {
    // 8 MiB is more than loopback's send and receive buffers together, so a
    // client that wrote everything before reading would deadlock. `echo`
    // reads and writes at once.
    let server = start(Config::default());
    let payload: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let addr = server.addr();
    let expected = payload.clone();
    let got = within_blocking(DEADLINE, "an 8 MiB echo", move || {
        tcp_echo::echo(addr, &payload, Duration::from_secs(5))
    })
    .expect("echo");
    assert!(got == expected, "8 MiB came back altered ({} bytes)", got.len());
}

#[test]
fn binary_and_split_utf8_come_back_byte_exact() {
    let server = start(Config::default());
    let mut c = TcpClient::connect(server.addr()).expect("connect");
    // Every byte value, including 0 and invalid UTF-8.
    let binary: Vec<u8> = (0..=255).collect();
    c.send(&binary).expect("send");
    assert_eq!(c.recv_exact(256).expect("echo"), binary);
    // "🦀" is 4 bytes (f0 9f a6 80). Send it split after its second byte, and
    // wait for the first half's echo before sending the rest, so the server
    // certainly sees two reads with half a character in each.
    let crab = "🦀".as_bytes();
    c.send(&crab[..2]).expect("first half");
    assert_eq!(c.recv_exact(2).expect("first half back"), &crab[..2]);
    c.send(&crab[2..]).expect("second half");
    assert_eq!(c.recv_exact(2).expect("second half back"), &crab[2..]);
}

#[test]
fn one_client_at_a_time_the_second_waits_in_the_backlog() {
    let server = start(Config::default());
    let mut first = TcpClient::connect(server.addr()).expect("first connects");
    first.send(b"1").expect("send");
    assert_eq!(first.recv_exact(1).expect("first is served"), b"1");

    // The second connect succeeds: the kernel completes the handshake and
    // queues the connection in the backlog, but nobody calls accept for it.
    let mut second = TcpClient::connect(server.addr()).expect("second connects");
    second.send(b"2").expect("send");
    second.stream().set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut b = [0u8; 1];
    let err = second.stream().read(&mut b).expect_err("no echo while the first client stays");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");

    // When the first leaves, the server accepts the second and echoes what
    // had been waiting in its receive buffer all along.
    first.shutdown_write().expect("first half-closes");
    first.recv_to_end().expect("first done");
    second.stream().set_read_timeout(Some(harness::IO_TIMEOUT)).expect("timeout");
    assert_eq!(second.recv_exact(1).expect("second is served now"), b"2");
}

#[test]
fn an_idle_client_is_dropped_after_the_timeout() {
    let config = fast_config();
    let idle = config.idle_timeout;
    let server = start(config);
    let mut c = TcpClient::connect(server.addr()).expect("connect");
    let started = Instant::now();
    assert!(c.is_closed_by_peer().expect("the server hangs up before our 5 s read timeout"));
    assert!(
        started.elapsed() >= idle,
        "closed after {:?}, before the idle timeout",
        started.elapsed()
    );
    // And the server is free for the next client.
    let mut next = TcpClient::connect(server.addr()).expect("connect");
    next.send(b"ok").expect("send");
    assert_eq!(next.recv_exact(2).expect("served"), b"ok");
}

#[test]
fn a_client_that_vanishes_mid_stream_does_not_stop_the_server() {
    let server = start(Config::default());
    // Connect, send, and reset: SO_LINGER with a zero timeout makes close()
    // send RST instead of FIN, the way a crashed client's kernel would.
    let rude = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    rude.connect(&server.addr().into()).expect("connect");
    rude.send(&[7u8; 10_000]).expect("send");
    rude.set_linger(Some(Duration::ZERO)).expect("linger 0");
    drop(rude);

    let mut next = TcpClient::connect(server.addr()).expect("connect");
    next.send(b"still here?").expect("send");
    assert_eq!(next.recv_exact(11).expect("served"), b"still here?");
}

#[test]
fn handle_reports_a_reset_as_broken() {
    // The same reset, seen from the server's side through `handle` directly.
    let listener = tcp_echo::listen("127.0.0.1:0".parse().expect("literal")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let rude = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    rude.connect(&addr.into()).expect("connect");
    rude.set_linger(Some(Duration::ZERO)).expect("linger 0");
    drop(rude);
    let (conn, _) = listener.accept().expect("accept");
    let ending = within_blocking(DEADLINE, "handle to return", move || {
        tcp_echo::handle(conn, &Config::default())
    });
    assert_eq!(ending, Ending::Broken { echoed: 0, error: io::ErrorKind::ConnectionReset });
}

#[test]
fn handle_reports_a_clean_close_with_the_byte_count() {
    let listener = tcp_echo::listen("127.0.0.1:0".parse().expect("literal")).expect("bind");
    let mut c = TcpClient::connect(listener.local_addr().expect("addr")).expect("connect");
    c.send(b"twelve bytes").expect("send");
    c.shutdown_write().expect("FIN");
    let (conn, _) = listener.accept().expect("accept");
    let ending = within_blocking(DEADLINE, "handle to return", move || {
        tcp_echo::handle(conn, &Config::default())
    });
    assert_eq!(ending, Ending::ClientClosed { echoed: 12 });
    assert_eq!(c.recv_to_end().expect("echo then FIN"), b"twelve bytes");
}

/// Makes the server side of a connection on `listener` close first, so that
/// side ends in TIME_WAIT on the listening port, then closes the listener.
fn leave_a_time_wait_behind(listener: std::net::TcpListener) -> SocketAddr {
    let addr = listener.local_addr().expect("addr");
    let mut client = TcpStream::connect(addr).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    drop(server_side); // the server closes first: it is the side that waits
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the client sees FIN");
    drop(client);
    drop(listener);
    addr
}

#[test]
fn so_reuseaddr_lets_a_restarted_server_bind_despite_time_wait() {
    let addr = leave_a_time_wait_behind(
        tcp_echo::listen("127.0.0.1:0".parse().expect("literal")).expect("bind"),
    );
    // Without SO_REUSEADDR the port is still taken by the TIME_WAIT socket.
    let plain = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let err = plain.bind(&addr.into()).expect_err("TIME_WAIT holds the port");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // `listen` sets SO_REUSEADDR, so the restarted server gets its port back.
    let again = tcp_echo::listen(addr).expect("rebinding with SO_REUSEADDR works");
    assert_eq!(again.local_addr().expect("addr"), addr);
}

#[test]
fn accepted_connections_have_nagle_off_when_configured() {
    let listener = tcp_echo::listen("127.0.0.1:0".parse().expect("literal")).expect("bind");
    let _c = TcpClient::connect(listener.local_addr().expect("addr")).expect("connect");
    let (conn, _) = listener.accept().expect("accept");
    let probe = conn.try_clone().expect("second handle to the same socket");
    // Hang up from our side so `handle` returns at once.
    let _ = probe.set_read_timeout(Some(Duration::from_millis(1)));
    let checker = probe.try_clone().expect("third handle");
    tcp_echo::handle(conn, &Config { nodelay: true, ..fast_config() });
    assert!(checker.nodelay().expect("getsockopt TCP_NODELAY"));
}
