//! The feed of updates that lessons 5, 6 and 7 (`short-polling`,
//! `long-polling` and `sse`) all serve, so that the three chapters compare
//! like with like.
//!
//! A publisher posts small JSON payloads; each becomes an [`Update`] with an
//! id one higher than the last. Subscribers follow the feed by remembering the
//! last id they saw and asking for what came after it. What differs between
//! the lessons is only *how* they ask: on a timer, by a request the server
//! holds, or over one long response. Everything they share lives here:
//!
//! * [`Feed`]: the ids, a bounded history (so a client that was away briefly
//!   can catch up, and one that was away too long is told it missed some), a
//!   `watch` channel that wakes every long-poll waiter at once, and bounded
//!   per-subscriber queues for streaming.
//! * [`FeedError`]: every error a client can cause, answered as JSON with the
//!   right status code.
//! * [`read_update`], [`parse_since`], [`parse_last_event_id`]: input checks.
//! * [`Counters`] and [`Stats`]: requests served and body bytes sent, so a
//!   benchmark can put a price on each update a transport delivers.
//! * [`finish`] and [`serve`]: the routes every lesson has (`/stats`, a JSON
//!   404) and graceful shutdown.
//! * [`client`]: a small keep-alive HTTP client the lessons' clients share.
//! * [`demo`]: printing what the wire tap saw, for the lessons' demos.
//!
//! This crate is a library only; its lessons are run with their own commands.

pub mod client;
pub mod demo;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How many updates the feed remembers. A client whose last id is older than
/// the oldest one kept has missed some for good and is told so. 256 small
/// payloads is a few hundred KiB at most: enough to ride out a reconnect or a
/// slow poll, small enough that memory never depends on how long we run.
pub const HISTORY: usize = 256;

/// The largest update body accepted, in bytes. The feed carries status
/// messages; a much bigger body is a mistake or an attack, and every byte of
/// it would be copied to every subscriber. 8 KiB leaves room for the
/// 5,000-byte payload that chapter 11 measures every transport with, and is
/// still small enough that 256 of them in the history stay under 2 MiB.
/// Answered with 413.
pub const MAX_UPDATE_BYTES: usize = 8 * 1024;

/// What an empty `POST /update` publishes. The notes' clients post with no
/// body at all ("something changed"), and they should keep working.
pub const EMPTY_UPDATE: &str = "updated";

/// One update: its id in the feed and the payload the publisher posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// 1 for the first update, then one more each time.
    pub id: u64,
    /// The JSON the publisher posted.
    pub data: Value,
}

/// The answer to "what came after id N?".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Since {
    /// The updates after N that the history still holds, oldest first.
    pub updates: Vec<Arc<Update>>,
    /// How many updates after N fell out of the history before the client
    /// asked: gone for good. 0 when the client is caught up.
    pub missed: u64,
}

/// A live streaming subscriber's end of its queue (see [`Feed::subscribe`]).
/// Dropping it unregisters the subscriber at once.
#[derive(Debug)]
pub struct Subscription {
    /// Updates arrive here as they are published. `None` means the feed
    /// dropped this subscriber because its queue was full.
    pub rx: mpsc::Receiver<Arc<Update>>,
    key: u64,
    feed: Feed,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.lock().subscribers.remove(&self.key);
    }
}

/// Counts one held long poll while it exists (see [`Feed::waiter`]).
#[derive(Debug)]
pub struct WaiterGuard {
    feed: Feed,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        // Runs when the handler returns *and* when its future is dropped
        // because the client went away: either way the waiter is gone.
        self.feed.inner.counters.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The counters a server keeps. Handlers add to them; [`Feed::stats`] reads
/// them. Relaxed-enough atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP requests answered (not counting `/stats` itself).
    pub requests: AtomicU64,
    /// Of those, how many were `304 Not Modified`.
    pub not_modified: AtomicU64,
    /// Response body bytes sent (headers not included: the wire tap counts
    /// those).
    pub body_bytes: AtomicU64,
    /// Updates handed to clients, summed over clients.
    pub delivered: AtomicU64,
    /// Streaming subscribers dropped because their queue was full.
    pub dropped: AtomicU64,
    waiting: AtomicU64,
}

