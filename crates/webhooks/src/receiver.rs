//! The receiver: verify, remember, answer, and only then do the work.
//!
//! `POST` on any path: check the signature and the timestamp; write the
//! delivery into the inbox keyed by its `webhook-id` (a second copy of the
//! same id is a duplicate: answered 200 so the sender stops, and not kept);
//! answer 204. A separate task applies what the inbox holds, each id once,
//! marking it applied in the same transaction as its effect. At-least-once
//! delivery plus this is an exactly-once *effect*.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use rusqlite::{Connection, params};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::outbox::now_ms;
use crate::signature::{
    Rejection, Secret, TOLERANCE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, unix_now,
    verify,
};

/// How the receiver misbehaves, for the demo and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answers every delivery properly.
    #[default]
    None,
    /// Fails every `n`th request, alternating two ways: 503 before looking
    /// at it, and 500 *after* storing it (the sender's view of a response
    /// lost on the way back). The second is what makes dedupe necessary.
    OneIn(u64),
    /// Reads the request and never answers.
    Hang,
}

/// The receiver's settings.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The secrets accepted (two while a rotation is under way).
    pub secrets: Vec<Secret>,
    /// [`TOLERANCE`].
    pub tolerance: Duration,
    /// Misbehaviour on purpose.
    pub fault: Fault,
}

impl ReceiverConfig {
    /// Accepts deliveries signed with `secret`, with the spec's tolerance.
    pub fn new(secret: Secret) -> Self {
        Self { secrets: vec![secret], tolerance: TOLERANCE, fault: Fault::None }
    }
}

/// What the receiver has seen, for the demo and the tests.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Requests that reached the handler.
    pub requests: AtomicU64,
    /// New deliveries stored in the inbox.
    pub accepted: AtomicU64,
    /// Deliveries whose id was already in the inbox.
    pub duplicates: AtomicU64,
    /// Requests failed on purpose ([`Fault`]).
    pub faults: AtomicU64,
    /// The newest refusals' reasons, oldest first, at most
    /// [`REJECTIONS_KEPT`] (every one is also logged).
    pub rejections: Mutex<VecDeque<String>>,
    /// Refusals no longer in `rejections`: pushed out by newer ones.
    pub rejections_forgotten: AtomicU64,
}

/// How many refusal reasons the receiver keeps in memory for the demo and
/// the tests. Anyone can POST to a receiver, so a list of every refusal is
/// memory an attacker fills at will; the newest hundred show what is going
/// on, the log has the rest, and `rejections_forgotten` counts them.
pub const REJECTIONS_KEPT: usize = 100;

impl ReceiverStats {
    /// Records a refusal's reason, forgetting the oldest past the cap.
    fn remember(&self, line: String) {
        let mut kept = self.rejections.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= REJECTIONS_KEPT {
            kept.pop_front();
            self.rejections_forgotten.fetch_add(1, Ordering::Relaxed);
        }
        kept.push_back(line);
    }
}

/// The receiver's shared state.
#[derive(Debug, Clone)]
pub struct Receiver {
    inbox: Arc<Mutex<Connection>>,
    config: Arc<ReceiverConfig>,
    /// Counters.
    pub stats: Arc<ReceiverStats>,
    applied: Arc<Notify>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    webhook_id  TEXT    PRIMARY KEY,
    body        BLOB    NOT NULL,
    received_ms INTEGER NOT NULL,
    applied     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS effects (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT    NOT NULL,
    body       BLOB    NOT NULL
);
";

/// How long an applied id is remembered. A duplicate can arrive as long as
/// the sender retries (about two hours with its defaults; days elsewhere),
/// and timestamps do not help: each retry is signed afresh. A week covers
/// any sender's schedule; older ids are pruned when the receiver starts.
pub const DEDUPE_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The largest body accepted, the sender's own limit.
pub const MAX_BODY: usize = crate::sender::MAX_EVENT_BYTES;

/// Inbox rows applied per transaction. Small enough that a batch never
/// holds the file's lock for long, large enough that a backlog drains fast.
const APPLY_BATCH: i64 = 64;

impl Receiver {
    /// Opens (or creates) the receiver's inbox at `path`.
    pub fn open(path: impl AsRef<Path>, config: ReceiverConfig) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let cutoff = now_ms() - DEDUPE_RETENTION.as_millis() as i64;
        conn.execute("DELETE FROM inbox WHERE applied = 1 AND received_ms < ?1", [cutoff])?;
        Ok(Self {
            inbox: Arc::new(Mutex::new(conn)),
            config: Arc::new(config),
            stats: Arc::default(),
            applied: Arc::new(Notify::new()),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let conn = Arc::clone(&self.inbox);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)
    }

