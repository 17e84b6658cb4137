//! Lesson 10: a REST API for todos, with axum and serde_json, that gets HTTP
//! semantics right.
//!
//! The notes' todo server (`GET/POST /todos`, `GET/PUT/DELETE /todos/{id}`,
//! JSON `{"id", "task", "completed"}`, 201 on create, 204 on delete, 404 with
//! `{"error": ...}`) keeps its shape, so a client written against it works
//! unchanged. What changes is everything around the happy path: ids come from
//! a counter and are never reused, a body is checked field by field before it
//! is stored, every failure gets the status code that names it and the same
//! JSON shape, `{"error": ..., "detail": ...}`, and each todo carries a version
//! (sent as an `ETag`) so that a client can say "only if nobody changed it
//! since I looked" (`If-Match`) and get 412 instead of silently overwriting.
//!
//! Run it:
//!
//! * `cargo run -p rest-todo`: the demo. Starts the server on a free port,
//!   walks one todo through its life with a real HTTP client, prints every
//!   request and response, and exits.
//! * `cargo run -p rest-todo -- serve`: the server on 127.0.0.1:7095 until
//!   Ctrl-C, in memory. Add `--db todos.sqlite` to keep the todos in a SQLite
//!   file that survives a restart. Then use curl (the chapter has commands).
//! * `cargo run -p rest-todo -- client list` (or `add TASK`, `get ID`,
//!   `done ID`, `rm ID`): the lesson's own client against a running server.
//!
//! This file reads top to bottom as the chapter does: the router and its
//! handlers, serving, then the types, the one error shape and the extractors
//! that make the handlers short, and the limits. The storage is in [`store`];
//! the HTTP client used by the demo, the tests and the benchmark is
//! [`Client`], in [`client`].

pub mod client;
pub mod store;

use std::io;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_serve::ServeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use client::{Client, HttpResponse};
pub use store::{Expect, MAX_TODOS, MemoryStore, Page, SqliteStore, Store, StoreError};

// ---------------------------------------------------------------------------
// The router and the handlers.
// ---------------------------------------------------------------------------

