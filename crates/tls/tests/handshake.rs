//! A good client: TLS 1.3, the suite, ALPN, the certificate, and a resumed
//! second connection; and the wire decoder against a real handshake.

mod common;

use std::sync::Arc;

use common::{LIMIT, Server};
use harness::{Direction, WireTap};
use tls::client;
use tls::{Config, Stats, wire};

#[tokio::test]
async fn a_trusting_client_gets_tls13_alpn_and_the_answer() {
    let s = Server::start(Config::default()).await;
    let x = s.fetch("localhost").await.expect("handshake and answer");
    assert_eq!(x.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(x.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(x.kind, rustls::HandshakeKind::Full);
    assert_eq!(x.cert_sizes.len(), 1, "the leaf only; the CA stays with the client");
    let answer = String::from_utf8_lossy(&x.answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("SNI localhost"), "{answer}");
    // By IP address: the certificate names 127.0.0.1 too, and no SNI is sent.
    let x = s.fetch("127.0.0.1").await.expect("the IP SAN verifies");
    assert!(String::from_utf8_lossy(&x.answer).contains("SNI none"));
    assert_eq!(Stats::get(&s.stats.handshakes), 2);
    s.stop().await;
}

#[tokio::test]
async fn the_second_connection_resumes_with_a_ticket_and_skips_the_certificate() {
    let s = Server::start(Config::default()).await;
    let tap = WireTap::start(s.addr()).expect("tap");
    let config = client::client_config(s.ca.roots());
    let first =
        client::fetch(tap.addr(), "localhost", Arc::clone(&config), LIMIT).await.expect("full");
    let second = client::fetch(tap.addr(), "localhost", config, LIMIT).await.expect("resumed");
    assert_eq!(first.kind, rustls::HandshakeKind::Full);
    assert_eq!(second.kind, rustls::HandshakeKind::Resumed);
    assert_eq!(Stats::get(&s.stats.resumed), 1);

    // What the wire shows: the first ClientHello offers no ticket, the
    // second does and the server takes it; the resumed server flight is
    // smaller because it carries no certificate.
    let hello = |conn| {
        let up = tap.bytes(conn, Direction::ToServer);
        let first = wire::records(&up).first().cloned().map(|r| r.body.to_vec()).expect("a record");
        wire::client_hello(&first).expect("a ClientHello")
    };
    let (h0, h1) = (hello(0), hello(1));
    assert_eq!(h0.server_name.as_deref(), Some("localhost"));
    assert_eq!(h0.alpn, ["http/1.1"]);
    assert!(h0.versions.contains(&0x0304), "offers TLS 1.3: {:?}", h0.versions);
    assert!(!h0.key_shares.is_empty(), "sends a key share in the first flight");
    assert!(!h0.offers_psk && h1.offers_psk);
    let server_flight = |conn| {
        let down = tap.bytes(conn, Direction::ToClient);
        let records = wire::records(&down);
        let sh = wire::server_hello(records[0].body).expect("a ServerHello");
        assert_eq!(sh.version, Some(0x0304));
        // ServerHello, ChangeCipherSpec, then the encrypted flight.
        assert_eq!(records[2].content_type, wire::APPLICATION_DATA);
        (sh.accepted_psk, records[2].wire_len())
    };
    let ((psk0, flight0), (psk1, flight1)) = (server_flight(0), server_flight(1));
    assert!(!psk0 && psk1);
    let cert = first.cert_sizes[0];
    assert!(
        flight0 > flight1 + cert,
        "full flight {flight0}, resumed {flight1}, certificate {cert}"
    );
    s.stop().await;
}

#[test]
fn the_decoder_never_panics_on_short_or_odd_input() {
    for bytes in [
        &b""[..],
        b"\x16",
        b"\x16\x03\x01\x00\x05\x01\x00",
        b"\x16\x03\x01\xff\xff",
        b"GET / HTTP/1.1\r\n",
    ] {
        for r in wire::records(bytes) {
            let _ = wire::client_hello(r.body);
            let _ = wire::server_hello(r.body);
        }
        let _ = wire::client_hello(bytes);
        let _ = wire::server_hello(bytes);
    }
    // A ClientHello header that claims more than it has.
    assert_eq!(wire::client_hello(b"\x01\x00\x00\x30\x03\x03"), None);
    // Two records, the second cut short: only the first comes back.
    let two = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x10abc";
    let records = wire::records(two);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].type_name(), "change_cipher_spec");
}
