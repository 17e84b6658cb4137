//! Lesson 9: push notifications over WebSocket, with delivery you can count on.
//!
//! A client opens a WebSocket (`GET /ws`) and subscribes to named events by
//! sending `{"event":"newMessage"}`, the shape of the classic example; it can
//! unsubscribe with `{"event":"newMessage","action":"unsubscribe"}`. Anyone
//! publishes with `POST /notify` and a body `{"event":"newMessage","payload":...}`
//! (or the server's own timer does), and the server pushes
//!
//! ```text
//! {"type":"notification","id":42,"event":"newMessage","payload":"You have a new message!"}
//! ```
//!
//! to exactly the subscribers of that event, at once, over the connection
//! they already have open. Nobody polls.
//!
//! What a toy push server leaves out and this one does not:
//! * every notification has an id, and the server keeps a bounded history;
//!   a client that reconnects with `{"event":"newMessage","since":41}` gets what
//!   it missed, then the live stream, with nothing lost and nothing twice;
//! * a connection's subscriptions vanish with it ([`Push::stats`] shows the
//!   count going back to zero);
//! * each client has a bounded queue, and one that cannot keep up is closed
//!   with 1008 and a reason instead of growing the server's memory;
//! * publishing is bounded too ([`PUBLISH_RATE`], a 429 past it), so a burst
//!   of publishes cannot fill the queues of subscribers that are reading;
//! * only the server's own pages (and origins the operator allows) may open
//!   a WebSocket or publish from a browser, and `POST /notify` takes only
//!   JSON, so another site's page or form cannot subscribe or publish.
//!
//! Run it:
//!
//! ```text
//! cargo run -p push-notifications                       # demo: subscribers, publishes, a reconnect
//! cargo run -p push-notifications -- serve              # ws://127.0.0.1:7094/ws, POST http://127.0.0.1:7094/notify, page at http://127.0.0.1:7094/
//! cargo run -p push-notifications -- client --event newMessage --event tick
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
// Lesson 8's pieces, used as they are: the Origin check, the token bucket,
// and the mapping from a read error to a close code.
use websocket_chat::close_for;
use websocket_chat::limit::TokenBucket;
use websocket_chat::origin::Origins;

pub mod client;

/// Where `serve` listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7094";

/// Notifications the server remembers for clients that reconnect. At a few
/// hundred bytes each, 256 is under 100 KiB in all: enough to cover a phone
/// dropping off Wi-Fi for a while at a few notifications a second, bounded
/// no matter how long the server runs.
pub const HISTORY_LEN: usize = 256;

/// Messages waiting to be written to one client. It must hold a full replay
/// of the history plus some live traffic, or a reconnecting client would be
/// "too slow" by construction. The frames are shared (reference-counted), so
/// a queue entry costs a pointer, not a copy.
pub const QUEUE_CAPACITY: usize = 2 * HISTORY_LEN;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME: usize = 64;

/// Events one connection may be subscribed to at once. Each subscription is
/// an entry in two maps; without a cap one client could subscribe to new
/// names until the server ran out of memory. A phone follows a handful.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Open WebSocket connections the server accepts; the next upgrade gets an
/// HTTP 503 before any task is spent on it. Each subscriber costs a task, a
/// queue and tungstenite's buffers (about 150 KiB in all, chapter 11 measures
/// it), so the default bounds the server near 300 MiB. The transports report
/// follows with 1,000.
pub const MAX_CONNECTIONS: usize = 2000;

/// Largest message a client may send (subscriptions are tiny), and the
/// largest `POST /notify` body. Above it: close 1009 and HTTP 413.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Publishes per second that `POST /notify` accepts, for the whole server;
/// past it the answer is 429 with `Retry-After`. A service publishing for
/// its users sends a few a second (one per chat message, one per order);
/// 50 is ten times that. It also bounds how fast the history turns over: at
/// the limit, [`HISTORY_LEN`] still covers five seconds of absence.
pub const PUBLISH_RATE: u32 = 50;

/// Publishes accepted at once before [`PUBLISH_RATE`] applies (a batch job's
/// backlog). It must fit in a subscriber's queue beside a full replay:
/// [`QUEUE_CAPACITY`] minus [`HISTORY_LEN`] is 256, so a burst of 100
/// reaches even a client in the middle of its replay without making it
/// "too slow". A subscriber is closed only if it is really not reading.
pub const PUBLISH_BURST: u32 = 100;