/// The whole API. Two paths, six handlers, two fallbacks: one for a method a
/// path does not have (405, axum adds the `Allow` header), one for a path
/// that does not exist (404). Both answer in the same JSON as everything else.
pub fn router<S: Store>(store: S) -> Router {
    Router::new()
        .route("/todos", get(list_todos::<S>).post(create_todo::<S>))
        .route(
            "/todos/{id}",
            get(get_todo::<S>)
                .put(replace_todo::<S>)
                .patch(patch_todo::<S>)
                .delete(delete_todo::<S>),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_such_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
}

/// `GET /todos`: a JSON array (the notes' shape), in id order, filtered and
/// paged. `X-Total-Count` says how many matched in all, so a client knows
/// whether to ask for the next page.
async fn list_todos<S: Store>(
    State(store): State<S>,
    Params(query): Params<ListQuery>,
) -> Result<Response, ApiError> {
    if query.limit() > MAX_PAGE {
        let detail = format!("limit must be at most {MAX_PAGE}, not {}", query.limit());
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad query", detail));
    }
    let page = store.list(query).await?;
    Ok(([("x-total-count", page.total.to_string())], Json(page.items)).into_response())
}

/// `GET /todos/{id}`: the todo and its `ETag`, or 404.
async fn get_todo<S: Store>(
    State(store): State<S>,
    TodoId(id): TodoId,
) -> Result<Response, ApiError> {
    let todo = store.get(id).await?.ok_or(StoreError::NotFound(id))?;
    Ok(with_etag(StatusCode::OK, todo))
}

/// `POST /todos`: 201 Created, the new todo in the body, and `Location`
/// saying where it now lives (so the client need not build URLs itself).
async fn create_todo<S: Store>(
    State(store): State<S>,
    Body(new): Body<NewTodo>,
) -> Result<Response, ApiError> {
    check_task(&new.task)?;
    let todo = store.create(new.task, new.completed).await?;
    let location = format!("/todos/{}", todo.id);
    let mut response = with_etag(StatusCode::CREATED, todo);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `PUT /todos/{id}`: replace both fields. 404 if there is no such todo: ids
/// are the server's to give, so a `PUT` never creates one.
async fn replace_todo<S: Store>(
    State(store): State<S>,
    TodoId(id): TodoId,
    headers: HeaderMap,
    Body(new): Body<ReplaceTodo>,
) -> Result<Response, ApiError> {
    check_task(&new.task)?;
    let change = Change { task: Some(new.task), completed: Some(new.completed) };
    let todo = store.update(id, if_match(&headers), change).await?;
    Ok(with_etag(StatusCode::OK, todo))
}

/// `PATCH /todos/{id}`: change only the fields given.
async fn patch_todo<S: Store>(
    State(store): State<S>,
    TodoId(id): TodoId,
    headers: HeaderMap,
    Body(change): Body<Change>,
) -> Result<Response, ApiError> {
    if let Some(task) = &change.task {
        check_task(task)?;
    }
    let todo = store.update(id, if_match(&headers), change).await?;
    Ok(with_etag(StatusCode::OK, todo))
}

/// `DELETE /todos/{id}`: 204 No Content, or 404. Deleting twice is a 404 the
/// second time; the state is the same either way (DELETE is idempotent), only
/// the answer says whether this request was the one that removed it.
async fn delete_todo<S: Store>(
    State(store): State<S>,
    TodoId(id): TodoId,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    store.delete(id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let detail =
        format!("{method} is not allowed on {}; the Allow header lists what is", uri.path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", detail)
}

async fn no_such_route(uri: Uri) -> ApiError {
    let detail = format!("nothing lives at {}; try /todos", uri.path());
    ApiError::new(StatusCode::NOT_FOUND, "no such route", detail)
}

/// Serde has checked the type; this checks the value. Too short or too long
/// is 422 too: the JSON is well formed, its content is not acceptable.
fn check_task(task: &str) -> Result<(), ApiError> {
    let invalid =
        |detail: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid todo", detail);
    if task.trim().is_empty() {
        return Err(invalid("task must not be empty".into()));
    }
    // A task is one line of text. NUL, a newline or an escape sequence
    // (`\u001b[2J` clears a terminal) in it is a client bug or an attack on
    // whoever prints the list later, so it is refused rather than stored.
    if let Some(c) = task.chars().find(|c| c.is_control()) {
        return Err(invalid(format!("task must not contain control characters (found {c:?})")));
    }
    let chars = task.chars().count();
    if chars > MAX_TASK_CHARS {
        return Err(invalid(format!(
            "task is {chars} characters, at most {MAX_TASK_CHARS} allowed"
        )));
    }
    Ok(())
}

/// Reads `If-Match`. Absent or `*`: no condition. Otherwise a list of entity
/// tags, `"v3"` or `"v3", "v4"`; anything that is not one of ours (a weak tag
/// `W/"v3"`, which If-Match must never match, or garbage) can match no current
/// version, so it is kept as a condition that fails: the client gets 412 and
/// refetches, which is the safe side.
fn if_match(headers: &HeaderMap) -> Expect {
    let values: Vec<&str> = headers
        .get_all(header::IF_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if headers.get(header::IF_MATCH).is_none() || values.contains(&"*") {
        return Expect::Any;
    }
    let versions = values
        .iter()
        .filter_map(|tag| tag.strip_prefix("\"v")?.strip_suffix('"')?.parse().ok())
        .collect();
    Expect::OneOf(versions)
}

fn with_etag(status: StatusCode, todo: Todo) -> Response {
    let etag =
        HeaderValue::from_str(&todo.etag()).expect("\"v\" + digits + '\"' is a valid header value");
    let mut response = (status, Json(todo)).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response
}

// ---------------------------------------------------------------------------
// Serving, with graceful shutdown.
// ---------------------------------------------------------------------------

/// Serves the API on `listener` until `token` is cancelled, then stops
/// accepting, lets requests in flight finish (idle keep-alive connections are
/// closed at once), and returns. If some request is still going after
/// [`SHUTDOWN_GRACE`], it returns anyway and the runtime drops the rest.
///
/// The loop is the `http-serve` crate's (chapter 10 walks through it), with
/// this lesson's [`serve_config`].
pub async fn serve<S: Store>(
    listener: TcpListener,
    store: S,
    token: CancellationToken,
) -> io::Result<()> {
    http_serve::serve(listener, router(store), token, serve_config()).await
}

/// How this lesson runs on the loop: at most [`MAX_CONNECTIONS`], requests
/// in flight get [`SHUTDOWN_GRACE`] at shutdown, and Nagle off, since every
/// answer is one complete write. `serve --tls` adds lesson 13's TLS to it.
pub fn serve_config() -> ServeConfig {
    ServeConfig {
        max_connections: MAX_CONNECTIONS,
        shutdown_grace: SHUTDOWN_GRACE,
        nodelay: true,
        ..ServeConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The types on the wire: a todo, and the bodies and query a client sends.
// ---------------------------------------------------------------------------

/// A todo as it is stored and sent. `version` is not in the JSON (the notes'
/// shape stays exactly `{"id","task","completed"}`); it travels in the `ETag`
/// header, which is where HTTP puts "which state of this resource is this".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// Assigned by the server, never reused.
    pub id: u64,
    /// What to do.
    pub task: String,
    /// Whether it is done.
    pub completed: bool,
    /// Starts at 1, goes up by one with every change.
    #[serde(skip)]
    pub version: u64,
}

impl Todo {
    /// The entity tag for this state: the version in quotes, as HTTP wants.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }
}

/// The body of `POST /todos`. `task` is required; `completed` may be left
/// out and is then false (a new todo is usually not done). Unknown fields are
/// an error: `{"taks": "milk"}` is a typo the client wants to hear about.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTodo {
    /// What to do.
    pub task: String,
    /// Whether it is already done (default false).
    #[serde(default)]
    pub completed: bool,
}

/// The body of `PUT /todos/{id}`: a replacement, so every field is required.
/// A `PUT` that left `completed` out would otherwise have to invent a value,
/// which is exactly how the notes stored `undefined`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceTodo {
    /// The new task.
    pub task: String,
    /// The new state.
    pub completed: bool,
}

/// The body of `PATCH /todos/{id}`: only the fields to change. Also what the
/// store applies for a `PUT` (with both fields set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// A new task, if given.
    pub task: Option<String>,
    /// A new state, if given.
    pub completed: Option<bool>,
}

impl Change {
    /// Applies the change and bumps the version: every successful write makes
    /// a new state, and so a new `ETag`, even if the values did not change.
    pub fn apply(self, todo: &mut Todo) {
        if let Some(task) = self.task {
            todo.task = task;
        }
        if let Some(completed) = self.completed {
            todo.completed = completed;
        }
        todo.version += 1;
    }
}

/// The query string of `GET /todos`: `?completed=true&limit=10&offset=20`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only todos in this state.
    pub completed: Option<bool>,
    /// At most this many (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
    /// Skip this many first.
    pub offset: Option<usize>,
}

impl ListQuery {
    /// The page size to use.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE)
    }

    /// How many to skip.
    pub fn offset(&self) -> usize {
        self.offset.unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Errors: one JSON shape for every failure.
// ---------------------------------------------------------------------------

/// Every error response: a status code and `{"error": ..., "detail": ...}`.
/// `error` is short and stable (a client can match on it), `detail` is a
/// sentence for the human reading the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The short, stable description.
    pub error: &'static str,
    /// The long one.
    pub detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self { status, error, detail: detail.into() }
    }
}

/// The JSON of every error, fields in this order (a struct, not a map, so
/// `error` comes first, as in the notes' `{"error": "Todo not found"}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Short and stable.
    pub error: String,
    /// A sentence about this case.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.error.to_owned(), detail: self.detail };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            // 412: the request was fine, but the condition the client
            // attached to it (If-Match) is false now.
            StoreError::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            // 507: the server cannot store this now; the request was
            // fine and nothing was changed, so it may be sent again later.
            StoreError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            StoreError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let error = match e {
            StoreError::NotFound(_) => "todo not found",
            StoreError::Stale { .. } => "precondition failed",
            StoreError::Full(_) => "storage full",
            StoreError::Backend(_) => "storage failed",
        };
        // The client's problems are the client's to read in the answer; the
        // server's own failures must also reach whoever runs it, or a
        // read-only or vanished database fails quietly, one 500 at a time.
        if status.is_server_error() {
            tracing::error!("{e}");
        }
        Self::new(status, error, e.to_string())
    }
}

