//! The server's limits and timeouts, each with why, and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a client has from connecting to the end of its handshake. A
/// TLS 1.3 handshake is one round trip plus a few milliseconds of signing;
/// 10 s covers a satellite link and a slow phone many times over, and a
/// client that connects and stalls (by accident, or to hold slots) is cut
/// off after that.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the request may take to arrive after the handshake, and the
/// answer to be written. The request is one short line of HTTP.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a plain-HTTP client is given to read the 400 before we close.
pub const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(2);

/// The largest request head read; curl sends under 100 bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Connections at once. Each costs a task and rustls's buffers (about 34 KiB
/// for one full record each way), so 1,024 is a few tens of MiB at most.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long `serve` waits for open connections after it is told to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The server's settings. Tests shorten the timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// See [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// What the server counted; tests read it to see a failure was noticed.
#[derive(Debug, Default)]
pub struct Stats {
    /// Handshakes completed (full and resumed).
    pub handshakes: AtomicU64,
    /// Of those, resumed from a session ticket.
    pub resumed: AtomicU64,
    /// Handshakes rustls refused (bad certificate alert from the client,
    /// unsupported version, garbage).
    pub handshake_failures: AtomicU64,
    /// Handshakes that did not finish in time.
    pub handshake_timeouts: AtomicU64,
    /// Plain-HTTP requests answered with a 400.
    pub plain_http: AtomicU64,
    /// Connections closed at once because the server was full.
    pub refused_full: AtomicU64,
}

impl Stats {
    pub(crate) fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value now.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
