//! Lesson 7: Server-Sent Events. The client makes one `GET /events` and the
//! server never finishes the response: it writes each update into it as a
//! small `text/event-stream` block the moment it is published. One request,
//! one connection, and per update only the event's own bytes.
//!
//! * `cargo run -p sse` runs the demo: a server on a free port, a Rust
//!   `EventSource` following it through a wire tap, a publisher, a dropped
//!   connection and a resume with `Last-Event-ID`, and the cost per update.
//! * `cargo run -p sse -- serve` serves on 127.0.0.1:7092 until Ctrl-C; open
//!   <http://127.0.0.1:7092/> in a browser, or watch the raw stream with
//!   `curl -N http://127.0.0.1:7092/events` while publishing with
//!   `curl -H 'Content-Type: application/json' -d '{"text":"hi"}' http://127.0.0.1:7092/update`.
//! * `cargo run -p sse -- client` follows a running server.
//!
//! What the stream promises: every event is named (`update` for JSON,
//! `text` for a string payload, `missed` and `reset` for trouble) and carries
//! an `id:`; the stream starts with `retry:`; a comment line keeps idle
//! connections alive every [`KEEP_ALIVE`]; a reconnecting client that sends
//! `Last-Event-ID` gets exactly what it missed out of the feed's bounded
//! history; a subscriber too slow to read is dropped instead of growing the
//! server's memory, and comes back with `Last-Event-ID`.
//!
//! This file is the server, then the client ([`follow`]); the event-stream
//! parser the client uses, which follows the HTML specification, is
//! [`parser`], so the tests and the benchmarks read streams the same way.

