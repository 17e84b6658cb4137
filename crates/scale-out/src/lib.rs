//! Lesson 16: the chat (lesson 8) and the push service (lesson 9) on several
//! processes at once, with Redis between them and HAProxy in front.
//!
//! Each instance is lessons 8 and 9 as they are, each with one hook filled
//! in. What is new is only the backplane, in this file:
//!
//! * **chat rooms over Redis pub/sub.** A message said on any instance is
//!   `PUBLISH`ed on `chat:<room>`; every instance has `PSUBSCRIBE chat:*`
//!   open and hands what arrives to its own members ([`Chat::deliver`]).
//!   Pub/sub is at-most-once: a message published while an instance's
//!   subscription is down never reaches that instance's members.
//! * **push over a Redis Stream.** `POST /notify` on any instance appends
//!   to one stream (ids given by Redis, in one Lua script, so every instance
//!   agrees on them); every instance reads the stream and hands each entry
//!   to its own subscribers ([`Push::publish_with_id`]). A client that
//!   reconnects to any instance with its last id gets exactly what it
//!   missed: lesson 9's replay, from the same ids everywhere.
//! * **presence in expiring keys.** Each instance writes the names online on
//!   it to `presence:<instance>` with a time to live and refreshes it; an
//!   instance that dies stops refreshing, and its names expire.
//!
//! The processes (Redis, the instances, HAProxy) are started and stopped by
//! [`parts`]. Run it:
//!
//! ```text
//! cargo run -p scale-out                 # demo: Redis, 3 instances, HAProxy; kill one; clients resume
//! cargo run -p scale-out -- serve        # the same parts until Ctrl-C: chat ws://127.0.0.1:7160/ws,
//!                                        # push ws://127.0.0.1:7161/ws (POST /notify), stats http://127.0.0.1:7162/
//! ```
//!
//! It needs `redis-server` and `haproxy` (Debian: `apt-get install
//! redis-server haproxy`; macOS: `brew install redis haproxy`).

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use push_notifications::{Publisher, Push};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamReadReply;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use websocket_chat::client::Backoff;
use websocket_chat::{Chat, Relay, ServerMsg};

pub mod long_poll;
pub mod parts;

/// Every instance's chat channels start with this; the room follows.
pub const CHAT_CHANNEL_PREFIX: &str = "chat:";

/// The one stream of push notifications, and the counter its ids come from.
pub const STREAM_KEY: &str = "push:stream";
pub const LAST_ID_KEY: &str = "push:last-id";

/// Entries the stream keeps (`XADD ... MAXLEN ~`): lesson 9's history
/// length, so a client may resume from as far back on any instance as it
/// could on one. `~` lets Redis trim in whole blocks (cheaper), so it keeps
/// a little more, never less.
pub const STREAM_MAXLEN: usize = push_notifications::HISTORY_LEN;

/// Presence keys: `presence:<instance>`.
pub const PRESENCE_PREFIX: &str = "presence:";

/// How often an instance rewrites its presence key, and how long the key
/// lives: three refreshes, so one late refresh does not make a whole
/// instance's users vanish, and a dead instance's users are gone within 3 s.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(1);
pub const PRESENCE_TTL: Duration = Duration::from_secs(3);
const _: () = assert!(PRESENCE_TTL.as_millis() == 3 * PRESENCE_REFRESH.as_millis());

/// Chat messages waiting to be published to Redis by one instance. A chat
/// line takes well under a millisecond to publish on loopback; 1,024 is a
/// second of a busy room's traffic while Redis is slow. Past it, messages
/// are dropped and counted ([`Stats::relay_dropped`]): the speaker's
/// connection task must never wait for Redis (see [`Relay`]).
pub const RELAY_QUEUE: usize = 1024;

/// Chat lines sent to Redis in one round trip at most (a pipeline of
/// PUBLISH commands): enough that a busy room's lines rarely wait for a
/// round trip each, few enough that one failed round trip loses little.
pub const PUBLISH_BATCH: usize = 64;

/// How long one Redis command may take before we call Redis unreachable: a
/// command on loopback answers in well under a millisecond, so a second
/// means Redis is down or stuck, not busy.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one `XREAD` waits for new entries before asking again. The wait
/// costs nothing (Redis answers the moment an entry arrives); its length
/// only bounds how long a dead connection goes unnoticed.
pub const READ_BLOCK: Duration = Duration::from_millis(1000);

