//! What chapter 16's tests share: the check for the real parts, clients
//! that keep everything they receive (repeats included), and a publisher.
#![allow(dead_code)] // each test file uses a different part of this

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::ws::WsClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Every wait in these tests: generous, because a debug build of three
/// instances, Redis and HAProxy share two cores with the test.
pub const WAIT: Duration = Duration::from_secs(20);

/// Whether redis-server and haproxy are here. Without them: in CI (where
/// `.ci/run` installs them) the test fails; elsewhere it says what it
/// skipped and why, and passes.
pub fn parts_or_skip(test: &str) -> bool {
    match scale_out::parts::missing_programs() {
        None => true,
        Some(missing) if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must run this test, but {missing}")
        }
        Some(missing) => {
            eprintln!("skipped {test}: {missing}");
            false
        }
    }
}

/// This crate's binary, which the tests start instances of.
pub fn exe() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_scale-out").into()
}

/// `POST /notify` at `addr`; the id on a 200, else why not.
pub async fn notify(addr: SocketAddr, event: &str, payload: Value) -> Result<u64, String> {
    let body = json!({"event": event, "payload": payload}).to_string();
    let req = format!(
        "POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = harness::http::exchange(addr, req.as_bytes()).await.map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body)));
    }
    let v: Value = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
    v["id"].as_u64().ok_or_else(|| format!("no id in {v}"))
}

/// Publishes until it gets an id (an instance that just died answers 502
/// through HAProxy), within [`WAIT`].
pub async fn notify_retrying(addr: SocketAddr, event: &str, payload: Value) -> u64 {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        match notify(addr, event, payload.clone()).await {
            Ok(id) => return id,
            Err(e) if tokio::time::Instant::now() < end => {
                eprintln!("publish: {e}; again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publish failed for {WAIT:?}: {e}"),
        }
    }
}

/// A raw push subscriber of lesson 9's protocol that keeps every id it is
/// sent, repeats included (lesson 9's own client drops repeats, which would
/// hide the server sending one). It starts at `first` and, when the
/// connection ends, resumes at `again` with `since` = the newest id it has.
pub fn raw_subscriber(
    first: String,
    again: String,
    event: &'static str,
    stop: CancellationToken,
) -> (Arc<Mutex<Vec<u64>>>, Arc<Mutex<u32>>) {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let reconnects = Arc::new(Mutex::new(0));
    let (got, again_count) = (Arc::clone(&ids), Arc::clone(&reconnects));
    tokio::spawn(async move {
        let mut url = first;
        let mut since: Option<u64> = None;
        while !stop.is_cancelled() {
            if let Ok(mut c) = WsClient::connect(&url).await {
                let mut sub = json!({"event": event});
                if let Some(s) = since {
                    sub["since"] = json!(s);
                }
                if c.send_json(&sub).await.is_ok() {
                    loop {
                        let msg = tokio::select! {
                            () = stop.cancelled() => return,
                            m = c.recv_json(Duration::from_secs(3600)) => m,
                        };
                        let Ok(v) = msg else { break };
                        match v["type"].as_str() {
                            Some("subscribed") if since.is_none() => since = v["last_id"].as_u64(),
                            Some("notification") => {
                                let id = v["id"].as_u64().expect("an id");
                                got.lock().expect("not poisoned").push(id);
                                since = Some(since.map_or(id, |s| s.max(id)));
                            }
                            Some("gap") => panic!("the history should reach back: {v}"),
                            _ => {}
                        }
                    }
                }
            }
            *again_count.lock().expect("not poisoned") += 1;
            url = again.clone();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (ids, reconnects)
}

/// A chat member who keeps the text of every chat message it is sent.
pub async fn chat_member(url: &str, name: &str) -> WsClient {
    let mut c = WsClient::connect(url).await.expect("connect");
    c.send_json(&json!({"type": "username", "data": name})).await.expect("name");
    let notice = format!("{name} joined lobby");
    c.recv_json_where(WAIT, |v| v["message"] == notice.as_str()).await.expect("own join notice");
    c
}

pub async fn say(c: &mut WsClient, text: &str) {
    c.send_json(&json!({"type": "message", "data": text})).await.expect("say");
}

/// Whether process `pid` still exists (Linux: its /proc entry; elsewhere
/// the test cannot tell and says it does not).
pub fn process_exists(pid: u32) -> bool {
    cfg!(target_os = "linux") && std::path::Path::new(&format!("/proc/{pid}")).exists()
}