pub mod parser;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use feed::client::{ClientError, HttpClient};
use feed::{Feed, FeedError, Subscription, Update};
use http_body_util::BodyExt;
use http_serve::ServeConfig;
use parser::{Event, Parser};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The whole application: `/events` (also at `/sse`, the path the notes'
/// client uses), `/update`, the page, and the shared extras (`/stats`, JSON
/// 404, counters). `token` ends the streams.
///
/// Panics if `config.keep_alive` is zero: a stream needs a real interval,
/// and saying so here, at start, beats a panic on the first subscriber.
pub fn router(feed: Feed, config: Config, token: CancellationToken) -> Router {
    assert!(!config.keep_alive.is_zero(), "sse::Config::keep_alive must be above zero");
    let state = AppState { feed: feed.clone(), config, token };
    let router = Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/sse", get(events))
        .route("/update", post(update))
        .with_state(state);
    feed::http::add_stats_and_fallbacks(router, &feed)
}

/// Serves `feed` on `listener` until `token` is cancelled, on the accept loop
/// every axum lesson shares (`http-serve`). Cancelling also ends every open
/// stream, so shutdown does not wait for clients that never hang up.
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
/// ends open streams on shutdown.
#[derive(Debug, Clone)]
struct AppState {
    feed: Feed,
    config: Config,
    token: CancellationToken,
}

/// `POST /update`: check the body, publish it; every stream gets it.
async fn update(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Update>, FeedError> {
    let data = feed::http::read_update(&headers, body).await?;
    Ok(Json((*app.feed.publish(data)).clone()))
}

/// `GET /events`: a response that does not end. It opens with `retry:`,
/// replays what a resuming client missed, then follows the feed live.
async fn events(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, FeedError> {
    let last_id = feed::http::parse_last_event_id(&headers)?;
    let mut first = VecDeque::new();
    first.push_back(format!("retry: {}\n\n", app.config.retry.as_millis()));
    // Catch-up and live queue come from one call, under one lock: nothing
    // published in between is lost or sent twice.
    let (catch_up, sub) = match app.feed.subscribe(last_id, app.config.queue) {
        Ok(pair) => pair,
        Err(FeedError::Ahead { since, newest }) => {
            // The client's ids come from before a server restart. A 4xx
            // would make EventSource give up for good; tell it instead, and
            // start it afresh. `id: 0` resets its cursor, so a reconnect
            // asks for everything this server has.
            let note = serde_json::json!({ "last_event_id": since, "newest": newest });
            first.push_back(format!("event: reset\nid: 0\ndata: {note}\n\n"));
            app.feed.subscribe(None, app.config.queue)?
        }
        Err(e) => return Err(e),
    };
    if catch_up.missed > 0 {
        // The id stays the client's own: it has not got anything newer yet.
        let id = last_id.unwrap_or(0);
        let missed = catch_up.missed;
        first.push_back(format!("event: missed\nid: {id}\ndata: {{\"missed\":{missed}}}\n\n"));
    }
    for u in &catch_up.updates {
        first.push_back(frame(u));
    }
    app.feed.counters().delivered.fetch_add(catch_up.updates.len() as u64, Ordering::SeqCst);

    let mut keep_alive =
        tokio::time::interval_at(Instant::now() + app.config.keep_alive, app.config.keep_alive);
    // After a stall, one comment is enough; no burst of catch-up ticks.
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let subscriber =
        Subscriber { first, sub, keep_alive, token: app.token.clone(), feed: app.feed.clone() };
    let chunks = futures_util::stream::unfold(subscriber, Subscriber::next_chunk);
    let body = Body::from_stream(chunks);
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    // Never cache a live stream, and ask nginx-style proxies not to buffer
    // it (a buffered stream arrives in lumps, minutes late).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// One event block for an update. A JSON string payload goes out as text
/// (event `text`), one `data:` line per line of it, because a raw newline
/// inside a data line would end the field; `EventSource` joins the lines
/// with `\n` again. Anything else goes out as one line of JSON (`update`).
pub fn frame(u: &Update) -> String {
    let (name, text) = match &u.data {
        Value::String(s) => ("text", s.clone()),
        other => ("update", other.to_string()),
    };
    let mut out = format!("event: {name}\nid: {}\n", u.id);
    // CRLF, CR and LF all end a line in an event stream; split on each.
    for line in text.replace("\r\n", "\n").split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// One open `/events` response: what it sends first (`retry:`, then the
/// catch-up), its live queue, its keep-alive timer. The response body is the
/// stream of [`Subscriber::next_chunk`]s.
struct Subscriber {
    first: VecDeque<String>,
    sub: Subscription,
    keep_alive: Interval,
    token: CancellationToken,
    feed: Feed,
}

impl Subscriber {
    /// The next piece of the body, or `None` to end the response. hyper
    /// asks for the next piece only when it has written the last one, so a
    /// client that stops reading stops this too, and updates pile up in the
    /// bounded queue until the feed drops us.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        let text = match self.first.pop_front() {
            Some(text) => text,
            None => tokio::select! {
                // Shutdown: end the response, so the connection can close and
                // the server can stop. The client reconnects after `retry`.
                () = self.token.cancelled() => return None,
                next = self.sub.rx.recv() => match next {
                    Some(u) => {
                        self.feed.counters().delivered.fetch_add(1, Ordering::SeqCst);
                        // The stream is not idle: no comment needed until a
                        // whole interval passes without an event.
                        self.keep_alive.reset();
                        frame(&u)
                    }
                    // The feed dropped us: our queue was full. End the
                    // response; the client resumes with Last-Event-ID.
                    None => {
                        let queue = self.sub.rx.max_capacity();
                        tracing::info!("dropped a subscriber that fell {queue} updates behind");
                        return None;
                    }
                },
                _ = self.keep_alive.tick() => ": keep-alive\n\n".to_owned(),
            },
        };
        self.feed.counters().body_bytes.fetch_add(text.len() as u64, Ordering::SeqCst);
        Some((Ok(Bytes::from(text)), self))
    }
}

async fn page() -> Html<String> {
    feed::http::page(
        "Server-Sent Events",
        r#"// The browser does it all: one request, named events, reconnects with Last-Event-ID.
const es = new EventSource('/events');
es.addEventListener('update', (e) => show({id: e.lastEventId, data: JSON.parse(e.data)}));
es.addEventListener('text', (e) => show({id: e.lastEventId, data: e.data}));
es.addEventListener('missed', (e) => note('missed ' + JSON.parse(e.data).missed + ' updates (away too long)'));
es.addEventListener('reset', () => note('the server restarted; starting afresh'));
es.onopen = () => note('stream open');
es.onerror = () => note('stream lost; the browser reconnects by itself');"#,
    )
}

/// Where `serve` listens by default (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7092";

/// How often the server writes a comment line on an idle stream. Proxies and
/// load balancers close connections that stay silent for 30 to 60 seconds,
/// and a client cannot tell a quiet feed from a dead connection; a comment
/// every 15 s answers both, for 14 bytes.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the stream's `retry:` line asks clients to wait before reconnecting.
/// Short enough to feel live after a server restart, long enough that a
/// thousand clients do not hammer a server that is still coming up.
pub const RETRY: Duration = Duration::from_secs(2);

/// Updates queued for one subscriber before it counts as too slow and is
/// dropped. Each queued update is an `Arc` (a pointer, the payload is shared),
/// but a client that stopped reading would let the queue grow forever; 64 is
/// a burst of publishing well beyond what a live reader falls behind by.
pub const QUEUE: usize = 64;

/// The server's settings. Tests shorten the durations and the queue.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a stream may stay silent before the server writes a comment
    /// line into it, so proxies keep it open and clients can tell a quiet
    /// feed from a dead connection. Default [`KEEP_ALIVE`], 15 s: half the
    /// shortest proxy idle timeout in common use. Must be above zero.
    pub keep_alive: Duration,
    /// What the `retry:` line that opens every stream tells clients to wait
    /// before reconnecting. Default [`RETRY`], 2 s: soon enough to feel live
    /// after a restart, late enough that reconnecting clients do not pile
    /// onto a server that is still starting.
    pub retry: Duration,
    /// How many updates may wait for one subscriber before it counts as too
    /// slow and is dropped (it comes back with `Last-Event-ID`). Default
    /// [`QUEUE`], 64: more than a live reader ever falls behind, few enough
    /// that a stalled one pins little memory.
    pub queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { keep_alive: KEEP_ALIVE, retry: RETRY, queue: QUEUE }
    }
}

/// How a [`follow`] client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long to wait before reconnecting, until the server says otherwise
    /// with `retry:`. Default [`RETRY`], what this server would say anyway.
    pub retry: Duration,
    /// Reconnect if nothing at all (not even a keep-alive comment) arrives
    /// for this long: the connection is probably dead. Default twice
    /// [`KEEP_ALIVE`], so one late comment is forgiven and two are not.
    pub idle_timeout: Duration,
    /// Stop with an error when one event grows past this many bytes before it
    /// ends. Default [`MAX_EVENT_BYTES`], far above anything this feed sends.
    pub max_event_bytes: usize,
}

