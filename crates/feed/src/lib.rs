//! The feed of updates that lessons 5, 6 and 7 (`short-polling`,
//! `long-polling` and `sse`) all serve, so that the three chapters compare
//! like with like.
//!
//! A publisher posts small JSON payloads; each becomes an [`Update`] with an
//! id one higher than the last. Subscribers follow the feed by remembering the
//! last id they saw and asking for what came after it. What differs between
//! the lessons is only *how* they ask: on a timer, by a request the server
//! holds, or over one long response. What they share is in three modules, one
//! purpose each:
//!
//! * this one, the feed itself: [`Feed`] keeps the ids, a bounded history (so
//!   a client that was away briefly can catch up, and one that was away too
//!   long is told it missed some), a `watch` channel that wakes every
//!   long-poll waiter at once, bounded per-subscriber queues for streaming,
//!   and the [`Counters`] served as [`Stats`], so a benchmark can put a price
//!   on each update a transport delivers;
//! * [`http`], its HTTP surface: [`FeedError`] (every error a client can
//!   cause, answered as JSON with its status), the input checks
//!   ([`http::read_update`], [`http::parse_since`],
//!   [`http::parse_last_event_id`]), [`http::add_stats_and_fallbacks`] (the
//!   `/stats` route, JSON 404 and 405, and the counting every lesson's router
//!   gets) and the browser page;
//! * [`client`], the small keep-alive HTTP client the lessons' clients share.
//!
//! Each lesson serves its router on `http_serve::serve` itself. This crate is
//! a library only; its lessons are run with their own commands.

pub mod client;
pub mod http;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use http::FeedError;

/// The feed. Cheap to clone: every clone is the same feed.
#[derive(Debug, Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new(HISTORY)
    }
}

