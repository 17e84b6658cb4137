//! What the server counts: [`Stats`], readable from outside while it runs
//! (the tests and the demo read it), and the [`Tally`] behind its summary
//! log line.

use std::io;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// What the server has seen, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams dropped on purpose (`drop_rate`).
    pub dropped: AtomicU64,
    /// Datagrams echoed.
    pub echoed: AtomicU64,
    /// Datagrams refused as larger than [`MAX_DATAGRAM`](crate::MAX_DATAGRAM).
    pub too_large: AtomicU64,
}

/// What the server did since its last summary line.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) since: Instant,
    pub(crate) echoed: u64,
    pub(crate) bytes: u64,
    pub(crate) dropped: u64,
    pub(crate) too_large: u64,
    pub(crate) send_failed: u64,
    pub(crate) last_send_error: Option<io::Error>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
            echoed: 0,
            bytes: 0,
            dropped: 0,
            too_large: 0,
            send_failed: 0,
            last_send_error: None,
        }
    }

    /// Writes one INFO line if anything happened since the last one, and
    /// starts counting afresh either way.
    pub(crate) fn report(&mut self) {
        let done = std::mem::replace(self, Self::new());
        if done.echoed + done.dropped + done.too_large + done.send_failed == 0 {
            return;
        }
        let last_error = match &done.last_send_error {
            Some(e) => format!(" (last: {e})"),
            None => String::new(),
        };
        tracing::info!(
            "summary: {} datagrams echoed ({} bytes), {} dropped on purpose, \
             {} refused as too large, {} sends failed{last_error}, in the last {:.1?}",
            done.echoed,
            done.bytes,
            done.dropped,
            done.too_large,
            done.send_failed,
            done.since.elapsed(),
        );
    }
}
