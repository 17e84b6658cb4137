//! How TLS fails, each over a real socket, and each followed by a good
//! client to show the server kept serving.

mod common;

use std::time::{Duration, SystemTime};

use common::{LIMIT, Server};
use harness::{eventually, within};
use rustls::{AlertDescription, CertificateError};
use tls::certs::Ca;
use tls::client::{self, ClientError};
use tls::{Config, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cert_error(e: &ClientError) -> &CertificateError {
    match e.tls() {
        Some(rustls::Error::InvalidCertificate(c)) => c,
        _ => panic!("expected a certificate error, got: {e}"),
    }
}

/// The server saw the client's alert and counted a failed handshake.
async fn server_counted_a_failure(s: &Server) {
    eventually(LIMIT, "the server to count the failed handshake", || {
        Stats::get(&s.stats.handshake_failures) == 1
    })
    .await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_refuses_the_server() {
    let s = Server::start(Config::default()).await;
    let stranger = Ca::new("not the server's CA").expect("CA");
    let e = client::fetch(s.addr(), "localhost", client::client_config(stranger.roots()), LIMIT)
        .await
        .expect_err("an unknown CA must fail");
    assert_eq!(cert_error(&e), &CertificateError::UnknownIssuer, "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "a clear message: {e}");
    server_counted_a_failure(&s).await;
    s.still_serves().await;
    s.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let s = Server::start(Config::default()).await;
    let e = s.fetch("example.com").await.expect_err("the certificate does not name example.com");
    assert!(
        matches!(
            cert_error(&e),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{e}"
    );
    server_counted_a_failure(&s).await;
    s.still_serves().await;
    s.stop().await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = Ca::new("test CA").expect("CA");
    let year = Duration::from_secs(365 * 24 * 60 * 60);
    let now = SystemTime::now();
    let expired = ca.sign(&tls::certs::SERVER_NAMES, now - 2 * year, now - year).expect("sign");
    let s = Server::start_with(ca, &expired, Config::default()).await;
    let e = s.fetch("localhost").await.expect_err("an expired certificate must fail");
    assert!(
        matches!(
            cert_error(&e),
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{e}"
    );
    server_counted_a_failure(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn a_client_offering_only_tls12_gets_a_protocol_version_alert() {
    let s = Server::start(Config::default()).await;
    let config = client::with_versions(s.ca.roots(), &[&rustls::version::TLS12]);
    let e = client::fetch(s.addr(), "localhost", config, LIMIT).await.expect_err("1.3 only");
    assert!(
        matches!(e.tls(), Some(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion))),
        "{e}"
    );
    server_counted_a_failure(&s).await;
    s.still_serves().await;
    s.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400() {
    let s = Server::start(Config::default()).await;
    let mut plain = TcpStream::connect(s.addr()).await.expect("connect");
    plain.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
    let mut answer = Vec::new();
    within(LIMIT, "the 400 and the close", plain.read_to_end(&mut answer)).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
    assert!(answer.ends_with("this port speaks TLS: use https:// instead.\n"), "{answer}");
    assert_eq!(Stats::get(&s.stats.plain_http), 1);
    s.still_serves().await;
    s.stop().await;
}

#[tokio::test]
async fn a_tls_client_on_a_plain_port_gets_a_clear_error() {
    // A plain HTTP server: it answers whatever arrives with plain text.
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let plain = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 512];
        let _ = c.read(&mut buf).await;
        let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    });
    let ca = Ca::new("test CA").expect("CA");
    let e = client::fetch(addr, "localhost", client::client_config(ca.roots()), LIMIT)
        .await
        .expect_err("plain text is not TLS");
    assert!(matches!(e.tls(), Some(rustls::Error::InvalidMessage(_))), "{e}");
    within(LIMIT, "the plain server to finish", plain).await.expect("plain server");
}

#[tokio::test]
async fn a_handshake_that_stalls_is_cut_off_and_others_are_served() {
    let handshake_timeout = Duration::from_millis(300);
    let s = Server::start(Config { handshake_timeout, ..Config::default() }).await;
    // One says nothing at all; the other sends the first bytes of a
    // ClientHello (record header and message type) and stops.
    let mut silent = TcpStream::connect(s.addr()).await.expect("connect");
    let mut half = TcpStream::connect(s.addr()).await.expect("connect");
    half.write_all(b"\x16\x03\x01\x00\xf6\x01\x00").await.expect("send");
    let started = tokio::time::Instant::now();
    // Meanwhile a good client is served at once: the stalled ones hold a
    // task each, not the server.
    s.still_serves().await;
    for stalled in [&mut silent, &mut half] {
        let mut buf = [0u8; 64];
        // The server closes: end of stream (Ok(0)) or a reset.
        let got =
            within(LIMIT, "the server to close a stalled handshake", stalled.read(&mut buf)).await;
        assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    }
    assert!(started.elapsed() >= handshake_timeout - Duration::from_millis(50));
    assert_eq!(Stats::get(&s.stats.handshake_timeouts), 2);
    s.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_is_closed_and_counted() {
    let handshake_timeout = Duration::from_millis(300);
    let s =
        Server::start(Config { handshake_timeout, max_connections: 1, ..Config::default() }).await;
    // The only slot goes to a client that says nothing (accepted first: the
    // listener's queue is first in, first out).
    let _silent = TcpStream::connect(s.addr()).await.expect("connect");
    let refused = s.fetch("localhost").await.expect_err("the server is full");
    assert!(matches!(refused, ClientError::Io(_)), "closed mid-handshake: {refused}");
    assert_eq!(Stats::get(&s.stats.refused_full), 1);
    // Once the silent one is cut off, the slot is free again. (Its task
    // counts the timeout a moment before it gives the slot back, so poll.)
    let served = within(LIMIT, "a good client to be served once the slot is free", async {
        loop {
            match s.fetch("localhost").await {
                Ok(x) => break x,
                Err(_) => tokio::time::sleep(harness::wait::POLL_EVERY).await,
            }
        }
    })
    .await;
    assert!(served.answer.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(Stats::get(&s.stats.handshake_timeouts), 1);
    s.stop().await;
}
