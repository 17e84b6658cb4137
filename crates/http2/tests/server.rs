//! The server's own behaviour: graceful shutdown with GOAWAY, PINGs that
//! find a vanished peer, and ALPN choosing h2 or HTTP/1.1 over TLS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Raw, STEP, Server};
use http2::frames::{self, Kind};
use http2::{Config, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_open_streams_finish() {
    let server = Server::start(Config::default()).await;
    let h2 = Arc::new(server.h2().await);
    let slow = {
        let h2 = Arc::clone(&h2);
        tokio::spawn(async move { h2.get("/slow?ms=300", 1024).await })
    };
    harness::eventually(STEP, "the slow request arrived", || {
        Stats::get(&server.stats.requests) == 1
    })
    .await;
    let stats = Arc::clone(&server.stats);
    let stopped = harness::within(STEP, "the server stops", server.server.shutdown()).await;
    stopped.expect("serve returns Ok");
    let a = harness::within(STEP, "the slow answer", slow).await.expect("task").expect("answered");
    assert_eq!((a.status, &a.body[..]), (200, &b"slept 300 ms\n"[..]));
    assert!(h2.get("/resource/1", 1024).await.is_err(), "a new stream after GOAWAY");
    assert_eq!(Stats::get(&stats.requests), 1);
}

#[tokio::test]
async fn a_peer_that_never_answers_ping_is_closed() {
    let config = Config {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(100),
        ..Config::default()
    };
    let server = Server::start(config).await;
    let mut raw = Raw::start(server.addr()).await;
    let frames = raw.until_closed().await;
    assert!(frames.iter().any(|f| f.kind == Kind::Ping && !f.has(frames::ACK)), "{frames:?}");
    server.still_answers().await;
}

#[tokio::test]
async fn alpn_chooses_h2_or_http1_over_tls() {
    let ca = tls::certs::Ca::new("test CA").expect("CA");
    let cert = ca.server_cert().expect("cert");
    let tls_config = http2::tls_config(&cert).expect("config");
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    let server = harness::TaskServer::start(move |l, t| {
        http2::serve(l, Some(tls_config), Config::default(), s, t)
    })
    .await
    .expect("bind");
    let connect = |alpn: &[u8]| {
        let mut config = (*tls::client::client_config(ca.roots())).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let addr = server.addr();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            connector.connect(name, tcp).await.expect("handshake")
        }
    };
    let tls = harness::within(STEP, "TLS with ALPN h2", connect(b"h2")).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h2 =
        http2::client::handshake(tls, "localhost".into(), Default::default()).await.expect("h2");
    let a = harness::within(STEP, "h2 over TLS", h2.get("/resource/1", 1024)).await.expect("get");
    assert_eq!(a.status, 200);

    let mut tls = harness::within(STEP, "TLS with ALPN http/1.1", connect(b"http/1.1")).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /resource/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    harness::within(STEP, "HTTP/1.1 over TLS", tls.read_to_end(&mut answer)).await.expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer));
    assert_eq!((Stats::get(&stats.h2_connections), Stats::get(&stats.h1_connections)), (1, 1));
}
