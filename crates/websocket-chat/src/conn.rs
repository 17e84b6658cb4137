//! One WebSocket connection, from the handshake to the goodbye: the plumbing
//! every WebSocket lesson shares. Lesson 8's chat and lesson 9's push server
//! use it as it is (and so will a lesson that runs both on several
//! processes); chapter 8 walks through it once. What a lesson writes itself
//! is only what it does with each message:
//!
//! ```text
//! async fn connection(app: App, mut conn: Connection) {
//!     app.hub().insert(conn.id(), conn.outbox());   // how the hub reaches this client
//!     while let Some(data) = conn.next().await {
//!         // the lesson's own protocol
//!     }
//!     app.hub().remove(&conn.id());                 // forget it: its outbox goes too
//!     conn.finish().await;                          // the goodbye, and the peer's answer
//! }
//! ```
//!
//! and [`Connections::routes`] serves that function at `/ws` (and at `/`,
//! next to the page). Everything around the happy path is here:
//!
//! * a cap on open connections: past it, an HTTP 503 before the upgrade;
//! * the `Origin` check (see [`crate::origin`]): a page on another site gets 403;
//! * two tasks per connection: the lesson's task reads, `writer` writes,
//!   so a client that does not read can never stop us reading from it;
//! * a bounded queue per client (`Queue`, which holds no memory while it
//!   is empty) and one rule for a full one ([`Outbox::deliver`]): the
//!   client is closed with 1008 and a reason;
//! * a one-message slot for that goodbye, apart from the queue, because the
//!   queue may be the very thing that is full;
//! * the heartbeat: a ping every `ping_interval`, and close 4000 for a peer
//!   silent for `pong_timeout`;
//! * close codes for what tungstenite reports as read errors (`close_for`);
//! * at shutdown, close 1001 to every connection and a bounded wait for them
//!   ([`Connections::close_all`]).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::origin::Origins;

/// One client's connection, as its lesson's task holds it: the reading half
/// of the socket, the heartbeat, and the writer task it feeds.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    stream: SplitStream<WebSocket>,
    writer: JoinHandle<()>,
    /// This connection's own ways to the writer: pings go on the queue, a
    /// close (shutdown, heartbeat, broken frames) in the farewell slot.
    queue: QueueSender,
    farewell: Arc<Farewell>,
    heartbeat: Interval,
    last_heard: Instant,
    /// Set once [`Connection::next`] has said `None`; it says so from then on.
    ended: bool,
    limits: Limits,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
    /// One of [`Limits::max_connections`] slots, given back when this drops.
    _slot: OwnedSemaphorePermit,
}

/// A text or binary message from the peer: what a lesson's protocol gets.
/// Pings, pongs and close frames never reach it; they are the heartbeat's
/// and the closing handshake's business.
#[derive(Debug, Clone)]
pub enum Data {
    /// A text message, whole (fragments joined) and valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message, whole.
    Binary(Bytes),
}

impl Connection {
    /// This connection's number, unique for the server's lifetime: the key
    /// a lesson's hub keeps it under.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next message from the peer, or `None` once the connection is
    /// over: the peer closed or vanished, broke the protocol, went silent,
    /// was too slow to read, or the server is shutting down. Where there is
    /// somebody to tell, the close frame that says why is on its way by
    /// then.
    pub async fn next(&mut self) -> Option<Data> {
        if self.ended {
            return None;
        }
        let data = self.read().await;
        self.ended = data.is_none();
        data
    }

