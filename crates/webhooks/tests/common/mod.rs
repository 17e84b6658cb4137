//! What the webhook tests share: a scratch directory, a sender and a
//! receiver on free loopback ports, and the sender's API over raw HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harness::TaskServer;
use serde_json::{Value, json};
use webhooks::{Outbox, Receiver, ReceiverConfig, Secret, Sender, SenderConfig, receiver, sender};

/// A directory of its own under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("webhooks-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Self(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn start_sender(db: &Path, config: SenderConfig) -> TaskServer<std::io::Result<()>> {
    let outbox = Outbox::open(db).expect("outbox opens");
    TaskServer::start(|l, t| sender::serve(l, Sender::new(outbox, config), t))
        .await
        .expect("sender starts")
}

pub async fn start_receiver(
    listener: tokio::net::TcpListener,
    db: &Path,
    config: ReceiverConfig,
) -> (TaskServer<std::io::Result<()>>, Receiver) {
    let r = Receiver::open(db, config).expect("inbox opens");
    let srv = TaskServer::start_with(listener, {
        let r = r.clone();
        |l, t| receiver::serve(l, r, t)
    })
    .expect("receiver starts");
    (srv, r)
}

pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> raw_http::Response {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_http::exchange(addr, req.as_bytes()).await.expect("the sender's API answers")
}

/// Registers `url`; returns the endpoint's id and secret.
pub async fn register(api: SocketAddr, url: &str) -> (i64, Secret) {
    let resp = call(api, "POST", "/endpoints", Some(json!({"url": url}))).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let v: Value = serde_json::from_slice(&resp.body).expect("JSON");
    let secret = Secret::parse(v["secret"].as_str().expect("a secret")).expect("whsec_");
    (v["id"].as_i64().expect("an id"), secret)
}

/// Sends `n` events; returns their webhook-ids.
pub async fn send_events(api: SocketAddr, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let resp =
            call(api, "POST", "/events", Some(json!({"type": "test", "data": {"n": i}}))).await;
        assert_eq!(resp.status, 202, "{}", resp.text());
        let v: Value = serde_json::from_slice(&resp.body).expect("JSON");
        ids.push(v["id"].as_str().expect("an id").to_owned());
    }
    ids
}

pub async fn view(api: SocketAddr, id: i64) -> Value {
    let resp = call(api, "GET", &format!("/endpoints/{id}"), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    serde_json::from_slice(&resp.body).expect("JSON")
}

/// Waits (bounded) until `receiver` has applied one effect per id in
/// `ids`, then checks that each was applied exactly once and nothing else.
pub async fn all_applied_once(receiver: &Receiver, ids: &[String], deadline: Duration) {
    let start = std::time::Instant::now();
    loop {
        let effects = receiver.effects().await.expect("inbox readable");
        if effects.len() >= ids.len() || start.elapsed() > deadline {
            let mut got: Vec<String> = effects.into_iter().map(|(id, _)| id).collect();
            got.sort();
            let mut want = ids.to_vec();
            want.sort();
            assert_eq!(got, want, "each event applied exactly once");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls the async `condition` every 10 ms until it holds; panics after
/// `deadline` with `what`.
pub async fn until<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    harness::within(deadline, what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
