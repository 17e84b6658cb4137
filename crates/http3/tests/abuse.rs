//! Abuse over real UDP sockets, the server staying up through each: garbage
//! datagrams, a flood of Initials from many ports, and a client address
//! that never answers (the anti-amplification limit).

mod common;

use std::time::Duration;

use common::{STEP, Server};
use http3::relay::{self, Dir, Header, LongKind, Relay};
use http3::{Config, Stats};
use tokio::net::UdpSocket;

/// Sockets the attacks send from: many source ports, a bounded number.
const SOURCES: usize = 64;

async fn sockets(n: usize) -> Vec<UdpSocket> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    }
    out
}

#[tokio::test]
async fn garbage_datagrams_start_nothing_and_the_server_stays_up() {
    let server = Server::start(Config::default()).await;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let mut sent = 0;
    for s in sockets(SOURCES).await {
        // Empty, one byte, noise of every size, a long header with a
        // version nobody speaks, a short header for a connection that
        // does not exist.
        let mut bogus_version = vec![0xc0, 0x0a, 0x1a, 0x2a, 0x3a, 8];
        bogus_version.resize(1200, 0);
        let mut short = vec![0x40];
        short.extend(noise(40));
        for d in [vec![], vec![0xc0], noise(30), noise(1200), noise(1500), bogus_version, short] {
            s.send_to(&d, server.addr).await.expect("send");
            sent += 1;
        }
    }
    assert_eq!(sent, SOURCES * 7);
    server.still_answers().await;
    // Only the good client's Initial became an incoming connection.
    assert_eq!(Stats::get(&server.stats.incoming), 1, "{:?}", server.stats);
    assert_eq!(Stats::get(&server.stats.handshakes), 1);
}

#[tokio::test]
async fn a_flood_of_initials_gets_retries_beyond_a_few_handshakes() {
    let config = Config::default();
    let server = Server::start(config).await;
    let initials = common::initials(std::sync::Arc::clone(&server.roots), SOURCES).await;
    let from = sockets(SOURCES).await;
    for (s, d) in from.iter().zip(&initials) {
        s.send_to(d, server.addr).await.expect("send");
    }
    // Each source hears back: a handshake for the first few, a Retry (one
    // small packet, no state kept) for the rest.
    let (mut retries, mut handshakes) = (0, 0);
    let mut buf = vec![0u8; 65_535];
    for s in &from {
        let (n, _) = harness::within(STEP, "an answer", s.recv_from(&mut buf)).await.expect("recv");
        match relay::decode(&buf[..n], 8).first() {
            Some(Header::Long { kind: LongKind::Retry, .. }) => retries += 1,
            Some(Header::Long { kind: LongKind::Initial, .. }) => handshakes += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        (handshakes, retries),
        (config.retry_above, SOURCES.saturating_sub(config.retry_above))
    );
    assert_eq!(Stats::get(&server.stats.handshakes), config.retry_above as u64);
    assert_eq!(Stats::get(&server.stats.retries), (SOURCES - config.retry_above) as u64);
    // A good client gets a Retry too, comes back with its token (its address
    // is then proven) and is served.
    server.still_answers().await;
}

/// A certificate with many names: a server flight of several kilobytes,
/// more than three times a client's first 1,200-byte datagram.
fn big_cert(ca: &tls::certs::Ca) -> tls::certs::ServerCert {
    let names: Vec<String> = (0..200)
        .map(|i| format!("host-{i}.lesson-15.example"))
        .chain(["localhost".into()])
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let now = std::time::SystemTime::now();
    ca.sign(&names, now - Duration::from_secs(60), now + Duration::from_secs(3600)).expect("cert")
}

fn handshake_bytes_to_client(relay: &Relay) -> usize {
    relay
        .datagrams()
        .iter()
        .filter(|d| d.dir == Dir::ToClient)
        .filter(|d| matches!(relay::decode(&d.bytes, 8).first(), Some(Header::Long { .. })))
        .map(|d| d.bytes.len())
        .sum()
}

#[tokio::test]
async fn before_the_address_is_proven_the_server_sends_at_most_three_times_what_it_got() {
    let ca = tls::certs::Ca::new("test CA").expect("CA");
    let cert = big_cert(&ca);
    let config = Config {
        handshake_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_millis(1500),
        ..Config::default()
    };
    // First, a real handshake with this certificate: the server's flight
    // is more than three times the client's first datagram, so the limit
    // has something to hold back.
    let server = Server::start_with(config, &ca, &cert);
    let relay = Relay::start(server.addr).await.expect("relay");
    let (_endpoint, h3) = server.connect_via(relay.addr()).await;
    let first_up = relay.datagrams()[0].bytes.len();
    let full_flight = handshake_bytes_to_client(&relay);
    println!(
        "a full handshake: client's first datagram {first_up} bytes, server's flight {full_flight}"
    );
    assert!(full_flight > 3 * first_up, "flight {full_flight}, first datagram {first_up}");
    drop(h3);

    // Now a "client" whose address never answers (a spoofed source): only
    // its first datagram reaches the server, nothing after.
    let server = Server::start_with(config, &ca, &cert);
    let only_first: relay::Filter = Box::new(|n, _| n == 0);
    let relay = Relay::start_with(server.addr, only_first, Duration::ZERO).await.expect("relay");
    let endpoint = http3::client::endpoint(std::sync::Arc::clone(&server.roots)).expect("client");
    let _attempt = endpoint.connect(relay.addr(), "localhost").expect("connect");
    let stats = std::sync::Arc::clone(&server.stats);
    harness::eventually(STEP, "the server gives up the handshake", || {
        Stats::get(&stats.failed_handshakes) == 1
    })
    .await;
    let t = relay.totals();
    println!("address never proven: {t:?}");
    assert_eq!(t.to_server.0, 1, "{t:?}");
    assert!(t.to_client.1 > 0, "the server answered nothing: {t:?}");
    assert!(
        t.to_client.1 <= 3 * t.to_server.1,
        "sent {} bytes for {} received: {t:?}",
        t.to_client.1,
        t.to_server.1
    );
    server.still_answers().await;
}
