//! Lesson 5: short polling. The client asks "anything new?" on a timer and
//! the server answers at once, news or not. It is the simplest way to follow
//! a feed over plain HTTP, and the most wasteful: most answers say "nothing
//! new", and an update waits on average half an interval before anyone asks
//! for it. A conditional request (`If-None-Match` with the last `ETag`,
//! answered `304 Not Modified` with no body) makes the empty answers cheap,
//! but not free.
//!
//! * `cargo run -p short-polling` runs the demo: a server on a free port, a
//!   poller behind a wire tap, a publisher, and the count of requests made
//!   against updates received, with and without `ETag`.
//! * `cargo run -p short-polling -- serve` serves on 127.0.0.1:7090 until
//!   Ctrl-C; open <http://127.0.0.1:7090/>, or try
//!   `curl -i 'http://127.0.0.1:7090/data?since=0'`.
//! * `cargo run -p short-polling -- client --interval-ms 500` polls a
//!   running server.
//!
//! The routes: `GET /data?since=ID`, `GET /data` (the newest payload, as in
//! the notes), `POST /update`, `GET /stats`, `GET /` (a page). The feed
//! itself lives in the shared `feed` crate: see `crates/feed/src/lib.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use feed::client::{ClientError, HttpClient};
/// What `GET /data` answers; the same shape as lesson 6's.
pub use feed::http::Poll;
use feed::{Feed, FeedError, Update};
use http_serve::ServeConfig;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// The whole application: routes, state, and the shared extras (`/stats`,
/// JSON 404, counters). Nothing is held open, so shutdown needs nothing
/// special; `serve` still takes the token to stop accepting.
pub fn router(feed: Feed) -> Router {
    let router = Router::new()
        .route("/", get(page))
        .route("/data", get(poll))
        .route("/update", post(update))
        .with_state(feed.clone());
    feed::http::add_stats_and_fallbacks(router, &feed)
}

/// Serves `feed` on `listener` until `token` is cancelled, on the accept loop
/// every axum lesson shares (`http-serve`: timeouts, a connection cap,
/// graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    feed: Feed,
    token: CancellationToken,
) -> std::io::Result<()> {
    http_serve::serve(listener, router(feed), token, ServeConfig::default()).await
}

/// `GET /data[?since=ID]`: answer at once, or `304` if the client already
/// has the newest version.
async fn poll(
    State(feed): State<Feed>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FeedError> {
    let since = feed::http::parse_since(query.as_deref())?;
    // Read the version once, and build the answer from the same moment, so
    // the tag we send always describes the body we send.
    let newest = feed.newest_id();
    let tag = etag(newest);
    let etag_header = HeaderValue::from_str(&tag).expect("digits in quotes are a valid header");
    if not_modified(&headers, &tag) {
        // Headers only: no body, nothing to parse. This is what makes an
        // idle poll cheap (but it is still a request and a response).
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response());
    }
    let found = match since {
        Some(id) if id > newest => return Err(FeedError::Ahead { since: id, newest }),
        Some(id) => feed.since(id)?,
        // No `since` (the notes' client): just the newest update.
        None => feed::Since { updates: feed.latest().into_iter().collect(), missed: 0 },
    };
    // Something published since we read `newest` belongs to the next
    // version; leave it out so the body matches the tag.
    let updates: Vec<Update> =
        found.updates.iter().filter(|u| u.id <= newest).map(|u| (**u).clone()).collect();
    let body = Poll::deliver(&feed, updates, newest, found.missed);
    // `no-cache` does not forbid caching: it says "check with me first",
    // which is exactly a conditional request. A browser's fetch() then sends
    // If-None-Match by itself and turns our 304 back into the cached 200.
    let cache = HeaderValue::from_static("no-cache");
    Ok(([(header::ETAG, etag_header), (header::CACHE_CONTROL, cache)], Json(body)).into_response())
}

/// The feed's version as an entity tag: the newest id, quoted. For one URL
/// (`/data?since=7`, say) the answer changes exactly when a new update is
/// published, so the newest id is a faithful version of it.
pub fn etag(newest: u64) -> String {
    format!("\"{newest}\"")
}