impl Feed {
    /// An empty feed that remembers the last `history_limit` updates (at
    /// least one).
    pub fn new(history_limit: usize) -> Self {
        let state = FeedState {
            history: VecDeque::new(),
            next_id: 1,
            subscribers: HashMap::new(),
            next_key: 0,
        };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                newest: watch::Sender::new(0),
                history_limit: history_limit.max(1),
                counters: Counters::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        // Nothing panics while holding this lock, but if something did, the
        // state is still a consistent VecDeque and map: keep serving.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `data` as the next update, hands it to every streaming
    /// subscriber, and wakes every long-poll waiter. Returns the update.
    pub fn publish(&self, data: Value) -> Arc<Update> {
        let update = {
            let mut st = self.lock();
            let update = Arc::new(Update { id: st.next_id, data });
            st.next_id += 1;
            st.history.push_back(Arc::clone(&update));
            while st.history.len() > self.inner.history_limit {
                st.history.pop_front();
            }
            // Fan out without ever waiting: `try_send` into each bounded
            // queue. A full queue means that subscriber has stopped reading
            // (its socket is full too); waiting for it would stall every other
            // subscriber and the publisher. Drop it instead: removing its
            // sender ends its stream after what is queued, and it comes back
            // with Last-Event-ID for the rest.
            let dropped = &self.inner.counters.dropped;
            st.subscribers.retain(|_, tx| match tx.try_send(Arc::clone(&update)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            update
        };
        // After the lock: woken waiters go straight to `since`, which takes it.
        self.inner.newest.send_replace(update.id);
        update
    }

    /// The newest id, 0 while the feed is empty.
    pub fn newest_id(&self) -> u64 {
        *self.inner.newest.borrow()
    }

    /// The newest update, if any.
    pub fn latest(&self) -> Option<Arc<Update>> {
        self.lock().history.back().cloned()
    }

    /// What came after id `since`. `since = 0` means "from the start".
    /// An id newer than the newest one means the client's ids come from
    /// another run of the server (it restarted and counts from 1 again).
    pub fn since(&self, since: u64) -> Result<Since, FeedError> {
        Self::since_locked(&self.lock(), since)
    }

    fn since_locked(st: &FeedState, since: u64) -> Result<Since, FeedError> {
        let newest = st.next_id - 1;
        if since > newest {
            return Err(FeedError::Ahead { since, newest });
        }
        let oldest = st.history.front().map_or(st.next_id, |u| u.id);
        // Everything from since+1 up to oldest-1 is gone.
        let missed = oldest.saturating_sub(since + 1);
        let updates = st.history.iter().filter(|u| u.id > since).cloned().collect();
        Ok(Since { updates, missed })
    }

    /// A receiver that wakes (`changed().await`) whenever an update is
    /// published. Take it *before* checking [`Feed::since`], so an update
    /// published between the check and the wait is not slept through.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.newest.subscribe()
    }

    /// Counts one long-poll waiter until the guard is dropped.
    pub fn waiter(&self) -> WaiterGuard {
        self.inner.counters.waiting.fetch_add(1, Ordering::SeqCst);
        WaiterGuard { feed: self.clone() }
    }

    /// Registers a streaming subscriber with a queue of `queue` updates (at
    /// least one), and returns what it missed after `since` (if it is
    /// resuming) together with its subscription. Both are taken under one
    /// lock, so no update falls between the catch-up and the live queue, and
    /// none arrives twice.
    pub fn subscribe(
        &self,
        since: Option<u64>,
        queue: usize,
    ) -> Result<(Since, Subscription), FeedError> {
        let mut st = self.lock();
        let catch_up = match since {
            Some(id) => Self::since_locked(&st, id)?,
            None => Since::default(),
        };
        let (tx, rx) = mpsc::channel(queue.max(1));
        let key = st.next_key;
        st.next_key += 1;
        st.subscribers.insert(key, tx);
        drop(st);
        Ok((catch_up, Subscription { rx, key, feed: self.clone() }))
    }

    /// The counters, for handlers to add to.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// A snapshot of every counter and gauge.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            published: self.newest_id(),
            requests: load(&c.requests),
            not_modified: load(&c.not_modified),
            body_bytes: load(&c.body_bytes),
            delivered: load(&c.delivered),
            waiting: load(&c.waiting),
            subscribers: self.lock().subscribers.len() as u64,
            dropped: load(&c.dropped),
        }
    }
}

/// How many updates the feed remembers. A client whose last id is older than
/// the oldest one kept has missed some for good and is told so. 256 is enough
/// to ride out a reconnect or a slow poll, and small enough that the memory
/// the history can hold never depends on how long we run: at most
/// [`http::HISTORY_WORST_CASE`] bytes.
pub const HISTORY: usize = 256;

/// One update: its id in the feed and the payload the publisher posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// 1 for the first update, then one more each time.
    pub id: u64,
    /// The JSON the publisher posted.
    pub data: Value,
}

/// The answer to "what came after id N?".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Since {
    /// The updates after N that the history still holds, oldest first.
    pub updates: Vec<Arc<Update>>,
    /// How many updates after N fell out of the history before the client
    /// asked: gone for good. 0 when the client is caught up.
    pub missed: u64,
}

/// A live streaming subscriber's end of its queue (see [`Feed::subscribe`]).
/// Dropping it unregisters the subscriber at once.
#[derive(Debug)]
pub struct Subscription {
    /// Updates arrive here as they are published. `None` means the feed
    /// dropped this subscriber because its queue was full.
    pub rx: mpsc::Receiver<Arc<Update>>,
    key: u64,
    feed: Feed,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.lock().subscribers.remove(&self.key);
    }
}

