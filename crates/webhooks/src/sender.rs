//! The sender: an API that takes endpoints and events, and the worker that
//! delivers every event to every endpoint until it is answered 2xx, retried
//! with backoff, or given up on.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::outbox::{DisablePolicy, Due, Next, Outbox, OutboxError, Outcome, now_ms};
use crate::signature::{
    Secret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, signature_header, unix_now,
};

// ---------------------------------------------------------------------------
// The API: register, send, look.
// ---------------------------------------------------------------------------

/// What the handlers share: the outbox, the worker's doorbell, the limits.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The SQLite outbox.
    pub outbox: Outbox,
    /// Rung after each accepted event, so the worker need not wait for its
    /// next poll.
    pub wake: Arc<Notify>,
    /// Timeouts, backoff and limits.
    pub config: SenderConfig,
    /// Where this sender's own API listens, once [`serve`] knows: a URL
    /// that points here is refused (see [`check_target`]).
    pub own_addr: Option<SocketAddr>,
}

impl Sender {
    /// A sender over `outbox`.
    pub fn new(outbox: Outbox, config: SenderConfig) -> Self {
        Self { outbox, wake: Arc::new(Notify::new()), config, own_addr: None }
    }
}

/// The sender's HTTP API.
pub fn router(sender: Sender) -> Router {
    Router::new()
        .route("/endpoints", post(register))
        .route("/endpoints/{id}", get(show))
        .route("/endpoints/{id}/rotate", post(rotate))
        .route("/endpoints/{id}/enable", post(enable))
        .route("/events", post(send_event))
        .layer(DefaultBodyLimit::max(MAX_EVENT_BYTES))
        .with_state(sender)
}

#[derive(Debug, Deserialize)]
struct NewEndpoint {
    url: String,
}