    async fn read(&mut self) -> Option<Data> {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.bye(close_code::GOING_AWAY, "server shutting down".into());
                    return None;
                }
                // The writer ends when the socket fails, or after a goodbye
                // the hub gave it (a client too slow to read). Either way,
                // this connection is over.
                _ = &mut self.writer => return None,
                // The heartbeat: any frame from the peer (a pong, a message)
                // proves it is alive. Two missed pings, not one, before we
                // give up, so a single late pong costs nobody their
                // connection.
                _ = self.heartbeat.tick() => {
                    let silent = self.last_heard.elapsed();
                    if silent > self.limits.pong_timeout {
                        self.counters.heartbeat_timeouts.fetch_add(1, Ordering::Relaxed);
                        self.bye(close_code::HEARTBEAT_TIMEOUT,
                                 format!("no pong for {} ms", silent.as_millis()));
                        return None;
                    }
                    // If the queue is full, the hub is about to close this
                    // client anyway: the ping is not needed.
                    let _ = self.queue.push(Message::Ping(Bytes::new()));
                }
                frame = self.stream.next() => {
                    let msg = match frame {
                        None => return None,
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => {
                            if let Some((code, reason)) = close_for(e) {
                                self.bye(code, reason);
                            }
                            return None;
                        }
                    };
                    self.last_heard = Instant::now();
                    match msg {
                        Message::Text(text) => return Some(Data::Text(text)),
                        Message::Binary(bytes) => return Some(Data::Binary(bytes)),
                        // tungstenite answers pings by itself; a pong needs
                        // nothing more than the `last_heard` above.
                        Message::Ping(_) | Message::Pong(_) => {}
                        // The peer said goodbye; tungstenite queues the echo
                        // of its close frame, and the writer flushes it.
                        Message::Close(_) => return None,
                    }
                }
            }
        }
    }

    /// How the lesson's hub reaches this client; keep it in the hub's map,
    /// and drop it when the connection is over.
    pub fn outbox(&self) -> Outbox {
        Outbox {
            queue: self.queue.clone(),
            farewell: Arc::clone(&self.farewell),
            closing: false,
            counters: Arc::clone(&self.counters),
        }
    }

    /// Asks the writer to close with `code`. First reason wins: if the hub
    /// already asked this client to go, that reason stands.
    fn bye(&self, code: u16, reason: String) {
        self.farewell.say((code, reason));
    }

    /// The end of a connection, once the lesson has forgotten it (dropped
    /// every [`Outbox`] it handed out). With every sender gone the writer
    /// drains the queue and ends; if a goodbye was said, it goes first and
    /// whatever is still queued is dropped (a client told to go gets no
    /// more), all within `close_grace`. If we sent a close frame, the closing handshake ends
    /// when the peer's comes back (or the grace runs out); reading it is
    /// also what lets the TCP connection end cleanly on the peer's side.
    pub fn finish(self) -> impl Future<Output = ()> {
        // Boxed, so that its two timers and the fields it takes apart live
        // on the heap only while a connection ends. Unboxed, this future is
        // part of the lesson's `connection` future from the start, and every
        // idle connection's task carried its 700 bytes (chapter 8, "What a
        // connection costs").
        Box::pin(self.end())
    }

    async fn end(self) {
        let Self { mut stream, mut writer, queue, limits, _slot, .. } = self;
        drop(queue);
        if !writer.is_finished() {
            let _ = tokio::time::timeout(limits.close_grace * 2, &mut writer).await;
            writer.abort();
        }
        let _ = tokio::time::timeout(limits.close_grace, async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A close code and reason on its way to a client.
type Goodbye = (u16, String);

/// The one goodbye a writer can be asked to send: a slot and a bell. It is
/// apart from the queue because the queue may be the very thing that is
/// full. (It was a one-slot `mpsc` channel; tokio allocates a channel's
/// slots 32 at a time, so that cost every connection 1.5 KiB for one
/// message. Chapter 8, "What a connection costs".)
#[derive(Debug, Default)]
struct Farewell {
    said: std::sync::Mutex<Option<Goodbye>>,
    bell: Notify,
}

impl Farewell {
    /// Leaves `goodbye` for the writer, unless one is there already.
    fn say(&self, goodbye: Goodbye) {
        let mut said = self.said.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if said.is_none() {
            *said = Some(goodbye);
            // notify_one keeps the wake-up for a writer that is not
            // waiting yet, so it is never missed.
            self.bell.notify_one();
        }
    }

    /// What was said, if anything: the writer takes it once.
    fn take(&self) -> Option<Goodbye> {
        self.said.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    /// Waits until something has been said, and takes it.
    async fn heard(&self) -> Option<Goodbye> {
        self.bell.notified().await;
        self.take()
    }
}

/// The way to one client's writer, kept in a lesson's hub. It never
/// waits: the hub must never wait for one client while holding up
/// everyone else.
#[derive(Debug)]
pub struct Outbox {
    queue: QueueSender,
    farewell: Arc<Farewell>,
    /// Set once this client has been told to go, so it is told only once.
    closing: bool,
    counters: Arc<Counters>,
}

impl Outbox {
    /// Queues `frame` for this client, and says whether it did. The
    /// back-pressure decision, in one place. It never waits: when a
    /// client's queue is full, it has fallen a whole queue behind everyone
    /// else, and waiting for it would make every other client as slow as the
    /// slowest. Dropping the message silently would make its view wrong
    /// without anyone knowing. So it is closed (1008), with a reason.
    pub fn deliver(&mut self, frame: Message) -> bool {
        if self.closing {
            return false;
        }
        match self.queue.push(frame) {
            Pushed::Queued => true,
            Pushed::Full => {
                self.closing = true;
                self.counters.kicked_slow.fetch_add(1, Ordering::Relaxed);
                let reason = format!("too slow: {} messages unread", self.queue.0.capacity);
                self.farewell.say((close_code::POLICY, reason));
                false
            }
            // The writer is gone; the reading task will notice and clean up.
            Pushed::WriterGone => false,
        }
    }

    /// Messages waiting in this client's queue right now.
    pub fn queued(&self) -> usize {
        self.queue.0.lock().messages.len()
    }
}

/// One client's outgoing messages, from the hub (and the heartbeat) to its
/// writer: at most `capacity` of them, and a bell that wakes the writer.
///
/// It was a tokio `mpsc` channel. That channel allocates its slots 32 at a
/// time, the first block as it is created, and keeps about two blocks once
/// messages have passed: some 3.5 KiB for every connection, idle or not,
/// about a third of what an idle connection cost (chapter 8, "What a
/// connection costs"). Here the messages sit in a `VecDeque` that allocates
/// on the first push and is handed to the writer whole when it takes them,
/// so an idle connection's queue holds no storage at all. The rules are the
/// channel's: pushing never waits, a full queue says so (and the hub closes
/// that client), and once every sender is gone the writer drains what is
/// left and ends.
#[derive(Debug)]
struct Queue {
    waiting: std::sync::Mutex<Waiting>,
    /// Rung on every push and when the last sender goes.
    bell: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Waiting {
    messages: VecDeque<Message>,
    /// Messages the writer has taken and may still be writing: they count
    /// against the capacity until it comes back for more, so a client that
    /// stops reading is closed at `capacity` unread, not a batch later.
    in_flight: usize,
    /// Live [`QueueSender`]s: the connection's own and every `Outbox`.
    senders: usize,
    /// The writer has ended: nothing pushed now would ever be written.
    writer_gone: bool,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    Full,
    WriterGone,
}

impl Queue {
    /// An empty queue and its first sender. Allocates only the `Arc`.
    fn open(capacity: usize) -> QueueSender {
        let waiting = Waiting { senders: 1, ..Waiting::default() };
        QueueSender(Arc::new(Queue {
            waiting: std::sync::Mutex::new(waiting),
            bell: Notify::new(),
            capacity,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Every critical section is a push, a take or a count: nothing can
        // panic half-way, so a poisoned lock still holds a sound queue.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer's side: waits for messages and takes up to [`BATCH`] of
    /// them, or `None` once the queue is empty and every sender is gone.
    /// When it takes them all, the storage goes with them, so the queue is
    /// left holding nothing.
    async fn take(&self) -> Option<VecDeque<Message>> {
        loop {
            {
                let mut waiting = self.lock();
                // The writer asks again only once the last batch is written.
                waiting.in_flight = 0;
                let queued = waiting.messages.len();
                if queued > BATCH {
                    waiting.in_flight = BATCH;
                    return Some(waiting.messages.drain(..BATCH).collect());
                }
                if queued > 0 {
                    waiting.in_flight = queued;
                    return Some(std::mem::take(&mut waiting.messages));
                }
                if waiting.senders == 0 {
                    return None;
                }
            }
            // A push between the unlock and here is not missed: notify_one
            // keeps one wake-up for a writer that is not waiting yet.
            self.bell.notified().await;
        }
    }
}

/// One handle that can push onto a [`Queue`]. The writer ends once the
/// last one is dropped (and the queue is drained), as an `mpsc` receiver
/// does when its last sender goes.
#[derive(Debug)]
struct QueueSender(Arc<Queue>);

impl QueueSender {
    /// Queues `message` unless the queue is full or its writer is gone.
    /// Never waits.
    fn push(&self, message: Message) -> Pushed {
        let mut waiting = self.0.lock();
        if waiting.writer_gone {
            return Pushed::WriterGone;
        }
        if waiting.messages.len() + waiting.in_flight >= self.0.capacity {
            return Pushed::Full;
        }
        waiting.messages.push_back(message);
        drop(waiting);
        self.0.bell.notify_one();
        Pushed::Queued
    }
}

impl Clone for QueueSender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(Arc::clone(&self.0))
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        let mut waiting = self.0.lock();
        waiting.senders -= 1;
        if waiting.senders == 0 {
            drop(waiting);
            self.0.bell.notify_one();
        }
    }
}

/// Held by the writer while it runs: when it ends (or is aborted), the
/// queue learns that nobody will write what is in it, drops it, and says
/// so to every later push.
struct WriterGone(Arc<Queue>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        let mut waiting = self.0.lock();
        waiting.writer_gone = true;
        waiting.messages = VecDeque::new();
    }
}

/// How every WebSocket lesson runs on the accept loop of lessons 5 to 10
/// (`http_serve`, chapter 10): its defaults, with Nagle's algorithm off
/// (`TCP_NODELAY`). A chat line or a notification is one small frame, often
/// written right after another; with Nagle on, the kernel holds a small
/// write back while an earlier one is unacknowledged, and the receiver may
/// delay its ACK by up to 40 ms (chapter 11 caught a 19 ms stall this way).
/// Node's `ws` turns Nagle off on every socket it upgrades, for the same
/// reason. `serve --tls` adds lesson 13's TLS to it.
pub fn serve_config() -> http_serve::ServeConfig {
    http_serve::ServeConfig { nodelay: true, ..http_serve::ServeConfig::default() }
}

/// Serializes a message once, as a text frame. Cloning the frame for each
/// recipient then costs a reference count, not a copy.
pub fn json_frame(msg: &impl Serialize) -> Message {
    let json = serde_json::to_string(msg).expect("the lessons' own message types always serialize");
    Message::Text(Utf8Bytes::from(json))
}

/// Drains one client's queue onto its socket. On a goodbye (from the
/// reading task or the hub) it stops whatever write is stuck, tries to
/// deliver the close frame within `grace`, and ends.
async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    queue: Arc<Queue>,
    farewell: Arc<Farewell>,
    grace: Duration,
) {
    let _gone = WriterGone(Arc::clone(&queue));
    let goodbye = loop {
        tokio::select! {
            // biased: a goodbye goes before any more messages.
            biased;
            bye = farewell.heard() => break bye,
            batch = queue.take() => {
                let Some(batch) = batch else { break farewell.take() };
                // The write itself can block on a full socket (a client that
                // does not read). Race it with the goodbye, so the hub's
                // "you are too slow" is not stuck behind the very write that
                // is too slow. tungstenite keeps whole frames in its buffer,
                // so abandoning this future never sends half a frame.
                tokio::select! {
                    biased;
                    bye = farewell.heard() => break bye,
                    sent = write_batch(&mut sink, batch) => if sent.is_err() { return },
                }
            }
        }
    };
    // Boxed for the same reason as `Connection::finish`: a step taken once,
    // at the end, whose timer need not sit in every idle writer task.
    Box::pin(close(sink, goodbye, grace)).await;
}

/// The writer's last act: the close frame, within `grace`.
async fn close(mut sink: SplitSink<WebSocket, Message>, goodbye: Option<Goodbye>, grace: Duration) {
    match goodbye {
        // We start the closing handshake; the peer's answer arrives on the
        // reading half, which `Connection::finish` drains.
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

/// Writes what the writer took from the queue (up to [`BATCH`] messages),
/// then flushes once. tungstenite gathers the frames in its write buffer
/// and makes a `write` system call each time the buffer passes
/// `write_buffer_bytes`, and one at the flush: during a broadcast, a client
/// with ten messages waiting costs one or two calls, not ten.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    batch: VecDeque<Message>,
) -> Result<(), axum::Error> {
    for message in batch {
        sink.feed(message).await?;
    }
    sink.flush().await
}

/// The most messages one flush carries, so that a client whose queue never
/// empties still gets its bytes written (and its writer yields) regularly.
const BATCH: usize = 32;

/// Which close code answers a read error. tungstenite reports oversize, bad
/// UTF-8 and broken framing as errors but leaves the reply to us. (The
/// downcast works only because the workspace uses the tungstenite that axum
/// uses: two copies of a crate are two different `Error` types.)
fn close_for(error: axum::Error) -> Option<Goodbye> {
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

/// Every open connection of one server: the cap, who may connect, the
/// tasks to wait for at shutdown, and the counters. Cheap to clone (an
/// `Arc`).
#[derive(Debug, Clone)]
pub struct Connections {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    origins: Origins,
    /// One permit per open connection, see [`Limits::max_connections`].
    slots: Arc<Semaphore>,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Cancelled when the server shuts down; every connection watches it.
    shutdown: CancellationToken,
    counters: Arc<Counters>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    kicked_slow: AtomicU64,
    heartbeat_timeouts: AtomicU64,
}

impl Connections {
    /// Connections with these limits, from the server's own pages and from
    /// `allowed_origins`. Panics on an allowed origin that is not one (see
    /// [`crate::origin::parse_origin`]): a configuration bug, which
    /// `serve --allow-origin` has already caught with a clear message.
    pub fn new(limits: Limits, allowed_origins: &[String]) -> Self {
        let origins = Origins::new(allowed_origins).unwrap_or_else(|e| panic!("{e}"));
        Self {
            shared: Arc::new(Shared {
                limits,
                origins,
                slots: Arc::new(Semaphore::new(limits.max_connections)),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                counters: Arc::default(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The two routes every WebSocket lesson has: `page` at `GET /`, and the
    /// handshake at `GET /ws`, where each connection is handed to `run`.
    /// A handshake on `/` is upgraded as on `/ws` (clients written for a
    /// server with one path, like the notes' chat client, connect to `/`);
    /// a plain `GET /` still gets the page.
    pub fn routes<S, F, Fut>(&self, page: &'static str, run: F) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(Connection) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (root, ws) = ((self.clone(), run.clone()), (self.clone(), run));
        let page_or_upgrade =
            move |upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
                  headers: HeaderMap| {
                let (conns, run) = root.clone();
                async move { conns.page_or_upgrade(page, upgrade, &headers, run) }
            };
        let upgrade = move |upgrade: WebSocketUpgrade, headers: HeaderMap| {
            let (conns, run) = ws.clone();
            async move { conns.upgrade(upgrade, &headers, run) }
        };
        Router::new().route("/", get(page_or_upgrade)).route("/ws", get(upgrade))
    }

    /// `GET /`: the page, or the handshake when the request asks for one.
    fn page_or_upgrade<F, Fut>(
        &self,
        page: &'static str,
        upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
        headers: &HeaderMap,
        run: F,
    ) -> Response
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match upgrade {
            Ok(upgrade) => self.upgrade(upgrade, headers, run),
            // It asked for a WebSocket and got the handshake wrong (the
            // version, the key): say what, as `/ws` would, not the page.
            Err(refused) if headers.contains_key(header::UPGRADE) => refused.into_response(),
            Err(_) => Html(page).into_response(),
        }
    }

    /// The handshake: check who is asking and the cap, then let axum answer
    /// (it computes `Sec-WebSocket-Accept` from `Sec-WebSocket-Key`) and
    /// hand the connection to `run`, on a task shutdown waits for.
    pub fn upgrade<F, Fut>(
        &self,
        upgrade: WebSocketUpgrade,
        headers: &HeaderMap,
        run: F,
    ) -> Response
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // A page from another site must not get a connection that carries
        // the learner's cookies; see the `origin` module for the attack.
        if let Err(why) = self.shared.origins.check(headers) {
            return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
        }
        // Refuse before upgrading: a plain HTTP 503 is something every client
        // library reports clearly, and we have not spent a task on it yet.
        let Ok(slot) = Arc::clone(&self.shared.slots).try_acquire_owned() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
        };
        let limits = self.shared.limits;
        let max = limits.max_message_bytes;
        let conns = self.clone();
        upgrade
            .max_message_size(max)
            .max_frame_size(max)
            // tungstenite allocates its read buffer whole, at once, for every
            // connection: 128 KiB unless told. Chapter 8 weighs the size.
            .read_buffer_size(limits.read_buffer_bytes)
            // Its write buffer is unbounded by default; cap it so the bounded
            // queue really is the bound on what a client costs.
            .write_buffer_size(limits.write_buffer_bytes)
            .max_write_buffer_size(max_write_buffer_bytes(max, limits.write_buffer_bytes))
            .on_upgrade(move |socket| {
                // The connection gets a task of its own, and axum's (which
                // did the upgrade) ends here instead of carrying ours inside
                // it for the connection's whole life: 128 bytes less each.
                let connection = conns.start(socket, slot);
                conns.shared.tracker.spawn(run(connection));
                std::future::ready(())
            })
    }

    /// Splits the socket: the reading half stays with the [`Connection`],
    /// the writing half goes to a new `writer` task.
    fn start(&self, socket: WebSocket, slot: OwnedSemaphorePermit) -> Connection {
        let limits = self.shared.limits;
        let (sink, stream) = socket.split();
        let queue = Queue::open(limits.queue_capacity);
        let farewell = Arc::new(Farewell::default());
        let writer = tokio::spawn(writer(
            sink,
            Arc::clone(&queue.0),
            Arc::clone(&farewell),
            limits.close_grace,
        ));
        // The first ping one interval from now, not at once: a client that
        // has just connected has just proved it is alive.
        let first = Instant::now() + limits.ping_interval;
        let mut heartbeat = tokio::time::interval_at(first, limits.ping_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Connection {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            stream,
            writer,
            queue,
            farewell,
            heartbeat,
            last_heard: Instant::now(),
            ended: false,
            limits,
            shutdown: self.shared.shutdown.clone(),
            counters: Arc::clone(&self.shared.counters),
            _slot: slot,
        }
    }

    /// Once the HTTP side has stopped accepting: upgraded connections are no
    /// longer HTTP's business (hyper handed the socket over), so we tell
    /// each one ourselves (close 1001) and wait up to [`SHUTDOWN_WAIT`] for
    /// them to finish.
    pub async fn close_all(&self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.shared.tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after {SHUTDOWN_WAIT:?}; leaving anyway");
        }
    }

    /// Who may connect from a browser (lesson 9 asks the same of a publish).
    pub fn origins(&self) -> &Origins {
        &self.shared.origins
    }

    /// Clients closed because their queue was full.
    pub fn kicked_slow(&self) -> u64 {
        self.shared.counters.kicked_slow.load(Ordering::Relaxed)
    }

    /// Clients closed because they stopped answering pings.
    pub fn heartbeat_timeouts(&self) -> u64 {
        self.shared.counters.heartbeat_timeouts.load(Ordering::Relaxed)
    }
}

/// The numbers that bound one server's connections, the `connection` part
/// of each lesson's `Config`. [`Limits::new`] gives the heartbeat and the
/// close grace every lesson runs with, around a lesson's own sizes; tests
/// turn any of them down (a 50 ms heartbeat, a queue of 8) to see a limit
/// without waiting for it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections; the next handshake gets a 503 before any task is
    /// spent on it. Each lesson sets its own (`MAX_CONNECTIONS`), from
    /// what one connection costs it.
    pub max_connections: usize,
    /// Messages waiting to be written to one client; a client whose queue
    /// is full is closed with 1008 ([`Outbox::deliver`]). With
    /// `max_message_bytes`, the bound on what a slow reader costs. Each
    /// lesson sets its own (`QUEUE_CAPACITY`).
    pub queue_capacity: usize,
    /// The largest message (and frame) a client may send; over it, close
    /// 1009. Without it tungstenite would take up to 64 MiB per message
    /// and buffer all of it. Each lesson sets its own (`MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// How often each client is pinged: [`PING_INTERVAL`] (20 s), cheap,
    /// and often enough that proxies which drop idle connections do not
    /// drop ours.
    pub ping_interval: Duration,
    /// How long a client may send nothing (no pong, no message) before it
    /// is closed with 4000: [`PONG_TIMEOUT`] (45 s), two missed pings, so
    /// one late pong costs nobody their connection.
    pub pong_timeout: Duration,
    /// How long the server keeps trying to deliver a close frame to a
    /// client it drops, which may be a client whose socket is full:
    /// [`CLOSE_GRACE`] (2 s).
    pub close_grace: Duration,
    /// tungstenite's read buffer, allocated whole for every connection:
    /// [`READ_BUFFER_BYTES`] (2 KiB). It is also the most one `read` system
    /// call takes, so a message larger than it takes several.
    pub read_buffer_bytes: usize,
    /// How many bytes of frames tungstenite gathers before a `write`
    /// system call: [`WRITE_BUFFER_BYTES`] (16 KiB). Grown only as frames
    /// arrive, and kept: a connection keeps the most it ever gathered.
    pub write_buffer_bytes: usize,
}

impl Limits {
    /// A lesson's sizes, from the outside in (connections, messages per
    /// connection, bytes per message), with the heartbeat and close grace
    /// every lesson runs with.
    pub const fn new(
        max_connections: usize,
        queue_capacity: usize,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            max_connections,
            queue_capacity,
            max_message_bytes,
            ping_interval: PING_INTERVAL,
            pong_timeout: PONG_TIMEOUT,
            close_grace: CLOSE_GRACE,
            read_buffer_bytes: READ_BUFFER_BYTES,
            write_buffer_bytes: WRITE_BUFFER_BYTES,
        }
    }

    /// The most one client's queue can hold, in bytes, if every message in
    /// it were the largest allowed. Less in practice: a broadcast frame is
    /// one allocation, shared by every queue it sits in.
    pub const fn queue_worst_case_bytes(&self) -> usize {
        self.queue_capacity * self.max_message_bytes
    }
}

/// Close codes the servers send (RFC 6455 section 7.4.1; 4000-4999 are free
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
    /// A message or frame over [`super::Limits::max_message_bytes`].
    pub const TOO_BIG: u16 = 1009;
    /// Our own code: the peer stopped answering pings.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
}

/// How often the server pings each client by default. Long enough to cost
/// nothing, short enough to notice a dead peer (a laptop lid closed, a NAT
/// mapping gone) within a minute; proxies often drop connections idle for
/// 60 s, and a ping every 20 s keeps them from it.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// A peer silent for this long (no pong, no message) is dropped: two missed
/// pings, so a single delayed pong does not cost anyone their connection.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(45);
const _: () = assert!(PONG_TIMEOUT.as_millis() > 2 * PING_INTERVAL.as_millis());

/// How long the server keeps trying to deliver a close frame to a client it
/// is dropping (the client may be the slow one, whose socket is full).
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long a graceful shutdown waits for connections to finish: longer
/// than [`CLOSE_GRACE`] twice (the writer's try at the close frame, then
/// the wait for the peer's), so a connection that uses its whole grace
/// still ends on its own.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
const _: () = assert!(SHUTDOWN_WAIT.as_millis() > 2 * CLOSE_GRACE.as_millis());

/// tungstenite's read buffer, per connection. Its default, 128 KiB, is
/// sized for bulk transfer, and it is allocated and zeroed whole for every
/// connection, idle or not: 10,000 chat clients would hold 1.25 GiB of it.
/// A chat line or a subscription is a few hundred bytes, so 2 KiB reads one
/// in a single `read` call. A larger message (up to 16 KiB here) still
/// arrives whole, since tungstenite grows the buffer to the frame's length,
/// but in `len / 2 KiB` reads instead of one: twenty 16 KiB messages took
/// 162 `recvfrom` calls, against 83 with 4 KiB and 7 with 128 KiB. For a
/// chat that is a few microseconds per large message; the buffer was half
/// of what an idle connection held (chapter 8 weighs the trade).
pub const READ_BUFFER_BYTES: usize = 2 * 1024;

/// tungstenite's write buffer: frames are gathered up to this size before a
/// `write` system call (see `write_batch`). It grows only as frames come,
/// so an idle connection holds almost none of it; one that has had a burst
/// keeps what the burst grew it to. One of the largest messages.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The most tungstenite may hold unwritten for one client, past which a
/// write fails: the write buffer, two of the largest messages and room for
/// the small ones around them. Without it, its buffer grows without bound
/// behind a client that does not read.
pub const fn max_write_buffer_bytes(max_message_bytes: usize, write_buffer_bytes: usize) -> usize {
    write_buffer_bytes + 2 * max_message_bytes + 64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How large the future that `f` returns is, without calling it.
    fn future_size<A, R>(_: impl FnOnce(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_websocket_lessons_turn_nagle_off() {
        // Small frames close together: with Nagle on, the second waits for
        // the first one's ACK. Both lessons serve with this config.
        assert!(serve_config().nodelay);
        assert!(serve_config().tls.is_none(), "TLS is `serve --tls`'s to add");
    }

    #[test]
    fn the_end_of_a_connection_is_not_carried_by_every_idle_task() {
        // A future is as large as its largest state, so whatever `finish`
        // holds (its timers, the fields it takes apart) is part of a
        // lesson's `connection` future from the first byte. Boxed, that is
        // one pointer until the connection ends; unboxed it was 696 bytes.
        assert_eq!(future_size(Connection::finish), std::mem::size_of::<usize>());
    }

    #[tokio::test]
    async fn an_empty_queue_holds_no_storage_and_a_full_one_refuses() {
        let sender = Queue::open(2);
        assert_eq!(sender.0.lock().messages.capacity(), 0, "nothing allocated until used");
        assert_eq!(sender.push(Message::text("a")), Pushed::Queued);
        assert_eq!(sender.push(Message::text("b")), Pushed::Queued);
        assert_eq!(sender.push(Message::text("c")), Pushed::Full);
        // The writer takes them all, storage and all: the queue is empty again.
        let taken = sender.0.take().await.expect("two messages");
        assert_eq!(taken.len(), 2);
        assert_eq!(sender.0.lock().messages.capacity(), 0);
        // Written, the writer asks for more (and waits): room again.
        drop(taken);
        let idle = tokio::time::timeout(Duration::from_millis(10), sender.0.take()).await;
        assert!(idle.is_err(), "nothing to take");
        assert_eq!(sender.push(Message::text("d")), Pushed::Queued);
    }

    #[tokio::test]
    async fn the_writer_drains_then_ends_when_the_last_sender_goes() {
        let first = Queue::open(8);
        let second = first.clone();
        let queue = Arc::clone(&first.0);
        first.push(Message::text("last words"));
        drop(first);
        drop(second);
        let within = Duration::from_secs(5);
        let taken = tokio::time::timeout(within, queue.take()).await.expect("not stuck");
        assert_eq!(taken.map(|t| t.len()), Some(1), "what was queued is still written");
        let end = tokio::time::timeout(within, queue.take()).await.expect("not stuck");
        assert!(end.is_none(), "no senders, nothing queued: the writer ends");
    }

    #[test]
    fn nothing_is_queued_for_a_writer_that_is_gone() {
        let sender = Queue::open(8);
        sender.push(Message::text("never written"));
        drop(WriterGone(Arc::clone(&sender.0)));
        assert_eq!(sender.push(Message::text("late")), Pushed::WriterGone);
        assert_eq!(sender.0.lock().messages.len(), 0);
    }

    #[test]
    fn the_writer_takes_at_most_a_batch_at_a_time() {
        let sender = Queue::open(BATCH * 2);
        for i in 0..BATCH + 5 {
            sender.push(Message::text(i.to_string()));
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let taken = runtime.block_on(sender.0.take()).expect("messages");
        assert_eq!(taken.len(), BATCH);
        assert_eq!(sender.0.lock().messages.len(), 5, "the rest wait, counted against the bound");
    }

    #[test]
    fn a_batch_being_written_still_counts_against_the_bound() {
        let sender = Queue::open(4);
        for i in 0..4 {
            assert_eq!(sender.push(Message::text(i.to_string())), Pushed::Queued);
        }
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
        let taken = runtime.block_on(sender.0.take()).expect("messages");
        assert_eq!(taken.len(), 4);
        // The writer holds all four (say its socket is full): the client
        // is still four unread behind, so a fifth does not fit.
        assert_eq!(sender.push(Message::text("fifth")), Pushed::Full);
        // Once the writer comes back for more, the four were written: room
        // again. (It finds nothing queued and waits; the timeout ends that.)
        drop(taken);
        let wait = Duration::from_millis(10);
        let idle = runtime.block_on(async { tokio::time::timeout(wait, sender.0.take()).await });
        assert!(idle.is_err(), "nothing to take");
        assert_eq!(sender.push(Message::text("after")), Pushed::Queued);
    }
}