/// A snapshot of the counters, served as JSON at `GET /stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Updates published since start.
    pub published: u64,
    /// HTTP requests answered (not counting `/stats`).
    pub requests: u64,
    /// Of those, `304 Not Modified`.
    pub not_modified: u64,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// Updates delivered to clients, summed over clients.
    pub delivered: u64,
    /// Long polls being held right now (a gauge).
    pub waiting: u64,
    /// Streaming subscribers connected right now (a gauge).
    pub subscribers: u64,
    /// Streaming subscribers dropped for being too slow.
    pub dropped: u64,
}

#[derive(Debug)]
struct State_ {
    history: VecDeque<Arc<Update>>,
    next_id: u64,
    subscribers: HashMap<u64, mpsc::Sender<Arc<Update>>>,
    next_key: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State_>,
    /// The newest id. Long-poll waiters hold a receiver and sleep in
    /// `changed()`; one `send` wakes all of them, however many there are.
    newest: watch::Sender<u64>,
    history_limit: usize,
    counters: Counters,
}

/// The feed. Cheap to clone: every clone is the same feed.
#[derive(Debug, Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new(HISTORY)
    }
}

impl Feed {
    /// An empty feed that remembers the last `history_limit` updates (at
    /// least one).
    pub fn new(history_limit: usize) -> Self {
        let state = State_ {
            history: VecDeque::new(),
            next_id: 1,
            subscribers: HashMap::new(),
            next_key: 0,
        };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                newest: watch::Sender::new(0),
                history_limit: history_limit.max(1),
                counters: Counters::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State_> {
        // Nothing panics while holding this lock, but if something did, the
        // state is still a consistent VecDeque and map: keep serving.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `data` as the next update, hands it to every streaming
    /// subscriber, and wakes every long-poll waiter. Returns the update.
    pub fn publish(&self, data: Value) -> Arc<Update> {
        let update = {
            let mut st = self.lock();
            let update = Arc::new(Update { id: st.next_id, data });
            st.next_id += 1;
            st.history.push_back(Arc::clone(&update));
            while st.history.len() > self.inner.history_limit {
                st.history.pop_front();
            }
            // Fan out without ever waiting: `try_send` into each bounded
            // queue. A full queue means that subscriber has stopped reading
            // (its socket is full too); waiting for it would stall every other
            // subscriber and the publisher. Drop it instead: removing its
            // sender ends its stream after what is queued, and it comes back
            // with Last-Event-ID for the rest.
            let dropped = &self.inner.counters.dropped;
            st.subscribers.retain(|_, tx| match tx.try_send(Arc::clone(&update)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            update
        };
        // After the lock: woken waiters go straight to `since`, which takes it.
        self.inner.newest.send_replace(update.id);
        update
    }

    /// The newest id, 0 while the feed is empty.
    pub fn newest_id(&self) -> u64 {
        *self.inner.newest.borrow()
    }

    /// The newest update, if any.
    pub fn latest(&self) -> Option<Arc<Update>> {
        self.lock().history.back().cloned()
    }

    /// What came after id `since`. `since = 0` means "from the start".
    /// An id newer than the newest one means the client's ids come from
    /// another run of the server (it restarted and counts from 1 again).
    pub fn since(&self, since: u64) -> Result<Since, FeedError> {
        Self::since_locked(&self.lock(), since)
    }

    fn since_locked(st: &State_, since: u64) -> Result<Since, FeedError> {
        let newest = st.next_id - 1;
        if since > newest {
            return Err(FeedError::Ahead { since, newest });
        }
        let oldest = st.history.front().map_or(st.next_id, |u| u.id);
        // Everything from since+1 up to oldest-1 is gone.
        let missed = oldest.saturating_sub(since + 1);
        let updates = st.history.iter().filter(|u| u.id > since).cloned().collect();
        Ok(Since { updates, missed })
    }

    /// A receiver that wakes (`changed().await`) whenever an update is
    /// published. Take it *before* checking [`Feed::since`], so an update
    /// published between the check and the wait is not slept through.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.newest.subscribe()
    }

    /// Counts one long-poll waiter until the guard is dropped.
    pub fn waiter(&self) -> WaiterGuard {
        self.inner.counters.waiting.fetch_add(1, Ordering::SeqCst);
        WaiterGuard { feed: self.clone() }
    }

    /// Registers a streaming subscriber with a queue of `queue` updates (at
    /// least one), and returns what it missed after `since` (if it is
    /// resuming) together with its subscription. Both are taken under one
    /// lock, so no update falls between the catch-up and the live queue, and
    /// none arrives twice.
    pub fn subscribe(
        &self,
        since: Option<u64>,
        queue: usize,
    ) -> Result<(Since, Subscription), FeedError> {
        let mut st = self.lock();
        let catch_up = match since {
            Some(id) => Self::since_locked(&st, id)?,
            None => Since::default(),
        };
        let (tx, rx) = mpsc::channel(queue.max(1));
        let key = st.next_key;
        st.next_key += 1;
        st.subscribers.insert(key, tx);
        drop(st);
        Ok((catch_up, Subscription { rx, key, feed: self.clone() }))
    }

    /// The counters, for handlers to add to.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// A snapshot of every counter and gauge.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            published: self.newest_id(),
            requests: load(&c.requests),
            not_modified: load(&c.not_modified),
            body_bytes: load(&c.body_bytes),
            delivered: load(&c.delivered),
            waiting: load(&c.waiting),
            subscribers: self.lock().subscribers.len() as u64,
            dropped: load(&c.dropped),
        }
    }
}

/// Every error a client can cause, each with its status code. Answered as
/// `{"error": "...", "status": N}` so a script can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// `since` was not a whole number.
    #[error("since must be a whole number like since=42, got {0:?}")]
    BadSince(String),
    /// `Last-Event-ID` was not a whole number.
    #[error("Last-Event-ID must be a whole number like 42, got {0:?}")]
    BadLastEventId(String),
    /// The client's id is newer than anything this server published.
    #[error(
        "id {since} is newer than the newest id {newest}: the server restarted; ask again without it"
    )]
    Ahead {
        /// What the client sent.
        since: u64,
        /// The newest id here.
        newest: u64,
    },
    /// The update body was over [`MAX_UPDATE_BYTES`].
    #[error("update body larger than {MAX_UPDATE_BYTES} bytes")]
    TooLarge,
    /// The update body could not be read: a malformed chunked encoding, a
    /// client that vanished mid-body, a body that did not arrive in time.
    #[error("update body could not be read: {0}")]
    BadBody(String),
    /// The update body was not JSON.
    #[error("update body is not JSON: {0}")]
    NotJson(String),
    /// The update came with another content type.
    #[error("updates must be sent as Content-Type: application/json, got {0:?}")]
    WrongType(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// The server is stopping; try again later (or elsewhere).
    #[error("server is shutting down")]
    ShuttingDown,
}