/// `POST /endpoints {"url": ...}`: 201 with the id and the secret, which is
/// shown this once (the receiver must store it), or 422 for a URL we will
/// not call.
async fn register(State(s): State<Sender>, Json(new): Json<NewEndpoint>) -> Response {
    if let Err(why) = check_target(&new.url, s.own_addr) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    match s.outbox.endpoint_count().await {
        Ok(n) if n >= MAX_ENDPOINTS => {
            let why = format!("at most {MAX_ENDPOINTS} endpoints");
            return error(StatusCode::CONFLICT, why);
        }
        Ok(_) => {}
        Err(e) => return storage_error(e),
    }
    let secret = Secret::generate();
    match s.outbox.add_endpoint(new.url.clone(), &secret).await {
        Ok(id) => {
            let body = json!({"id": id, "url": new.url, "secret": secret.to_whsec()});
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => storage_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct NewEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// `POST /events {"type": ..., "data": ...}`: 202 Accepted once the event
/// and its deliveries are committed, with the event's `webhook-id`. 202, not
/// 200: the work (delivering) has not happened yet, only the promise to.
async fn send_event(State(s): State<Sender>, Json(event): Json<NewEvent>) -> Response {
    // The id must be unique and must not contain '.', which separates the
    // signed parts; ours is `msg_` and 32 hex digits from the OS.
    let msg_id = new_msg_id();
    // The body is fixed here, once: every attempt sends (and signs) these
    // exact bytes, so a retry is byte-for-byte the first try.
    let body = json!({"type": event.kind, "data": event.data}).to_string().into_bytes();
    match s.outbox.accept(msg_id.clone(), body, s.config.max_pending_per_endpoint).await {
        Ok(accepted) => {
            s.wake.notify_one();
            // `dropped` names the endpoints whose backlog is full: for them
            // this event is recorded as failed, not sent (their logs say so).
            let body = json!({
                "id": msg_id,
                "deliveries": accepted.deliveries,
                "dropped": accepted.dropped,
            });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// `GET /endpoints/{id}`: state, counts and the newest attempts.
async fn show(State(s): State<Sender>, Path(id): Path<i64>) -> Response {
    match s.outbox.view(id).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => storage_error(e),
    }
}

/// `POST /endpoints/{id}/rotate`: a new secret; the old one keeps signing
/// for [`SenderConfig::rotation_overlap`] so the receiver can switch over
/// without a window in which it refuses everything.
async fn rotate(State(s): State<Sender>, Path(id): Path<i64>) -> Response {
    let secret = Secret::generate();
    let until = now_ms() + s.config.rotation_overlap.as_millis() as i64;
    match s.outbox.rotate(id, &secret, until).await {
        Ok(()) => Json(json!({"id": id, "secret": secret.to_whsec(), "old_valid_until_ms": until}))
            .into_response(),
        Err(e) => storage_error(e),
    }
}

/// `POST /endpoints/{id}/enable`: after the receiver is fixed.
async fn enable(State(s): State<Sender>, Path(id): Path<i64>) -> Response {
    match s.outbox.enable(id).await {
        Ok(()) => {
            s.wake.notify_one();
            Json(json!({"id": id, "disabled": false})).into_response()
        }
        Err(e) => storage_error(e),
    }
}

fn error(status: StatusCode, detail: impl Into<String>) -> Response {
    (status, Json(json!({"error": detail.into()}))).into_response()
}

fn storage_error(e: OutboxError) -> Response {
    match e {
        OutboxError::NoEndpoint(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        OutboxError::Full(_) => {
            // Back-pressure to whoever produces events: try again later.
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
            r
        }
        e => {
            tracing::error!("outbox: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage failed")
        }
    }
}

/// A fresh `webhook-id`: `msg_` and 16 random bytes in hex.
pub fn new_msg_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// Checks a URL we are asked to call and splits it into address and path.
///
/// **SSRF.** Whoever registers an endpoint chooses where *our* server sends
/// requests from inside *our* network. Left open, `http://10.0.0.5/admin`,
/// `http://169.254.169.254/` (a cloud's metadata service, with credentials)
/// or `http://localhost:6379/` are one registration away. The lesson runs on
/// one machine, so it turns the rule around and accepts only loopback: an
/// `http://` URL whose host is an IP literal in 127.0.0.0/8 or `::1`, with a
/// port. No names (a name resolves to whatever its owner likes, at every
/// lookup), no user info, and redirects are never followed. The chapter
/// says what a public sender checks instead.
pub fn check_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs (loopback) are accepted")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err("user info in the URL is not accepted".into());
    }
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| format!("{authority:?} is not IP:port (names are not resolved)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address: the lesson calls only this machine",
            addr.ip()
        ));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the path has spaces or control characters".into());
    }
    Ok((addr, path.to_owned()))
}

/// [`check_url`], and not the sender itself. A delivery's body is exactly
/// what `POST /events` accepts, so an endpoint at our own API would turn
/// each delivery into a new event for every endpoint, itself included: a
/// loop that grows until the outbox is full. A listener on an unspecified
/// address (`0.0.0.0`, `::`) is reached through any loopback address with
/// its port, so then the port alone decides.
pub fn check_target(url: &str, own: Option<SocketAddr>) -> Result<(SocketAddr, String), String> {
    let (addr, path) = check_url(url)?;
    if let Some(own) = own
        && addr.port() == own.port()
        && (addr.ip() == own.ip() || own.ip().is_unspecified())
    {
        return Err(format!("{addr} is the sender's own address: it would deliver to itself"));
    }
    Ok((addr, path))
}

// ---------------------------------------------------------------------------
// The delivery worker.
// ---------------------------------------------------------------------------

/// Delivers what the outbox holds until `token` is cancelled.
///
/// Each round it asks, per enabled endpoint, for as many due deliveries as
/// that endpoint has free slots ([`SenderConfig::per_endpoint`]), and starts
/// each on a task of its own. A slow or dead receiver fills its own slots
/// and waits in them; the others' slots are untouched, so their deliveries
/// go on. Each attempt has [`SenderConfig::request_timeout`]: a receiver
/// that never answers holds a slot for that long, then the slot is free.
///
/// Nothing here is the source of truth: a delivery being attempted is still
/// `pending` on disk. Kill the process mid-attempt and the next start tries
/// it again, which is why the receiver must deduplicate.
pub async fn run_worker(sender: Sender, token: CancellationToken) {
    let Sender { outbox, wake, config, own_addr } = sender;
    let tracker = TaskTracker::new();
    let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut slots: HashMap<i64, Arc<Semaphore>> = HashMap::new();
    loop {
        match outbox.enabled_endpoints().await {
            Ok(endpoints) => {
                let wants: Vec<(i64, usize)> = endpoints
                    .into_iter()
                    .map(|id| {
                        let sem = slots
                            .entry(id)
                            .or_insert_with(|| Arc::new(Semaphore::new(config.per_endpoint)));
                        (id, sem.available_permits())
                    })
                    .filter(|&(_, free)| free > 0)
                    .collect();
                let in_flight = busy.lock().unwrap_or_else(PoisonError::into_inner).clone();
                match outbox.due(wants, in_flight, now_ms()).await {
                    Ok(due) => {
                        for d in due {
                            let sem = Arc::clone(&slots[&d.endpoint_id]);
                            let Ok(slot) = sem.try_acquire_owned() else { continue };
                            busy.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(d.delivery_id);
                            let (outbox, config, wake, busy) = (
                                outbox.clone(),
                                config.clone(),
                                Arc::clone(&wake),
                                Arc::clone(&busy),
                            );
                            tracker.spawn(async move {
                                attempt(&outbox, &config, own_addr, &d).await;
                                busy.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .remove(&d.delivery_id);
                                drop(slot);
                                // A slot is free: look for more work now.
                                wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!("outbox: {e}"),
                }
            }
            Err(e) => tracing::error!("outbox: {e}"),
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(config.poll_interval) => {}
        }
    }
    // Attempts in flight get a moment to finish and record; the rest are
    // still pending on disk and will be tried by the next start.
    tracker.close();
    let _ = tokio::time::timeout(config.request_timeout, tracker.wait()).await;
}

/// One attempt: POST, record the outcome, schedule what comes next.
async fn attempt(outbox: &Outbox, config: &SenderConfig, own: Option<SocketAddr>, due: &Due) {
    let started_ms = now_ms();
    let outcome = deliver(due, own, config.request_timeout).await;
    let retry_in = full_jitter(config.backoff_base, config.backoff_cap, due.attempts + 1);
    let next = outbox
        .record(
            due,
            outcome.clone(),
            started_ms,
            retry_in,
            config.max_attempts,
            DisablePolicy {
                failures: config.disable_after,
                failing_for: config.disable_after_failing_for,
            },
        )
        .await;
    let n = due.attempts + 1;
    match next {
        Ok(Next::Delivered) => {
            tracing::debug!("{} -> {}: {} on attempt {n}", due.msg_id, due.url, outcome.detail)
        }
        Ok(Next::RetryAt(_)) => {
            tracing::info!(
                "{} -> {}: {} (attempt {n}); retry in {retry_in:?}",
                due.msg_id,
                due.url,
                outcome.detail
            )
        }
        Ok(Next::GaveUp) => tracing::warn!(
            "{} -> {}: {}; gave up after {n} attempts",
            due.msg_id,
            due.url,
            outcome.detail
        ),
        Err(e) => tracing::error!("outbox: recording an attempt: {e}"),
    }
}

/// POSTs one delivery, signed at this moment, within `timeout`.
async fn deliver(due: &Due, own: Option<SocketAddr>, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, exchange(due, own)).await;
    let took = started.elapsed();
    match result {
        Ok(Ok(status)) => Outcome {
            status: Some(status),
            delivered: (200..300).contains(&status),
            detail: status.to_string(),
            took,
        },
        Ok(Err(e)) => Outcome { status: None, delivered: false, detail: e.to_string(), took },
        Err(_) => Outcome {
            status: None,
            delivered: false,
            detail: format!("timed out after {timeout:?}"),
            took,
        },
    }
}

async fn exchange(due: &Due, own: Option<SocketAddr>) -> io::Result<u16> {
    // Checked again at each attempt: the outbox may hold URLs registered
    // when this sender listened elsewhere.
    let (addr, path) = check_target(&due.url, own).map_err(io::Error::other)?;
    // Signed now, not when accepted: the receiver checks the timestamp
    // against its clock, and a retry an hour later must still pass.
    let timestamp = unix_now();
    let secrets: Vec<&Secret> = due.secrets.iter().collect();
    let signature = signature_header(&secrets, &due.msg_id, timestamp, &due.body);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{WEBHOOK_ID}: {}\r\n{WEBHOOK_TIMESTAMP}: {timestamp}\r\n\
         {WEBHOOK_SIGNATURE}: {signature}\r\nConnection: close\r\n\r\n",
        due.body.len(),
        due.msg_id,
    );
    let mut conn = raw_http::HttpConn::connect(addr).await?;
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&due.body);
    conn.send(&bytes).await?;
    // The head only: the status is all the sender needs, and the receiver's
    // body (which it controls, and could make endless) is never read. The
    // head itself is capped by raw-http's MAX_HEAD; the connection is
    // closed when `conn` is dropped.
    Ok(conn.read_response(true).await?.status)
}

/// How long to wait before attempt `attempt + 1`: a random duration between
/// zero and `base * 2^(attempt-1)`, capped at `cap` ("full jitter").
///
/// Exponential, so a receiver that is down for an hour is not hammered for
/// an hour; random over the whole range, so the thousand deliveries that
/// failed together during an outage do not all come back at the same
/// instant when it ends and knock it over again.
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
    let ceiling = exp.min(cap).as_millis() as u64;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    Duration::from_millis(u64::from_le_bytes(bytes) % (ceiling + 1))
}

/// Serves the API on `listener` and runs the worker, until `token` is
/// cancelled.
pub async fn serve(
    listener: TcpListener,
    sender: Sender,
    token: CancellationToken,
) -> io::Result<()> {
    let mut sender = sender;
    sender.own_addr = Some(listener.local_addr()?);
    let worker = tokio::spawn(run_worker(sender.clone(), token.clone()));
    let config = http_serve::ServeConfig { nodelay: true, ..Default::default() };
    let served = http_serve::serve(listener, router(sender), token, config).await;
    let _ = worker.await;
    served
}

// ---------------------------------------------------------------------------
// Limits and settings.
// ---------------------------------------------------------------------------

/// The largest event body accepted. Webhooks carry a notice ("invoice 42
/// was paid") and the receiver fetches details if it needs them; 64 KiB is
/// generous for that and keeps a full outbox's size modest.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Endpoints one sender keeps. Every event is fanned out to all of them, so
/// this bounds the rows one `POST /events` writes.
pub const MAX_ENDPOINTS: u64 = 100;

/// Deliveries allowed to wait for one endpoint. Past it, that endpoint's
/// delivery of a new event is recorded as failed ("dropped" in its log)
/// while the other endpoints still get theirs; only when every endpoint is
/// at it does `POST /events` answer 503. Per endpoint, so one dead
/// receiver cannot refuse events for the healthy ones; 10,000 is hours of
/// a busy endpoint's traffic, and with [`MAX_ENDPOINTS`] the outbox holds
/// at most a million pending rows. A real service sizes this to its disk
/// and alerts long before.
pub const MAX_PENDING_PER_ENDPOINT: u64 = 10_000;

/// How long one attempt may take, connect to last byte. Receivers are told
/// to answer fast and work later; ten seconds is far past any healthy
/// answer and keeps a hung receiver from holding a slot for long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first retry waits up to this long; each later one up to twice the
/// one before.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);

/// The longest wait between two attempts. With [`MAX_ATTEMPTS`] = 12 and a
/// base of 1 s the waits grow to the cap by the 11th attempt, so a delivery
/// is given up on after roughly two hours of trying (real senders go on for
/// days with a larger cap).
pub const BACKOFF_CAP: Duration = Duration::from_secs(60 * 60);

/// Attempts per delivery before it is marked `failed`.
pub const MAX_ATTEMPTS: u32 = 12;

/// Failures in a row, across all its deliveries, that an endpoint must have
/// before it is disabled, together with [`DISABLE_AFTER_FAILING_FOR`]. The
/// count alone is no measure: a busy endpoint that is down for a second
/// fails fifty attempts in that second. It keeps a quiet endpoint that
/// failed once, days ago, from being disabled by its next failure.
pub const DISABLE_AFTER: u32 = 50;

/// How long an endpoint's failure streak must have lasted (from its first
/// failure, with no success since) before it is disabled. A receiver that
/// has failed for five days is gone or abandoned, and going on costs us
/// slots and it nothing; an outage of minutes or hours is not that, however
/// many deliveries fail in it. Five days is what large senders allow (they
/// retry for about three). Its deliveries stay pending until someone
/// enables it.
pub const DISABLE_AFTER_FAILING_FOR: Duration = Duration::from_secs(5 * 24 * 60 * 60);

/// Attempts at once to one endpoint. One is the politest (and keeps order
/// for an endpoint that is keeping up); four lets a healthy receiver take
/// deliveries in parallel while a stuck one can hold only four slots.
pub const PER_ENDPOINT: usize = 4;

/// How often the worker looks for due retries when nothing rings it. A new
/// event or a finished attempt rings at once; this only bounds how late a
/// scheduled retry can start.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long the old secret keeps signing after a rotation: a day, for the
/// receiver's owner to deploy the new one.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 60 * 60);

/// The sender's timings and limits. Tests shorten the durations.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// [`BACKOFF_BASE`].
    pub backoff_base: Duration,
    /// [`BACKOFF_CAP`].
    pub backoff_cap: Duration,
    /// [`MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// [`DISABLE_AFTER`].
    pub disable_after: u32,
    /// [`DISABLE_AFTER_FAILING_FOR`].
    pub disable_after_failing_for: Duration,
    /// [`PER_ENDPOINT`].
    pub per_endpoint: usize,
    /// [`POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// [`ROTATION_OVERLAP`].
    pub rotation_overlap: Duration,
    /// [`MAX_PENDING_PER_ENDPOINT`].
    pub max_pending_per_endpoint: u64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            request_timeout: REQUEST_TIMEOUT,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            max_attempts: MAX_ATTEMPTS,
            disable_after: DISABLE_AFTER,
            disable_after_failing_for: DISABLE_AFTER_FAILING_FOR,
            per_endpoint: PER_ENDPOINT,
            poll_interval: POLL_INTERVAL,
            rotation_overlap: ROTATION_OVERLAP,
            max_pending_per_endpoint: MAX_PENDING_PER_ENDPOINT,
        }
    }
}

