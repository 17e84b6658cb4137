//! Lesson 9: push notifications over WebSocket, with delivery you can count on.
//!
//! A client opens a WebSocket (`GET /ws`, or `GET /` with the upgrade
//! headers) and subscribes to named events by sending
//! `{"event":"newMessage"}`, the shape of the classic example; it can
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
//! * publishing is bounded ([`PUBLISH_RATE`], a 429 past it), so a burst of
//!   publishes cannot fill the queues of subscribers that are reading;
//! * only the server's own pages (and origins the operator allows) may open
//!   a WebSocket or publish from a browser, and `POST /notify` takes only
//!   JSON, so another site's page or form cannot subscribe or publish.
//!
//! The connection itself (a bounded queue per client that closes one that
//! cannot keep up with 1008, the heartbeat, close codes, the cap, shutdown)
//! is lesson 8's [`websocket_chat::conn`], used as it is.
//!
//! Run it:
//!
//! ```text
//! cargo run -p push-notifications                       # demo: subscribers, publishes, a reconnect
//! cargo run -p push-notifications -- serve              # ws://127.0.0.1:7094/ws (or /), POST http://127.0.0.1:7094/notify, page at http://127.0.0.1:7094/
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
use axum::extract::ws::Message;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
// Lesson 8's pieces, used as they are: the connection plumbing and the
// token bucket.
use websocket_chat::conn::{self, Connection, Connections, Data, Outbox};
use websocket_chat::rate::TokenBucket;

pub mod client;
mod limits;

pub use limits::*;
pub use websocket_chat::close_code;

/// One subscriber, from upgrade to goodbye: read subscriptions, and at the
/// end remove every one of them. Notifications reach it through its
/// [`Outbox`], from [`Push::publish`].
async fn connection(push: Push, mut conn: Connection) {
    let id = conn.id();
    let subscriber =
        Subscriber { outbox: conn.outbox(), events: HashSet::new(), ahead: HashMap::new() };
    push.hub().subscribers.insert(id, subscriber);
    while let Some(data) = conn.next().await {
        let Data::Text(text) = data else {
            push.reply(id, error("send JSON text, not binary"));
            continue;
        };
        match serde_json::from_str::<ClientMsg>(text.as_str()) {
            Ok(msg) => match validate_event(&msg.event) {
                Ok(()) => push.handle(id, msg),
                Err(e) => push.reply(id, error(e)),
            },
            Err(e) => push.reply(
                id,
                error(format!(
                    "expected {{\"event\":NAME}} (with optional \"action\" and \"since\"): {e}"
                )),
            ),
        }
    }
    // The cleanup the notes' unsubscribeClient does, for every event this
    // connection had: after it, nothing refers to the connection any more
    // (its outbox goes too, which lets the writer finish).
    {
        let mut hub = push.hub();
        if let Some(gone) = hub.subscribers.remove(&id) {
            for event in &gone.events {
                remove_subscriber(&mut hub.topics, event, id);
            }
        }
    }
    conn.finish().await;
}

impl Push {
    /// Gives the notification the next id, remembers it, and queues it for
    /// every subscriber of `event`. Never waits for a client.
    pub fn publish(&self, event: &str, payload: Value) -> Published {
        let mut hub = self.hub();
        let id = hub.last_id + 1;
        Self::insert(&mut hub, self.shared.config.history_len, id, event, payload)
    }

    /// Takes a notification whose id was given elsewhere (lesson 16: by a
    /// Redis Stream that every process reads), remembers it and queues it
    /// for this process's subscribers of `event`, as [`Push::publish`]
    /// does. Ids must grow: one at or below the newest already taken is a
    /// repeat and is ignored (`None`). One that skips ids (this process
    /// started late, or the stream was trimmed) marks what it skipped as
    /// forgotten, so a client resuming from before it is told (a `gap`).
    pub fn publish_with_id(&self, id: u64, event: &str, payload: Value) -> Option<Published> {
        let mut hub = self.hub();
        if id <= hub.last_id {
            return None;
        }
        if id > hub.last_id + 1 {
            hub.forgotten_up_to = id - 1;
        }
        Some(Self::insert(&mut hub, self.shared.config.history_len, id, event, payload))
    }

