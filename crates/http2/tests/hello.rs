//! A client that opens a connection and never finishes its hello: on plain
//! TCP, a preface cut short; over TLS, a handshake that stalls, or ALPN `h2`
//! and then part of the preface. Each must lose its connection slot within
//! `hello_timeout`, or a handful of such sockets fill the server for good.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{STEP, Server};
use http2::frames::PREFACE;
use http2::{Config, Stats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The test's hello timeout: short, so the test is quick.
const HELLO: Duration = Duration::from_millis(300);

/// How long a stalled client may stay connected: the hello timeout plus
/// slack for a busy machine, and well under the 30 s that PINGs would take.
const CLOSED_BY: Duration = Duration::from_secs(3);

/// Sends `partial` and nothing more, then waits for the server to close;
/// returns how long that took.
async fn stall<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, partial: &[u8]) -> Duration {
    let start = Instant::now();
    io.write_all(partial).await.expect("send part of the preface");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(CLOSED_BY, io.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "still open after {CLOSED_BY:?} having sent {:?}",
        String::from_utf8_lossy(partial)
    );
    start.elapsed()
}

#[tokio::test]
async fn a_preface_cut_short_loses_its_slot_within_the_hello_timeout() {
    // Two slots, both taken by clients that start the preface and stop: one
    // after "PRI", one after 16 of its 24 bytes.
    let config = Config { hello_timeout: HELLO, max_connections: 2, ..Config::default() };
    let server = Server::start(config).await;
    let mut stalled = Vec::new();
    for partial in [&PREFACE[..3], &PREFACE[..16]] {
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        stalled.push(tokio::spawn(async move { stall(tcp, partial).await }));
    }
    for s in stalled {
        let took = harness::within(STEP, "a stalled client", s).await.expect("task");
        assert!(took >= HELLO / 2, "closed after {took:?}, long before the hello timeout");
    }
    assert_eq!(Stats::get(&server.stats.hello_timeouts), 2);
    assert_eq!(Stats::get(&server.stats.h2_connections), 0, "hyper never saw them");
    // Both slots are free again.
    server.still_answers().await;
}

/// A TLS server with the test's hello timeout, and a client config that
/// trusts it and offers `alpn`.
fn tls_pair(alpn: &[u8]) -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    let ca = tls::certs::Ca::new("test CA").expect("CA");
    let cert = ca.server_cert().expect("cert");
    let server = http2::tls_config(&cert).expect("config");
    let mut client = (*tls::client::client_config(ca.roots())).clone();
    client.alpn_protocols = vec![alpn.to_vec()];
    (server, tokio_rustls::TlsConnector::from(Arc::new(client)))
}

#[tokio::test]
async fn over_tls_a_stalled_handshake_or_preface_loses_its_slot_within_the_hello_timeout() {
    let (server_tls, connector) = tls_pair(http2::ALPN_H2);
    let config = Config { hello_timeout: HELLO, max_connections: 2, ..Config::default() };
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    let server =
        harness::TaskServer::start(move |l, t| http2::serve(l, Some(server_tls), config, s, t))
            .await
            .expect("bind");
    // One client stops inside the TLS handshake (it sends nothing at all).
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    let silent = tokio::spawn(async move { stall(tcp, b"").await });
    // The other finishes it, ALPN picks h2, and it sends "PRI" and stops.
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = harness::within(STEP, "TLS handshake", connector.connect(name, tcp))
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(http2::ALPN_H2));
    let pri = tokio::spawn(async move { stall(tls, &PREFACE[..3]).await });
    for s in [silent, pri] {
        let took = harness::within(STEP, "a stalled client", s).await.expect("task");
        assert!(took >= HELLO / 2, "closed after {took:?}, long before the hello timeout");
    }
    assert_eq!(Stats::get(&stats.hello_timeouts), 2);
    // A good client gets a slot and an answer.
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = harness::within(STEP, "TLS handshake", connector.connect(name, tcp))
        .await
        .expect("handshake");
    let h2 = http2::client::handshake(tls, "localhost".into(), Default::default())
        .await
        .expect("h2 handshake");
    let a =
        harness::within(common::STILL_UP, "a good client's answer", h2.get("/resource/1", 1024))
            .await
            .expect("answered");
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn after_a_whole_preface_silence_is_ended_by_the_pings() {
    // Past the preface, the hello timeout no longer applies: hyper's PINGs
    // do, even before the client's SETTINGS. Short ones here.
    let config = Config {
        hello_timeout: HELLO,
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(100),
        ..Config::default()
    };
    let server = Server::start(config).await;
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    stall(tcp, PREFACE).await;
    assert_eq!(Stats::get(&server.stats.hello_timeouts), 0, "the preface came in time");
    assert_eq!(Stats::get(&server.stats.h2_connections), 1);
    server.still_answers().await;
}