/// How long a browser may cache the answer to a preflight (`OPTIONS
/// /notify`) before asking again: ten minutes saves a round trip per
/// publish, and a changed allow list still takes effect soon.
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// How often the server pings each client, and how long it waits for any
/// sign of life before dropping it (two missed pings). See lesson 8.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// See [`PING_INTERVAL`].
pub const PONG_TIMEOUT: Duration = Duration::from_secs(45);

/// How long the server keeps trying to deliver a close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long a graceful shutdown waits for connections to finish.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Close codes this server sends.
pub mod close_code {
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the framing rules (lesson 8's `close_for`).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Invalid UTF-8 in a text frame.
    pub const INVALID_DATA: u16 = 1007;
    /// The client's queue was full: too slow.
    pub const POLICY: u16 = 1008;
    /// Message over [`super::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// No pong within the timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
}

/// The knobs; tests turn them down.
#[derive(Debug, Clone)]
pub struct Config {
    /// See [`HISTORY_LEN`].
    pub history_len: usize,
    /// See [`QUEUE_CAPACITY`]. Must exceed `history_len`.
    pub queue_capacity: usize,
    /// See [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`PONG_TIMEOUT`].
    pub pong_timeout: Duration,
    /// See [`CLOSE_GRACE`].
    pub close_grace: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`PUBLISH_RATE`]. Above 0.
    pub publish_rate: u32,
    /// See [`PUBLISH_BURST`]. Above 0; with `history_len`, at most
    /// `queue_capacity`.
    pub publish_burst: u32,
    /// Browser origins allowed besides the server's own, for the WebSocket
    /// and for `POST /notify` (`serve --allow-origin`; see lesson 8's
    /// `websocket_chat::origin`).
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            history_len: HISTORY_LEN,
            queue_capacity: QUEUE_CAPACITY,
            ping_interval: PING_INTERVAL,
            pong_timeout: PONG_TIMEOUT,
            close_grace: CLOSE_GRACE,
            max_connections: MAX_CONNECTIONS,
            publish_rate: PUBLISH_RATE,
            publish_burst: PUBLISH_BURST,
            allowed_origins: Vec::new(),
        }
    }
}

/// What a client sends: `{"event":"x"}` subscribes (the notes' shape),
/// `"action":"unsubscribe"` undoes it, `"since":N` asks for what came after
/// id N first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMsg {
    /// The event name.
    pub event: String,
    /// `subscribe` (the default) or `unsubscribe`.
    #[serde(default)]
    pub action: Action,
    /// The last notification id this client saw, if it is resuming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// Subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start receiving the event.
    #[default]
    Subscribe,
    /// Stop receiving it.
    Unsubscribe,
}

/// What the server sends. The `type` tag comes first on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg {
    /// A push: `id` grows by one with every notification on any event.
    Notification { id: u64, event: String, payload: Value },
    /// Your subscription is in place; `last_id` is the newest id so far,
    /// the place to resume from if you have seen nothing yet.
    Subscribed { event: String, last_id: u64 },
    /// Your subscription is gone.
    Unsubscribed { event: String },
    /// You asked for ids after `since`, but the history starts at `oldest`:
    /// some notifications between them are lost to you.
    Gap { event: String, since: u64, oldest: u64 },
    /// Your message was not understood; the connection stays open.
    Error { message: String },
}

impl ServerMsg {
    /// Serialized once; the frame is then shared by every queue it goes to.
    fn to_frame(&self) -> Message {
        let json = serde_json::to_string(self).expect("our own enum always serializes");
        Message::Text(Utf8Bytes::from(json))
    }
}

/// What `POST /notify` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    /// Which event.
    pub event: String,
    /// Anything JSON; delivered as it is.
    #[serde(default)]
    pub payload: Value,
}

/// What `POST /notify` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The id the notification got.
    pub id: u64,
    /// How many subscribers it was queued for.
    pub delivered: usize,
}

/// One connection, as the hub sees it.
#[derive(Debug)]
struct Conn {
    tx: mpsc::Sender<Message>,
    goodbye: mpsc::Sender<(u16, String)>,
    kicked: bool,
    events: HashSet<String>,
}