/// Entries one `XREAD` takes at most: a catch-up after an outage comes in
/// batches, so one huge reply never sits in memory whole.
pub const READ_BATCH: usize = 128;

/// Waits between attempts to reconnect the subscription and the stream
/// reader: lesson 8's backoff, shorter, because Redis on the same machine
/// is back within a second of a restart, and every moment of the
/// subscription being down is chat lost.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(50);
pub const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// The Lua script that gives a notification its id and appends it, in one
/// step that no other client's command can interleave with: ids grow by one
/// across every instance, as lesson 9's did in one process. The entry's
/// stream id is `<id>-0` (Redis compares stream ids as numbers, so they
/// stay in order).
const APPEND: &str = r"
local id = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id .. '-0', 'event', ARGV[2], 'payload', ARGV[3])
return id
";

/// One instance: lesson 8's chat and lesson 9's push server, joined to the
/// others through Redis. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The chat, with its rooms relayed through Redis.
    pub chat: Chat,
    /// The push server, publishing to and reading from the stream.
    pub push: Push,
    backplane: Arc<Backplane>,
}

#[derive(Debug)]
struct Backplane {
    name: String,
    client: redis::Client,
    /// For short commands (PUBLISH, the append script, presence): it
    /// reconnects by itself after Redis comes back.
    commands: ConnectionManager,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    relayed: AtomicU64,
    relay_dropped: AtomicU64,
    relay_failed: AtomicU64,
    chat_received: AtomicU64,
    subscriptions: AtomicU64,
    subscribed: AtomicBool,
    stream_read: AtomicU64,
    publish_failed: AtomicU64,
    lp_out_of_step: AtomicU64,
}

/// What an instance has done, for the demo and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Chat messages (and join notices) published to Redis.
    pub relayed: u64,
    /// Dropped because [`RELAY_QUEUE`] was full.
    pub relay_dropped: u64,
    /// Lost because Redis did not take them (down, or too slow).
    pub relay_failed: u64,
    /// Chat messages that came back from Redis to this instance's members.
    pub chat_received: u64,
    /// Times the chat subscription was made (1, plus one per reconnect).
    pub subscriptions: u64,
    /// Whether the chat subscription is open now.
    pub subscribed: bool,
    /// Stream entries read and handed to this instance's subscribers.
    pub stream_read: u64,
    /// `POST /notify` answered 503 because Redis did not take the entry.
    pub publish_failed: u64,
    /// Long-poll updates whose stream id did not match the next id of this
    /// instance's feed (it started after the stream was trimmed).
    pub lp_out_of_step: u64,
}

impl Instance {
    /// Connects to Redis at `redis_url` and starts the backplane's tasks
    /// (publisher, subscription, stream reader, presence), which end when
    /// `token` is cancelled. `name` tells this instance's presence key apart.
    pub async fn start(
        redis_url: &str,
        name: &str,
        chat: websocket_chat::Config,
        push: push_notifications::Config,
        token: CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        let commands = client.get_connection_manager_with_config(config).await?;
        let counters = Counters::default();
        let backplane = Arc::new(Backplane { name: name.to_owned(), client, commands, counters });

        let (queue, outgoing) = mpsc::channel(RELAY_QUEUE);
        let relay = Arc::new(RedisRelay { queue, backplane: Arc::clone(&backplane) });
        let chat = Chat::with_relay(chat, relay);
        let script = redis::Script::new(APPEND);
        let publisher = StreamPublisher { backplane: Arc::clone(&backplane), script };
        let push = Push::with_publisher(push, Arc::new(publisher));
        let instance = Self { chat, push, backplane };

        tokio::spawn(instance.clone().publish_chat(outgoing, token.clone()));
        tokio::spawn(instance.clone().subscribe_chat(token.clone()));
        tokio::spawn(instance.clone().read_stream(token.clone()));
        tokio::spawn(instance.clone().refresh_presence(token));
        Ok(instance)
    }

