//! The binary: the demo exits 0 after a full and a resumed handshake, and
//! `serve` writes a CA file that a client can trust.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::LIMIT;
use harness::within_blocking;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The demo on loopback takes well under a second; a debug build on a busy
/// two-core machine, a few.
const DEMO_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_demo_narrates_a_full_and_a_resumed_handshake_and_exits_0() {
    let out = within_blocking(DEMO_LIMIT, "the demo to finish", || {
        Command::new(env!("CARGO_BIN_EXE_tls")).output().expect("run the demo")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "Full handshake",
        "Resumed handshake",
        "ClientHello: SNI Some(\"localhost\")",
        "everything after this is encrypted",
        "1 TLS round trip(s)",
        "invalid peer certificate: UnknownIssuer",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn serve_writes_a_ca_file_that_a_client_can_trust() {
    let dir = std::env::temp_dir().join(format!("tls-lesson-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tls"))
        .args(["serve", "--addr", "127.0.0.1:0", "--ca-file"])
        .arg(&ca_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let stdout = child.stdout.take().expect("piped");
    // The first line says where it listens; read it on a thread, bounded.
    // Keep the pipe open until the end: serve prints three more lines, and
    // printing to a closed pipe would end it.
    let (first, _stdout) = within_blocking(LIMIT, "serve's first line", move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        (line, reader)
    });
    let addr: std::net::SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let pem = std::fs::read_to_string(&ca_file).expect("serve wrote the CA file");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(!pem.contains("PRIVATE KEY"), "only the public certificate is written");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&ca_file).expect("PEM")).expect("a CA certificate");
    let got =
        tls::client::fetch(addr, "localhost", tls::client::client_config(Arc::new(roots)), LIMIT)
            .await;
    // Stop the child we started, whatever happened.
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let x = got.expect("the client trusting the written CA is served");
    assert!(x.answer.starts_with(b"HTTP/1.1 200 OK"));
}
