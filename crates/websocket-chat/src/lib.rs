//! Lesson 8: a WebSocket chat, done the way a production server has to do it.
//!
//! One HTTP request upgrades to a WebSocket (`GET /ws`, or `GET /` with the
//! upgrade headers), and from then on both sides send JSON messages whenever
//! they like over the one TCP connection. The protocol keeps the shape of
//! the classic browser chat example:
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
//! What the lesson is really about is everything around the happy path, in
//! [`conn`] (lesson 9 uses it too): a heartbeat that finds dead peers, a
//! bounded queue per client so one slow reader cannot make the server buffer
//! without end, close codes that tell a client why it was dropped (1001,
//! 1002, 1007, 1008, 1009, 4000), a cap on connections, and a graceful
//! shutdown that says goodbye with a close frame. And what a hostile client
//! would try: a limit on how fast one client may send ([`SEND_RATE`], so one
//! chatty client cannot get a whole room closed as "too slow"), and a check
//! of the handshake's `Origin` ([`origin`], so a web page on another site
//! cannot open a connection as the learner).
//!
//! Run it:
//!
//! ```text
//! cargo run -p websocket-chat                            # demo: three clients chat, then exit
//! cargo run -p websocket-chat -- serve                   # ws://127.0.0.1:7093/ws (or /), page at http://127.0.0.1:7093/
//! cargo run -p websocket-chat -- client --name alice     # terminal client: type lines, /join, /leave, /who
//! ```

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::ws::Message;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod client;
pub mod conn;
mod limits;
pub mod origin;
pub mod rate;

pub use conn::close_code;
pub use limits::*;

use conn::{Connection, Connections, Data, Outbox};
use rate::TokenBucket;

/// One client, from upgrade to goodbye. [`Connection`] does the plumbing
/// (the heartbeat, close codes, the writer task; chapter 8 walks through
/// it); what is left here is the chat: who the client is, what it says, and
/// who hears it.
async fn connection(chat: Chat, mut conn: Connection) {
    let id = conn.id();
    let member = Member { name: None, room: LOBBY.to_owned(), outbox: conn.outbox() };
    chat.hub().members.insert(id, member);
    // What this client may send (see SEND_RATE), and whether it has been
    // told it is over, so it is told once, not once per refused message.
    let config = &chat.shared.config;
    let mut allowance = TokenBucket::new(config.send_rate, config.send_burst);
    let mut told_to_slow_down = false;

    while let Some(data) = conn.next().await {
        // Every message costs a token, checked here, before it can reach
        // anybody else's queue. Over the limit, the message is dropped and
        // the sender told why, once per spell. We do not close it: a paste
        // of many lines is clumsy, not hostile, and a refused message costs
        // us no more than reading it did.
        if allowance.take().is_err() {
            chat.shared.rate_limited.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut told_to_slow_down, true) {
                let (rate, burst) = (config.send_rate, config.send_burst);
                let why = format!(
                    "slow down: at most {rate} messages a second ({burst} at once); \
                     messages over that are dropped"
                );
                reply(&chat, id, error(why));
            }
            continue;
        }
        told_to_slow_down = false;
        match data {
            Data::Text(text) => handle_text(&chat, id, text.as_str()),
            Data::Binary(_) => {
                let why = "binary messages are not part of this protocol; send JSON text";
                reply(&chat, id, error(why));
            }
        }
    }

    // Forget the client first, so nobody queues more for it (its outbox goes
    // with it, which lets the writer finish), then tell the room.
    let gone = chat.hub().remove(id);
    if let Some((name, room)) = gone {
        announce(&chat, &room, format!("{name} left {room}"), None);
    }
    conn.finish().await;
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
                // the same name cannot both win. A set of the names in use
                // (case folded) answers at once; asking every member instead
                // made the 10,000th join walk 9,999 of them.
                if !hub.members.contains_key(&id) {
                    return; // gone meanwhile: claim nothing for it
                }
                if !hub.names.insert(name.to_ascii_lowercase()) {
                    drop(hub);
                    return reply(chat, id, error(format!("username {name:?} is taken")));
                }
                if let Some(me) = hub.members.get_mut(&id) {
                    me.name = Some(name.clone());
                }
            }
            announce(chat, &room, format!("{name} joined {room}"), Some(id));
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
    announce(chat, from, format!("{name} left {from}"), None);
    announce(chat, to, format!("{name} joined {to}"), Some(id));
}

