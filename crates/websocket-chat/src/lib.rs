//! Lesson 8: a WebSocket chat, done the way a production server has to do it.
//!
//! One HTTP request upgrades to a WebSocket (`GET /ws`), and from then on both
//! sides send JSON messages whenever they like over the one TCP connection.
//! The protocol keeps the shape of the classic browser chat example:
//!
//! ```text
//! client -> server  {"type":"username","data":"alice"}
//! client -> server  {"type":"message","data":"hello"}
//! server -> client  {"type":"message","username":"alice","message":"hello","room":"lobby"}
//! server -> client  {"type":"info","message":"alice joined lobby"}
//! ```
//!
//! and adds rooms (`{"type":"join","data":"rust"}`, `{"type":"leave"}`), a list
//! of who is online (`{"type":"who"}`), and errors as `{"type":"error",...}`.
//!
//! What the lesson is really about is everything around the happy path:
//! a heartbeat that finds dead peers ([`Config::ping_interval`]), a bounded
//! queue per client so one slow reader cannot make the server buffer without
//! end ([`Config::queue_capacity`]), close codes that tell a client why it was
//! dropped (1001, 1002, 1007, 1008, 1009, 4000), a cap on connections, and a
//! graceful shutdown that says goodbye with a close frame. And what a hostile
//! client would try: a limit on how fast one client may send
//! ([`SEND_RATE`], so one chatty client cannot get a whole room closed as
//! "too slow"), and a check of the handshake's `Origin` ([`origin`], so a web
//! page on another site cannot open a connection as the learner).
//!
//! Run it:
//!
//! ```text
//! cargo run -p websocket-chat                            # demo: three clients chat, then exit
//! cargo run -p websocket-chat -- serve                   # ws://127.0.0.1:7093/ws, page at http://127.0.0.1:7093/
//! cargo run -p websocket-chat -- client --name alice     # terminal client: type lines, /join, /leave, /who
//! ```

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod client;
pub mod limit;
pub mod origin;

use limit::TokenBucket;
use origin::Origins;

/// Where `serve` listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7093";

/// The room everybody is in after choosing a name, and goes back to on leave.
pub const LOBBY: &str = "lobby";

/// Longest username or room name, in characters. Names are shown on every
/// line of every client; a limit keeps one user from flooding screens.
pub const MAX_NAME_CHARS: usize = 32;

/// Largest message (and frame) a client may send, in bytes. A chat line is a
/// few hundred bytes; 16 KiB is generous, and without a limit tungstenite
/// would accept up to 64 MiB per message and buffer all of it. Above it the
/// server closes with 1009 (message too big).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Messages waiting to be written to one client. At a few hundred bytes each,
/// 256 is about 100 KiB; at worst (every one a 16 KiB message) about 4 MiB,
/// though a broadcast frame is shared by every queue it sits in. That is the
/// bound on what a slow reader can cost us. A client that lets its queue fill
/// is disconnected (1008).
pub const QUEUE_CAPACITY: usize = 256;

/// Messages one client may send per second, sustained. A person types a
/// message every few seconds; a fast one, or a paste of several lines, a few
/// a second. 5 leaves room for that and for the client's housekeeping
/// (`who`, `join`) and caps what one client can add to every queue in its
/// room at 5 messages a second, far below what any reader that is reading
/// at all takes off it.
pub const SEND_RATE: u32 = 5;

/// Messages one client may send at once before [`SEND_RATE`] applies: a
/// pasted paragraph, a reconnect that sends its name and room in one go.
/// Kept far below [`QUEUE_CAPACITY`] (256): a whole burst fills under a
/// tenth of a reader's queue, so one sender alone can never get a reader
/// closed as too slow. That takes a reader that has stopped reading.
pub const SEND_BURST: u32 = 20;

/// How often the server pings each client. Long enough to cost nothing,
/// short enough to notice a dead peer (a laptop lid closed, a NAT mapping
/// gone) within a minute; proxies often drop idle connections after 60 s.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// A peer silent for this long (no pong, no message) is dropped: two missed
/// pings, so a single delayed pong does not cost anyone their connection.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(45);