/// One remembered notification.
#[derive(Debug)]
struct Stored {
    id: u64,
    event: String,
    /// The serialized frame, shared by every queue it sits in.
    frame: Message,
}

/// Subscriptions and history, behind one lock. Publishing, subscribing and
/// replaying all happen under it, which is what makes "replay, then live"
/// exact: no notification can slip between the replay and the subscription.
#[derive(Debug, Default)]
struct Hub {
    conns: HashMap<u64, Conn>,
    /// event name -> connection ids. An event with no subscribers has no entry.
    topics: HashMap<String, HashSet<u64>>,
    history: VecDeque<Stored>,
    /// The id of the newest notification that fell out of `history` (0: none).
    forgotten_up_to: u64,
    last_id: u64,
}

/// Counters the tests, the demo and `GET /stats` read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Subscribers per event (events with none are absent).
    pub subscribers: HashMap<String, usize>,
    /// The id of the newest notification.
    pub last_id: u64,
    /// Notifications in the history.
    pub history: usize,
    /// Clients closed because their queue was full.
    pub kicked_slow: u64,
    /// `POST /notify` requests refused with 429.
    pub publishes_refused: u64,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    hub: Mutex<Hub>,
    next_conn: AtomicU64,
    kicked_slow: AtomicU64,
    publishes_refused: AtomicU64,
    /// One bucket for every `POST /notify`, see [`PUBLISH_RATE`].
    publish_limit: Mutex<TokenBucket>,
    /// Who may connect or publish from a browser.
    origins: Origins,
    /// One permit per open connection, see [`MAX_CONNECTIONS`].
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// The push server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Push {
    shared: Arc<Shared>,
}

impl Push {
    /// A server with the given limits. Panics if the queue cannot hold a
    /// full replay, on a publish rate or burst of 0, or on an allowed origin
    /// that is not one (configuration bugs, not runtime conditions).
    pub fn new(config: Config) -> Self {
        assert!(
            config.queue_capacity > config.history_len,
            "queue_capacity must exceed history_len, or a replay alone would overflow the queue"
        );
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let origins = Origins::new(&config.allowed_origins).unwrap_or_else(|e| panic!("{e}"));
        let publish_limit = Mutex::new(TokenBucket::new(config.publish_rate, config.publish_burst));
        Self {
            shared: Arc::new(Shared {
                config,
                hub: Mutex::new(Hub::default()),
                next_conn: AtomicU64::new(1),
                kicked_slow: AtomicU64::new(0),
                publishes_refused: AtomicU64::new(0),
                publish_limit,
                origins,
                slots,
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// `GET /` (a page), `GET /ws`, `POST /notify` (and its CORS preflight,
    /// `OPTIONS /notify`), `GET /stats`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/ws", get(upgrade))
            .route("/notify", post(notify).options(preflight))
            .route("/stats", get(stats))
            .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
            .with_state(self.clone())
    }

    /// Serves until `token` is cancelled, then closes every connection with
    /// 1001 and waits up to [`SHUTDOWN_WAIT`] for them.
    pub async fn serve(self, listener: TcpListener, token: CancellationToken) -> io::Result<()> {
        // The accept loop of lessons 5 to 10 (see chapter 10).
        let config = http_serve::ServeConfig::default();
        http_serve::serve(listener, self.router(), token, config).await?;
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.shared.tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after {SHUTDOWN_WAIT:?}; leaving anyway");
        }
        Ok(())
    }

    /// Publishes `payload` on `event` every `every` until `token` is
    /// cancelled: the demo's and `serve`'s timer. The payload counts up.
    pub fn spawn_timer(&self, event: &str, every: Duration, token: CancellationToken) {
        let (push, event) = (self.clone(), event.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            for n in 1u64.. {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = tick.tick() => { push.publish(&event, json!({ "tick": n })); }
                }
            }
        });
    }

