//! The chapter's by-hand commands, run for real: curl (prior knowledge and
//! TLS with ALPN) and nghttp against the server. They need curl with HTTP/2
//! and Debian's nghttp2-client, so they are `#[ignore]`d here and run by
//! `.ci/run` (`cargo test -p http2 -- --ignored`), which installs both; there
//! a missing tool fails the test.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::Server;
use http2::{Config, Stats};

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} did not run ({e}); apt-get install curl nghttp2-client")
    });
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
#[ignore = "needs curl and nghttp (nghttp2-client); .ci/run runs it"]
async fn nghttp_sees_our_settings_and_three_streams_on_one_connection() {
    let server = Server::start(Config::default()).await;
    let base = format!("http://{}", server.addr());
    let (slow, quick) = (format!("{base}/slow?ms=300"), format!("{base}/resource/1"));
    let out = tokio::task::spawn_blocking(move || run("nghttp", &["-nv", &slow, &quick]))
        .await
        .expect("nghttp thread");
    assert!(out.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]"), "{out}");
    assert!(out.contains("[SETTINGS_MAX_FRAME_SIZE(0x05):16384]"), "{out}");
    assert!(out.contains("recv DATA frame <length=11, flags=0x01"), "{out}");
    // The quick answer (11 bytes) is received before the slow one (13).
    let quick_at = out.find("recv DATA frame <length=11").expect("quick");
    let slow_at = out.find("recv DATA frame <length=13").expect("slow");
    assert!(quick_at < slow_at, "{out}");
    assert_eq!(Stats::get(&server.stats.h2_connections), 1);
}

#[tokio::test]
#[ignore = "needs curl with HTTP/2; .ci/run runs it"]
async fn curl_speaks_h2c_with_prior_knowledge_and_h2_over_tls() {
    let server = Server::start(Config::default()).await;
    let url = format!("http://{}/resource/1", server.addr());
    let out =
        tokio::task::spawn_blocking(move || run("curl", &["-sv", "--http2-prior-knowledge", &url]))
            .await
            .expect("curl thread");
    assert!(out.contains("< HTTP/2 200") && out.contains("resource 1"), "{out}");

    let ca = tls::certs::Ca::new("test CA").expect("CA");
    let cert = ca.server_cert().expect("cert");
    let config = http2::tls_config(&cert).expect("config");
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    let tls_server = harness::TaskServer::start(move |l, t| {
        http2::serve(l, Some(config), Config::default(), s, t)
    })
    .await
    .expect("bind");
    let dir = std::env::temp_dir().join(format!("http2-test-ca-{}.pem", std::process::id()));
    std::fs::write(&dir, ca.cert_pem()).expect("write the CA");
    let url = format!("https://localhost:{}/resource/1", tls_server.addr().port());
    let ca_path = dir.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run("curl", &["-sv", "--http2", "--cacert", &ca_path, &url])
    })
    .await
    .expect("curl thread");
    let _ = std::fs::remove_file(&dir);
    assert!(
        out.contains("ALPN: server accepted h2") || out.contains("ALPN, server accepted to use h2"),
        "{out}"
    );
    assert!(out.contains("< HTTP/2 200") && out.contains("resource 1"), "{out}");
    assert_eq!(Stats::get(&stats.h2_connections), 1);
}