/// Tells `room` that someone joined or left: every named member while the
/// room has at most `announce_up_to` of them ([`ANNOUNCE_UP_TO`]), and past
/// that only the one who joined (`joiner`), so a client still sees that its
/// name or move took. A notice costs one delivery per member, so announcing
/// every join makes filling a room of N cost N²/2 deliveries; see the limit.
fn announce(chat: &Chat, room: &str, message: String, joiner: Option<u64>) {
    // With a relay (lesson 16) the room's members may be on any process:
    // the notice goes to all of them, as a message does; the room-size
    // rule below counts only this process's members, so it stays local.
    if let Some(relay) = &chat.shared.relay {
        return relay.relay(room, &ServerMsg::Info { message });
    }
    let frame = ServerMsg::Info { message }.to_frame();
    let mut hub = chat.hub();
    // A leave is counted as the room was, the leaver in it, so the same
    // room size decides for its join and its leave.
    let members = hub.members.values().filter(|m| m.name.is_some() && m.room == room).count()
        + usize::from(joiner.is_none());
    if members <= chat.shared.config.announce_up_to {
        for member in hub.members.values_mut() {
            if member.name.is_some() && member.room == room {
                member.outbox.deliver(frame.clone());
            }
        }
    } else if let Some(me) = joiner.and_then(|id| hub.members.get_mut(&id)) {
        me.outbox.deliver(frame);
    }
}

/// Sends `msg` to one client, or drops that client if its queue is full.
fn reply(chat: &Chat, id: u64, msg: ServerMsg) {
    let frame = msg.to_frame();
    if let Some(member) = chat.hub().members.get_mut(&id) {
        member.outbox.deliver(frame);
    }
}

/// Sends `msg` to every named member of `room`: through the [`Relay`] if
/// there is one, else here and now ([`Chat::deliver`]).
fn broadcast(chat: &Chat, room: &str, msg: &ServerMsg) {
    match &chat.shared.relay {
        Some(relay) => relay.relay(room, msg),
        None => {
            chat.deliver(room, msg);
        }
    }
}

/// Where a room's messages go when the chat runs on several processes
/// (lesson 16): instead of this process's members, to every process that
/// has members in the room, which each hand it to their own
/// [`Chat::deliver`]. Without one, a message goes straight to
/// [`Chat::deliver`] here.
pub trait Relay: Send + Sync + std::fmt::Debug {
    /// Carries `msg` for `room` to every process, this one included. Called
    /// with the hub's lock not held, from the sender's connection task: it
    /// must not wait (queue the message and return), or one slow backplane
    /// would hold up the client that spoke.
    fn relay(&self, room: &str, msg: &ServerMsg);
}

