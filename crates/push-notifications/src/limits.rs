//! The push server's limits, each with the reason for its number, and the
//! [`Config`] that carries them (tests turn them down). The heartbeat's and
//! the close's defaults are lesson 8's connection module's
//! ([`websocket_chat::conn::PING_INTERVAL`] and the rest).

use websocket_chat::conn;

/// Where `serve` listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7094";

/// Notifications the server remembers for clients that reconnect: enough to
/// cover a phone dropping off Wi-Fi for a while at a few notifications a
/// second, bounded no matter how long the server runs. At a few hundred
/// bytes each, 256 is under 100 KiB; at worst, [`HISTORY_WORST_CASE_BYTES`].
pub const HISTORY_LEN: usize = 256;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME: usize = 64;

/// Largest message a client may send (subscriptions are tiny), and the
/// largest `POST /notify` body. Above it: close 1009 and HTTP 413.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// A full history of the largest notifications: 4 MiB. (A notification's
/// frame is its publish body plus its id and event, so "largest" is a
/// little over [`MAX_MESSAGE_BYTES`].)
pub const HISTORY_WORST_CASE_BYTES: usize = HISTORY_LEN * MAX_MESSAGE_BYTES;
const _: () = assert!(HISTORY_WORST_CASE_BYTES == 4 * 1024 * 1024);

/// Messages waiting to be written to one client. It must hold a full replay
/// of the history plus some live traffic, or a reconnecting client would be
/// "too slow" by construction. The frames are shared with the history
/// (reference-counted), so a queue entry costs a pointer, not a copy.
pub const QUEUE_CAPACITY: usize = 2 * HISTORY_LEN;
const _: () = assert!(QUEUE_CAPACITY > HISTORY_LEN);

/// Events one connection may be subscribed to at once. Each subscription is
/// an entry in two maps; without a cap one client could subscribe to new
/// names until the server ran out of memory. A phone follows a handful.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Open WebSocket connections the server accepts; the next upgrade gets an
/// HTTP 503 before any task is spent on it. An idle subscriber costs about
/// 6 KiB of heap (lesson 8's connection module, counted in chapter 8) and
/// the kernel's socket buffers; `bench ws-c10k` holds 10,000 and pushes to
/// them all. The cap is what bounds their sum.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Publishes per second that `POST /notify` accepts, for the whole server;
/// past it the answer is 429 with `Retry-After`. A service publishing for
/// its users sends a few a second (one per chat message, one per order);
/// 50 is ten times that. It also bounds how fast the history turns over: at
/// the limit, [`HISTORY_LEN`] still covers [`HISTORY_SECONDS_AT_PUBLISH_RATE`]
/// seconds of absence.
pub const PUBLISH_RATE: u32 = 50;

/// How long a client may be away, publishing at [`PUBLISH_RATE`] all the
/// while, and still be replayed everything: 5 s.
pub const HISTORY_SECONDS_AT_PUBLISH_RATE: usize = HISTORY_LEN / PUBLISH_RATE as usize;
const _: () = assert!(HISTORY_SECONDS_AT_PUBLISH_RATE == 5);

/// Publishes accepted at once before [`PUBLISH_RATE`] applies (a batch job's
/// backlog). It must fit in a subscriber's queue beside a full replay
/// ([`QUEUE_CAPACITY`] minus [`HISTORY_LEN`]), so that a burst reaches even
/// a client in the middle of its replay without making it "too slow". A
/// subscriber is closed only if it is really not reading.
pub const PUBLISH_BURST: u32 = 100;
const _: () = assert!(PUBLISH_BURST as usize <= QUEUE_CAPACITY - HISTORY_LEN);

/// How long a browser may cache the answer to a preflight (`OPTIONS
/// /notify`) before asking again: ten minutes saves a round trip per
/// publish, and a changed allow list still takes effect soon.
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The push server's connections: [`MAX_CONNECTIONS`] subscribers,
/// [`QUEUE_CAPACITY`] messages waiting for each, [`MAX_MESSAGE_BYTES`] a
/// message, and lesson 8's heartbeat and close grace.
pub const CONNECTION_LIMITS: conn::Limits =
    conn::Limits::new(MAX_CONNECTIONS, QUEUE_CAPACITY, MAX_MESSAGE_BYTES);

/// The knobs; tests turn them down.
#[derive(Debug, Clone)]
pub struct Config {
    /// Notifications remembered for clients that come back with `since`.
    /// 256 ([`HISTORY_LEN`]): minutes of absence at a few a second, five
    /// seconds at the publish limit.
    pub history_len: usize,
    /// What lesson 8's connection module enforces: the cap, the queue, the
    /// message size, the heartbeat and the close grace (each explained in
    /// [`conn::Limits`]). By default [`CONNECTION_LIMITS`]. The queue must
    /// exceed `history_len`, or a replay alone would overflow it.
    pub connection: conn::Limits,
    /// Publishes per second `POST /notify` accepts for the whole server;
    /// past it, 429. 50 ([`PUBLISH_RATE`]): ten times what a service
    /// publishing for its users sends. Above 0.
    pub publish_rate: u32,
    /// Publishes accepted at once before `publish_rate` applies. 100
    /// ([`PUBLISH_BURST`]). Above 0; with `history_len`, at most the queue
    /// capacity, or a burst could close a client in the middle of a replay.
    pub publish_burst: u32,
    /// Browser origins allowed besides the server's own, for the WebSocket
    /// and for `POST /notify` (`serve --allow-origin`). None by default:
    /// any other page the learner visits could otherwise subscribe or
    /// publish as the learner (see lesson 8's `websocket_chat::origin`).
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            history_len: HISTORY_LEN,
            connection: CONNECTION_LIMITS,
            publish_rate: PUBLISH_RATE,
            publish_burst: PUBLISH_BURST,
            allowed_origins: Vec::new(),
        }
    }
}