    /// Serves the chat on `chat` and the push service on `push` until
    /// `token` is cancelled; each says goodbye (1001) to its clients.
    pub async fn serve(
        &self,
        chat: TcpListener,
        push: TcpListener,
        token: CancellationToken,
    ) -> io::Result<()> {
        let (c, p) = tokio::join!(
            self.chat.clone().serve(chat, token.clone()),
            self.push.clone().serve(push, token)
        );
        c.and(p)
    }

    /// Serves lesson 6's long polling twice until `token` is cancelled: on
    /// `local` with this instance's own feed, on `shared` with the feed
    /// every instance fills from Redis ([`long_poll`]).
    pub async fn serve_long_poll(
        &self,
        local: TcpListener,
        shared: TcpListener,
        hold: Duration,
        token: CancellationToken,
    ) -> io::Result<()> {
        let config = http_serve::ServeConfig::default;
        let local_app = long_poll::local_router(hold, token.clone());
        let shared_app = long_poll::shared_router(Arc::clone(&self.backplane), hold, token.clone());
        let (l, s) = tokio::join!(
            http_serve::serve(local, local_app, token.clone(), config()),
            http_serve::serve(shared, shared_app, token, config())
        );
        l.and(s)
    }

    /// The chat's messages on their way out: one at a time to Redis, from
    /// the queue [`RedisRelay`] fills. A failure loses that message (and is
    /// counted): pub/sub keeps nothing for later anyway.
    async fn publish_chat(
        self,
        mut outgoing: mpsc::Receiver<(String, String)>,
        token: CancellationToken,
    ) {
        let mut conn = self.backplane.commands.clone();
        let counters = &self.backplane.counters;
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            // Wait for one line, then take whatever else is already queued
            // (up to PUBLISH_BATCH): one round trip to Redis carries them
            // all, in order. One PUBLISH per round trip capped a busy room
            // at about a thousand lines a second (chapter 16's numbers).
            tokio::select! {
                () = token.cancelled() => return,
                n = outgoing.recv_many(&mut batch, PUBLISH_BATCH) => if n == 0 { return },
            }
            let mut pipe = redis::pipe();
            for (room, json) in batch.drain(..) {
                pipe.cmd("PUBLISH").arg(format!("{CHAT_CHANNEL_PREFIX}{room}")).arg(json);
            }
            let sent = pipe.len() as u64;
            let publish = pipe.query_async::<Vec<i64>>(&mut conn);
            match tokio::time::timeout(REDIS_TIMEOUT, publish).await {
                Ok(Ok(_)) => counters.relayed.fetch_add(sent, Ordering::Relaxed),
                _ => counters.relay_failed.fetch_add(sent, Ordering::Relaxed),
            };
        }
    }

    /// The chat's messages on their way in: `PSUBSCRIBE chat:*` on a
    /// connection of its own (a subscribed connection can do nothing else),
    /// and every message to this instance's members of its room. When the
    /// connection ends (Redis restarted, or died), it waits a little and
    /// subscribes again; whatever was published meanwhile is gone.
    async fn subscribe_chat(self, token: CancellationToken) {
        let counters = &self.backplane.counters;
        let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
        while !token.is_cancelled() {
            let subscribe = async {
                let mut pubsub = self.backplane.client.get_async_pubsub().await?;
                pubsub.psubscribe(format!("{CHAT_CHANNEL_PREFIX}*")).await?;
                redis::RedisResult::Ok(pubsub)
            };
            if let Ok(Ok(pubsub)) = tokio::time::timeout(REDIS_TIMEOUT, subscribe).await {
                backoff.reset();
                counters.subscriptions.fetch_add(1, Ordering::Relaxed);
                counters.subscribed.store(true, Ordering::Relaxed);
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        () = token.cancelled() => return,
                        msg = messages.next() => match msg { Some(m) => m, None => break },
                    };
                    let channel = msg.get_channel_name();
                    let Some(room) = channel.strip_prefix(CHAT_CHANNEL_PREFIX) else { continue };
                    // Another instance wrote it, but Redis is open to
                    // anyone on loopback: a payload that is not ours is
                    // skipped, never trusted.
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    let Ok(server_msg) = serde_json::from_str::<ServerMsg>(&payload) else {
                        continue;
                    };
                    counters.chat_received.fetch_add(1, Ordering::Relaxed);
                    self.chat.deliver(room, &server_msg);
                }
                counters.subscribed.store(false, Ordering::Relaxed);
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// The push stream on its way in: `XREAD BLOCK` from the newest id this
    /// instance has, every entry to [`Push::publish_with_id`]. After an
    /// outage it carries on from where it was, so what was appended
    /// meanwhile arrives late, not never. On its own connection, because a
    /// blocked `XREAD` holds its connection for up to [`READ_BLOCK`].
    async fn read_stream(self, token: CancellationToken) {
        let counters = &self.backplane.counters;
        let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(READ_BLOCK + REDIS_TIMEOUT));
        while !token.is_cancelled() {
            let connect =
                self.backplane.client.get_multiplexed_async_connection_with_config(&config);
            if let Ok(mut conn) = connect.await {
                backoff.reset();
                loop {
                    let last = self.push.stats().last_id;
                    let mut cmd = redis::cmd("XREAD");
                    cmd.arg("COUNT")
                        .arg(READ_BATCH)
                        .arg("BLOCK")
                        .arg(READ_BLOCK.as_millis() as u64);
                    cmd.arg("STREAMS").arg(STREAM_KEY).arg(format!("{last}-0"));
                    let read = cmd.query_async::<Option<StreamReadReply>>(&mut conn);
                    let reply = tokio::select! {
                        () = token.cancelled() => return,
                        reply = read => match reply { Ok(r) => r, Err(_) => break },
                    };
                    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                        let Some(id) = entry.id.split('-').next().and_then(|n| n.parse().ok())
                        else {
                            continue;
                        };
                        let event: String = entry.get("event").unwrap_or_default();
                        let payload: String = entry.get("payload").unwrap_or_default();
                        let payload =
                            serde_json::from_str(&payload).unwrap_or(Value::String(payload));
                        counters.stream_read.fetch_add(1, Ordering::Relaxed);
                        self.push.publish_with_id(id, &event, payload);
                    }
                }
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Writes the names online here to `presence:<instance>` every
    /// [`PRESENCE_REFRESH`], to live [`PRESENCE_TTL`]. Nothing deletes it
    /// when an instance dies: it simply stops being refreshed.
    async fn refresh_presence(self, token: CancellationToken) {
        let mut conn = self.backplane.commands.clone();
        let key = format!("{PRESENCE_PREFIX}{}", self.backplane.name);
        let mut tick = tokio::time::interval(PRESENCE_REFRESH);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let names = serde_json::to_string(&self.chat.names()).expect("strings serialize");
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(names).arg("PX").arg(PRESENCE_TTL.as_millis() as u64);
            let set = cmd.query_async::<()>(&mut conn);
            // Redis down: try again next tick; the key may expire meanwhile,
            // which is what a reader should believe anyway.
            let _ = tokio::time::timeout(REDIS_TIMEOUT, set).await;
        }
    }

    /// Everyone online on any instance whose presence key has not expired.
    pub async fn online(&self) -> anyhow::Result<BTreeSet<String>> {
        let mut conn = self.backplane.commands.clone();
        let read = async {
            // SCAN, not KEYS: KEYS walks the whole keyspace in one go and
            // blocks every other client of Redis while it does.
            let mut keys: Vec<String> = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{PRESENCE_PREFIX}*"))
                    .query_async(&mut conn)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let mut online = BTreeSet::new();
            for key in keys {
                let names: Option<String> =
                    redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                let names: Vec<String> =
                    names.and_then(|n| serde_json::from_str(&n).ok()).unwrap_or_default();
                online.extend(names);
            }
            redis::RedisResult::Ok(online)
        };
        Ok(tokio::time::timeout(REDIS_TIMEOUT * 5, read).await??)
    }

    /// The backplane's counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.backplane.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            relayed: get(&c.relayed),
            relay_dropped: get(&c.relay_dropped),
            relay_failed: get(&c.relay_failed),
            chat_received: get(&c.chat_received),
            subscriptions: get(&c.subscriptions),
            subscribed: c.subscribed.load(Ordering::Relaxed),
            stream_read: get(&c.stream_read),
            publish_failed: get(&c.publish_failed),
            lp_out_of_step: get(&c.lp_out_of_step),
        }
    }
}

