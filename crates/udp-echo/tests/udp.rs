//! The promises of docs/02-udp-echo.md, checked over real sockets.

mod common;

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::start;
use harness::{UdpClient, within_blocking};
use udp_echo::{Config, MAX_DATAGRAM, Rng, TOO_LARGE_REPLY};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn echoes_a_datagram_and_an_empty_one() {
    let (server, _) = start(Config::default());
    let c = UdpClient::connect(server.addr()).expect("client");
    c.send(b"hello").expect("send");
    assert_eq!(c.recv(64).expect("echo"), b"hello");
    // A zero-length datagram is a real datagram in UDP (unlike a zero-length
    // TCP write, which sends nothing).
    c.send(b"").expect("send empty");
    assert_eq!(c.recv(64).expect("empty echo"), b"");
}

#[test]
fn three_sends_are_three_receives() {
    let (server, _) = start(Config::default());
    let c = UdpClient::connect(server.addr()).expect("client");
    for piece in [&b"one"[..], b"two", b"three"] {
        c.send(piece).expect("send");
    }
    // Each receive returns exactly one datagram, never two run together and
    // never half of one: the boundaries survive, unlike TCP's stream.
    assert_eq!(c.recv(64).expect("1st"), b"one");
    assert_eq!(c.recv(64).expect("2nd"), b"two");
    assert_eq!(c.recv(64).expect("3rd"), b"three");
}

#[test]
fn the_largest_datagram_is_echoed_and_a_larger_one_refused() {
    let (server, stats) = start(Config::default());
    let c = UdpClient::connect(server.addr()).expect("client");
    let biggest = vec![b'a'; MAX_DATAGRAM];
    c.send(&biggest).expect("send");
    assert_eq!(c.recv(MAX_DATAGRAM + 100).expect("echo"), biggest);
    c.send(&vec![b'b'; MAX_DATAGRAM + 1]).expect("send");
    assert_eq!(c.recv(MAX_DATAGRAM + 100).expect("refusal"), TOO_LARGE_REPLY);
    assert_eq!(stats.too_large.load(Ordering::SeqCst), 1);
}

#[test]
fn a_small_buffer_truncates_silently_and_the_rest_is_gone() {
    let (server, _) = start(Config::default());
    let c = UdpClient::connect(server.addr()).expect("client");
    c.send(&[b'x'; 100]).expect("send");
    c.send(b"next").expect("send");
    // Read the 100-byte echo into 10 bytes: recv says 10 and nothing else.
    assert_eq!(c.recv(10).expect("cut echo"), vec![b'x'; 10]);
    // The other 90 bytes were discarded with it: the next read is the next
    // datagram, not the rest of the first.
    assert_eq!(c.recv(64).expect("next datagram"), b"next");
}

#[test]
fn one_socket_serves_many_clients_without_connections() {
    let (server, stats) = start(Config::default());
    let clients: Vec<UdpClient> =
        (0..50).map(|_| UdpClient::connect(server.addr()).expect("client")).collect();
    for (i, c) in clients.iter().enumerate() {
        c.send(format!("client {i}").as_bytes()).expect("send");
    }
    // Each echo goes back to the address its datagram came from.
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.recv(64).expect("echo"), format!("client {i}").as_bytes());
    }
    assert_eq!(stats.received.load(Ordering::SeqCst), 50);
}

#[test]
fn retries_get_every_request_through_a_lossy_server() {
    let (server, stats) = start(Config { drop_rate: 0.5, seed: 42, ..Config::default() });
    let addr = server.addr();
    let attempts = within_blocking(DEADLINE, "20 requests through 50% loss", move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        (0..20)
            .map(|i| {
                let msg = format!("request {i}");
                let reply =
                    udp_echo::request(&socket, addr, msg.as_bytes(), Duration::from_millis(30), 30)
                        .expect("an echo within 30 attempts");
                assert_eq!(reply.bytes, msg.as_bytes());
                reply.attempts
            })
            .collect::<Vec<u32>>()
    });
    assert!(
        attempts.iter().any(|&a| a > 1),
        "with 50% loss some request needs a retry: {attempts:?}"
    );
    let (received, dropped, echoed) = (
        stats.received.load(Ordering::SeqCst),
        stats.dropped.load(Ordering::SeqCst),
        stats.echoed.load(Ordering::SeqCst),
    );
    assert!(dropped > 0);
    assert_eq!(received, dropped + echoed);
    assert_eq!(u64::from(attempts.iter().sum::<u32>()), received, "one datagram per send");
}

#[test]
fn a_server_that_never_answers_ends_in_a_timeout_error() {
    let (server, stats) = start(Config { drop_rate: 1.0, seed: 1, ..Config::default() });
    let addr = server.addr();
    let err = within_blocking(DEADLINE, "the client to give up", move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        udp_echo::request(&socket, addr, b"anyone?", Duration::from_millis(20), 3)
    })
    .expect_err("every datagram is dropped");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(stats.received.load(Ordering::SeqCst), 3, "three attempts, three datagrams");
}

#[test]
fn strays_are_ignored_while_waiting_for_the_echo() {
    let (server, _) = start(Config::default());
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // Someone else sends our client junk before it asks anything.
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger.send_to(b"junk", socket.local_addr().expect("addr")).expect("send");
    let reply = udp_echo::request(&socket, server.addr(), b"mine", Duration::from_secs(2), 1)
        .expect("the stray is skipped, the echo taken");
    assert_eq!(reply, udp_echo::Reply { bytes: b"mine".to_vec(), attempts: 1 });
}

#[test]
fn the_drop_generator_is_seeded_and_close_to_its_rate() {
    let draws = |seed| {
        let mut r = Rng::new(seed);
        (0..10_000).map(|_| r.next_f64()).collect::<Vec<f64>>()
    };
    assert_eq!(draws(7), draws(7), "same seed, same decisions");
    assert_ne!(draws(7), draws(8));
    let below = draws(7).iter().filter(|&&x| x < 0.3).count();
    assert!((2_700..3_300).contains(&below), "{below} of 10000 under 0.3");
    assert!(draws(9).iter().all(|x| (0.0..1.0).contains(x)));
}
