//! The numbers lesson 1's server runs with, each with the reason for its value,
//! and the [`Config`] that tests shorten.

use std::time::Duration;

/// Where `serve` listens unless told otherwise. Loopback only: nothing from
/// another machine can reach it, which is what a lesson server should do.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7001";

/// How many completed connections the kernel may queue for us while we are
/// busy with another client. This server handles one client at a time, so the
/// queue is where everybody else waits; 128 is the classic default and plenty
/// for a lesson. (The kernel caps it at `/proc/sys/net/core/somaxconn`.)
pub const BACKLOG: i32 = 128;

/// The size of the one buffer each connection reads into. Any size works for
/// an echo: TCP is a stream, so a small buffer only means more, smaller reads.
/// 4 KiB is a page, and what most servers start with.
pub const READ_BUF: usize = 4096;

/// How long a client may stay silent before the server hangs up on it. Without
/// it, one client that connects and never speaks would hold this one-at-a-time
/// server forever and everybody in the queue behind it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one `write` may block because the client is not reading. Without
/// it, a client that sends a lot and never reads the echo would fill its own
/// receive buffer, then ours, and stall the server for good.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server may be tuned with. Tests shorten the timeouts so they run
/// in milliseconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// The read timeout on every accepted connection: a client that sends
    /// nothing for this long is hung up on (`Ending::Idle`), so it cannot hold
    /// the one-at-a-time server. Default [`IDLE_TIMEOUT`], 30 s: far longer
    /// than a person takes to type a line into `nc`.
    pub idle_timeout: Duration,
    /// The write timeout on every accepted connection: a client that does not
    /// read its echo for this long is given up on (`Ending::Broken`). Default
    /// [`WRITE_TIMEOUT`], 30 s, for the same reason as the idle timeout.
    pub write_timeout: Duration,
    /// Sets `TCP_NODELAY` (Nagle's algorithm off) on accepted connections, so
    /// each echo leaves at once instead of waiting for the previous one's
    /// acknowledgement. Default on: an echo answers each read with one write,
    /// the case Nagle only slows down (chapter 1, "Nagle's algorithm").
    pub nodelay: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { idle_timeout: IDLE_TIMEOUT, write_timeout: WRITE_TIMEOUT, nodelay: true }
    }
}
