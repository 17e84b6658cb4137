//! The feed's HTTP surface, shared by the three lessons' routers: the errors
//! a client can cause and how each is answered, the checks on what a client
//! sends, the routes every lesson has besides its own (`/stats`, a JSON 404
//! and 405) with the counting behind `/stats`, and the browser page.

use std::sync::atomic::Ordering;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::{Feed, HISTORY};

/// The largest update body accepted, in bytes. The feed carries status
/// messages; a much bigger body is a mistake or an attack, and every byte of
/// it would be copied to every subscriber. 8 KiB leaves room for the
/// 5,000-byte payload that chapter 11 measures every transport with.
/// Answered with 413.
pub const MAX_UPDATE_BYTES: usize = 8 * 1024;

/// What one accepted update can hold in memory at most. The body is parsed
/// into a `serde_json::Value`, which can be far bigger than its text, and the
/// history keeps the parsed value:
///
/// * every value is a `Value` of `size_of::<Value>()` bytes, and a value needs
///   at least two bytes of text (`0,` in `[0,0,0,...]`); doubled, because an
///   array's `Vec` may have up to twice the room it uses;
/// * every non-empty object holds at least one B-tree leaf of
///   [`BTREE_LEAF_BYTES`] (the standard library's `BTreeMap` allocates room
///   for eleven entries at once), and needs at least seven bytes of text
///   (`{"":0},`): the worst shape of all is an array of one-key objects;
/// * strings hold at most their own text.
///
/// The test `a_payload_at_the_limit_has_at_most_one_value_per_two_bytes`
/// checks the bytes-per-value and bytes-per-object premises on the worst
/// shapes. The sum over-counts (no text is both), so it is a ceiling.
pub const UPDATE_WORST_CASE: usize = (MAX_UPDATE_BYTES / 2 + 1) * 2 * size_of::<Value>()
    + (MAX_UPDATE_BYTES / 7 + 1) * BTREE_LEAF_BYTES
    + MAX_UPDATE_BYTES;

/// One leaf of a `BTreeMap<String, Value>`: room for eleven keys and eleven
/// values, and a 16-byte header (parent pointer, index, length).
pub const BTREE_LEAF_BYTES: usize = 16 + 11 * (size_of::<String>() + size_of::<Value>());

/// What the whole history can hold at most: [`HISTORY`] updates, each at most
/// [`UPDATE_WORST_CASE`] (subscribers' queues point at the same updates; they
/// hold no copies). The JSON text alone would be 2 MiB; parsed, a publisher
/// that crafts its payloads can make it a hundred times that. Chapter 6 says
/// what a real feed would do about it.
pub const HISTORY_WORST_CASE: usize = HISTORY * UPDATE_WORST_CASE;
const _: () = assert!(
    HISTORY_WORST_CASE <= 256 * 1024 * 1024,
    "the feed's history can now hold more than 256 MiB; say so in chapter 6"
);

/// What an empty `POST /update` publishes. The notes' clients post with no
/// body at all ("something changed"), and they should keep working.
pub const EMPTY_UPDATE: &str = "updated";

/// Every error a client can cause, each with its status code. Answered as
/// `{"error": "...", "status": N}` so a script can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// `since` was not a whole number.
    #[error("since must be a whole number like since=42, got {0:?}")]
    BadSince(String),
    /// `Last-Event-ID` was not a whole number.
    #[error("Last-Event-ID must be a whole number like 42, got {0:?}")]
    BadLastEventId(String),
    /// The client's id is newer than anything this server published.
    #[error(
        "id {since} is newer than the newest id {newest}: the server restarted; ask again without it"
    )]
    Ahead {
        /// What the client sent.
        since: u64,
        /// The newest id here.
        newest: u64,
    },
    /// The update body was over [`MAX_UPDATE_BYTES`].
    #[error("update body larger than {MAX_UPDATE_BYTES} bytes")]
    TooLarge,
    /// The update body could not be read: a malformed chunked encoding, a
    /// client that vanished mid-body, a body that did not arrive in time.
    #[error("update body could not be read: {0}")]
    BadBody(String),
    /// The update body was not JSON.
    #[error("update body is not JSON: {0}")]
    NotJson(String),
    /// The update came with another content type.
    #[error("updates must be sent as Content-Type: application/json, got {0:?}")]
    WrongType(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// The server is stopping; try again later (or elsewhere).
    #[error("server is shutting down")]
    ShuttingDown,
}