/// Whether an `If-None-Match` header names the current tag. The header may
/// list several tags, and weak tags (`W/"7"`) count: for "has it changed?"
/// a weak match is enough (RFC 9110, section 13.1.2).
fn not_modified(headers: &HeaderMap, current: &str) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == current)
}

/// `POST /update`: check the body, publish it.
async fn update(
    State(feed): State<Feed>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Update>, FeedError> {
    let data = feed::http::read_update(&headers, body).await?;
    Ok(Json((*feed.publish(data)).clone()))
}

async fn page() -> Html<String> {
    feed::http::page(
        "short polling",
        r#"// Ask every second, from id 0 so the page starts with the history. The
// browser's HTTP cache adds If-None-Match by itself when a URL repeats (the
// server said Cache-Control: no-cache), so idle polls come back 304.
let since = 0, asked = 0, got = 0;
async function pollOnce() {
  asked++;
  try {
    const r = await fetch('/data?since=' + since);
    const j = await r.json();
    if (!r.ok) { note('error ' + r.status + ': ' + j.error); since = 0; return; }
    if (j.missed) note('missed ' + j.missed + ' updates');
    j.updates.forEach(show);
    got += j.updates.length;
    since = j.id;
    document.title = asked + ' requests, ' + got + ' updates';
  } catch (e) { note('request failed'); }
}
pollOnce();
setInterval(pollOnce, 1000);"#,
    )
}

/// What a [`follow`] run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowReport {
    /// Requests made.
    pub requests: u64,
    /// Of those, answered `304 Not Modified`.
    pub not_modified: u64,
    /// Of those, answered `200` with nothing new.
    pub empty: u64,
    /// Updates received.
    pub updates: u64,
    /// Updates the server said were lost to us.
    pub missed: u64,
    /// TCP connections opened.
    pub connections: u64,
}

/// Polls `/data?since=...` at `addr` every `interval`, calling `on_update`
/// for each new update, until `want` updates arrived or `token` is
/// cancelled. With `use_etag`, each request carries the last `ETag` in
/// `If-None-Match`, so "nothing new" comes back as a bodiless 304.
pub async fn follow(
    addr: SocketAddr,
    mut since: u64,
    interval: Duration,
    use_etag: bool,
    want: u64,
    token: CancellationToken,
    mut on_update: impl FnMut(&Update),
) -> Result<FollowReport, ClientError> {
    let mut client = HttpClient::new(addr);
    let mut report = FollowReport::default();
    let mut tag: Option<String> = None;
    let mut ticks = tokio::time::interval(interval);
    // A slow answer pushes the next poll back instead of causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while report.updates < want {
        tokio::select! {
            () = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let path = format!("/data?since={since}");
        let headers: Vec<(&str, &str)> = match (&tag, use_etag) {
            (Some(t), true) => vec![("if-none-match", t.as_str())],
            _ => vec![],
        };
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.get(&path, &headers))
            .await
            .map_err(|_| ClientError::Io(std::io::ErrorKind::TimedOut.into()))??;
        report.requests += 1;
        if reply.status == StatusCode::NOT_MODIFIED {
            report.not_modified += 1;
            continue;
        }
        if !reply.status.is_success() {
            return Err(ClientError::Io(std::io::Error::other(format!(
                "server answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ))));
        }
        tag = reply.headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let poll: Poll = reply.json()?;
        if poll.updates.is_empty() {
            report.empty += 1;
        }
        report.missed += poll.missed;
        for u in &poll.updates {
            on_update(u);
            report.updates += 1;
        }
        since = poll.id;
    }
    report.connections = client.connections;
    Ok(report)
}

/// Where `serve` listens by default (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7090";

/// How often the client asks, unless told otherwise. The trade is stated in
/// the chapter: the average delay of an update is half of this, and the
/// request rate of an idle feed is one over it, per client.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How long the client waits for one answer. The server answers at once, so
/// anything slower means a dead connection or a sick server.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