/// The largest event the client holds while it is being received. The
/// event-stream format has no limit, so without one a server that never
/// ends a line would fill the client's memory. Eight times the largest event
/// this lesson's server writes ([`MAX_FRAME_BYTES`]); past it the client
/// stops with an error, since whatever sends it is not this feed.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The largest event [`frame`] writes for an update the feed accepts (at
/// most `feed::http::MAX_UPDATE_BYTES` of JSON), with room for the `event:`
/// and `id:` lines. Two shapes grow the most: a string of line breaks, each
/// two bytes of JSON (`\r`), becomes a `data: ` line of seven bytes each
/// (3.5 times); and numbers written short (`1e15,`, five bytes) come back
/// from `serde_json` long (`1000000000000000.0,`, nineteen bytes; 3.8 times).
/// Four times the body covers both; `no_accepted_update_frames_past_the_limit`
/// in `tests/sse.rs` frames each shape and checks.
pub const MAX_FRAME_BYTES: usize = 4 * feed::http::MAX_UPDATE_BYTES + 64;
const _: () = assert!(
    MAX_FRAME_BYTES <= MAX_EVENT_BYTES,
    "the client would refuse the largest event the server writes"
);

impl Default for ClientConfig {
    fn default() -> Self {
        // Browsers start at a few seconds; two missed keep-alives mean dead.
        Self { retry: RETRY, idle_timeout: KEEP_ALIVE * 2, max_event_bytes: MAX_EVENT_BYTES }
    }
}