    fn insert(
        hub: &mut Hub,
        history_len: usize,
        id: u64,
        event: &str,
        payload: Value,
    ) -> Published {
        hub.last_id = id;
        let frame = ServerMsg::Notification { id, event: event.to_owned(), payload }.to_frame();
        let mut delivered = 0;
        let Hub { subscribers, topics, .. } = &mut *hub;
        for sub_id in topics.get(event).into_iter().flatten() {
            if let Some(sub) = subscribers.get_mut(sub_id) {
                // A client that resumed from an id this process had not
                // reached yet (it came from a process further ahead) has
                // seen this one already.
                if sub.ahead.get(event).is_some_and(|&seen| id <= seen) {
                    continue;
                }
                delivered += usize::from(sub.outbox.deliver(frame.clone()));
            }
        }
        hub.history.push_back(Stored { id, event: event.to_owned(), frame });
        while hub.history.len() > history_len {
            if let Some(old) = hub.history.pop_front() {
                hub.forgotten_up_to = old.id;
            }
        }
        Published { id, delivered }
    }

    /// Handles one client message under the hub lock: subscribe (with
    /// replay) or unsubscribe. Replies go into the client's own queue, in
    /// order, before any live notification can.
    fn handle(&self, sub_id: u64, msg: ClientMsg) {
        let mut hub = self.hub();
        let Hub { subscribers, topics, history, forgotten_up_to, last_id } = &mut *hub;
        let Some(sub) = subscribers.get_mut(&sub_id) else { return };
        let new = matches!(msg.action, Action::Subscribe) && !sub.events.contains(&msg.event);
        if new && sub.events.len() >= MAX_SUBSCRIPTIONS {
            let message = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
            sub.outbox.deliver(error(message).to_frame());
            return;
        }
        // Resuming from beyond our newest id: only possible when ids come
        // from elsewhere (lesson 16) and this process is behind. Remember
        // where the client is, so what we catch up on is not sent twice.
        match (msg.action, msg.since) {
            (Action::Subscribe, Some(since)) if since > *last_id => {
                sub.ahead.insert(msg.event.clone(), since);
            }
            _ => {
                sub.ahead.remove(&msg.event);
            }
        }
        match msg.action {
            Action::Subscribe => {
                sub.events.insert(msg.event.clone());
                topics.entry(msg.event.clone()).or_default().insert(sub_id);
                // The ack carries the newest id, so even a client that has
                // seen nothing yet knows where to resume from after a drop.
                let ack = ServerMsg::Subscribed { event: msg.event.clone(), last_id: *last_id };
                sub.outbox.deliver(ack.to_frame());
                let Some(since) = msg.since else { return };
                if since < *forgotten_up_to {
                    // Be honest: the history no longer reaches back that far.
                    let oldest = forgotten_up_to.saturating_add(1);
                    let warn = ServerMsg::Gap { event: msg.event.clone(), since, oldest };
                    sub.outbox.deliver(warn.to_frame());
                }
                for stored in history.iter().filter(|s| s.id > since && s.event == msg.event) {
                    sub.outbox.deliver(stored.frame.clone());
                }
            }
            Action::Unsubscribe => {
                sub.events.remove(&msg.event);
                remove_subscriber(topics, &msg.event, sub_id);
                sub.outbox.deliver(ServerMsg::Unsubscribed { event: msg.event }.to_frame());
            }
        }
    }

    /// Sends `msg` to one subscriber (or closes it, if its queue is full).
    fn reply(&self, sub_id: u64, msg: ServerMsg) {
        if let Some(sub) = self.hub().subscribers.get_mut(&sub_id) {
            sub.outbox.deliver(msg.to_frame());
        }
    }
}

