//! Mutual TLS: the server asks for a client certificate from its CA.
//!
//! In TLS 1.3 the client finishes its side of the handshake before the
//! server has checked the client's certificate, so a refused client learns
//! it only when it reads: the server's alert arrives instead of an answer.

mod common;

use std::sync::Arc;

use common::LIMIT;
use harness::{TaskServer, eventually};
use rustls::AlertDescription;
use tls::certs::Ca;
use tls::client::{self, ClientError};
use tls::{Config, Stats};

async fn start(ca: &Ca) -> (TaskServer<std::io::Result<()>>, Arc<Stats>) {
    let cert = ca.server_cert().expect("sign");
    let tls = tls::mutual_tls_config(&cert, ca.roots()).expect("a verifier for the CA");
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    let server = TaskServer::start(move |l, token| tls::serve(l, tls, Config::default(), s, token))
        .await
        .expect("bind");
    (server, stats)
}

fn alert(e: &ClientError) -> Option<AlertDescription> {
    match e.tls() {
        Some(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

#[tokio::test]
async fn a_client_with_a_certificate_from_the_ca_is_served() {
    let ca = Ca::new("company CA").expect("CA");
    let (server, stats) = start(&ca).await;
    let me = ca.client_cert("billing service").expect("client certificate");
    let config = client::with_client_cert(ca.roots(), &me).expect("client config");
    let x = client::fetch(server.addr(), "localhost", config, LIMIT).await.expect("served");
    let answer = String::from_utf8_lossy(&x.answer);
    assert!(answer.contains("client certificate checked"), "{answer}");
    assert_eq!(Stats::get(&stats.handshakes), 1);
    server.shutdown().await.expect("serve returns Ok");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let ca = Ca::new("company CA").expect("CA");
    let (server, stats) = start(&ca).await;
    let e = client::fetch(server.addr(), "localhost", client::client_config(ca.roots()), LIMIT)
        .await
        .expect_err("no client certificate");
    assert_eq!(alert(&e), Some(AlertDescription::CertificateRequired), "{e}");
    eventually(LIMIT, "the server to count it", || Stats::get(&stats.handshake_failures) == 1)
        .await;
    server.shutdown().await.expect("serve returns Ok");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let ca = Ca::new("company CA").expect("CA");
    let (server, stats) = start(&ca).await;
    let stranger = Ca::new("someone else's CA").expect("CA");
    let forged = stranger.client_cert("billing service").expect("client certificate");
    // The client trusts the server (ca), but its own certificate is from stranger.
    let config = client::with_client_cert(ca.roots(), &forged).expect("client config");
    let e = client::fetch(server.addr(), "localhost", config, LIMIT)
        .await
        .expect_err("a certificate from another CA");
    assert_eq!(alert(&e), Some(AlertDescription::UnknownCA), "{e}");
    eventually(LIMIT, "the server to count it", || Stats::get(&stats.handshake_failures) == 1)
        .await;
    server.shutdown().await.expect("serve returns Ok");
}