/// axum's `Json` extractor already tells the failures apart, and each
/// rejection knows its status code: 415 without `Content-Type:
/// application/json`, 400 when the bytes are not JSON at all, 422 when they
/// are JSON of the wrong shape (a field missing, of the wrong type, unknown),
/// 413 when the body is over [`MAX_BODY_BYTES`]. We keep its status and its
/// text and only change the clothes, into our one JSON shape. (Our [`Body`]
/// asks `Json` for a `serde_json::Value`, which any JSON is, and does the
/// shape check itself with the same 422; the arm is here for `Json<T>`.)
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let error = match &r {
            JsonRejection::JsonDataError(_) => "invalid todo",
            JsonRejection::JsonSyntaxError(_) => "body is not JSON",
            JsonRejection::MissingJsonContentType(_) => "unsupported content type",
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "body too large",
            _ => "unreadable body",
        };
        Self { status: r.status(), error, detail: r.body_text() }
    }
}

/// A bad query string (`?completed=maybe`, `?limit=-1`, `?colour=red`) is the
/// client's mistake in the request line: 400.
impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad query", r.body_text())
    }
}

/// `/todos/abc` or `/todos/-1`: ids are positive integers, so this path names
/// no resource at all. That is a 404, the same answer as for an id that does
/// not exist (axum's default would be 400, which blames the syntax of a URL
/// that is perfectly good HTTP).
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(StatusCode::NOT_FOUND, "todo not found", r.body_text())
    }
}