impl FeedError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadSince(_)
            | Self::BadLastEventId(_)
            | Self::Ahead { .. }
            | Self::NotJson(_)
            | Self::BadBody(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::WrongType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for FeedError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Reads `since` out of a raw query string (`since=42&x=y`). No `since` is
/// `Ok(None)`; anything but a whole number is [`FeedError::BadSince`].
pub fn parse_since(query: Option<&str>) -> Result<Option<u64>, FeedError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "since" {
            return value.parse().map(Some).map_err(|_| FeedError::BadSince(value.to_owned()));
        }
    }
    Ok(None)
}

/// Reads the `Last-Event-ID` header a reconnecting `EventSource` sends. No
/// header (or an empty one: the stream never set an id) is `Ok(None)`.
pub fn parse_last_event_id(headers: &HeaderMap) -> Result<Option<u64>, FeedError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().map_err(|_| FeedError::BadLastEventId("<not ASCII>".into()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| FeedError::BadLastEventId(text.to_owned()))
}

/// Reads and checks an update body: `Content-Type: application/json` (415
/// otherwise), at most [`MAX_UPDATE_BYTES`] (413), valid JSON (400). An empty
/// body with no content type publishes [`EMPTY_UPDATE`], for the notes'
/// clients that only say "something changed".
pub async fn read_update(headers: &HeaderMap, body: Body) -> Result<Value, FeedError> {
    // Cheap refusals first, before reading a byte of the body: a declared
    // oversize body, and a type we would refuse whatever the bytes were.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPDATE_BYTES as u64) {
        return Err(FeedError::TooLarge);
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?"));
    if let Some(ct) = content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(FeedError::WrongType(ct.to_owned()));
        }
    }
    // A chunked body has no declared length: `Limited` stops reading one
    // byte past the limit, so memory stays bounded whatever the client sends.
    let bytes = http_body_util::Limited::new(body, MAX_UPDATE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            // Only the limit is "too large"; any other failure to read the
            // body (bad chunk syntax, say) is the request's fault: 400.
            if e.is::<http_body_util::LengthLimitError>() {
                FeedError::TooLarge
            } else {
                FeedError::BadBody(e.to_string())
            }
        })?
        .to_bytes();
    match (content_type, bytes.is_empty()) {
        (None, true) => Ok(Value::String(EMPTY_UPDATE.to_owned())),
        (None, false) => Err(FeedError::WrongType("none".to_owned())),
        (Some(_), _) => {
            serde_json::from_slice(&bytes).map_err(|e| FeedError::NotJson(e.to_string()))
        }
    }
}