impl FeedError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadSince(_)
            | Self::BadLastEventId(_)
            | Self::Ahead { .. }
            | Self::NotJson(_)
            | Self::BadBody(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WrongType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for FeedError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Reads `since` out of a raw query string (`since=42&x=y`). No `since` is
/// `Ok(None)`; anything but a whole number is [`FeedError::BadSince`].
pub fn parse_since(query: Option<&str>) -> Result<Option<u64>, FeedError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "since" {
            return value.parse().map(Some).map_err(|_| FeedError::BadSince(value.to_owned()));
        }
    }
    Ok(None)
}

/// Reads the `Last-Event-ID` header a reconnecting `EventSource` sends. No
/// header (or an empty one: the stream never set an id) is `Ok(None)`.
pub fn parse_last_event_id(headers: &HeaderMap) -> Result<Option<u64>, FeedError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().map_err(|_| FeedError::BadLastEventId("<not ASCII>".into()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| FeedError::BadLastEventId(text.to_owned()))
}

/// Reads and checks an update body: `Content-Type: application/json` (415
/// otherwise), at most [`MAX_UPDATE_BYTES`] (413), valid JSON (400). An empty
/// body with no content type publishes [`EMPTY_UPDATE`], for the notes'
/// clients that only say "something changed".
pub async fn read_update(headers: &HeaderMap, body: Body) -> Result<Value, FeedError> {
    // Cheap refusals first, before reading a byte of the body: a declared
    // oversize body, and a type we would refuse whatever the bytes were.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPDATE_BYTES as u64) {
        return Err(FeedError::TooLarge);
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?"));
    if let Some(ct) = content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(FeedError::WrongType(ct.to_owned()));
        }
    }
    // A chunked body has no declared length: `Limited` stops reading one
    // byte past the limit, so memory stays bounded whatever the client sends.
    let bytes = http_body_util::Limited::new(body, MAX_UPDATE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            // Only the limit is "too large"; any other failure to read the
            // body (bad chunk syntax, say) is the request's fault: 400.
            if e.is::<http_body_util::LengthLimitError>() {
                FeedError::TooLarge
            } else {
                FeedError::BadBody(e.to_string())
            }
        })?
        .to_bytes();
    match (content_type, bytes.is_empty()) {
        (None, true) => Ok(Value::String(EMPTY_UPDATE.to_owned())),
        (None, false) => Err(FeedError::WrongType("none".to_owned())),
        (Some(_), _) => {
            serde_json::from_slice(&bytes).map_err(|e| FeedError::NotJson(e.to_string()))
        }
    }
}