/// What a [`follow`] run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowReport {
    /// Events dispatched (all types).
    pub events: u64,
    /// Of those, feed updates (`update` and `text`).
    pub updates: u64,
    /// Connections made (1 + reconnects).
    pub connections: u64,
    /// Body bytes received, summed over connections.
    pub bytes: u64,
}

/// A Rust `EventSource`: follows `/events` at `addr`, calls `on_event` for
/// each event, reconnects after a drop (waiting the server's `retry:`) with
/// `Last-Event-ID`, until `want` updates arrived or `token` is cancelled.
/// A non-200 answer ends it with an error, as it does in a browser, and so
/// does an event over [`ClientConfig::max_event_bytes`].
pub async fn follow(
    addr: SocketAddr,
    want: u64,
    config: ClientConfig,
    token: CancellationToken,
    mut on_event: impl FnMut(&Event),
) -> Result<FollowReport, ClientError> {
    let mut parser = Parser::new();
    let mut report = FollowReport::default();
    while report.updates < want && !token.is_cancelled() {
        let once =
            stream_once(addr, &mut parser, &mut report, want, &config, &token, &mut on_event);
        // The server answered, but not with a stream: EventSource gives up
        // for good here, and so do we. Anything else (the stream ended, the
        // connection was refused or reset) means the server is gone or
        // restarting: wait and reconnect.
        if let Ok(Some(refusal)) = once.await {
            return Err(ClientError::Io(std::io::Error::other(refusal)));
        }
        if report.updates >= want {
            break;
        }
        parser.reconnected();
        let wait = parser.retry().unwrap_or(config.retry);
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    Ok(report)
}

/// One connection's worth of [`follow`]. `Ok(Some(why))` if the server
/// refused to stream or sent an event too large to hold.
async fn stream_once(
    addr: SocketAddr,
    parser: &mut Parser,
    report: &mut FollowReport,
    want: u64,
    config: &ClientConfig,
    token: &CancellationToken,
    on_event: &mut impl FnMut(&Event),
) -> Result<Option<String>, ClientError> {
    let mut client = HttpClient::new(addr);
    let last_id = parser.last_event_id().to_owned();
    let mut headers = vec![("accept", "text/event-stream")];
    if !last_id.is_empty() {
        headers.push(("last-event-id", &last_id));
    }
    let resp = client.open(hyper::Method::GET, "/events", &headers, None).await?;
    report.connections += 1;
    let is_stream = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if resp.status() != 200 || !is_stream {
        return Ok(Some(format!(
            "not an event stream: {} {:?}",
            resp.status(),
            resp.headers().get(header::CONTENT_TYPE)
        )));
    }
    let mut body = resp.into_body();
    loop {
        let frame = tokio::select! {
            () = token.cancelled() => return Ok(None),
            f = tokio::time::timeout(config.idle_timeout, body.frame()) => match f {
                Err(_) => return Ok(None), // silent too long: reconnect
                Ok(None) => return Ok(None), // the server ended the stream
                Ok(Some(f)) => f?,
            },
        };
        let Ok(bytes) = frame.into_data() else { continue }; // trailers: none expected
        report.bytes += bytes.len() as u64;
        for ev in parser.feed(&bytes) {
            report.events += 1;
            if ev.event == "update" || ev.event == "text" {
                report.updates += 1;
            }
            on_event(&ev);
            if report.updates >= want {
                return Ok(None);
            }
        }
        if parser.pending_bytes() > config.max_event_bytes {
            return Ok(Some(format!(
                "an event over {} bytes without an end: not this feed's stream",
                config.max_event_bytes
            )));
        }
    }
}
