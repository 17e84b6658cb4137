//! The limits and timeouts of lesson 4's two servers, each a named constant
//! with the reason for its value, and the [`Config`] that carries them (tests
//! shrink the timeouts). The code that enforces them is in `server.rs` and
//! `hyper_server.rs`; the routes they serve are in `lib.rs`.

use std::time::Duration;

/// The port `serve` gives the hand-written server (loopback only).
pub const HAND_PORT: u16 = 7080;
/// The port `serve` gives the hyper server (loopback only).
pub const HYPER_PORT: u16 = 7081;

/// How many resources the page at `/` links. Ten is about what a small page
/// with a stylesheet, a script and a few images asks for.
pub const PAGE_RESOURCES: usize = 10;

/// How long a kept connection may sit with no request before the server closes
/// it. Every idle connection costs a socket and some memory; five seconds is
/// Apache's default (`KeepAliveTimeout 5`): long enough for a browser to ask for
/// the next resource of a page, short enough not to hoard sockets.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to deliver a whole request head once it has sent its
/// first byte (and, again, its body). Without it a "slowloris" client that
/// sends one header line every few seconds holds a connection forever.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many requests one connection may carry before the server closes it
/// (politely: the last response says `Connection: close`). Apache's
/// `MaxKeepAliveRequests` default. A cap lets a server rebalance clients and
/// bounds what one client can do on one socket.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;

/// The largest request head (request line plus headers) accepted. Real
/// requests are a few hundred bytes to a few KiB with cookies; 8 KiB is
/// nginx's and Apache's ballpark. Past it: `431 Request Header Fields Too Large`.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields parsed in one request (httparse needs a fixed-size
/// array to parse into). More is answered with 431 too.
pub const MAX_HEADERS: usize = 64;

/// The largest request body accepted (only `/echo` takes one). Past it:
/// `413 Content Too Large`, before a byte of the body is read.
pub const MAX_BODY: usize = 64 * 1024;

/// The cap on `/slow?ms=N`, so nobody can park a connection for an hour.
pub const MAX_SLOW: Duration = Duration::from_secs(10);

/// After the server decides to close, it half-closes (sends FIN) and reads
/// and throws away what the client still sends, for at most this long.
/// Closing a socket that has unread bytes makes the kernel send RST, and an RST
/// can destroy the last response before the client has read it.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long a stopping server waits for in-flight requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How many connections the server serves at once; the next client is
/// answered 503 with `Retry-After: 1` at once and closed. Each connection is a
/// task, a buffer and a file descriptor: the cap keeps a flood from
/// exhausting them, and the 503 tells the client rather than leaving it
/// hanging in the kernel's accept backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// The limits and timeouts of one server. [`Config::default`] uses the named
/// constants above; tests shrink the timeouts so they finish in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long a kept connection may wait for the first byte of its next
    /// request before the server closes it, quietly. Default
    /// [`IDLE_TIMEOUT`], 5 s: Apache's, time enough for a page's next
    /// resource without hoarding idle sockets.
    pub idle_timeout: Duration,
    /// How long a client has to finish a request head once it has begun it
    /// (and again for its body); then 408 and close. Default
    /// [`HEADER_TIMEOUT`], 10 s: far more than any real client needs, and it
    /// stops a slowloris that drips one header line at a time.
    pub header_timeout: Duration,
    /// How many requests one connection may carry; the last answer says
    /// `Connection: close`. Default [`MAX_REQUESTS_PER_CONNECTION`], 100:
    /// Apache's, enough for any page, and it bounds what one socket can do.
    pub max_requests: usize,
    /// The largest request head accepted; past it, 431 and close. Default
    /// [`MAX_HEAD`], 8 KiB: the nginx and Apache ballpark, room for cookies.
    pub max_head: usize,
    /// The largest request body accepted (only `/echo` reads one); past it,
    /// 413 before a byte of it is read. Default [`MAX_BODY`], 64 KiB.
    pub max_body: usize,
    /// The cap on `/slow?ms=N`, so nobody can park a connection for an
    /// hour. Default [`MAX_SLOW`], 10 s: slow enough to show head-of-line
    /// blocking by hand.
    pub max_slow: Duration,
    /// How long a closing server reads and discards what the client still
    /// sends after its FIN, so that its last answer is not destroyed by a
    /// reset. Default [`LINGER`], 2 s: more than a loopback or LAN round
    /// trip, not long enough to matter if the client never closes.
    pub linger: Duration,
    /// After shutdown begins, how long in-flight requests get to finish
    /// before `serve` returns anyway. Default [`SHUTDOWN_GRACE`], 5 s: longer
    /// than any answer but `/slow`, short enough for Ctrl-C to feel prompt.
    pub shutdown_grace: Duration,
    /// How many connections are served at once; the next is answered 503
    /// with `Retry-After: 1` and closed. Default [`MAX_CONNECTIONS`], 1,024:
    /// each is a task, a buffer and a file descriptor, and a flood must not
    /// exhaust them.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: IDLE_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            max_requests: MAX_REQUESTS_PER_CONNECTION,
            max_head: MAX_HEAD,
            max_body: MAX_BODY,
            max_slow: MAX_SLOW,
            linger: LINGER,
            shutdown_grace: SHUTDOWN_GRACE,
            max_connections: MAX_CONNECTIONS,
        }
    }
}
