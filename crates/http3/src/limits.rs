//! The limits of lesson 15's server, each a named constant with why, the
//! [`Config`] that carries them (tests shrink some), and the [`Stats`] the
//! tests and the demo read. Most of them are QUIC transport parameters: the
//! server announces them in its first flight, so a polite client never
//! trips them and a rude one is refused by the protocol itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where `serve` listens: UDP on loopback. 443 is HTTP/3's real port, as for
/// HTTPS over TCP; lesson 14's TLS port was 7444/tcp, so this is 7445/udp.
pub const ADDR: &str = "127.0.0.1:7445";

/// The ALPN name of HTTP/3. QUIC always runs TLS 1.3, and ALPN is how both
/// sides agree that the streams will carry HTTP/3 rather than something else.
pub const ALPN_H3: &[u8] = b"h3";

/// Request streams (bidirectional) a client may have open at once: QUIC's
/// MAX_STREAMS, the same 100 lesson 14 announced in SETTINGS. Each open
/// stream is a task and some buffers.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Unidirectional streams a client may open. HTTP/3 needs three (its control
/// stream and QPACK's encoder and decoder streams); a few spare for GREASE
/// (RFC 9114 6.2.3 asks peers to send streams of unknown types now and then).
pub const MAX_UNI_STREAMS: u32 = 8;

/// How much request body one stream may have in flight before we read it.
/// Only `/echo` takes a body, of at most lesson 4's 64 KiB.
pub const STREAM_WINDOW: u32 = 64 * 1024;

/// What all streams of one connection together may have sent and we not
/// yet read. With [`STREAM_WINDOW`] it bounds what one connection can park
/// in our memory at 1 MiB, as in lesson 14.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// How much response data one connection may queue beyond what the client's
/// windows let it send: small, so a client that stops reading costs little.
pub const SEND_WINDOW: u64 = 1024 * 1024;

/// A connection that says nothing for this long is gone; QUIC has no FIN to
/// tell us, and a laptop lid or a NAT that forgot us looks exactly like this.
/// Each side announces its idle timeout and the smaller one wins.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the client sends a PING when it has nothing else to say, so an
/// open connection is not closed as idle (and a NAT keeps its mapping).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long a handshake may take before we give up on it. A client that
/// sends an Initial and then nothing costs us a slot for this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; past it a new one is refused (CONNECTION_CLOSE
/// with CONNECTION_REFUSED, a few bytes, no handshake).
///
/// The worst case it bounds: a client that completes handshakes and then
/// says nothing holds each connection until [`IDLE_TIMEOUT`]. An idle
/// connection costs about 90 KiB, client and server side together
/// (tests/idle_memory.rs); the windows above are limits, not buffers
/// allocated up front. So 1,024 of them cost the server at most about
/// 90 MiB for 30 s, which this lesson accepts.
pub const MAX_CONNECTIONS: usize = 1024;

/// Handshakes from addresses not yet validated that we run at once before
/// we start answering Initials with Retry. A Retry costs the client a round
/// trip but costs us nothing (no state, one small packet), and only a client
/// that really receives at its source address can come back with the token.
/// Below this, no round trip is wasted on honest clients.
pub const RETRY_ABOVE: usize = 16;

/// Incoming connections quinn queues before `accept` sees them; past it
/// quinn refuses them itself. Bounds the work a burst of Initials can park.
pub const MAX_INCOMING: usize = 256;

/// The size of one chunk of `/large`: QUIC frames are cut to fit datagrams
/// anyway, so this only sets how often we wake the sender.
pub const LARGE_CHUNK: usize = 16 * 1024;

/// The cap on `/large?kb=N`: 1 GiB, as in lesson 14.
pub const MAX_LARGE_KB: u64 = 1024 * 1024;

/// How long a stopping server gives open requests to finish after GOAWAY.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a sender decides how much to have in flight: quinn's two congestion
/// controllers. QUIC runs its own in user space, so unlike TCP's it is the
/// application's choice, not the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    /// quinn's default, Cubic (RFC 9438): grows the window along a cubic
    /// curve and cuts it by 30% at each loss, so random loss (not a full
    /// queue) keeps it small.
    Cubic,
    /// BBR: models the path's bandwidth and round trip and sends at that
    /// rate, so a random loss does not shrink what it sends. quinn marks
    /// its BBR experimental.
    Bbr,
}

/// The congestion controller a [`Config::default`] endpoint uses: quinn's
/// own default. Chapter 15's loss table runs both (Cubic's window collapses
/// under 1% random loss on a 50 ms path; BBR's does not).
pub const CONGESTION: Congestion = Congestion::Cubic;

/// The limits of one server. [`Config::default`] is the constants above.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// [`MAX_CONCURRENT_STREAMS`].
    pub max_concurrent_streams: u32,
    /// [`STREAM_WINDOW`].
    pub stream_window: u32,
    /// [`CONNECTION_WINDOW`].
    pub connection_window: u32,
    /// [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// [`RETRY_ABOVE`]; 0 means every new address gets a Retry first.
    pub retry_above: usize,
    /// lesson 4's cap on `/slow?ms=N`.
    pub max_slow: Duration,
    /// [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// [`CONGESTION`].
    pub congestion: Congestion,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: MAX_CONCURRENT_STREAMS,
            stream_window: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            idle_timeout: IDLE_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            retry_above: RETRY_ABOVE,
            max_slow: http_keepalive::MAX_SLOW,
            shutdown_grace: SHUTDOWN_GRACE,
            congestion: CONGESTION,
        }
    }
}

/// What the server counted. The tests read these to show work stayed bounded.
#[derive(Debug, Default)]
pub struct Stats {
    /// Initials that reached `accept` (quinn parsed a real Initial packet).
    pub incoming: AtomicU64,
    /// Of those, answered with a Retry instead of a handshake.
    pub retries: AtomicU64,
    /// Of those, refused because [`Config::max_connections`] were open.
    pub refused: AtomicU64,
    /// Handshakes started (the expensive part: keys, a certificate signature).
    pub handshakes: AtomicU64,
    /// Handshakes that failed or timed out.
    pub failed_handshakes: AtomicU64,
    /// Handshakes that completed: connections that could carry requests.
    pub connections: AtomicU64,
    /// Requests that reached the handler.
    pub requests: AtomicU64,
    /// Of those, read before the handshake completed: 0-RTT data.
    pub early_requests: AtomicU64,
    /// Of those, not GET or HEAD, so held until the handshake completed.
    pub early_held: AtomicU64,
    /// Responses during which the client's address changed (a migration).
    pub migrated: AtomicU64,
    /// Bytes of `/large` bodies produced.
    pub large_bytes_produced: AtomicU64,
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

/// The most header bytes (decoded) one request may carry: lesson 14's
/// 16 KiB, announced as SETTINGS_MAX_FIELD_SECTION_SIZE.
pub const MAX_FIELD_SECTION: u64 = 16 * 1024;

/// How long a request may take to finish sending its body. A GET ends its
/// stream at once; a client that opens a stream and never ends it would
/// otherwise hold a task until the connection goes idle.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