/// Middleware that counts requests, 304s and body bytes. Streaming bodies
/// have no size up front; the SSE lesson counts its bytes as it sends them.
async fn count(State(feed): State<Feed>, req: Request, next: Next) -> Response {
    let is_stats = req.uri().path() == "/stats";
    let resp = next.run(req).await;
    if !is_stats {
        let c = feed.counters();
        c.requests.fetch_add(1, Ordering::SeqCst);
        if resp.status() == StatusCode::NOT_MODIFIED {
            c.not_modified.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(n) = HttpBody::size_hint(resp.body()).exact() {
            c.body_bytes.fetch_add(n, Ordering::SeqCst);
        }
    }
    resp
}

/// Adds what every lesson's router has: `GET /stats` (the counters as
/// JSON), a JSON 404 for unknown routes, a JSON 405, and the counting
/// middleware.
pub fn finish(router: Router, feed: &Feed) -> Router {
    let for_stats = feed.clone();
    router
        .route("/stats", get(move || async move { Json(for_stats.stats()) }))
        .fallback(|req: Request| async move { FeedError::NotFound(req.uri().path().to_owned()) })
        .method_not_allowed_fallback(|| async { FeedError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(feed.clone(), count))
}

/// Serves `app` on `listener` until `token` is cancelled, then stops
/// accepting, lets open requests finish (lessons end held polls and streams
/// when they see the token) and returns. It runs on the loop in the
/// `http-serve` crate, with its default header-read timeout, connection cap
/// and shutdown grace.
pub async fn serve(listener: TcpListener, app: Router, token: CancellationToken) -> io::Result<()> {
    http_serve::serve(listener, app, token, http_serve::ServeConfig::default()).await
}

/// The browser page every lesson serves at `/`: a list the feed shows up in,
/// and a form that posts an update. `script` is the lesson's own way of
/// following the feed; it calls `show(update)` for each update and `note(text)`
/// for anything else worth a line. Plain HTML and JavaScript, no build step.
pub fn page(title: &str, script: &str) -> axum::response::Html<String> {
    axum::response::Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}}
#log{{font-family:monospace;white-space:pre-wrap}}</style></head>
<body><h1>{title}</h1>
<form id="f"><input id="t" size="40" value="hello" autofocus>
<button>POST /update</button></form>
<p>Open this page in two tabs; post in one and watch the other. Counters: <a href="/stats">/stats</a></p>
<div id="log"></div>
<script>
const log = document.getElementById('log');
function note(text) {{ log.prepend(new Date().toLocaleTimeString() + '  ' + text + '\n'); }}
function show(u) {{ note('#' + u.id + ' ' + JSON.stringify(u.data)); }}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
document.getElementById('f').onsubmit = async (e) => {{
  e.preventDefault();
  const r = await fetch('/update', {{method: 'POST', headers: {{'Content-Type': 'application/json'}},
    body: JSON.stringify({{text: document.getElementById('t').value}})}});
  if (!r.ok) note('update refused: ' + (await r.json()).error);
}};
{script}
</script></body></html>
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_increase_and_history_is_bounded() {
        let feed = Feed::new(3);
        for i in 0..5 {
            assert_eq!(feed.publish(json!(i)).id, i + 1);
        }
        let s = feed.since(0).expect("0 is never ahead");
        assert_eq!(s.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(s.missed, 2, "ids 1 and 2 fell out of a history of 3");
        let s = feed.since(3).expect("3 exists");
        assert_eq!(s.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(s.missed, 0);
        assert!(feed.since(5).expect("newest").updates.is_empty());
        assert_eq!(feed.since(6), Err(FeedError::Ahead { since: 6, newest: 5 }));
    }

    #[test]
    fn a_full_queue_drops_its_subscriber_only() {
        let feed = Feed::new(10);
        let (_, mut slow) = feed.subscribe(None, 2).expect("no since");
        let (_, mut fast) = feed.subscribe(None, 2).expect("no since");
        for i in 0..3 {
            feed.publish(json!(i));
            // The fast one reads everything as it comes.
            assert!(fast.rx.try_recv().is_ok());
        }
        assert_eq!(feed.stats().subscribers, 1, "the slow one was dropped on the 3rd update");
        assert_eq!(feed.stats().dropped, 1);
        // The slow one still gets what was queued, then the end.
        assert_eq!(slow.rx.try_recv().expect("queued").id, 1);
        assert_eq!(slow.rx.try_recv().expect("queued").id, 2);
        assert!(matches!(slow.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        drop(fast);
        assert_eq!(feed.stats().subscribers, 0, "dropping a subscription unregisters it");
    }

    #[test]
    fn subscribe_with_since_catches_up_without_gap_or_duplicate() {
        let feed = Feed::new(10);
        feed.publish(json!("a"));
        feed.publish(json!("b"));
        let (catch_up, mut sub) = feed.subscribe(Some(1), 4).expect("1 exists");
        feed.publish(json!("c"));
        assert_eq!(catch_up.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(sub.rx.try_recv().expect("live").id, 3);
    }

    #[test]
    fn since_parsing() {
        assert_eq!(parse_since(None), Ok(None));
        assert_eq!(parse_since(Some("x=1")), Ok(None));
        assert_eq!(parse_since(Some("x=1&since=7")), Ok(Some(7)));
        assert!(matches!(parse_since(Some("since=")), Err(FeedError::BadSince(_))));
        assert!(matches!(parse_since(Some("since=-1")), Err(FeedError::BadSince(_))));
        assert!(matches!(parse_since(Some("since=abc")), Err(FeedError::BadSince(_))));
    }

    #[test]
    fn waiter_guard_counts_while_alive() {
        let feed = Feed::default();
        let g = feed.waiter();
        assert_eq!(feed.stats().waiting, 1);
        drop(g);
        assert_eq!(feed.stats().waiting, 0);
    }
}