/// Removes one subscriber, and the event's entry when it was the last, so
/// an event nobody listens to costs nothing.
fn remove_subscriber(topics: &mut HashMap<String, HashSet<u64>>, event: &str, sub_id: u64) {
    if let Some(set) = topics.get_mut(event) {
        set.remove(&sub_id);
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

fn error(message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error { message: message.into() }
}

/// `POST /notify`: check who is asking, the content type and the rate,
/// then parse and publish. The body is parsed by hand so that every mistake
/// gets a sentence, not just a status.
async fn notify(State(push): State<Push>, headers: HeaderMap, body: Bytes) -> Response {
    // A page on another site (lesson 8's `origin` module explains the check).
    let origin = match push.shared.conns.origins().check(&headers) {
        Ok(origin) => origin,
        Err(why) => return json_error(StatusCode::FORBIDDEN, why),
    };
    let answer = match checked(&push, &headers, &body) {
        Err(refused) => *refused,
        Ok(publish) => match &push.shared.publisher {
            None => Json(push.publish(&publish.event, publish.payload)).into_response(),
            // Lesson 16: the id comes from elsewhere, and so does delivery.
            Some(publisher) => match publisher.publish(publish.event, publish.payload).await {
                Ok(id) => Json(Published { id, delivered: 0 }).into_response(),
                Err(why) => {
                    let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, why);
                    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
                    resp
                }
            },
        },
    };
    with_cors(answer, origin.as_deref())
}

/// Where `POST /notify` publishes when the push service runs on several
/// processes (lesson 16): something all of them share gives the id, and
/// every process learns of the notification from there and hands it to
/// its own subscribers with [`Push::publish_with_id`].
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Publishes, and returns the id given, or why it could not (the
    /// publisher is told 503, try again).
    fn publish(
        &self,
        event: String,
        payload: Value,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
}

/// The checks of `POST /notify` (content type, rate, shape), and what to
/// publish if they pass; else the refusal (boxed: a `Response` is large).
fn checked(push: &Push, headers: &HeaderMap, body: &[u8]) -> Result<Publish, Box<Response>> {
    // Only JSON. A plain HTML form on any site can POST here without the
    // browser asking first, but only as text/plain, urlencoded or multipart:
    // insisting on application/json shuts that door. (A page that sets
    // application/json itself has to ask first, see `preflight`.)
    if !is_json(headers) {
        let msg = "POST /notify takes Content-Type: application/json \
                   (with curl: -H 'Content-Type: application/json')";
        return Err(Box::new(json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg.into())));
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
        return Err(Box::new(resp));
    }
    let publish: Publish = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("expected {{\"event\":NAME,\"payload\":JSON}}: {e}");
            return Err(Box::new(json_error(StatusCode::BAD_REQUEST, msg)));
        }
    };
    if let Err(e) = validate_event(&publish.event) {
        return Err(Box::new(json_error(StatusCode::BAD_REQUEST, e)));
    }
    Ok(publish)
}