/// Open WebSocket connections the server accepts; the next upgrade gets an
/// HTTP 503. Each connection costs a task, two queues and socket buffers.
pub const MAX_CONNECTIONS: usize = 1000;

/// How long the server keeps trying to deliver a close frame to a client it
/// is dropping (the client may be the slow one, whose socket is full).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long a graceful shutdown waits for connections to finish.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Close codes this server sends (RFC 6455 section 7.4.1; 4000-4999 are free
/// for applications).
pub mod close_code {
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the framing rules (an unmasked frame, reserved bits or
    /// opcodes, a fragmented or oversized control frame, ...).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation: here, a client too slow to read what it is sent.
    pub const POLICY: u16 = 1008;
    /// A message or frame over [`super::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// Our own code: the peer stopped answering pings.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
}

/// The knobs, with the constants above as defaults. Tests turn them down
/// (a 50 ms heartbeat, a queue of 8) to see the limits without waiting.
#[derive(Debug, Clone)]
pub struct Config {
    /// See [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`PONG_TIMEOUT`].
    pub pong_timeout: Duration,
    /// See [`QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// See [`MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`CLOSE_GRACE`].
    pub close_grace: Duration,
    /// See [`SEND_RATE`]. Above 0.
    pub send_rate: u32,
    /// See [`SEND_BURST`]. Above 0, and far below `queue_capacity`.
    pub send_burst: u32,
    /// Browser origins allowed besides the server's own, such as
    /// `http://localhost:8000` (see [`origin`]; `serve --allow-origin`).
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ping_interval: PING_INTERVAL,
            pong_timeout: PONG_TIMEOUT,
            queue_capacity: QUEUE_CAPACITY,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_connections: MAX_CONNECTIONS,
            close_grace: CLOSE_GRACE,
            send_rate: SEND_RATE,
            send_burst: SEND_BURST,
            allowed_origins: Vec::new(),
        }
    }
}

/// What a client sends. `#[serde(tag = "type", content = "data")]` gives the
/// `{"type":..., "data":...}` shape; `leave` and `who` carry no data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum ClientMsg {
    /// Choose a name; nothing else is accepted before it.
    Username(String),
    /// Say something to the current room.
    Message(String),
    /// Move to another room (created on first use).
    Join(String),
    /// Go back to the lobby.
    Leave,
    /// Ask who is in the room and who is online.
    Who,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg {
    /// Someone said something in your room.
    Message { username: String, message: String, room: String },
    /// A notice: joins, leaves, welcome.
    Info { message: String },
    /// Your last message was not accepted; the connection stays open.
    Error { message: String },
    /// The answer to `who`.
    Who { room: String, users: Vec<String>, online: Vec<String> },
}

impl ServerMsg {
    /// Serialized once, then cloned cheaply (a reference count) per recipient.
    fn to_frame(&self) -> Message {
        let json = serde_json::to_string(self).expect("our own enums always serialize");
        Message::Text(Utf8Bytes::from(json))
    }
}

/// A close code and reason on its way to a client.
type Goodbye = (u16, String);

/// One connected client, as the hub sees it.
#[derive(Debug)]
struct Member {
    /// `None` until the client chose a username.
    name: Option<String>,
    room: String,
    /// The bounded queue its writer task drains. Only ever `try_send`: the
    /// hub must never wait for one client while holding up everyone else.
    tx: mpsc::Sender<Message>,
    /// A separate, tiny channel for "close now, with this code", because the
    /// data queue may be the very thing that is full.
    goodbye: mpsc::Sender<Goodbye>,
    /// Set once the hub has told this client to go, so it is told only once.
    kicked: bool,
}

/// Who is connected and where. One mutex: every operation is a short walk of
/// a map with no await inside, so contention stays small. (A server with
/// 100k users would shard this by room.)
#[derive(Debug, Default)]
struct Hub {
    members: HashMap<u64, Member>,
}

