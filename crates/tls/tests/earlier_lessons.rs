//! TLS for the earlier lessons without copying them: websocket-chat's router
//! as `wss://` and rest-todo's as `https://`, each on `http_serve::serve`
//! with `ServeConfig::tls` set, and a client that trusts only the throwaway
//! CA. Over real sockets on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use harness::{TaskServer, within};
use http_serve::ServeConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tls::certs::Ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// Serves `app` over TLS with a certificate from a fresh CA.
async fn start(app: axum::Router) -> (TaskServer<std::io::Result<()>>, Arc<rustls::RootCertStore>) {
    let ca = Ca::new("earlier lessons test CA").expect("CA");
    let tls = tls::server_config(&ca.server_cert().expect("cert")).expect("config");
    let config = ServeConfig { tls: Some(tls), ..ServeConfig::default() };
    let server =
        TaskServer::start(move |listener, token| http_serve::serve(listener, app, token, config))
            .await
            .expect("start");
    (server, ca.roots())
}

/// A TLS connection to `localhost` at `addr` that trusts only `roots`.
async fn connect(addr: SocketAddr, roots: Arc<rustls::RootCertStore>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let connector = TlsConnector::from(tls::client::client_config(roots));
    within(WAIT, "the TLS handshake", connector.connect(name, tcp)).await.expect("handshake")
}

#[tokio::test]
async fn the_chat_works_over_wss() {
    let chat = websocket_chat::Chat::new(websocket_chat::Config::default());
    let (server, roots) = start(chat.router()).await;
    let stream = connect(server.addr(), roots).await;
    let url = format!("wss://localhost:{}/ws", server.addr().port());
    let (mut ws, answer) =
        within(WAIT, "the upgrade", tokio_tungstenite::client_async(url, stream))
            .await
            .expect("upgrade");
    assert_eq!(answer.status(), 101);
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(json!({"type": "username", "data": "alice"}))).await.expect("send");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "info", "{welcome}");
    ws.send(send(json!({"type": "message", "data": "hello over wss"}))).await.expect("send");
    let said = next_json(&mut ws).await;
    assert_eq!(
        (said["username"].as_str(), said["message"].as_str()),
        (Some("alice"), Some("hello over wss")),
        "{said}"
    );
    assert_eq!(chat.stats().named, 1);
    drop(ws);
    server.shutdown().await.expect("clean shutdown");
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let frame = within(WAIT, "a chat message", ws.next()).await.expect("a frame").expect("ok");
    serde_json::from_str(frame.to_text().expect("text")).expect("json")
}

#[tokio::test]
async fn rest_todo_takes_a_post_over_https() {
    let (server, roots) = start(rest_todo::router(rest_todo::MemoryStore::new())).await;
    let mut tls = connect(server.addr(), roots).await;
    let body = r#"{"task":"buy milk"}"#;
    let request = format!(
        "POST /todos HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    within(WAIT, "the answer", (&mut tls).take(64 * 1024).read_to_end(&mut answer))
        .await
        .expect("the answer, ended by close_notify");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    assert!(answer.contains("\r\nlocation: /todos/1\r\n"), "{answer}");
    assert!(answer.ends_with(r#"{"id":1,"task":"buy milk","completed":false}"#), "{answer}");
    server.shutdown().await.expect("clean shutdown");
}
