//! The counters every server keeps, so tests and the demo can watch it from
//! outside. They are not part of serving: each is one relaxed or sequentially
//! consistent atomic add beside the work it counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters every server keeps, so tests and the demo can watch it from outside.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open right now.
    pub open: AtomicUsize,
    /// Connections accepted and served since the start.
    pub accepted: AtomicU64,
    /// Connections refused because of the limit.
    pub refused: AtomicU64,
    /// Connections that ended with an error (a reset, say) rather than a close.
    pub errors: AtomicU64,
    /// Bytes echoed back, all connections together.
    pub echoed: AtomicU64,
    /// Bytes the event loop holds in write buffers right now, all connections together.
    pub buffered: AtomicUsize,
    /// The largest one connection's write buffer has ever been.
    pub peak_buffered: AtomicUsize,
}

impl Stats {
    /// A fresh set of counters, shared between a server and whoever watches it.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        Self::get(&self.open)
    }

    /// Bytes held in write buffers right now.
    pub fn buffered(&self) -> usize {
        Self::get(&self.buffered)
    }

    /// The largest single write buffer seen so far.
    pub fn peak_buffered(&self) -> usize {
        Self::get(&self.peak_buffered)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Connections that ended with an error so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }
}

/// Decrements `open` when a connection ends, even by panic: the threaded
/// server's thread and the tokio server's task each hold one.
pub(crate) struct OpenGuard<'a>(pub(crate) &'a Stats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}
