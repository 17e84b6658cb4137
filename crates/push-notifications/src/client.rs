//! A subscriber that never loses its place: it remembers the id of the last
//! notification it saw, and when the connection drops it reconnects (with
//! backoff) and subscribes again with `"since": that id`, so the server
//! replays exactly what it missed. The waits between attempts are lesson
//! 8's [`Backoff`]: 100 ms, doubling to 5 s, reset after a success.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use websocket_chat::client::Backoff;

use crate::{Action, ClientMsg};

/// One notification as the client hands it on.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its id.
    pub id: u64,
    /// Its event.
    pub event: String,
    /// Its payload.
    pub payload: Value,
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connected (again); `since` is where it resumes from.
    Connected { since: Option<u64> },
    /// A notification, never one with an id already reported.
    Notification(Notification),
    /// The server says the history did not reach back far enough.
    Gap { since: u64, oldest: u64 },
    /// The connection ended; it will retry after `retry_in`.
    Disconnected { why: String, retry_in: Duration },
}

/// Subscribes to `events` at `url` and reports to `out` until `stop` is
/// cancelled or `out` is closed. Starts after `since` if given.
pub async fn follow(
    url: String,
    events: Vec<String>,
    mut since: Option<u64>,
    out: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    // The last id handed on, per event: what a repeat is judged against.
    let mut seen = HashMap::new();
    loop {
        let why = tokio::select! {
            () = stop.cancelled() => return,
            why = session(&url, &events, &mut since, &mut seen, &out, &mut backoff) => why,
        };
        if out.is_closed() {
            return;
        }
        let retry_in = backoff.next_delay();
        let _ = out.send(Event::Disconnected { why, retry_in }).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retry_in) => {}
        }
    }
}

/// One connection's life; returns why it ended.
async fn session(
    url: &str,
    events: &[String],
    since: &mut Option<u64>,
    seen: &mut HashMap<String, u64>,
    out: &mpsc::Sender<Event>,
    backoff: &mut Backoff,
) -> String {
    let mut ws = match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => ws,
        Err(e) => return format!("cannot connect: {e}"),
    };
    backoff.reset();
    let _ = out.send(Event::Connected { since: *since }).await;
    // Each subscription is answered by its ack and then its own replay, in
    // id order. With several events the replays come one after another, so
    // ids are not increasing across them (newMessage's #3, then tick's #2).
    // Until every ack is in, some event may still have its replay to come:
    // keep `since` where it was, so a drop now resumes from there again.
    let mut acks_pending = events.len();
    for event in events {
        let msg = ClientMsg { event: event.clone(), action: Action::Subscribe, since: *since };
        let json = serde_json::to_string(&msg).expect("our own struct serializes");
        if let Err(e) = ws.send(Message::text(json)).await {
            return format!("send failed: {e}");
        }
    }
    loop {
        match ws.next().await {
            None => return "connection ended".into(),
            Some(Err(e)) => return format!("read failed: {e}"),
            Some(Ok(Message::Close(f))) => {
                return f.map_or("closed".into(), |f| format!("closed {} {}", f.code, f.reason));
            }
            Some(Ok(Message::Text(t))) => {
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                match v["type"].as_str() {
                    Some("notification") => {
                        let Some(id) = v["id"].as_u64() else { continue };
                        let event = v["event"].as_str().unwrap_or_default().to_owned();
                        // Within one event ids only grow; anything at or below
                        // the last one of that event is a repeat (a resume
                        // from a `since` held back, see above).
                        if seen.get(&event).is_some_and(|&s| id <= s) {
                            continue;
                        }
                        seen.insert(event.clone(), id);
                        if acks_pending == 0 {
                            // Every replay is queued: from here on ids grow.
                            *since = Some(since.map_or(id, |s| s.max(id)));
                        }
                        let n = Notification { id, event, payload: v["payload"].clone() };
                        if out.send(Event::Notification(n)).await.is_err() {
                            return "output closed".into();
                        }
                    }
                    // A fresh client has no id yet; the ack tells it the
                    // newest one, which is where it must resume after a drop.
                    Some("subscribed") => {
                        acks_pending = acks_pending.saturating_sub(1);
                        if since.is_none() {
                            *since = v["last_id"].as_u64();
                        }
                    }
                    Some("gap") => {
                        let since = v["since"].as_u64().unwrap_or_default();
                        let oldest = v["oldest"].as_u64().unwrap_or_default();
                        let _ = out.send(Event::Gap { since, oldest }).await;
                    }
                    _ => {}
                }
            }
            Some(Ok(_)) => {}
        }
    }
}
