//! What chapter 9's test files share: a push server on a free port with
//! short timeouts, subscribers, and a publisher.

#![allow(dead_code)] // each test file uses a different part of this

/// Lesson 8's shared WebSocket checks: this lesson runs on the same
/// connection module, so its tests use the same file (one copy of it).
#[path = "../../../websocket-chat/tests/common/ws.rs"]
pub mod ws;

use std::net::SocketAddr;

use harness::ws::WsClient;
use push_notifications::{Config, Push};
use serde_json::{Value, json};

pub use ws::{Server, WAIT, url};

/// The default limits, except the close grace ([`ws::QUICK_CLOSE_GRACE`]).
pub fn quick() -> Config {
    let config = Config::default();
    Config { connection: ws::quick(config.connection), ..config }
}

/// A push server with `config` on a free loopback port, and a handle to
/// publish and read its counters.
pub async fn start(config: Config) -> (Server, Push) {
    ws::start(Push::new(config), Push::serve).await
}

/// Connects and subscribes to each event, waiting for every ack.
pub async fn subscriber(addr: SocketAddr, events: &[&str], since: Option<u64>) -> WsClient {
    let mut c = WsClient::connect(&url(addr)).await.expect("connect");
    for e in events {
        let mut msg = json!({"event": e});
        if let Some(s) = since {
            msg["since"] = json!(s);
        }
        c.send_json(&msg).await.expect("subscribe");
        c.recv_json_where(WAIT, |v| v["type"] == "subscribed" && v["event"] == *e)
            .await
            .expect("subscribed ack");
    }
    c
}

/// `POST /notify` with a JSON body, as a publishing service would send it.
pub async fn notify(addr: SocketAddr, event: &str, payload: Value) -> harness::http::Response {
    let body = json!({"event": event, "payload": payload}).to_string();
    let req = format!(
        "POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    harness::http::exchange(addr, req.as_bytes()).await.expect("POST /notify")
}

pub async fn next_notification(c: &mut WsClient) -> Value {
    c.recv_json_where(WAIT, |v| v["type"] == "notification").await.expect("a notification")
}
