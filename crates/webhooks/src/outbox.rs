//! The sender's memory: endpoints, events, and one delivery row per event
//! and endpoint, in one SQLite file.
//!
//! The outbox pattern: an event is accepted by writing it, and a delivery
//! row for each endpoint, in one transaction. Only after the commit does the
//! API answer 202. From then on the event cannot be lost: a crash before the
//! commit means the client never heard "accepted" (and retries), a crash
//! after it leaves `pending` rows that the next start picks up. The delivery
//! worker never holds state that is not also here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::signature::Secret;

/// Milliseconds since the Unix epoch. The outbox keeps wall-clock times (not
/// `Instant`s), because its schedule must mean the same after a restart.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long a second connection waits for the file's write lock before it
/// gives up. One connection per process is the rule here, but a restarted
/// sender may start while the killed one's last write is still settling.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many attempts `GET /endpoints/{id}` shows, newest first. The log
/// itself keeps every attempt; an exercise asks you to prune it.
pub const LOG_SHOWN: usize = 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS endpoints (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    url                  TEXT    NOT NULL,
    secret               TEXT    NOT NULL,
    old_secret           TEXT,
    old_until_ms         INTEGER,
    disabled             INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since_ms     INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id     TEXT    NOT NULL UNIQUE,
    body       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    INTEGER NOT NULL REFERENCES events(id),
    endpoint_id INTEGER NOT NULL REFERENCES endpoints(id),
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_ms     INTEGER NOT NULL
);
-- Serves `due` and, as its first two columns are (endpoint, state), also
-- `accept`'s count of an endpoint's pending deliveries, from the index alone
-- (see the test `the_pending_count_is_served_by_the_index`).
CREATE INDEX IF NOT EXISTS due ON deliveries (endpoint_id, state, next_ms);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL,
    endpoint_id INTEGER NOT NULL,
    msg_id      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    took_ms     INTEGER NOT NULL,
    status      INTEGER,
    outcome     TEXT    NOT NULL
);
";

/// A failure of the storage itself (disk full, file removed, a bug).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite said no.
    #[error("storage failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Every endpoint already has its limit of pending deliveries: refuse
    /// the event (503) rather than grow without bound while receivers are
    /// down. (While any endpoint has room, events are accepted for it.)
    #[error(
        "every endpoint has {0} deliveries pending, its limit: none could take the event; retry later"
    )]
    Full(u64),
    /// No such endpoint.
    #[error("there is no endpoint {0}")]
    NoEndpoint(i64),
    /// The blocking task died.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// What [`Outbox::accept`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Pending deliveries made (one per endpoint with room).
    pub deliveries: u64,
    /// Endpoints that were at their limit of pending deliveries: for them
    /// the event was recorded as failed, not sent.
    pub dropped: Vec<i64>,
}

/// Writes a line to an endpoint's log that is not an attempt (attempt 0):
/// a delivery dropped at the limit, the endpoint disabled.
fn log_note(
    tx: &rusqlite::Transaction<'_>,
    delivery: i64,
    endpoint: i64,
    msg_id: &str,
    at_ms: i64,
    outcome: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO attempts
           (delivery_id, endpoint_id, msg_id, attempt, at_ms, took_ms, status, outcome)
         VALUES (?1, ?2, ?3, 0, ?4, 0, NULL, ?5)",
        params![delivery, endpoint, msg_id, at_ms, outcome],
    )?;
    Ok(())
}

/// When an endpoint that keeps failing is disabled: both must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// At least this many failures in a row.
    pub failures: u32,
    /// And the streak has lasted at least this long (first failure to now).
    pub failing_for: Duration,
}

/// One delivery that is due now, with all it takes to send it.
#[derive(Debug, Clone)]
pub struct Due {
    /// The delivery row.
    pub delivery_id: i64,
    /// Whose URL.
    pub endpoint_id: i64,
    /// Where to POST (checked to be loopback when it was registered).
    pub url: String,
    /// Sign with these: the current secret, and the old one during a rotation.
    pub secrets: Vec<Secret>,
    /// The event's `webhook-id`, the same on every attempt.
    pub msg_id: String,
    /// The exact bytes to send (and sign): stored once, never re-serialised.
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What one attempt came to, as the worker saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Whether it counts as delivered (any 2xx).
    pub delivered: bool,
    /// A line for the log: "204", "connection refused", "timed out after 2s".
    pub detail: String,
    /// How long the attempt took.
    pub took: Duration,
}