/// `OPTIONS /notify`: the CORS preflight. A page on another origin that
/// wants to POST JSON here must ask first; the browser sends the POST only
/// if this answer names the page's origin. Allowed: the origins of the
/// WebSocket's allow list (the server's own needs no preflight; others come
/// from `serve --allow-origin`), because publishing reaches every
/// subscriber and has no other credential.
async fn preflight(State(push): State<Push>, headers: HeaderMap) -> Response {
    match push.shared.conns.origins().check(&headers) {
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

/// `GET /stats`: the counters, for poking by hand.
async fn stats(State(push): State<Push>) -> Json<Stats> {
    Json(push.stats())
}

/// The push server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Push {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    hub: Mutex<Hub>,
    /// One bucket for every `POST /notify`, see [`PUBLISH_RATE`].
    publish_limit: Mutex<TokenBucket>,
    /// `POST /notify` requests refused with 429.
    publishes_refused: AtomicU64,
    /// The cap, the `Origin` check, the connection tasks and their counters.
    conns: Connections,
    config: Config,
    /// Lesson 16's shared publisher, if this process is one of several.
    publisher: Option<Arc<dyn Publisher>>,
}

impl Push {
    /// A server with the given limits. Panics if the queue cannot hold a
    /// full replay, on a publish rate or burst of 0, or on an allowed origin
    /// that is not one (configuration bugs, not runtime conditions).
    pub fn new(config: Config) -> Self {
        Self::build(config, None)
    }

    /// A server whose `POST /notify` publishes through `publisher` (lesson
    /// 16: a Redis Stream) instead of here; notifications reach this
    /// process's subscribers through [`Push::publish_with_id`].
    pub fn with_publisher(config: Config, publisher: Arc<dyn Publisher>) -> Self {
        Self::build(config, Some(publisher))
    }

    fn build(config: Config, publisher: Option<Arc<dyn Publisher>>) -> Self {
        assert!(
            config.connection.queue_capacity > config.history_len,
            "queue_capacity must exceed history_len, or a replay alone would overflow the queue"
        );
        let publish_limit = Mutex::new(TokenBucket::new(config.publish_rate, config.publish_burst));
        let shared = Shared {
            hub: Mutex::new(Hub::default()),
            publish_limit,
            publishes_refused: AtomicU64::new(0),
            conns: Connections::new(config.connection, &config.allowed_origins),
            config,
            publisher,
        };
        Self { shared: Arc::new(shared) }
    }

    /// `GET /` (a page; a WebSocket handshake there is upgraded as on
    /// `/ws`), `GET /ws`, `POST /notify` (and its CORS preflight, `OPTIONS
    /// /notify`), `GET /stats`.
    pub fn router(&self) -> Router {
        let push = self.clone();
        let page = include_str!("page.html");
        self.shared
            .conns
            .routes(page, move |conn| connection(push.clone(), conn))
            .route("/notify", post(notify).options(preflight))
            .route("/stats", get(stats))
            .layer(DefaultBodyLimit::max(self.shared.config.connection.max_message_bytes))
            .with_state(self.clone())
    }

    /// Serves until `token` is cancelled, then closes every connection with
    /// 1001 and waits up to [`conn::SHUTDOWN_WAIT`] for them.
    pub async fn serve(self, listener: TcpListener, token: CancellationToken) -> io::Result<()> {
        // The accept loop of lessons 5 to 10 (see chapter 10), with Nagle
        // off as for every WebSocket lesson (`conn::serve_config`).
        let config = conn::serve_config();
        http_serve::serve(listener, self.router(), token, config).await?;
        self.shared.conns.close_all().await;
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

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let hub = self.hub();
        Stats {
            connections: hub.subscribers.len(),
            subscribers: hub.topics.iter().map(|(e, s)| (e.clone(), s.len())).collect(),
            last_id: hub.last_id,
            history: hub.history.len(),
            kicked_slow: self.shared.conns.kicked_slow(),
            publishes_refused: self.shared.publishes_refused.load(Ordering::Relaxed),
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // Every edit under this lock is a single insert/remove; a panic cannot
        // leave it half-done, so a poisoned lock is still usable.
        self.shared.hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    fn to_frame(&self) -> Message {
        conn::json_frame(self)
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
struct Subscriber {
    /// The way to its writer task: a bounded queue, and a close when full.
    outbox: Outbox,
    /// The events it is subscribed to, so the cleanup finds them all.
    events: HashSet<String>,
    /// Per event, an id it resumed from that this process had not reached
    /// (see [`Push::publish_with_id`]): nothing up to it is sent again.
    ahead: HashMap<String, u64>,
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
    subscribers: HashMap<u64, Subscriber>,
    /// event name -> subscriber ids. An event with no subscribers has no entry.
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
