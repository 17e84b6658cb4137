//! The chat over `wss://` in a real browser: websocket-chat's router on
//! `http_serve::serve` with TLS, a certificate from lesson 13's throwaway CA,
//! the page opened at `https://localhost:PORT/`, and a WebSocket from it to
//! `wss://localhost:PORT/ws` that chats with a Rust client.
//!
//! How the browser trusts the certificate: not through the profile (that
//! needs NSS's `certutil` to add the CA to the profile's database, and this
//! machine has none) but with `--ignore-certificate-errors-spki-list`, which
//! accepts exactly one server key, named by the SHA-256 of its public key
//! (SubjectPublicKeyInfo). Narrower than `--ignore-certificate-errors`: any
//! other certificate still fails.

use std::time::Duration;

use base64::Engine as _;
use browser_tests::Browser;
use harness::{TaskServer, eventually};
use http_serve::ServeConfig;
use rcgen::PublicKeyData as _;
use serde_json::{Value, json};
use tls::certs::Ca;

const WAIT: Duration = Duration::from_secs(20);

/// base64(SHA-256(SubjectPublicKeyInfo)) of the certificate's key: the form
/// Chromium's `--ignore-certificate-errors-spki-list` takes.
fn spki_pin(cert: &tls::certs::ServerCert) -> String {
    let key = rcgen::KeyPair::try_from(&cert.key).expect("the key rcgen made");
    let sha256 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite")
        .common
        .hash_provider;
    base64::engine::general_purpose::STANDARD
        .encode(sha256.hash(&key.subject_public_key_info()).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn the_chat_works_over_wss_in_a_browser() {
    let ca = Ca::new("browser test CA").expect("CA");
    let cert = ca.server_cert().expect("server certificate");
    let pin = spki_pin(&cert);
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let origin = format!("https://localhost:{port}");
    // No extra origins: the page's https:// origin is the server's own.
    let chat = websocket_chat::Chat::new(websocket_chat::Config::default());
    let serve_config = ServeConfig {
        tls: Some(tls::server_config(&cert).expect("TLS config")),
        ..ServeConfig::default()
    };
    let router = chat.router();
    let server =
        TaskServer::start_with(listener, move |l, t| http_serve::serve(l, router, t, serve_config))
            .expect("start");

    let browser =
        Browser::start_with_args(&[format!("--ignore-certificate-errors-spki-list={pin}")]).await;
    browser.goto(&format!("{origin}/")).await;
    let protocol = browser.eval("return location.protocol;", json!([])).await;
    assert_eq!(protocol, json!("https:"), "the page itself came over TLS");
    // The page's own socket: over https it must open wss:// (a ws:// socket
    // from an https page is blocked by the browser as mixed content).
    eventually(WAIT, "the page's own WebSocket to connect over wss", || {
        chat.stats().connections == 1
    })
    .await;
    // A WebSocket from the https page to wss://: the Origin is https://.
    browser
        .eval(
            "window.got = []; window.wsState = 'connecting';
             const ws = new WebSocket(arguments[0]);
             ws.onopen = () => { window.wsState = 'open';
                 ws.send(JSON.stringify({type: 'username', data: 'tab'})); };
             ws.onmessage = (e) => window.got.push(e.data);
             ws.onerror = () => { window.wsState = 'error'; };
             window.wss = ws;",
            json!([format!("wss://localhost:{port}/ws")]),
        )
        .await;
    eventually(WAIT, "the tab to choose its name over wss", || chat.stats().named == 1).await;
    assert_eq!(chat.stats().connections, 2, "the page's socket and this one");
    browser
        .eval("window.wss.send(JSON.stringify({type: 'message', data: 'hi over wss'}));", json!([]))
        .await;
    let started = std::time::Instant::now();
    loop {
        let got = browser.eval("return window.got;", json!([])).await;
        let said =
            got.as_array().into_iter().flatten().filter_map(Value::as_str).any(|m| {
                serde_json::from_str::<Value>(m).is_ok_and(|v| v["message"] == "hi over wss")
            });
        if said {
            break;
        }
        let state = browser.eval("return window.wsState;", json!([])).await;
        assert!(started.elapsed() < WAIT, "no echo over wss; socket {state}, got {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(browser);
    server.shutdown().await.expect("clean shutdown");
}