fn error(message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error { message: message.into() }
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

/// The chat server. Cheap to clone (an `Arc`): tests keep one to read
/// [`Chat::stats`] while the server runs.
#[derive(Debug, Clone)]
pub struct Chat {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    hub: Mutex<Hub>,
    /// The cap, the `Origin` check, the connection tasks and their counters.
    conns: Connections,
    /// Messages refused because their sender was over its send rate.
    rate_limited: AtomicU64,
    config: Config,
    /// Lesson 16's backplane, if this process is one of several.
    relay: Option<Arc<dyn Relay>>,
}

impl Chat {
    /// A server with the given limits. Panics on a configuration that could
    /// not work: a send rate or burst of 0, an origin that is not one.
    pub fn new(config: Config) -> Self {
        Self::build(config, None)
    }

    /// A server whose rooms reach further than this process: every message
    /// and join notice goes to `relay`, and arrives back (from this process
    /// or another) through [`Chat::deliver`]. Lesson 16 passes Redis.
    pub fn with_relay(config: Config, relay: Arc<dyn Relay>) -> Self {
        Self::build(config, Some(relay))
    }

    fn build(config: Config, relay: Option<Arc<dyn Relay>>) -> Self {
        // Built once here so a bad rate fails now, not at the first connection.
        TokenBucket::new(config.send_rate, config.send_burst);
        let conns = Connections::new(config.connection, &config.allowed_origins);
        let hub = Mutex::new(Hub::default());
        let rate_limited = AtomicU64::new(0);
        Self { shared: Arc::new(Shared { hub, conns, rate_limited, config, relay }) }
    }

    /// Sends `msg` to every named member of `room` on this process and
    /// returns how many it was queued for: serialized once, and each
    /// member's queue gets a clone of the frame (a reference count, not a
    /// copy) through [`Outbox::deliver`], where a full queue closes that
    /// member with 1008 instead of holding up the room. What a [`Relay`]
    /// calls with what it carried.
    pub fn deliver(&self, room: &str, msg: &ServerMsg) -> usize {
        let frame = msg.to_frame();
        let mut queued = 0;
        for member in self.hub().members.values_mut() {
            if member.name.is_some() && member.room == room {
                queued += usize::from(member.outbox.deliver(frame.clone()));
            }
        }
        queued
    }

    /// The names chosen on this process, sorted: what lesson 16 publishes
    /// as this process's share of who is online.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.hub().members.values().filter_map(|m| m.name.clone()).collect();
        names.sort();
        names
    }

    /// The routes: the page at `/`, and the WebSocket at `/ws` (and at `/`
    /// for a handshake, as the notes' chat client sends it).
    pub fn router(&self) -> Router {
        let chat = self.clone();
        self.shared
            .conns
            .routes(include_str!("page.html"), move |conn| connection(chat.clone(), conn))
    }

    /// Serves until `token` is cancelled, then says goodbye (close 1001) to
    /// every open connection and waits up to [`conn::SHUTDOWN_WAIT`] for them.
    pub async fn serve(self, listener: TcpListener, token: CancellationToken) -> io::Result<()> {
        self.serve_with(listener, token, conn::serve_config()).await
    }

    /// [`Chat::serve`] with the accept loop's settings given: lesson 13's
    /// `serve --tls` passes a TLS configuration, so the same chat runs as
    /// `wss://` and still says goodbye (1001) to every chat at shutdown.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        token: CancellationToken,
        config: http_serve::ServeConfig,
    ) -> io::Result<()> {
        // The accept loop of lessons 5 to 10 (a header-read timeout for the
        // handshake request, a cap on HTTP connections; see chapter 10).
        http_serve::serve(listener, self.router(), token, config).await?;
        self.shared.conns.close_all().await;
        Ok(())
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let hub = self.hub();
        Stats {
            connections: hub.members.len(),
            named: hub.members.values().filter(|m| m.name.is_some()).count(),
            queued: hub.members.values().map(|m| m.outbox.queued()).sum(),
            kicked_slow: self.shared.conns.kicked_slow(),
            heartbeat_timeouts: self.shared.conns.heartbeat_timeouts(),
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

/// The room everybody is in after choosing a name, and goes back to on leave.
pub const LOBBY: &str = "lobby";

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
    fn to_frame(&self) -> Message {
        conn::json_frame(self)
    }
}

/// One connected client, as the hub sees it.
#[derive(Debug)]
struct Member {
    /// `None` until the client chose a username.
    name: Option<String>,
    room: String,
    /// The way to its writer task: a bounded queue, and a close when full.
    outbox: Outbox,
}

/// Who is connected and where. One mutex: every operation is a short walk of
/// a map with no await inside, so contention stays small. (A server with
/// 100k users would shard this by room.)
#[derive(Debug, Default)]
struct Hub {
    members: HashMap<u64, Member>,
    /// The names in use, ASCII-lowercased: "Ann" and "ann" are one name.
    names: HashSet<String>,
}

impl Hub {
    /// Forgets connection `id` and frees its name; returns the name and
    /// room it had, if it had chosen a name.
    fn remove(&mut self, id: u64) -> Option<(String, String)> {
        let member = self.members.remove(&id)?;
        let name = member.name?;
        self.names.remove(&name.to_ascii_lowercase());
        Some((name, member.room))
    }
}

/// Counters the tests, the demo and the benchmark read.
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
