//! The limits of lesson 14's server, each a named constant with why, the
//! [`Config`] that carries them (tests shrink some), and the [`Stats`] the
//! tests and the demo read. HTTP/2 announces most of them to the client in
//! its first SETTINGS frame, so a polite client never trips them and a rude
//! one is refused by the protocol itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where `serve` listens for h2c (HTTP/2 over plain TCP, prior knowledge)
/// and HTTP/1.1: loopback, and lesson 4's 7080 moved up to a port of its own.
pub const PLAIN_ADDR: &str = "127.0.0.1:7082";
/// Where `serve` listens for TLS, ALPN choosing `h2` or `http/1.1`.
pub const TLS_ADDR: &str = "127.0.0.1:7444";

/// SETTINGS_MAX_CONCURRENT_STREAMS: how many requests one connection may
/// have open at once. Each open stream is a task and some buffers; 100 is
/// what the RFC recommends as the least a server should allow, and what
/// nginx and h2o announce.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// SETTINGS_MAX_FRAME_SIZE: the largest frame payload we accept. 16 KiB is
/// the protocol's minimum (and default); a larger frame is a connection
/// error (FRAME_SIZE_ERROR), so one frame cannot make us buffer megabytes.
pub const MAX_FRAME_SIZE: u32 = 16 * 1024;

/// SETTINGS_MAX_HEADER_LIST_SIZE: the most header bytes (decoded) one
/// request may carry: lesson 4's 8 KiB head limit, doubled for HTTP/2's
/// pseudo-headers and per-field overhead. It also caps how many
/// CONTINUATION frames one header block may take.
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// The window for each stream we receive on (SETTINGS_INITIAL_WINDOW_SIZE):
/// how much request body a client may send before we read it. Only `/echo`
/// takes a body, of at most lesson 4's 64 KiB, so that is the window.
pub const STREAM_WINDOW: u32 = 64 * 1024;

/// The window for the whole connection we receive on: what all streams
/// together may have sent and we not yet read. With [`STREAM_WINDOW`] it
/// bounds the request bodies one connection can park in our memory at
/// 1 MiB, whatever the number of streams.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// How much response data one stream may queue in the server beyond what
/// the client's window lets it send. Small, so a client that stops reading
/// costs the server its window and little more.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;

/// Streams the client opens and resets before the server has even looked
/// at them. A few happen (a browser cancels a navigation); thousands are
/// the rapid-reset attack (CVE-2023-44487). Past this the connection is
/// closed with GOAWAY ENHANCE_YOUR_CALM. hyper's default, 20.
pub const MAX_PENDING_RESETS: usize = 20;

/// How often the server PINGs an idle connection, and how long it waits for
/// the answer before closing it: a peer that vanished without a FIN (a
/// laptop lid, a NAT that forgot us) costs a connection for 30 s, not for ever.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// See [`PING_INTERVAL`].
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has for the TLS handshake, and then to send its whole
/// 24-byte connection preface (or the first byte of an HTTP/1.1 request; hyper's
/// header timeout, the same value, bounds the rest of that head). Past the
/// preface, the PINGs below take over; before it, nothing else would.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; past it a new one is closed at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// The size of one chunk of `/large`, and the most a stream queues at once
/// beyond its window: one DATA frame's worth.
pub const LARGE_CHUNK: usize = 16 * 1024;

/// The cap on `/large?kb=N`: 1 GiB, enough for a benchmark, not a way to
/// keep the server busy for ever.
pub const MAX_LARGE_KB: u64 = 1024 * 1024;

/// How long a stopping server gives open streams to finish after GOAWAY.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The limits of one server. [`Config::default`] is the constants above.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// [`MAX_CONCURRENT_STREAMS`].
    pub max_concurrent_streams: u32,
    /// [`MAX_FRAME_SIZE`].
    pub max_frame_size: u32,
    /// [`MAX_HEADER_LIST_SIZE`].
    pub max_header_list_size: u32,
    /// [`STREAM_WINDOW`].
    pub stream_window: u32,
    /// [`CONNECTION_WINDOW`].
    pub connection_window: u32,
    /// [`MAX_SEND_BUFFER`].
    pub max_send_buffer: usize,
    /// [`MAX_PENDING_RESETS`].
    pub max_pending_resets: usize,
    /// [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// [`PING_TIMEOUT`].
    pub ping_timeout: Duration,
    /// [`HELLO_TIMEOUT`].
    pub hello_timeout: Duration,
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// lesson 4's cap on `/slow?ms=N`.
    pub max_slow: Duration,
    /// [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: MAX_CONCURRENT_STREAMS,
            max_frame_size: MAX_FRAME_SIZE,
            max_header_list_size: MAX_HEADER_LIST_SIZE,
            stream_window: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            max_send_buffer: MAX_SEND_BUFFER,
            max_pending_resets: MAX_PENDING_RESETS,
            ping_interval: PING_INTERVAL,
            ping_timeout: PING_TIMEOUT,
            hello_timeout: HELLO_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_slow: http_keepalive::MAX_SLOW,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// What the server counted. The tests read these to show work stayed bounded.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections that spoke HTTP/2 (h2c or ALPN h2).
    pub h2_connections: AtomicU64,
    /// Connections that spoke HTTP/1.1.
    pub h1_connections: AtomicU64,
    /// Requests that reached the handler (the server's real work).
    pub requests: AtomicU64,
    /// Bytes of `/large` bodies produced, i.e. handed to hyper to send.
    pub large_bytes_produced: AtomicU64,
    /// Connections closed before they said a word of HTTP in time.
    pub hello_timeouts: AtomicU64,
}

impl Stats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