    /// Gives the notification the next id, remembers it, and queues it for
    /// every subscriber of `event`. Never waits for a client.
    pub fn publish(&self, event: &str, payload: Value) -> Published {
        let mut hub = self.hub();
        hub.last_id += 1;
        let id = hub.last_id;
        let frame = ServerMsg::Notification { id, event: event.to_owned(), payload }.to_frame();
        let mut delivered = 0;
        let Hub { conns, topics, .. } = &mut *hub;
        for conn_id in topics.get(event).into_iter().flatten() {
            if let Some(conn) = conns.get_mut(conn_id) {
                delivered += usize::from(self.deliver(conn, frame.clone()));
            }
        }
        hub.history.push_back(Stored { id, event: event.to_owned(), frame });
        while hub.history.len() > self.shared.config.history_len {
            if let Some(old) = hub.history.pop_front() {
                hub.forgotten_up_to = old.id;
            }
        }
        Published { id, delivered }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let hub = self.hub();
        Stats {
            connections: hub.conns.len(),
            subscribers: hub.topics.iter().map(|(e, s)| (e.clone(), s.len())).collect(),
            last_id: hub.last_id,
            history: hub.history.len(),
            kicked_slow: self.shared.kicked_slow.load(Ordering::Relaxed),
            publishes_refused: self.shared.publishes_refused.load(Ordering::Relaxed),
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // Every edit under this lock is a single insert/remove; a panic cannot
        // leave it half-done, so a poisoned lock is still usable.
        self.shared.hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `try_send` or disconnect: the same decision as lesson 8's chat. Returns
    /// whether the frame was queued.
    fn deliver(&self, conn: &mut Conn, frame: Message) -> bool {
        if conn.kicked {
            return false;
        }
        match conn.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                conn.kicked = true;
                self.shared.kicked_slow.fetch_add(1, Ordering::Relaxed);
                let reason = format!("too slow: {} notifications unread", conn.tx.max_capacity());
                let _ = conn.goodbye.try_send((close_code::POLICY, reason));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Handles one client message under the hub lock: subscribe (with
    /// replay) or unsubscribe. Replies go into the client's own queue, in
    /// order, before any live notification can.
    fn handle(&self, conn_id: u64, msg: ClientMsg) {
        let mut hub = self.hub();
        let Hub { conns, topics, history, forgotten_up_to, last_id } = &mut *hub;
        let Some(conn) = conns.get_mut(&conn_id) else { return };
        let new = matches!(msg.action, Action::Subscribe) && !conn.events.contains(&msg.event);
        if new && conn.events.len() >= MAX_SUBSCRIPTIONS {
            let message = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
            self.deliver(conn, ServerMsg::Error { message }.to_frame());
            return;
        }
        match msg.action {
            Action::Subscribe => {
                conn.events.insert(msg.event.clone());
                topics.entry(msg.event.clone()).or_default().insert(conn_id);
                // The ack carries the newest id, so even a client that has
                // seen nothing yet knows where to resume from after a drop.
                let ack = ServerMsg::Subscribed { event: msg.event.clone(), last_id: *last_id };
                self.deliver(conn, ack.to_frame());
                let Some(since) = msg.since else { return };
                if since < *forgotten_up_to {
                    // Be honest: the history no longer reaches back that far.
                    let oldest = forgotten_up_to.saturating_add(1);
                    let warn = ServerMsg::Gap { event: msg.event.clone(), since, oldest };
                    self.deliver(conn, warn.to_frame());
                }
                for stored in history.iter().filter(|s| s.id > since && s.event == msg.event) {
                    self.deliver(conn, stored.frame.clone());
                }
            }
            Action::Unsubscribe => {
                conn.events.remove(&msg.event);
                remove_subscriber(topics, &msg.event, conn_id);
                self.deliver(conn, ServerMsg::Unsubscribed { event: msg.event }.to_frame());
            }
        }
    }
}

/// Removes one subscriber, and the event's entry when it was the last, so
/// an event nobody listens to costs nothing.
fn remove_subscriber(topics: &mut HashMap<String, HashSet<u64>>, event: &str, conn_id: u64) {
    if let Some(set) = topics.get_mut(event) {
        set.remove(&conn_id);
        if set.is_empty() {
            topics.remove(event);
        }
    }
}

/// Checks an event name.
pub fn validate_event(event: &str) -> Result<(), String> {
    if event.is_empty() {
        return Err("event must not be empty".into());
    }
    if event.len() > MAX_EVENT_NAME {
        return Err(format!("event must be at most {MAX_EVENT_NAME} bytes"));
    }
    if event.chars().any(char::is_control) {
        return Err("event must not contain control characters".into());
    }
    Ok(())
}

/// `POST /notify`: check who is asking, the content type and the rate,
/// then parse and publish. The body is parsed by hand so that every mistake
/// gets a sentence, not just a status.
async fn notify(State(push): State<Push>, headers: HeaderMap, body: Bytes) -> Response {
    // A page on another site (lesson 8's `origin` module explains the check).
    let origin = match push.shared.origins.check(&headers) {
        Ok(origin) => origin,
        Err(why) => return json_error(StatusCode::FORBIDDEN, why),
    };
    let answer = publish_checked(&push, &headers, &body);
    with_cors(answer, origin.as_deref())
}

fn publish_checked(push: &Push, headers: &HeaderMap, body: &[u8]) -> Response {
    // Only JSON. A plain HTML form on any site can POST here without the
    // browser asking first, but only as text/plain, urlencoded or multipart:
    // insisting on application/json shuts that door. (A page that sets
    // application/json itself has to ask first, see `preflight`.)
    if !is_json(headers) {
        let msg = "POST /notify takes Content-Type: application/json \
                   (with curl: -H 'Content-Type: application/json')";
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg.into());
    }
    // The rate, for the whole server: a publish is fanned out to every
    // subscriber, so this is what keeps a burst of them from filling the
    // queues of clients that are reading just fine.
    let over = push.shared.publish_limit.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Err(wait) = over {
        push.shared.publishes_refused.fetch_add(1, Ordering::Relaxed);
        let rate = push.shared.config.publish_rate;
        let msg = format!("too many publishes: at most {rate} a second; try again shortly");
        let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, msg);
        // Whole seconds, rounded up: `Retry-After: 0` would invite a spin.
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    let publish: Publish = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("expected {{\"event\":NAME,\"payload\":JSON}}: {e}");
            return json_error(StatusCode::BAD_REQUEST, msg);
        }
    };
    if let Err(e) = validate_event(&publish.event) {
        return json_error(StatusCode::BAD_REQUEST, e);
    }
    Json(push.publish(&publish.event, publish.payload)).into_response()
}

/// `OPTIONS /notify`: the CORS preflight. A page on another origin that
/// wants to POST JSON here must ask first; the browser sends the POST only
/// if this answer names the page's origin. Allowed: the origins of the
/// WebSocket's allow list (the server's own needs no preflight; others come
/// from `serve --allow-origin`), because publishing reaches every
/// subscriber and has no other credential.
async fn preflight(State(push): State<Push>, headers: HeaderMap) -> Response {
    match push.shared.origins.check(&headers) {
        Err(why) => json_error(StatusCode::FORBIDDEN, why),
        // Not from a browser: just say what the route takes.
        Ok(None) => (StatusCode::NO_CONTENT, [(header::ALLOW, "POST, OPTIONS")]).into_response(),
        Ok(Some(origin)) => {
            let mut resp = with_cors(StatusCode::NO_CONTENT.into_response(), Some(&origin));
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(PREFLIGHT_MAX_AGE_SECS));
            resp
        }
    }
}