// ---------------------------------------------------------------------------
// Extractors: axum's, with their rejections mapped into ApiError.
// ---------------------------------------------------------------------------

/// A JSON object body, deserialized into `T`, whose rejection is an
/// [`ApiError`]. Handlers take this instead of `axum::Json`, so no handler can
/// forget to map an error.
///
/// Two steps instead of `Json<T>` in one: serde's derived `Deserialize`
/// also accepts a JSON *array* for a struct, field by field in order, so
/// `["milk", true]` would quietly become a todo. A REST body is an object;
/// anything else is refused with 422 before serde sees it.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await?;
        let invalid = |detail: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid todo", detail)
        };
        let kind = match &value {
            serde_json::Value::Object(_) => None,
            serde_json::Value::Array(_) => Some("an array"),
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::Bool(_) => Some("a boolean"),
            serde_json::Value::Null => Some("null"),
        };
        if let Some(kind) = kind {
            return Err(invalid(format!("the body must be a JSON object, not {kind}")));
        }
        let value = T::deserialize(value).map_err(|e| invalid(e.to_string()))?;
        Ok(Self(value))
    }
}

/// `Query<T>` whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The `{id}` in `/todos/{id}`, as a number, or a 404.
#[derive(Debug, Clone, Copy)]
pub struct TodoId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for TodoId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state).await?;
        Ok(Self(id))
    }
}

// ---------------------------------------------------------------------------
// Limits, each with the reason for its value.
// ---------------------------------------------------------------------------

/// Where `serve` listens unless told otherwise: loopback only, the lesson's port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7095";

/// The largest request body accepted: room for the longest valid todo,
/// [`LONGEST_TODO_JSON`] bytes, with some to spare, while a client sending
/// megabytes is refused (413) before the server buffers them.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The longest a valid todo's body can be: a task of [`MAX_TASK_CHARS`]
/// characters, each spelled in JSON the longest way there is (a character
/// outside the Basic Multilingual Plane as two `\uXXXX` escapes, twelve
/// bytes), and `"completed"`. Whitespace between the tokens could make any
/// body longer, but no client writes a todo that way.
pub const LONGEST_TODO_JSON: usize =
    MAX_TASK_CHARS * r"\ud83d\ude00".len() + r#"{"task":"","completed":false}"#.len();
const _: () =
    assert!(LONGEST_TODO_JSON <= MAX_BODY_BYTES, "a valid todo would be refused as too large");

/// The longest task, in characters (not bytes: "ü" counts once). Long enough
/// for any real todo, short enough that a list page stays small.
pub const MAX_TASK_CHARS: usize = 500;

/// How many todos a listing returns when the client does not say `limit`.
/// The notes returned everything; an unbounded response grows with the data,
/// so a bound is there from the start, set high enough that a notes-era
/// client with a short list sees all of it.
pub const DEFAULT_PAGE: usize = 100;

/// The largest `limit` a client may ask for: one page must stay a bounded
/// amount of work and memory however many todos there are.
pub const MAX_PAGE: usize = 1000;

/// After Ctrl-C, how long open requests get to finish before `serve` returns
/// anyway. A client that stalls mid-request must not hold the process forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections served at once (see `http_serve::MAX_CONNECTIONS`). Lower
/// than the feed lessons' default: an API client makes a request and goes,
/// and 512 kept-alive connections is a lot of clients for one process.
pub const MAX_CONNECTIONS: usize = 512;
