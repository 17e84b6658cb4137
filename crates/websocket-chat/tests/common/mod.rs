//! What chapter 8's test files share: a chat server on a free port with
//! short timeouts, and clients that join it.

#![allow(dead_code)] // each test file uses a different part of this

pub mod heap;
pub mod ws;

use std::net::SocketAddr;

use harness::ws::{Frame, RawWs, WsClient, opcode};
use serde_json::{Value, json};
use websocket_chat::{Chat, Config};

pub use ws::{Server, WAIT, url};

/// The default limits, except the close grace ([`ws::QUICK_CLOSE_GRACE`]).
pub fn quick() -> Config {
    let config = Config::default();
    Config { connection: ws::quick(config.connection), ..config }
}

/// A chat server with `config` on a free loopback port, and a handle to
/// read its counters.
pub async fn start(config: Config) -> (Server, Chat) {
    ws::start(Chat::new(config), Chat::serve).await
}

/// Connects and chooses `name`, and waits for the server's join notice.
pub async fn join(addr: SocketAddr, name: &str) -> WsClient {
    join_at(&url(addr), name).await
}

/// [`join`], at any URL (the root path, say).
pub async fn join_at(url: &str, name: &str) -> WsClient {
    let mut c = WsClient::connect(url).await.expect("connect");
    c.send_json(&json!({"type": "username", "data": name})).await.expect("send username");
    let notice = format!("{name} joined lobby");
    c.recv_json_where(WAIT, |v| v["type"] == "info" && v["message"] == notice.as_str())
        .await
        .expect("own join notice");
    c
}

pub async fn say(c: &mut WsClient, text: &str) {
    c.send_json(&json!({"type": "message", "data": text})).await.expect("send message");
}

pub async fn next_of_type(c: &mut WsClient, kind: &str) -> Value {
    c.recv_json_where(WAIT, |v| v["type"] == kind).await.unwrap_or_else(|e| panic!("a {kind}: {e}"))
}

/// A client that completes the handshake and then never reads, with a tiny
/// receive buffer so the server's writes back up quickly.
pub async fn connect_non_reader(addr: SocketAddr) -> RawWs {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let std: std::net::TcpStream = socket.into();
    let stream = tokio::net::TcpStream::from_std(std).expect("tokio stream");
    let mut raw = RawWs::handshake(stream, addr, "/ws").await.expect("upgrade");
    let hello = Frame::client(opcode::TEXT, br#"{"type":"username","data":"slow"}"#, [9, 8, 7, 6]);
    raw.send_bytes(&hello.encode()).await.expect("send name");
    raw
}