/// Counters the tests and the demo read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Of those, the ones that chose a name.
    pub named: usize,
    /// Messages sitting in all outgoing queues right now.
    pub queued: usize,
    /// Clients disconnected because their queue was full.
    pub kicked_slow: u64,
    /// Clients dropped because they stopped answering pings.
    pub heartbeat_timeouts: u64,
    /// Messages refused because their sender was over [`SEND_RATE`].
    pub rate_limited: u64,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    hub: Mutex<Hub>,
    next_id: AtomicU64,
    kicked_slow: AtomicU64,
    heartbeat_timeouts: AtomicU64,
    rate_limited: AtomicU64,
    /// Who may open a connection from a browser.
    origins: Origins,
    /// One permit per open connection, see [`MAX_CONNECTIONS`].
    slots: Arc<Semaphore>,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Cancelled when the server shuts down; connections watch it.
    shutdown: CancellationToken,
}

/// The chat server. Cheap to clone (an `Arc`): tests keep one to read
/// [`Chat::stats`] while the server runs.
#[derive(Debug, Clone)]
pub struct Chat {
    shared: Arc<Shared>,
}

impl Chat {
    /// A server with the given limits. Panics on a configuration that could
    /// not work: a send rate or burst of 0, an origin that is not one.
    pub fn new(config: Config) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let origins = Origins::new(&config.allowed_origins).unwrap_or_else(|e| panic!("{e}"));
        // Built once here so a bad rate fails now, not at the first connection.
        TokenBucket::new(config.send_rate, config.send_burst);
        Self {
            shared: Arc::new(Shared {
                config,
                hub: Mutex::new(Hub::default()),
                next_id: AtomicU64::new(1),
                kicked_slow: AtomicU64::new(0),
                heartbeat_timeouts: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
                origins,
                slots,
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The routes: the page at `/` and the WebSocket at `/ws`.
    pub fn router(&self) -> Router {
        Router::new().route("/", get(page)).route("/ws", get(upgrade)).with_state(self.clone())
    }

    /// Serves until `token` is cancelled, then says goodbye (close 1001) to
    /// every open connection and waits up to [`SHUTDOWN_WAIT`] for them.
    pub async fn serve(self, listener: TcpListener, token: CancellationToken) -> io::Result<()> {
        let shutdown = self.shared.shutdown.clone();
        // The accept loop of lessons 5 to 10 (a header-read timeout for the
        // handshake request, a cap on HTTP connections; see chapter 10).
        let config = http_serve::ServeConfig::default();
        http_serve::serve(listener, self.router(), token, config).await?;
        // The HTTP side has stopped accepting. Upgraded connections are no
        // longer HTTP's business (hyper hands the socket over), so we tell
        // them ourselves and wait for them to finish.
        shutdown.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.shared.tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after {SHUTDOWN_WAIT:?}; leaving anyway");
        }
        Ok(())
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let hub = self.hub();
        Stats {
            connections: hub.members.len(),
            named: hub.members.values().filter(|m| m.name.is_some()).count(),
            queued: hub.members.values().map(|m| m.tx.max_capacity() - m.tx.capacity()).sum(),
            kicked_slow: self.shared.kicked_slow.load(Ordering::Relaxed),
            heartbeat_timeouts: self.shared.heartbeat_timeouts.load(Ordering::Relaxed),
            rate_limited: self.shared.rate_limited.load(Ordering::Relaxed),
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock would leave the map as it was mid-edit;
        // every edit here is a single insert/remove/assign, so it is still
        // consistent and we carry on rather than take every connection down.
        self.shared.hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `GET /`: the browser client.
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// `GET /ws`: check who is asking and the connection cap, then let axum
/// answer the handshake (it computes `Sec-WebSocket-Accept` from
/// `Sec-WebSocket-Key`).
async fn upgrade(ws: WebSocketUpgrade, headers: HeaderMap, State(chat): State<Chat>) -> Response {
    // A page from another site must not get a connection that carries the
    // learner's cookies; see the `origin` module for the attack.
    if let Err(why) = chat.shared.origins.check(&headers) {
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    // Refuse before upgrading: a plain HTTP 503 is something every client
    // library reports clearly, and we have not spent a task on it yet.
    let Ok(permit) = Arc::clone(&chat.shared.slots).try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let max = chat.shared.config.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        // tungstenite's own write buffer is unbounded by default; cap it so
        // the bounded queue really is the bound on what a client can cost.
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(max * 2 + 64 * 1024)
        .on_upgrade(move |socket| {
            let tracker = chat.shared.tracker.clone();
            tracker.track_future(connection(chat, socket, permit))
        })
}

/// One client, from upgrade to goodbye. This task reads; a second task
/// ([`writer`]) writes, so a client that does not read can never stop us
/// from reading (and noticing) anything else.
async fn connection(chat: Chat, socket: WebSocket, _permit: OwnedSemaphorePermit) {
    let config = chat.shared.config.clone();
    let id = chat.shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let (goodbye_tx, goodbye_rx) = mpsc::channel(1);
    chat.hub().members.insert(
        id,
        Member {
            name: None,
            room: LOBBY.to_owned(),
            tx: tx.clone(),
            goodbye: goodbye_tx.clone(),
            kicked: false,
        },
    );
    let mut writer = tokio::spawn(writer(sink, rx, goodbye_rx, config.close_grace));

    // The heartbeat: ping every interval; any frame from the peer (a pong, a
    // message) proves it is alive. The first tick of an interval is immediate;
    // skip it so we do not ping a client that has just connected.
    let mut heartbeat = tokio::time::interval(config.ping_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut last_heard = Instant::now();
    // What this client may send (see SEND_RATE), and whether it has been
    // told it is over, so it is told once, not once per refused message.
    let mut allowance = TokenBucket::new(config.send_rate, config.send_burst);
    let mut told_to_slow_down = false;

    let bye = |code: u16, reason: String| {
        // Capacity 1 and first reason wins: if the hub already asked this
        // client to go, that reason stands.
        let _ = goodbye_tx.try_send((code, reason));
    };

    loop {
        tokio::select! {
            () = chat.shared.shutdown.cancelled() => {
                bye(close_code::GOING_AWAY, "server shutting down".into());
                break;
            }
            // The writer ends when the socket fails or after a goodbye it
            // was given (by the hub, for a slow client). Either way we stop.
            _ = &mut writer => break,
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > config.pong_timeout {
                    chat.shared.heartbeat_timeouts.fetch_add(1, Ordering::Relaxed);
                    bye(close_code::HEARTBEAT_TIMEOUT, format!(
                        "no pong for {} ms", last_heard.elapsed().as_millis()));
                    break;
                }
                // try_send: if the queue is full, the hub is about to drop
                // this client anyway.
                let _ = tx.try_send(Message::Ping(Default::default()));
            }
            frame = stream.next() => {
                let msg = match frame {
                    None => break,
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        if let Some((code, reason)) = close_for(e) {
                            bye(code, reason);
                        }
                        break;
                    }
                };
                last_heard = Instant::now();
                // Every message costs a token, checked here, before it can
                // reach anybody else's queue. Over the limit, the message is
                // dropped and the sender told why, once per spell. We do not
                // close it: a paste of many lines is clumsy, not hostile, and
                // a refused message costs us no more than reading it did.
                if matches!(msg, Message::Text(_) | Message::Binary(_)) {
                    if allowance.take().is_err() {
                        chat.shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                        if !std::mem::replace(&mut told_to_slow_down, true) {
                            reply(&chat, id, error(format!(
                                "slow down: at most {} messages a second ({} at once); \
                                 messages over that are dropped", config.send_rate, config.send_burst)));
                        }
                        continue;
                    }
                    told_to_slow_down = false;
                }
                match msg {
                    Message::Text(text) => handle_text(&chat, id, text.as_str()),
                    Message::Binary(_) => reply(&chat, id, error("binary messages are not part of this protocol; send JSON text")),
                    // tungstenite answers pings by itself; a pong needs
                    // nothing more than the `last_heard` above.
                    Message::Ping(_) | Message::Pong(_) => {}
                    // The peer said goodbye; tungstenite queues the echo of
                    // its close frame, and the writer flushes it on its way out.
                    Message::Close(_) => break,
                }
            }
        }
    }

    // Forget the client first, so nobody queues more for it, then tell the room.
    // The member (with its copies of the queue senders) is dropped inside
    // the closure: the writer finishes only when every sender is gone.
    let gone = chat.hub().members.remove(&id).and_then(|m| Some((m.name?, m.room)));
    if let Some((name, room)) = gone {
        broadcast(&chat, &room, &ServerMsg::Info { message: format!("{name} left {room}") });
    }
    // Dropping our senders lets the writer drain the queue, send any goodbye
    // and finish; it does so within `close_grace`.
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

/// Which close code answers a read error. tungstenite reports oversize, bad
/// UTF-8 and broken framing as errors but leaves the reply to us. Lesson 9
/// uses it too.
pub fn close_for(error: axum::Error) -> Option<(u16, String)> {
    use tungstenite::error::ProtocolError as P;
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(e)) => Some((close_code::TOO_BIG, format!("{e}"))),
        Some(tungstenite::Error::Utf8(_)) => {
            Some((close_code::INVALID_DATA, "text frame is not valid UTF-8".into()))
        }
        // The peer broke RFC 6455's framing rules: "fail the connection",
        // and 1002 says so. tungstenite's sentences are short and exact
        // ("Reserved bits are non-zero"), so they are the reason.
        Some(tungstenite::Error::Protocol(
            e @ (P::UnmaskedFrameFromClient
            | P::NonZeroReservedBits
            | P::UnknownDataFrameType(_)
            | P::UnknownControlFrameType(_)
            | P::InvalidOpcode(_)
            | P::ControlFrameTooBig
            | P::FragmentedControlFrame
            | P::UnexpectedContinueFrame
            | P::ExpectedFragment(_)
            | P::InvalidCloseSequence),
        )) => Some((close_code::PROTOCOL_ERROR, e.to_string())),
        // A reset, or the connection ending without a close frame: nobody
        // is left to tell.
        _ => None,
    }
}

/// Drains one client's queue onto its socket. On a goodbye (from the reader
/// or the hub) it stops whatever write is stuck, tries to deliver the close
/// frame within `grace`, and ends.
async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    mut goodbye: mpsc::Receiver<Goodbye>,
    grace: Duration,
) {
    let farewell = loop {
        tokio::select! {
            // biased: a goodbye goes before any more chat.
            biased;
            bye = goodbye.recv() => break bye,
            msg = rx.recv() => {
                let Some(msg) = msg else { break goodbye.try_recv().ok() };
                // The write itself can block on a full socket (a client that
                // does not read). Race it with the goodbye, so the hub's
                // "you are too slow" is not stuck behind the very write that
                // is too slow. tungstenite keeps whole frames in its buffer,
                // so abandoning this future never sends half a frame.
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

fn error(message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error { message: message.into() }
}

/// Sends `msg` to one client, or drops that client if its queue is full.
fn reply(chat: &Chat, id: u64, msg: ServerMsg) {
    let frame = msg.to_frame();
    let mut hub = chat.hub();
    if let Some(member) = hub.members.get_mut(&id) {
        deliver(chat, member, frame);
    }
}

/// Sends `msg` to every named member of `room`.
fn broadcast(chat: &Chat, room: &str, msg: &ServerMsg) {
    let frame = msg.to_frame();
    let mut hub = chat.hub();
    for member in hub.members.values_mut() {
        if member.name.is_some() && member.room == room {
            deliver(chat, member, frame.clone());
        }
    }
}

/// The back-pressure decision, in one place. `try_send` never waits: when a
/// client's queue is full, it has fallen `queue_capacity` messages behind
/// everyone else, and waiting for it would make the whole room as slow as its
/// slowest member. Dropping messages silently would make its view of the chat
/// wrong without anyone knowing. So it is disconnected, with a reason.
fn deliver(chat: &Chat, member: &mut Member, frame: Message) {
    if member.kicked {
        return;
    }
    match member.tx.try_send(frame) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            member.kicked = true;
            chat.shared.kicked_slow.fetch_add(1, Ordering::Relaxed);
            let reason = format!("too slow: {} messages unread", member.tx.max_capacity());
            let _ = member.goodbye.try_send((close_code::POLICY, reason));
        }
        // The writer is gone; the reader will notice and clean up.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Checks a username or room name. Returns the trimmed name.
pub fn validate_name(what: &str, raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("{what} must be at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// One text message from client `id`: parse, check, act. Every failure is an
/// `error` message back to that client, never a dropped connection.
fn handle_text(chat: &Chat, id: u64, text: &str) {
    let msg = match serde_json::from_str::<ClientMsg>(text) {
        Ok(msg) => msg,
        Err(e) => return reply(chat, id, error(format!("could not understand {text:?}: {e}"))),
    };
    let (name, room) = {
        let hub = chat.hub();
        let Some(me) = hub.members.get(&id) else { return };
        (me.name.clone(), me.room.clone())
    };
    match (msg, name) {
        (ClientMsg::Username(raw), None) => {
            let name = match validate_name("username", &raw) {
                Ok(n) => n,
                Err(e) => return reply(chat, id, error(e)),
            };
            {
                let mut hub = chat.hub();
                // Check and claim under one lock, so two clients racing for
                // the same name cannot both win.
                let taken = hub
                    .members
                    .values()
                    .any(|m| m.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&name)));
                if taken {
                    drop(hub);
                    return reply(chat, id, error(format!("username {name:?} is taken")));
                }
                if let Some(me) = hub.members.get_mut(&id) {
                    me.name = Some(name.clone());
                }
            }
            broadcast(chat, &room, &ServerMsg::Info { message: format!("{name} joined {room}") });
        }
        (ClientMsg::Username(_), Some(name)) => {
            reply(chat, id, error(format!("you are already {name}")));
        }
        (_, None) => reply(chat, id, error("send {\"type\":\"username\",\"data\":NAME} first")),
        (ClientMsg::Message(message), Some(username)) => {
            let message = message.trim().to_owned();
            if message.is_empty() {
                return reply(chat, id, error("message must not be empty"));
            }
            broadcast(chat, &room, &ServerMsg::Message { username, message, room: room.clone() });
        }
        (ClientMsg::Join(raw), Some(name)) => match validate_name("room", &raw) {
            Err(e) => reply(chat, id, error(e)),
            Ok(to) if to == room => reply(chat, id, error(format!("you are in {room} already"))),
            Ok(to) => move_to(chat, id, &name, &room, &to),
        },
        (ClientMsg::Leave, Some(name)) => {
            if room == LOBBY {
                reply(chat, id, error("you are in the lobby already"));
            } else {
                move_to(chat, id, &name, &room, LOBBY);
            }
        }
        (ClientMsg::Who, Some(_)) => {
            let (mut users, mut online) = (Vec::new(), Vec::new());
            for m in chat.hub().members.values() {
                if let Some(n) = &m.name {
                    online.push(n.clone());
                    if m.room == room {
                        users.push(n.clone());
                    }
                }
            }
            users.sort();
            online.sort();
            reply(chat, id, ServerMsg::Who { room, users, online });
        }
    }
}

/// Moves client `id` from room `from` to room `to`, telling both rooms.
fn move_to(chat: &Chat, id: u64, name: &str, from: &str, to: &str) {
    if let Some(me) = chat.hub().members.get_mut(&id) {
        me.room = to.to_owned();
    }
    broadcast(chat, from, &ServerMsg::Info { message: format!("{name} left {from}") });
    broadcast(chat, to, &ServerMsg::Info { message: format!("{name} joined {to}") });
}