impl SenderConfig {
    /// Durations short enough for tests and the demo: 2 s timeout, retries
    /// after at most 20, 40, 80 ... 200 ms, polls every 10 ms, an endpoint
    /// disabled after failing for 200 ms (and 50 times).
    pub fn quick() -> Self {
        Self {
            request_timeout: Duration::from_secs(2),
            disable_after_failing_for: Duration::from_millis(200),
            backoff_base: Duration::from_millis(20),
            backoff_cap: Duration::from_millis(200),
            poll_interval: Duration::from_millis(10),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_ip_literals_with_a_port_are_accepted() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://[::1]:9000/").is_ok());
        assert_eq!(check_url("http://127.0.0.1:9000").map(|(_, p)| p), Ok("/".into()));
        for bad in [
            "https://127.0.0.1:9000/",
            "http://localhost:9000/",
            "http://169.254.169.254:80/latest/meta-data",
            "http://10.0.0.5:80/admin",
            "http://127.0.0.1/",
            "http://user@127.0.0.1:9000/",
            "http://0.0.0.0:9000/",
            "http://127.0.0.1:9000/a b",
        ] {
            assert!(check_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_senders_own_address_is_refused() {
        let own: SocketAddr = "127.0.0.1:7170".parse().expect("an address");
        assert!(check_target("http://127.0.0.1:7170/events", Some(own)).is_err());
        assert!(check_target("http://127.0.0.1:7171/hook", Some(own)).is_ok());
        assert!(check_target("http://127.0.0.2:7170/", Some(own)).is_ok());
        // Listening on every address: any loopback address with its port.
        let any: SocketAddr = "0.0.0.0:7170".parse().expect("an address");
        assert!(check_target("http://127.0.0.2:7170/", Some(any)).is_err());
        assert!(check_target("http://127.0.0.1:7170/", None).is_ok());
    }

    #[test]
    fn backoff_stays_under_its_exponential_ceiling_and_the_cap() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 1..40 {
            let ceiling = (100u64 << (attempt - 1).min(20)).min(1000);
            for _ in 0..50 {
                let d = full_jitter(base, cap, attempt).as_millis() as u64;
                assert!(d <= ceiling, "attempt {attempt}: {d} > {ceiling}");
            }
        }
        // Full jitter spreads: 200 draws under a 1 s ceiling are not all alike.
        let draws: HashSet<Duration> = (0..200).map(|_| full_jitter(base, cap, 10)).collect();
        assert!(draws.len() > 50, "only {} distinct waits", draws.len());
    }
}
