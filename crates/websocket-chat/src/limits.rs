//! The chat's limits: every number that bounds what one client can cost the
//! server, with the reason for it, and the [`Config`] that carries them (tests
//! turn them down to see a limit without waiting for it). The heartbeat's
//! and the close's defaults are the shared connection module's
//! ([`crate::conn::PING_INTERVAL`] and the rest).

use crate::conn;

/// Where `serve` listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7093";

/// Longest username or room name, in characters. Names are shown on every
/// line of every client; a limit keeps one user from flooding screens.
pub const MAX_NAME_CHARS: usize = 32;

/// Largest message (and frame) a client may send, in bytes. A chat line is a
/// few hundred bytes; 16 KiB is generous, and without a limit tungstenite
/// would accept up to 64 MiB per message and buffer all of it. Above it the
/// server closes with 1009 (message too big).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Messages waiting to be written to one client. At a few hundred bytes each,
/// 256 is about 100 KiB; at worst, [`QUEUE_WORST_CASE_BYTES`]. That is the
/// bound on what a slow reader can cost us. A client that lets its queue fill
/// is disconnected (1008).
pub const QUEUE_CAPACITY: usize = 256;

/// One full queue of the largest messages: 4 MiB. Less in practice, because
/// a broadcast frame is one allocation shared by every queue it sits in.
pub const QUEUE_WORST_CASE_BYTES: usize = QUEUE_CAPACITY * MAX_MESSAGE_BYTES;
const _: () = assert!(QUEUE_WORST_CASE_BYTES == 4 * 1024 * 1024);

/// Messages one client may send per second, sustained. A person types a
/// message every few seconds; a fast one, or a paste of several lines, a few
/// a second. 5 leaves room for that and for the client's housekeeping
/// (`who`, `join`) and caps what one client can add to every queue in its
/// room at 5 messages a second, far below what any reader that is reading
/// at all takes off it.
pub const SEND_RATE: u32 = 5;

/// Messages one client may send at once before [`SEND_RATE`] applies: a
/// pasted paragraph, a reconnect that sends its name and room in one go.
/// Kept under a tenth of [`QUEUE_CAPACITY`], so that one sender alone can
/// never get a reader closed as too slow. That takes a reader that has
/// stopped reading.
pub const SEND_BURST: u32 = 20;
const _: () = assert!(10 * SEND_BURST as usize <= QUEUE_CAPACITY);

/// How many clients bursting at once it takes to fill a reader's queue: the
/// per-connection limit's blind spot (chapter 8 says what a server open to
/// strangers would add).
pub const BURSTS_TO_FILL_A_QUEUE: usize = QUEUE_CAPACITY.div_ceil(SEND_BURST as usize);
const _: () = assert!(BURSTS_TO_FILL_A_QUEUE == 13);

/// Open WebSocket connections the server accepts; the next upgrade gets an
/// HTTP 503. An idle connection costs about 6 KiB of heap (a 2 KiB read
/// buffer, two tasks, the socket; chapter 8 counts them) and the kernel's
/// socket buffers, so 10,000 of them fit in well under 100 MB: the number
/// `bench ws-c10k` holds. Past it, `serve` also needs an open-file limit
/// above 10,000 (`ulimit -n`).
pub const MAX_CONNECTIONS: usize = 10_000;

/// The largest room (named members, the newcomer counted) in which joins
/// and leaves are announced to everyone; past it only the one who joined is
/// told. Each notice is one delivery per member, so filling a room of N with
/// announced joins costs N²/2 deliveries: half a million at 1,000 (a few
/// seconds of this server's fan-out on the bench's 2-core machine), 50
/// million at 10,000, minutes of nothing but notices, and a reconnect storm
/// after a restart would fill every queue of [`QUEUE_CAPACITY`] on the way
/// and close the room as too slow. 1,000 keeps every room of `bench chat`
/// announced.
pub const ANNOUNCE_UP_TO: usize = 1_000;

/// The chat's connections: [`MAX_CONNECTIONS`] of them, [`QUEUE_CAPACITY`]
/// messages waiting for each, [`MAX_MESSAGE_BYTES`] a message.
pub const CONNECTION_LIMITS: conn::Limits =
    conn::Limits::new(MAX_CONNECTIONS, QUEUE_CAPACITY, MAX_MESSAGE_BYTES);
const _: () = assert!(CONNECTION_LIMITS.queue_worst_case_bytes() == QUEUE_WORST_CASE_BYTES);

/// The knobs. Tests turn them down (a 50 ms heartbeat, a queue of 8) to see
/// the limits without waiting.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the shared connection module enforces: the cap, the queue, the
    /// message size, the heartbeat and the close grace (each explained in
    /// [`conn::Limits`]). By default [`CONNECTION_LIMITS`].
    pub connection: conn::Limits,
    /// Messages a client may send per second, sustained; more are dropped
    /// and the sender is told. 5 ([`SEND_RATE`]): more than anyone types.
    /// Above 0.
    pub send_rate: u32,
    /// Messages a client may send at once before `send_rate` applies. 20
    /// ([`SEND_BURST`]): a pasted paragraph. Above 0, and far below the
    /// queue capacity, or one sender could fill a reader's queue alone.
    pub send_burst: u32,
    /// Browser origins allowed besides the server's own, such as
    /// `http://localhost:8000` (`serve --allow-origin`). None by default:
    /// any other page the learner visits could otherwise chat as the
    /// learner (see [`crate::origin`]).
    pub allowed_origins: Vec<String>,
    /// Rooms with more named members than this get no join and leave
    /// notices; only the one joining is told. [`ANNOUNCE_UP_TO`] by default.
    pub announce_up_to: usize,
}

impl Default for Config {
    fn default() -> Self {
        let (send_rate, send_burst) = (SEND_RATE, SEND_BURST);
        Self {
            connection: CONNECTION_LIMITS,
            send_rate,
            send_burst,
            allowed_origins: Vec::new(),
            announce_up_to: ANNOUNCE_UP_TO,
        }
    }
}