/// What happened to the delivery after [`Outbox::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done: the receiver answered 2xx.
    Delivered,
    /// Will be tried again at this time (ms since the epoch).
    RetryAt(i64),
    /// Out of attempts: given up on (state `failed`).
    GaveUp,
}

/// One row of an endpoint's delivery log.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The event's webhook-id.
    pub msg_id: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// When it started (ms since the epoch).
    pub at_ms: i64,
    /// How long it took.
    pub took_ms: i64,
    /// The status code, if any.
    pub status: Option<u16>,
    /// What happened, in words.
    pub outcome: String,
}

/// What `GET /endpoints/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    /// Its id.
    pub id: i64,
    /// Its URL.
    pub url: String,
    /// Disabled after too many consecutive failures: nothing is sent until
    /// it is enabled again.
    pub disabled: bool,
    /// Failures in a row, reset by any success.
    pub consecutive_failures: u32,
    /// When the current failure streak began (ms since the epoch), if any.
    pub failing_since_ms: Option<i64>,
    /// Deliveries waiting (first try or a retry).
    pub pending: u64,
    /// Deliveries answered 2xx.
    pub delivered: u64,
    /// Deliveries given up on after the last attempt, or dropped at the
    /// endpoint's limit of pending deliveries (the log says which).
    pub failed: u64,
    /// The newest attempts, newest first (at most [`LOG_SHOWN`]); a line
    /// with attempt 0 is a note (dropped, disabled), not an attempt.
    pub log: Vec<Attempt>,
}

/// Counts over every endpoint, for the demo, tests and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Waiting.
    pub pending: u64,
    /// Done.
    pub delivered: u64,
    /// Given up on.
    pub failed: u64,
    /// Attempts made in all (notes in the log are not counted).
    pub attempts: u64,
}