/// Lets the page at `origin` (already checked) read the answer. `Vary:
/// Origin` tells caches the answer differs from one origin to the next.
fn with_cors(mut resp: Response, origin: Option<&str>) -> Response {
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    resp
}

/// `Content-Type: application/json`, in any case, with or without
/// parameters such as `; charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The error shape every `/notify` refusal uses: `{"error": "..."}`.
fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `GET /`: a browser client that subscribes, shows what is pushed, and
/// publishes through `POST /notify`.
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// `GET /stats`: the counters, for poking by hand.
async fn stats(State(push): State<Push>) -> Json<Stats> {
    Json(push.stats())
}

async fn upgrade(ws: WebSocketUpgrade, headers: HeaderMap, State(push): State<Push>) -> Response {
    // Only the server's own pages and allowed origins (as lesson 8).
    if let Err(why) = push.shared.origins.check(&headers) {
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    // Past the cap, refuse with a plain 503 before upgrading (as lesson 8).
    let Ok(permit) = Arc::clone(&push.shared.slots).try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(2 * MAX_MESSAGE_BYTES + 64 * 1024)
        .on_upgrade(move |socket| {
            let tracker = push.shared.tracker.clone();
            tracker.track_future(connection(push, socket, permit))
        })
}

/// One subscriber connection: read subscriptions, write notifications (in
/// [`writer`]), and clean up every subscription at the end.
async fn connection(push: Push, socket: WebSocket, _permit: OwnedSemaphorePermit) {
    let config = push.shared.config.clone();
    let id = push.shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let (goodbye_tx, goodbye_rx) = mpsc::channel(1);
    push.hub().conns.insert(
        id,
        Conn { tx: tx.clone(), goodbye: goodbye_tx.clone(), kicked: false, events: HashSet::new() },
    );
    let mut writer = tokio::spawn(writer(sink, rx, goodbye_rx, config.close_grace));
    let mut heartbeat = tokio::time::interval(config.ping_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let bye = |code: u16, reason: String| {
        let _ = goodbye_tx.try_send((code, reason));
    };
    let reply_error = |message: String| {
        let _ = tx.try_send(ServerMsg::Error { message }.to_frame());
    };

    loop {
        tokio::select! {
            () = push.shared.shutdown.cancelled() => {
                bye(close_code::GOING_AWAY, "server shutting down".into());
                break;
            }
            _ = &mut writer => break,
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.pong_timeout {
                    bye(close_code::HEARTBEAT_TIMEOUT, "no pong".into());
                    break;
                }
                let _ = tx.try_send(Message::Ping(Bytes::new()));
            }
            frame = stream.next() => {
                let msg = match frame {
                    None => break,
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        // 1009 too big, 1007 bad UTF-8, 1002 broken framing.
                        if let Some((code, reason)) = close_for(e) {
                            bye(code, reason);
                        }
                        break;
                    }
                };
                last_heard = tokio::time::Instant::now();
                match msg {
                    Message::Text(t) => match serde_json::from_str::<ClientMsg>(t.as_str()) {
                        Ok(m) => match validate_event(&m.event) {
                            Ok(()) => push.handle(id, m),
                            Err(e) => reply_error(e),
                        },
                        Err(e) => reply_error(format!(
                            "expected {{\"event\":NAME}} (with optional \"action\" and \"since\"): {e}")),
                    },
                    Message::Binary(_) => reply_error("send JSON text, not binary".into()),
                    Message::Ping(_) | Message::Pong(_) => {}
                    Message::Close(_) => break,
                }
            }
        }
    }

    // The cleanup the notes' unsubscribeClient does, for every event this
    // connection had: after it, nothing refers to the connection any more.
    {
        let mut hub = push.hub();
        if let Some(conn) = hub.conns.remove(&id) {
            for event in &conn.events {
                remove_subscriber(&mut hub.topics, event, id);
            }
        }
    }
    drop(tx);
    drop(goodbye_tx);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(config.close_grace * 2, &mut writer).await;
        writer.abort();
    }
    // If we sent the close frame, the closing handshake ends when the peer's
    // close frame comes back (or the grace runs out); reading it is also
    // what lets the TCP connection end cleanly on the peer's side.
    let _ = tokio::time::timeout(config.close_grace, async {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Drains one client's queue; on a goodbye, abandons a stuck write and tries
/// to deliver the close frame within `grace`. Lesson 8 explains it at length.
async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    mut goodbye: mpsc::Receiver<(u16, String)>,
    grace: Duration,
) {
    let farewell = loop {
        tokio::select! {
            biased;
            bye = goodbye.recv() => break bye,
            msg = rx.recv() => {
                let Some(msg) = msg else { break goodbye.try_recv().ok() };
                tokio::select! {
                    biased;
                    bye = goodbye.recv() => break bye,
                    sent = sink.send(msg) => if sent.is_err() { return },
                }
            }
        }
    };
    match farewell {
        // We start the closing handshake; the peer's answer arrives on the
        // reading half, which `connection` drains.
        Some((code, reason)) => {
            let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
            let _ = tokio::time::timeout(grace, sink.send(Message::Close(Some(frame)))).await;
        }
        // The peer started it: flush tungstenite's automatic reply.
        None => {
            let _ = tokio::time::timeout(grace, sink.close()).await;
        }
    }
}