/// Counts one held long poll while it exists (see [`Feed::waiter`]).
#[derive(Debug)]
pub struct WaiterGuard {
    feed: Feed,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        // Runs when the handler returns *and* when its future is dropped
        // because the client went away: either way the waiter is gone.
        self.feed.inner.counters.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The counters a server keeps. Handlers add to them; [`Feed::stats`] reads
/// them. Relaxed-enough atomics: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP requests answered (not counting `/stats` itself).
    pub requests: AtomicU64,
    /// Of those, how many were `304 Not Modified`.
    pub not_modified: AtomicU64,
    /// Response body bytes sent (headers not included: the wire tap counts
    /// those).
    pub body_bytes: AtomicU64,
    /// Updates handed to clients, summed over clients.
    pub delivered: AtomicU64,
    /// Streaming subscribers dropped because their queue was full.
    pub dropped: AtomicU64,
    waiting: AtomicU64,
}

/// A snapshot of the counters, served as JSON at `GET /stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Updates published since start.
    pub published: u64,
    /// HTTP requests answered (not counting `/stats`).
    pub requests: u64,
    /// Of those, `304 Not Modified`.
    pub not_modified: u64,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// Updates delivered to clients, summed over clients.
    pub delivered: u64,
    /// Long polls being held right now (a gauge).
    pub waiting: u64,
    /// Streaming subscribers connected right now (a gauge).
    pub subscribers: u64,
    /// Streaming subscribers dropped for being too slow.
    pub dropped: u64,
}

/// What the feed's one lock guards: everything `publish` changes at once.
#[derive(Debug)]
struct FeedState {
    history: VecDeque<Arc<Update>>,
    next_id: u64,
    subscribers: HashMap<u64, mpsc::Sender<Arc<Update>>>,
    next_key: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<FeedState>,
    /// The newest id. Long-poll waiters hold a receiver and sleep in
    /// `changed()`; one `send` wakes all of them, however many there are.
    newest: watch::Sender<u64>,
    history_limit: usize,
    counters: Counters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_increase_and_history_is_bounded() {
        let feed = Feed::new(3);
        for i in 0..5 {
            assert_eq!(feed.publish(json!(i)).id, i + 1);
        }
        let s = feed.since(0).expect("0 is never ahead");
        assert_eq!(s.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(s.missed, 2, "ids 1 and 2 fell out of a history of 3");
        let s = feed.since(3).expect("3 exists");
        assert_eq!(s.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(s.missed, 0);
        assert!(feed.since(5).expect("newest").updates.is_empty());
        assert_eq!(feed.since(6), Err(FeedError::Ahead { since: 6, newest: 5 }));
    }

    #[test]
    fn a_full_queue_drops_its_subscriber_only() {
        let feed = Feed::new(10);
        let (_, mut slow) = feed.subscribe(None, 2).expect("no since");
        let (_, mut fast) = feed.subscribe(None, 2).expect("no since");
        for i in 0..3 {
            feed.publish(json!(i));
            // The fast one reads everything as it comes.
            assert!(fast.rx.try_recv().is_ok());
        }
        assert_eq!(feed.stats().subscribers, 1, "the slow one was dropped on the 3rd update");
        assert_eq!(feed.stats().dropped, 1);
        // The slow one still gets what was queued, then the end.
        assert_eq!(slow.rx.try_recv().expect("queued").id, 1);
        assert_eq!(slow.rx.try_recv().expect("queued").id, 2);
        assert!(matches!(slow.rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        drop(fast);
        assert_eq!(feed.stats().subscribers, 0, "dropping a subscription unregisters it");
    }

    #[test]
    fn subscribe_with_since_catches_up_without_gap_or_duplicate() {
        let feed = Feed::new(10);
        feed.publish(json!("a"));
        feed.publish(json!("b"));
        let (catch_up, mut sub) = feed.subscribe(Some(1), 4).expect("1 exists");
        feed.publish(json!("c"));
        assert_eq!(catch_up.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(sub.rx.try_recv().expect("live").id, 3);
    }

    #[test]
    fn waiter_guard_counts_while_alive() {
        let feed = Feed::default();
        let g = feed.waiter();
        assert_eq!(feed.stats().waiting, 1);
        drop(g);
        assert_eq!(feed.stats().waiting, 0);
    }
}