/// The SQLite file behind a mutex, used from tokio's blocking pool (SQLite
/// blocks on disk; an async worker thread must not). Lesson 10 explains the
/// one-connection choice.
#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OutboxError> {
        let conn = Connection::open(path)?;
        // WAL with synchronous=NORMAL survives the process being killed,
        // which is the failure this lesson tests; a power cut may lose the
        // last commits (lesson 10 names the trade-off).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(SCHEMA)?;
        // An outbox written before endpoints kept `failing_since_ms` gets the
        // column now (SQLite's `IF NOT EXISTS` does not add columns).
        let has_since = conn
            .prepare(
                "SELECT 1 FROM pragma_table_info('endpoints') WHERE name = 'failing_since_ms'",
            )?
            .exists([])?;
        if !has_since {
            conn.execute_batch("ALTER TABLE endpoints ADD COLUMN failing_since_ms INTEGER")?;
        }
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, OutboxError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // Poisoned only if a closure panicked mid-transaction; SQLite
            // rolled that transaction back, so the connection is fine.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| OutboxError::Task(e.to_string()))?
    }

    /// Registers `url` with `secret`; returns the new endpoint's id.
    pub async fn add_endpoint(&self, url: String, secret: &Secret) -> Result<i64, OutboxError> {
        let secret = secret.to_whsec();
        self.blocking(move |c| {
            c.execute("INSERT INTO endpoints (url, secret) VALUES (?1, ?2)", params![url, secret])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// How many endpoints there are.
    pub async fn endpoint_count(&self) -> Result<u64, OutboxError> {
        self.blocking(|c| Ok(c.query_row("SELECT COUNT(*) FROM endpoints", [], |r| r.get(0))?))
            .await
    }

    /// Makes `new` the endpoint's secret; the one it replaces still signs
    /// too until `old_until_ms`, so a receiver can switch when it likes.
    pub async fn rotate(
        &self,
        id: i64,
        new: &Secret,
        old_until_ms: i64,
    ) -> Result<(), OutboxError> {
        let new = new.to_whsec();
        self.blocking(move |c| {
            let n = c.execute(
                "UPDATE endpoints SET old_secret = secret, old_until_ms = ?2, secret = ?3
                 WHERE id = ?1",
                params![id, old_until_ms, new],
            )?;
            if n == 0 { Err(OutboxError::NoEndpoint(id)) } else { Ok(()) }
        })
        .await
    }

    /// Enables a disabled endpoint and forgets its failure streak; its
    /// pending deliveries (including those accepted while it was disabled)
    /// go out again.
    pub async fn enable(&self, id: i64) -> Result<(), OutboxError> {
        self.blocking(move |c| {
            let n = c.execute(
                "UPDATE endpoints SET disabled = 0, consecutive_failures = 0,
                   failing_since_ms = NULL
                 WHERE id = ?1",
                [id],
            )?;
            if n == 0 { Err(OutboxError::NoEndpoint(id)) } else { Ok(()) }
        })
        .await
    }

    /// Accepts an event: the event and a pending delivery for every
    /// endpoint, enabled or not (a disabled one keeps its deliveries until it
    /// is enabled; `due` skips it meanwhile), in one transaction.
    ///
    /// An endpoint that already has `max_pending` deliveries waiting gets no
    /// new one: its delivery is written as `failed` with no attempt, and a
    /// "dropped" line in its log says why. So one dead endpoint's backlog is
    /// bounded and does not stop events for the others. Only if *every*
    /// endpoint is at its limit is the event refused with
    /// [`OutboxError::Full`] (and nothing written).
    pub async fn accept(
        &self,
        msg_id: String,
        body: Vec<u8>,
        max_pending: u64,
    ) -> Result<Accepted, OutboxError> {
        self.blocking(move |c| {
            let tx = c.transaction()?;
            let mut room = Vec::new();
            let mut full = Vec::new();
            {
                // Counted per endpoint from the `due` index, and only up to
                // the limit, so a large backlog costs no more than a full one.
                let mut ids = tx.prepare_cached("SELECT id FROM endpoints")?;
                let mut count = tx.prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                      WHERE endpoint_id = ?1 AND state = 'pending' LIMIT ?2)",
                )?;
                for id in ids.query_map([], |r| r.get::<_, i64>(0))? {
                    let id = id?;
                    let pending: u64 =
                        count.query_row(params![id, max_pending as i64], |r| r.get(0))?;
                    if pending >= max_pending { full.push(id) } else { room.push(id) }
                }
            }
            if room.is_empty() && !full.is_empty() {
                return Err(OutboxError::Full(max_pending));
            }
            let now = now_ms();
            tx.execute(
                "INSERT INTO events (msg_id, body, created_ms) VALUES (?1, ?2, ?3)",
                params![msg_id, body, now],
            )?;
            let event = tx.last_insert_rowid();
            for &endpoint in &room {
                tx.execute(
                    "INSERT INTO deliveries (event_id, endpoint_id, state, next_ms)
                     VALUES (?1, ?2, 'pending', ?3)",
                    params![event, endpoint, now],
                )?;
            }
            for &endpoint in &full {
                tx.execute(
                    "INSERT INTO deliveries (event_id, endpoint_id, state, next_ms)
                     VALUES (?1, ?2, 'failed', ?3)",
                    params![event, endpoint, now],
                )?;
                let delivery = tx.last_insert_rowid();
                let why = format!(
                    "dropped, never sent: {max_pending} deliveries already pending for this endpoint"
                );
                log_note(&tx, delivery, endpoint, &msg_id, now, &why)?;
            }
            // The commit's error is returned: a 202 is only sent for an
            // event that is on disk (lesson 10 shows what autocommit hides).
            tx.commit()?;
            Ok(Accepted { deliveries: room.len() as u64, dropped: full })
        })
        .await
    }

    /// The ids of endpoints that may be sent to (enabled).
    pub async fn enabled_endpoints(&self) -> Result<Vec<i64>, OutboxError> {
        self.blocking(|c| {
            let mut stmt = c.prepare_cached("SELECT id FROM endpoints WHERE disabled = 0")?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// For each `(endpoint, how many)` in `wants`, up to that many of its
    /// deliveries due by `now`, oldest first, skipping those in `busy`
    /// (already being attempted). Asking per endpoint is what keeps one
    /// dead receiver's backlog from filling the batch and starving the rest.
    pub async fn due(
        &self,
        wants: Vec<(i64, usize)>,
        busy: HashSet<i64>,
        now: i64,
    ) -> Result<Vec<Due>, OutboxError> {
        self.blocking(move |c| {
            let mut out = Vec::new();
            let mut stmt = c.prepare_cached(
                "SELECT d.id, d.endpoint_id, p.url, p.secret, p.old_secret, p.old_until_ms,
                        e.msg_id, e.body, d.attempts
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                                   JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE d.endpoint_id = ?1 AND d.state = 'pending' AND d.next_ms <= ?2
                   AND p.disabled = 0
                 ORDER BY d.next_ms, d.id LIMIT ?3",
            )?;
            for (endpoint, want) in wants {
                // Ask for enough to skip the busy ones and still have `want`.
                let limit = (want + busy.len()) as i64;
                let rows = stmt.query_map(params![endpoint, now, limit], |r| {
                    let secret: String = r.get(3)?;
                    let old: Option<String> = r.get(4)?;
                    let old_until: Option<i64> = r.get(5)?;
                    let mut secrets: Vec<Secret> = Secret::parse(&secret).into_iter().collect();
                    if let (Some(old), Some(until)) = (old, old_until)
                        && until > now
                        && let Ok(old) = Secret::parse(&old)
                    {
                        secrets.push(old);
                    }
                    Ok(Due {
                        delivery_id: r.get(0)?,
                        endpoint_id: r.get(1)?,
                        url: r.get(2)?,
                        secrets,
                        msg_id: r.get(6)?,
                        body: r.get(7)?,
                        attempts: r.get(8)?,
                    })
                })?;
                let mut taken = 0;
                for due in rows {
                    let due = due?;
                    if taken < want && !busy.contains(&due.delivery_id) {
                        taken += 1;
                        out.push(due);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Writes an attempt to the log and moves its delivery on, in one
    /// transaction: delivered; or a retry at `now + retry_in`; or, after
    /// `max_attempts`, given up. A failure also extends the endpoint's streak
    /// and disables it once the streak meets `disable` (so many failures
    /// *and* so long since the first), with a line in its log saying so; a
    /// success resets the streak.
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        due: &Due,
        outcome: Outcome,
        started_ms: i64,
        retry_in: Duration,
        max_attempts: u32,
        disable: DisablePolicy,
    ) -> Result<Next, OutboxError> {
        let (delivery, endpoint, msg_id) = (due.delivery_id, due.endpoint_id, due.msg_id.clone());
        let attempt = due.attempts + 1;
        self.blocking(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO attempts
                   (delivery_id, endpoint_id, msg_id, attempt, at_ms, took_ms, status, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    delivery,
                    endpoint,
                    msg_id,
                    attempt,
                    started_ms,
                    outcome.took.as_millis() as i64,
                    outcome.status,
                    outcome.detail
                ],
            )?;
            let next = if outcome.delivered {
                tx.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = ?2 WHERE id = ?1",
                    params![delivery, attempt],
                )?;
                tx.execute(
                    "UPDATE endpoints SET consecutive_failures = 0, failing_since_ms = NULL
                     WHERE id = ?1",
                    [endpoint],
                )?;
                Next::Delivered
            } else {
                // The streak's start is the first failed attempt's start.
                tx.execute(
                    "UPDATE endpoints SET consecutive_failures = consecutive_failures + 1,
                       failing_since_ms = COALESCE(failing_since_ms, ?2)
                     WHERE id = ?1",
                    params![endpoint, started_ms],
                )?;
                // Counted in time as well as in failures: a busy endpoint
                // that is down for a minute fails hundreds of attempts, and
                // must not be disabled for that (see DISABLE_AFTER_FAILING_FOR).
                let now = now_ms();
                let disabled_now = tx.execute(
                    "UPDATE endpoints SET disabled = 1
                     WHERE id = ?1 AND disabled = 0 AND consecutive_failures >= ?2
                       AND ?3 - failing_since_ms >= ?4",
                    params![
                        endpoint,
                        disable.failures,
                        now,
                        disable.failing_for.as_millis() as i64
                    ],
                )? == 1;
                if disabled_now {
                    let (n, since): (u32, i64) = tx.query_row(
                        "SELECT consecutive_failures, failing_since_ms FROM endpoints WHERE id = ?1",
                        [endpoint],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    let why = format!(
                        "endpoint disabled: {n} failures in a row over {:.1} s; \
                         its deliveries wait for POST /endpoints/{endpoint}/enable",
                        (now - since) as f64 / 1000.0
                    );
                    log_note(&tx, delivery, endpoint, &msg_id, now, &why)?;
                }
                if attempt >= max_attempts {
                    tx.execute(
                        "UPDATE deliveries SET state = 'failed', attempts = ?2 WHERE id = ?1",
                        params![delivery, attempt],
                    )?;
                    Next::GaveUp
                } else {
                    let at = now_ms() + retry_in.as_millis() as i64;
                    tx.execute(
                        "UPDATE deliveries SET attempts = ?2, next_ms = ?3 WHERE id = ?1",
                        params![delivery, attempt, at],
                    )?;
                    Next::RetryAt(at)
                }
            };
            tx.commit()?;
            Ok(next)
        })
        .await
    }

    /// The endpoint, its counts and its newest attempts.
    pub async fn view(&self, id: i64) -> Result<EndpointView, OutboxError> {
        self.blocking(move |c| {
            let head = c
                .query_row(
                    "SELECT url, disabled, consecutive_failures, failing_since_ms
                     FROM endpoints WHERE id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, u32>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    },
                )
                .optional()?
                .ok_or(OutboxError::NoEndpoint(id))?;
            let count = |state: &str| -> rusqlite::Result<u64> {
                c.query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = ?1 AND state = ?2",
                    params![id, state],
                    |r| r.get(0),
                )
            };
            let (pending, delivered, failed) =
                (count("pending")?, count("delivered")?, count("failed")?);
            let mut stmt = c.prepare_cached(
                "SELECT msg_id, attempt, at_ms, took_ms, status, outcome FROM attempts
                 WHERE endpoint_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let log = stmt
                .query_map(params![id, LOG_SHOWN as i64], |r| {
                    Ok(Attempt {
                        msg_id: r.get(0)?,
                        attempt: r.get(1)?,
                        at_ms: r.get(2)?,
                        took_ms: r.get(3)?,
                        status: r.get(4)?,
                        outcome: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let (url, disabled, consecutive_failures, failing_since_ms) = head;
            Ok(EndpointView {
                id,
                url,
                disabled,
                consecutive_failures,
                failing_since_ms,
                pending,
                delivered,
                failed,
                log,
            })
        })
        .await
    }

    /// Counts over every delivery.
    pub async fn totals(&self) -> Result<Totals, OutboxError> {
        self.blocking(|c| {
            let count = |state: &str| -> rusqlite::Result<u64> {
                c.query_row("SELECT COUNT(*) FROM deliveries WHERE state = ?1", [state], |r| {
                    r.get(0)
                })
            };
            Ok(Totals {
                pending: count("pending")?,
                delivered: count("delivered")?,
                failed: count("failed")?,
                attempts: c.query_row(
                    "SELECT COUNT(*) FROM attempts WHERE attempt > 0",
                    [],
                    |r| r.get(0),
                )?,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_count_is_served_by_the_index() {
        let dir = std::env::temp_dir().join(format!("webhooks-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let outbox = Outbox::open(dir.join("outbox.sqlite")).expect("opens");
        let conn = outbox.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM (SELECT 1 FROM deliveries
                  WHERE endpoint_id = ?1 AND state = 'pending' LIMIT ?2)",
            )
            .expect("prepares")
            .query_map(params![1, 10], |r| r.get(3))
            .expect("runs")
            .collect::<Result<_, _>>()
            .expect("rows");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            plan.iter().any(|l| l.contains("COVERING INDEX due (endpoint_id=? AND state=?)")),
            "{plan:?}"
        );
    }
}