    /// Every effect applied so far, in order: (webhook-id, body).
    pub async fn effects(&self) -> io::Result<Vec<(String, String)>> {
        self.blocking(|c| {
            let mut stmt = c.prepare("SELECT webhook_id, body FROM effects ORDER BY seq")?;
            let rows = stmt.query_map([], |r| {
                let body: Vec<u8> = r.get(1)?;
                Ok((r.get(0)?, String::from_utf8_lossy(&body).into_owned()))
            })?;
            rows.collect()
        })
        .await
    }

    fn reject(&self, why: &Rejection, id: Option<&str>) -> StatusCode {
        let line = format!("{}: {why}", id.unwrap_or("(no id)"));
        tracing::warn!("refused a delivery: {line}");
        self.stats.remember(line);
        StatusCode::UNAUTHORIZED
    }

    /// Applies what the inbox holds, a batch per transaction, until none is
    /// left; the effect and the `applied` mark commit together, so a crash
    /// between them cannot happen and a restart picks up the rest.
    async fn apply_pending(&self) -> io::Result<usize> {
        self.blocking(|c| {
            let tx = c.transaction()?;
            let ids: Vec<(String, Vec<u8>)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT webhook_id, body FROM inbox WHERE applied = 0
                     ORDER BY received_ms LIMIT ?1",
                )?;
                stmt.query_map([APPLY_BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?
            };
            for (id, body) in &ids {
                // The lesson's "work": append to a ledger with no unique
                // key, so applying one event twice would show as two rows.
                tx.execute(
                    "INSERT INTO effects (webhook_id, body) VALUES (?1, ?2)",
                    params![id, body],
                )?;
                tx.execute("UPDATE inbox SET applied = 1 WHERE webhook_id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(ids.len())
        })
        .await
    }
}

/// The receiver's router: `POST` on any path.
pub fn router(receiver: Receiver) -> Router {
    Router::new()
        .fallback(axum::routing::post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(receiver)
}

/// One delivery.
async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = r.stats.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let mut lose_answer = false;
    match r.config.fault {
        Fault::None => {}
        Fault::Hang => std::future::pending::<()>().await,
        Fault::OneIn(k) if k > 0 && n % k == 0 => {
            r.stats.faults.fetch_add(1, Ordering::Relaxed);
            if (n / k) % 2 == 1 {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            lose_answer = true;
        }
        Fault::OneIn(_) => {}
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header(WEBHOOK_ID);
    // Verified over `body` exactly as it arrived: parsing the JSON and
    // serialising it again would change spaces or key order and break the
    // signature (the specification warns about this very mistake).
    let verdict = verify(
        &r.config.secrets,
        id,
        header(WEBHOOK_TIMESTAMP),
        header(WEBHOOK_SIGNATURE),
        &body,
        unix_now(),
        r.config.tolerance,
    );
    if let Err(why) = verdict {
        return r.reject(&why, id);
    }
    let id = id.unwrap_or_default().to_owned();
    let stored = {
        let (id, body) = (id.clone(), body.to_vec());
        r.blocking(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO inbox (webhook_id, body, received_ms) VALUES (?1, ?2, ?3)",
                params![id, body, now_ms()],
            )
        })
        .await
    };
    match stored {
        // Committed: from here the event will be applied, whatever happens
        // to this response. Ring the applier and answer.
        Ok(1) => {
            r.stats.accepted.fetch_add(1, Ordering::Relaxed);
            r.applied.notify_one();
        }
        Ok(_) => {
            // Seen before: the sender did not hear our earlier answer, or
            // someone replays a capture within the tolerance. Either way
            // it is not applied again; 200 tells the sender to stop.
            r.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            let line = format!("{id}: duplicate webhook-id, already stored; not applied again");
            tracing::info!("{line}");
            r.stats.remember(line);
            return StatusCode::OK;
        }
        Err(e) => {
            tracing::error!("inbox: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    if lose_answer {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

/// Applies the inbox until `token` is cancelled: at start (what a previous
/// run stored but did not apply), then each time a delivery is stored.
pub async fn run_applier(receiver: Receiver, token: CancellationToken) {
    loop {
        loop {
            match receiver.apply_pending().await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!("applying the inbox: {e}");
                    break;
                }
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = receiver.applied.notified() => {}
        }
    }
}

/// Serves the receiver on `listener` and runs its applier until `token` is
/// cancelled.
pub async fn serve(
    listener: TcpListener,
    receiver: Receiver,
    token: CancellationToken,
) -> io::Result<()> {
    let applier = tokio::spawn(run_applier(receiver.clone(), token.clone()));
    let config = http_serve::ServeConfig {
        nodelay: true,
        // A hanging receiver (Fault::Hang) must not hold shutdown for long.
        shutdown_grace: Duration::from_millis(200),
        ..Default::default()
    };
    let served = http_serve::serve(listener, router(receiver), token, config).await;
    let _ = applier.await;
    served
}
