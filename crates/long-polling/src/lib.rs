//! Lesson 6: long polling. The client asks "anything after id N?" and the
//! server does not answer until there is something, or until a hold timeout
//! passes; then the client asks again at once. Updates reach the client as
//! soon as they are published, and an idle feed costs one request per hold
//! period instead of one per polling interval.
//!
//! * `cargo run -p long-polling` runs the demo: a server on a free port, a
//!   follower that long-polls through a wire tap, a publisher posting
//!   updates, and what each update cost in requests and bytes.
//! * `cargo run -p long-polling -- serve` serves on 127.0.0.1:7091 until
//!   Ctrl-C; open <http://127.0.0.1:7091/> in a browser, or
//!   `curl 'http://127.0.0.1:7091/data?since=0'` in one terminal and
//!   `curl -H 'Content-Type: application/json' -d '{"text":"hi"}' http://127.0.0.1:7091/update`
//!   in another.
//! * `cargo run -p long-polling -- client` follows a running server.
//!
//! The routes: `GET /data?since=ID` (held), `GET /data` (held until the next
//! update, as in the notes), `POST /update`, `GET /stats`, `GET /` (a page).
//! The feed itself (ids, bounded history, wake-ups, input checks) lives in
//! the shared `feed` crate: see `crates/feed/src/lib.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, Json};
use axum::routing::get;
use feed::client::{ClientError, HttpClient};
/// What `GET /data` answers; the same shape as lesson 5's.
pub use feed::http::Poll;
use feed::{Feed, FeedError, Update};
use http_serve::ServeConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The whole application: routes, state, and the shared extras (`/stats`,
/// JSON 404, counters). `token` ends held polls on shutdown.
pub fn router(feed: Feed, config: Config, token: CancellationToken) -> Router {
    let state = AppState { feed: feed.clone(), config, token };
    let router = Router::new()
        .route("/", get(page))
        .route("/data", get(poll))
        .route("/update", axum::routing::post(update))
        .with_state(state);
    feed::http::add_stats_and_fallbacks(router, &feed)
}

/// Serves `feed` on `listener` until `token` is cancelled, on the accept loop
/// every axum lesson shares (`http-serve`). Cancelling also answers every
/// held poll at once, so shutdown does not wait out the hold.
pub async fn serve(
    listener: TcpListener,
    feed: Feed,
    config: Config,
    token: CancellationToken,
) -> std::io::Result<()> {
    let app = router(feed, config, token.clone());
    http_serve::serve(listener, app, token, ServeConfig::default()).await
}

/// What every handler gets: the feed, the settings, and the token that
/// ends held polls on shutdown.
#[derive(Debug, Clone)]
struct AppState {
    feed: Feed,
    config: Config,
    token: CancellationToken,
}

/// `GET /data[?since=ID]`: the query checked, then [`wait_for_news`].
async fn poll(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Poll>, FeedError> {
    let since = feed::http::parse_since(query.as_deref())?;
    Ok(Json(wait_for_news(&app.feed, since, app.config.hold, &app.token).await?))
}

/// The heart of long polling: answer at once if something newer than
/// `since` is in the history, otherwise wait for the next publish, the
/// `hold` timeout, or `token` (shutdown), whichever comes first. `None` for
/// `since` (the notes' client) waits for whatever comes next.
pub async fn wait_for_news(
    feed: &Feed,
    since: Option<u64>,
    hold: Duration,
    token: &CancellationToken,
) -> Result<Poll, FeedError> {
    // Counted from here until this future ends, which includes the case
    // where the client hangs up: hyper notices the closed socket and drops
    // the handler's future, and the guard's Drop takes the waiter off the
    // gauge.
    let _waiter = feed.waiter();
    // Subscribe *before* looking: an update published between our look and
    // our sleep then still wakes us (the receiver has not seen it yet).
    let mut newest = feed.watch();
    let since = since.unwrap_or_else(|| feed.newest_id());
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    loop {
        let found = feed.since(since)?;
        if !found.updates.is_empty() || found.missed > 0 {
            return Ok(answer(feed, since, found));
        }
        tokio::select! {
            // `changed` fails only if the feed's sender is gone, which
            // cannot happen while we hold the feed; treat it as shutdown.
            changed = newest.changed() => changed.map_err(|_| FeedError::ShuttingDown)?,
            () = &mut deadline => return Ok(answer(feed, since, found)),
            // Shutdown: answer now so the connection can close and the
            // server can stop, instead of holding shutdown up for the hold.
            () = token.cancelled() => return Err(FeedError::ShuttingDown),
        }
    }
}

fn answer(feed: &Feed, since: u64, found: feed::Since) -> Poll {
    let updates: Vec<Update> = found.updates.iter().map(|u| (**u).clone()).collect();
    let next = updates.last().map_or(since, |u| u.id);
    Poll::deliver(feed, updates, next, found.missed)
}

/// `POST /update`: check the body, publish it, wake every waiter.
async fn update(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Update>, FeedError> {
    let data = feed::http::read_update(&headers, body).await?;
    Ok(Json((*app.feed.publish(data)).clone()))
}

async fn page() -> Html<String> {
    feed::http::page(
        "long polling",
        r#"// Ask, wait for the answer (the server holds it), show it, ask again at once.
// Starting from id 0 shows the history first.
let since = 0;
(async () => {
  for (;;) {
    try {
      const r = await fetch('/data?since=' + since);
      const j = await r.json();
      if (!r.ok) { note('error ' + r.status + ': ' + j.error); since = 0; await sleep(1000); continue; }
      if (j.missed) note('missed ' + j.missed + ' updates (away too long)');
      if (j.updates.length === 0) note('(hold timed out, nothing new: asking again)');
      j.updates.forEach(show);
      since = j.id;
    } catch (e) { note('connection failed, retrying in 1s'); await sleep(1000); }
  }
})();"#,
    )
}

/// What a [`follow`] run saw, for the demo and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowReport {
    /// `GET /data` requests made.
    pub requests: u64,
    /// Updates received.
    pub updates: u64,
    /// Answers that carried nothing (the hold ran out).
    pub empty: u64,
    /// Updates the server said were lost to us.
    pub missed: u64,
    /// TCP connections opened (1 while keep-alive holds).
    pub connections: u64,
}

/// Follows the feed at `addr` from id `since`, calling `on_update` for each
/// update, until `want` updates arrived or `token` is cancelled. `hold` is
/// the server's hold; the client waits that plus [`CLIENT_MARGIN`] per
/// request before it calls the request lost.
pub async fn follow(
    addr: SocketAddr,
    mut since: u64,
    want: u64,
    hold: Duration,
    token: CancellationToken,
    mut on_update: impl FnMut(&Update),
) -> Result<FollowReport, ClientError> {
    let mut client = HttpClient::new(addr);
    let mut report = FollowReport::default();
    while report.updates < want {
        let path = format!("/data?since={since}");
        let reply = tokio::select! {
            () = token.cancelled() => break,
            r = tokio::time::timeout(hold + CLIENT_MARGIN, client.get(&path, &[])) => match r {
                Ok(reply) => reply?,
                Err(_) => {
                    // The answer is overdue: the connection is probably
                    // dead. Drop it and ask again on a new one.
                    report.connections += client.connections;
                    client = HttpClient::new(addr);
                    continue;
                }
            },
        };
        report.requests += 1;
        if !reply.status.is_success() {
            let err: serde_json::Value = reply.json().unwrap_or_default();
            return Err(ClientError::Io(std::io::Error::other(format!(
                "server answered {}: {}",
                reply.status, err["error"]
            ))));
        }
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
    report.connections += client.connections;
    Ok(report)
}

/// Where `serve` listens by default (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7091";

/// How long the server holds a request with nothing new before answering
/// `{"data": null}`. Shorter than the 30 to 60 second idle timeouts common in
/// proxies and load balancers, so an idle hold is answered by us rather than
/// cut by something in between with an error page.
pub const HOLD: Duration = Duration::from_secs(25);

/// How much longer than the hold the client waits for an answer before it
/// gives up on the request: the hold plus a network round trip or two.
pub const CLIENT_MARGIN: Duration = Duration::from_secs(5);

/// What the server is configured with. Tests shorten the hold.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a poll with nothing new is held before it is answered
    /// `{"data": null}`. Default [`HOLD`], 25 s: under the 30 to 60 s after
    /// which proxies cut a silent request, so the hold ends with our answer
    /// rather than their error page.
    pub hold: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { hold: HOLD }
    }
}