/// Middleware that counts requests, 304s and body bytes. Streaming bodies
/// have no size up front; the SSE lesson counts its bytes as it sends them.
async fn count(State(feed): State<Feed>, req: Request, next: Next) -> Response {
    let is_stats = req.uri().path() == "/stats";
    let resp = next.run(req).await;
    if !is_stats {
        let c = feed.counters();
        c.requests.fetch_add(1, Ordering::SeqCst);
        if resp.status() == StatusCode::NOT_MODIFIED {
            c.not_modified.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(n) = HttpBody::size_hint(resp.body()).exact() {
            c.body_bytes.fetch_add(n, Ordering::SeqCst);
        }
    }
    resp
}

/// Adds what every lesson's router has besides its own routes: `GET /stats`
/// (the counters as JSON), a JSON 404 for unknown routes, a JSON 405, and the
/// middleware that counts every request and body byte for `/stats`.
pub fn add_stats_and_fallbacks(router: Router, feed: &Feed) -> Router {
    let for_stats = feed.clone();
    router
        .route("/stats", get(move || async move { Json(for_stats.stats()) }))
        .fallback(|req: Request| async move { FeedError::NotFound(req.uri().path().to_owned()) })
        .method_not_allowed_fallback(|| async { FeedError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(feed.clone(), count))
}

/// The browser page every lesson serves at `/`: a list the feed shows up in,
/// and a form that posts an update. `script` is the lesson's own way of
/// following the feed; it calls `show(update)` for each update and `note(text)`
/// for anything else worth a line. Plain HTML and JavaScript, no build step.
pub fn page(title: &str, script: &str) -> axum::response::Html<String> {
    axum::response::Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}}
#log{{font-family:monospace;white-space:pre-wrap}}</style></head>
<body><h1>{title}</h1>
<form id="f"><input id="t" size="40" value="hello" autofocus>
<button>POST /update</button></form>
<p>Open this page in two tabs; post in one and watch the other. Counters: <a href="/stats">/stats</a></p>
<div id="log"></div>
<script>
const log = document.getElementById('log');
function note(text) {{ log.prepend(new Date().toLocaleTimeString() + '  ' + text + '\n'); }}
function show(u) {{ note('#' + u.id + ' ' + JSON.stringify(u.data)); }}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
document.getElementById('f').onsubmit = async (e) => {{
  e.preventDefault();
  const r = await fetch('/update', {{method: 'POST', headers: {{'Content-Type': 'application/json'}},
    body: JSON.stringify({{text: document.getElementById('t').value}})}});
  if (!r.ok) note('update refused: ' + (await r.json()).error);
}};
{script}
</script></body></html>
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parsing() {
        assert_eq!(parse_since(None), Ok(None));
        assert_eq!(parse_since(Some("x=1")), Ok(None));
        assert_eq!(parse_since(Some("x=1&since=7")), Ok(Some(7)));
        assert!(matches!(parse_since(Some("since=")), Err(FeedError::BadSince(_))));
        assert!(matches!(parse_since(Some("since=-1")), Err(FeedError::BadSince(_))));
        assert!(matches!(parse_since(Some("since=abc")), Err(FeedError::BadSince(_))));
    }

    /// The values in a parsed payload, and the non-empty objects among them.
    fn count(v: &Value) -> (usize, usize) {
        let (mut values, mut objects) = (1, 0);
        let children: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => {
                objects += usize::from(!map.is_empty());
                map.values().collect()
            }
            _ => vec![],
        };
        for child in children {
            let (v, o) = count(child);
            values += v;
            objects += o;
        }
        (values, objects)
    }

    /// The premises of [`UPDATE_WORST_CASE`], on the shapes that pack the
    /// most values (and objects) into [`MAX_UPDATE_BYTES`] of text.
    #[test]
    fn a_payload_at_the_limit_has_at_most_one_value_per_two_bytes() {
        let fill = |open: &str, item: &dyn Fn(usize) -> String, close: &str| {
            let mut text = open.to_owned();
            for i in 0.. {
                let next = format!("{}{}", if i == 0 { "" } else { "," }, item(i));
                if text.len() + next.len() + close.len() > MAX_UPDATE_BYTES {
                    break;
                }
                text.push_str(&next);
            }
            text + close
        };
        let shapes = [
            fill("[", &|_| "0".to_owned(), "]"),
            fill("[", &|_| "[]".to_owned(), "]"),
            fill("[", &|_| "{}".to_owned(), "]"),
            fill("[", &|_| r#"{"":0}"#.to_owned(), "]"),
            fill("[", &|_| "[0]".to_owned(), "]"),
            fill("{", &|i| format!(r#""{i:x}":0"#), "}"),
        ];
        for text in shapes {
            assert!(text.len() <= MAX_UPDATE_BYTES);
            let value: Value = serde_json::from_str(&text).expect("valid JSON");
            let (values, objects) = count(&value);
            let start = &text[..12];
            assert!(values <= MAX_UPDATE_BYTES / 2 + 1, "{values} values in {start:?}...");
            assert!(objects <= MAX_UPDATE_BYTES / 7 + 1, "{objects} objects in {start:?}...");
        }
    }
}

/// What `GET /data` answers in both polling lessons (5 and 6), one shape so
/// that chapter 11 compares like with like. `data` keeps the notes' shape:
/// the newest payload in `updates`, or `null` when there is nothing newer
/// (or a held poll ran out). The rest lets a careful client lose nothing:
/// every update after `since` in order, the id to ask from next, and how
/// many updates it missed for good (the history is bounded).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Poll {
    /// The newest payload in `updates`, or `null`.
    pub data: Option<Value>,
    /// The id to send as `since` next time.
    pub id: u64,
    /// Every update after `since` still in the history, oldest first.
    pub updates: Vec<crate::Update>,
    /// Updates after `since` that fell out of the history: lost to this
    /// client. Non-zero means "you were away too long".
    pub missed: u64,
}

impl Poll {
    /// The answer carrying `updates` (counted as delivered in the feed's
    /// counters), with `id` to ask from next.
    pub fn deliver(feed: &crate::Feed, updates: Vec<crate::Update>, id: u64, missed: u64) -> Self {
        feed.counters().delivered.fetch_add(updates.len() as u64, Ordering::SeqCst);
        Self { data: updates.last().map(|u| u.data.clone()), id, updates, missed }
    }
}
