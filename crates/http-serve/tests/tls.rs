//! `ServeConfig::tls`: the same app over TLS, and what a TLS server owes the
//! network: a handshake that cannot hold a slot for ever, and a failed one
//! that ends that connection only. Over real sockets on loopback.

// TLS is the `tls` feature (on by default).
#![cfg(feature = "tls")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use harness::{TaskServer, within};
use http_serve::{ServeConfig, serve};
use rustls::pki_types::ServerName;
use tls::certs::Ca;
use tls::client::{self, ClientError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(5);

/// `/` answers "ok"; `/ws` echoes WebSocket text.
fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/ws",
        get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(Message::Text(t))) = socket.recv().await {
                    if socket.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
            })
        }),
    )
}

/// A server over TLS with a fresh CA; returns it and the CA.
async fn start(config: ServeConfig) -> (TaskServer<std::io::Result<()>>, Ca) {
    let ca = Ca::new("http-serve test CA").expect("CA");
    let tls = tls::server_config(&ca.server_cert().expect("cert")).expect("server config");
    let config = ServeConfig { tls: Some(tls), ..config };
    let server = TaskServer::start(move |listener, token| serve(listener, app(), token, config))
        .await
        .expect("start");
    (server, ca)
}

/// GET / over TLS trusting `ca`: the body, or why not.
async fn get_ok(addr: SocketAddr, ca: &Ca) -> Result<String, ClientError> {
    let exchange =
        client::fetch(addr, "localhost", client::client_config(ca.roots()), WAIT).await?;
    let answer = String::from_utf8_lossy(&exchange.answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(answer.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn over_tls_the_app_answers_and_upgrades_to_a_websocket() {
    let (server, ca) = start(ServeConfig::default()).await;
    assert_eq!(get_ok(server.addr(), &ca).await.expect("GET over TLS"), "ok");

    // wss://: the WebSocket handshake and frames ride inside the TLS stream.
    let tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let stream = within(
        WAIT,
        "the TLS handshake",
        TlsConnector::from(client::client_config(ca.roots())).connect(name, tcp),
    )
    .await
    .expect("TLS handshake");
    let url = format!("wss://localhost:{}/ws", server.addr().port());
    let (mut ws, _) = within(WAIT, "the upgrade", tokio_tungstenite::client_async(url, stream))
        .await
        .expect("upgrade");
    ws.send(tokio_tungstenite::tungstenite::Message::text("over wss")).await.expect("send");
    let echoed = within(WAIT, "the echo", ws.next()).await.expect("a frame").expect("no error");
    assert_eq!(echoed.into_text().expect("text").as_str(), "over wss");
    server.shutdown().await.expect("clean shutdown");
}

/// A client that connects and never sends a ClientHello is closed after the
/// handshake timeout, though the header timeout is a minute: hyper's clock
/// starts only once the handshake is done. Meanwhile others are served.
#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_at_its_deadline_and_others_are_served() {
    let limit = Duration::from_millis(300);
    let config = ServeConfig {
        handshake_timeout: limit,
        header_timeout: Duration::from_secs(60),
        ..ServeConfig::default()
    };
    let (server, ca) = start(config).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr()).await.expect("connect");
    assert_eq!(get_ok(server.addr(), &ca).await.expect("a good client meanwhile"), "ok");
    let mut buf = [0u8; 64];
    let n = within(WAIT, "the close", silent.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "the server closes a silent client without a word");
    assert!(started.elapsed() >= limit, "closed by the deadline, not at once");
    server.shutdown().await.expect("clean shutdown");
}

/// A handshake that fails (a client that does not trust our CA, then plain
/// HTTP on the TLS port, which is told so in HTTP) ends that connection; the
/// next client is served.
#[tokio::test]
async fn a_failed_handshake_ends_that_connection_only() {
    let (server, ca) = start(ServeConfig::default()).await;
    let stranger = Ca::new("another CA").expect("CA");
    let refused =
        client::fetch(server.addr(), "localhost", client::client_config(stranger.roots()), WAIT)
            .await
            .expect_err("an unknown CA is refused");
    assert!(matches!(refused.tls(), Some(rustls::Error::InvalidCertificate(_))), "{refused}");
    // Plain HTTP on the TLS port: a 400 it can read, not a binary alert.
    let plain = harness::http::get(server.addr(), "/").await.expect("a readable answer");
    assert_eq!(
        (plain.status, plain.text()),
        (400, "this port speaks TLS: use https:// instead.\n".to_owned())
    );
    assert_eq!(get_ok(server.addr(), &ca).await.expect("the next client"), "ok");
    server.shutdown().await.expect("clean shutdown");
}