/// Lesson 8's [`Relay`], filled in with Redis: a message for a room goes on
/// a bounded queue, and [`Instance::publish_chat`] publishes it.
#[derive(Debug)]
struct RedisRelay {
    queue: mpsc::Sender<(String, String)>,
    backplane: Arc<Backplane>,
}

impl Relay for RedisRelay {
    fn relay(&self, room: &str, msg: &ServerMsg) {
        let json = serde_json::to_string(msg).expect("lesson 8's enum serializes");
        if self.queue.try_send((room.to_owned(), json)).is_err() {
            self.backplane.counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lesson 9's [`Publisher`], filled in with Redis: the [`APPEND`] script
/// gives the id and appends the entry; every instance's stream reader
/// delivers it.
#[derive(Debug)]
struct StreamPublisher {
    backplane: Arc<Backplane>,
    /// [`APPEND`], sent by its SHA-1 (`EVALSHA`) once Redis has it.
    script: redis::Script,
}

impl Publisher for StreamPublisher {
    fn publish(
        &self,
        event: String,
        payload: Value,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move {
            let mut conn = self.backplane.commands.clone();
            let mut append = self.script.prepare_invoke();
            append.key(STREAM_KEY).key(LAST_ID_KEY);
            append.arg(STREAM_MAXLEN).arg(event).arg(payload.to_string());
            let append = append.invoke_async::<u64>(&mut conn);
            let failed = match tokio::time::timeout(REDIS_TIMEOUT, append).await {
                Ok(Ok(id)) => return Ok(id),
                Ok(Err(e)) => format!("Redis did not take the notification: {e}"),
                Err(_) => format!("Redis did not answer within {REDIS_TIMEOUT:?}"),
            };
            self.backplane.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
            Err(failed)
        })
    }
}

/// What one instance process is told on its command line: `scale-out
/// instance ...`, or any program that embeds [`run_instance`] (the bench).
#[derive(Debug, Clone, clap::Args)]
pub struct InstanceArgs {
    /// Redis to join, `redis://127.0.0.1:PORT`.
    #[arg(long)]
    pub redis: String,
    /// This instance's name (its presence key, HAProxy's server name).
    #[arg(long, default_value = "i1")]
    pub name: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub chat: std::net::SocketAddr,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub push: std::net::SocketAddr,
    /// How long a long poll with nothing new is held (lesson 6's hold).
    #[arg(long, default_value_t = long_poll::HOLD.as_millis() as u64)]
    pub hold_ms: u64,
    /// Lift lesson 8's per-client send limit: for `bench scale-out` only,
    /// which measures the fan-out, not the limit (as `bench chat` does).
    #[arg(long)]
    pub unlimited_send: bool,
}

/// One instance process: joins Redis, listens on loopback, prints `ready
/// chat=ADDR push=ADDR lp-local=ADDR lp-shared=ADDR` (what
/// [`parts::InstanceProcess`] waits for), and serves until Ctrl-C or until
/// its standard input ends: the parent holds it open, so an instance whose
/// parent died stops too.
pub async fn run_instance(args: InstanceArgs) -> anyhow::Result<()> {
    let token = harness::ctrl_c_token();
    let orphaned = token.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        orphaned.cancel();
    });
    let mut chat = websocket_chat::Config::default();
    if args.unlimited_send {
        (chat.send_rate, chat.send_burst) = (u32::MAX, u32::MAX);
    }
    let (redis, push) = (&args.redis, push_notifications::Config::default());
    let inst = Instance::start(redis, &args.name, chat, push, token.clone())
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Redis at {redis}: {e}"))?;
    let chat = TcpListener::bind(args.chat).await?;
    let push = TcpListener::bind(args.push).await?;
    // Lesson 6's long polling, with this instance's own feed and with the
    // shared one, on ports of their own (HAProxy decides who reaches which).
    let lp_local = TcpListener::bind("127.0.0.1:0").await?;
    let lp_shared = TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "ready chat={} push={} lp-local={} lp-shared={}",
        chat.local_addr()?,
        push.local_addr()?,
        lp_local.local_addr()?,
        lp_shared.local_addr()?
    );
    let hold = Duration::from_millis(args.hold_ms);
    let (a, b) = tokio::join!(
        inst.serve(chat, push, token.clone()),
        inst.serve_long_poll(lp_local, lp_shared, hold, token)
    );
    a.and(b)?;
    Ok(())
}
