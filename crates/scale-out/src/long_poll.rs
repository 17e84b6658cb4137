//! Lesson 6's long-polling route on several instances, two ways, so that
//! HAProxy can put it behind three frontends (chapter 16):
//!
//! * **local**: lesson 6 exactly as it is, each instance with its own feed.
//!   Without stickiness a poll lands on an instance that never heard of the
//!   update posted to another; with cookie stickiness one client always
//!   reaches the same instance, so its own updates and ids make sense to it
//!   (and another client's, posted elsewhere, still do not).
//! * **shared**: lesson 6's waiting ([`long_polling::wait_for_news`]) on a
//!   feed that every instance fills from one Redis Stream, in the stream's
//!   order, so every instance's feed holds the same updates under the same
//!   ids. `POST /update` on any instance appends to the stream. No
//!   stickiness needed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use feed::{Feed, Update};
use redis::streams::StreamReadReply;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use websocket_chat::client::Backoff;

use crate::{Backplane, READ_BATCH, READ_BLOCK, RECONNECT_FIRST, RECONNECT_MAX, REDIS_TIMEOUT};

/// The long-poll updates' stream and the counter of their ids.
pub const LP_STREAM_KEY: &str = "lp:stream";
pub const LP_LAST_ID_KEY: &str = "lp:last-id";

/// Lesson 6's hold, unless the instance is told otherwise (`--hold-ms`;
/// tests shorten it).
pub const HOLD: Duration = long_polling::HOLD;

/// Lesson 6 as it is: this instance's own feed, nobody else's.
pub fn local_router(hold: Duration, token: CancellationToken) -> Router {
    let config = long_polling::Config { hold };
    long_polling::router(Feed::new(feed::HISTORY), config, token)
}

#[derive(Debug, Clone)]
struct Shared {
    feed: Feed,
    backplane: Arc<Backplane>,
    script: redis::Script,
    hold: Duration,
    token: CancellationToken,
}

/// Lesson 6's routes on a feed kept in step through Redis. Starts the task
/// that reads the stream into the feed; it ends with `token`.
pub(crate) fn shared_router(
    backplane: Arc<Backplane>,
    hold: Duration,
    token: CancellationToken,
) -> Router {
    let feed = Feed::new(feed::HISTORY);
    let script = redis::Script::new(crate::APPEND);
    let shared = Shared { feed: feed.clone(), backplane, script, hold, token };
    tokio::spawn(read_into_feed(shared.clone()));
    let router =
        Router::new().route("/data", get(poll)).route("/update", post(update)).with_state(shared);
    feed::http::add_stats_and_fallbacks(router, &feed)
}

/// `GET /data?since=ID`: lesson 6's own wait, on this instance's copy.
async fn poll(State(s): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let since = match feed::http::parse_since(query.as_deref()) {
        Ok(since) => since,
        Err(e) => return e.into_response(),
    };
    match long_polling::wait_for_news(&s.feed, since, s.hold, &s.token).await {
        Ok(poll) => Json(poll).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /update`: checked as lesson 6 checks it, then appended to the
/// stream; the answer is the id Redis gave it. This instance's feed gets it
/// from the stream, like every other instance's.
async fn update(State(s): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let data = match feed::http::read_update(&headers, body).await {
        Ok(data) => data,
        Err(e) => return e.into_response(),
    };
    let mut conn = s.backplane.commands.clone();
    let mut append = s.script.prepare_invoke();
    append.key(LP_STREAM_KEY).key(LP_LAST_ID_KEY);
    append.arg(feed::HISTORY).arg("update").arg(data.to_string());
    match tokio::time::timeout(REDIS_TIMEOUT, append.invoke_async::<u64>(&mut conn)).await {
        Ok(Ok(id)) => Json(Update { id, data }).into_response(),
        _ => {
            let error = serde_json::json!({"error": "Redis did not take the update; try again"});
            (StatusCode::SERVICE_UNAVAILABLE, Json(error)).into_response()
        }
    }
}

/// Reads the stream from the start, in order, into this instance's feed.
/// The feed numbers its updates itself, 1, 2, 3..., and so does the
/// stream: they agree as long as this instance has read every entry, which
/// is true unless it started after the stream was trimmed (counted in
/// `lp_out_of_step`: its ids then differ from the others').
async fn read_into_feed(s: Shared) {
    let counters = &s.backplane.counters;
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(READ_BLOCK + REDIS_TIMEOUT));
    // The stream id read last; kept apart from the feed's newest id, which
    // differs from it if this instance is out of step.
    let mut last = 0u64;
    while !s.token.is_cancelled() {
        let connect = s.backplane.client.get_multiplexed_async_connection_with_config(&config);
        if let Ok(mut conn) = connect.await {
            backoff.reset();
            loop {
                let mut cmd = redis::cmd("XREAD");
                cmd.arg("COUNT").arg(READ_BATCH).arg("BLOCK").arg(READ_BLOCK.as_millis() as u64);
                cmd.arg("STREAMS").arg(LP_STREAM_KEY).arg(format!("{last}-0"));
                let read = cmd.query_async::<Option<StreamReadReply>>(&mut conn);
                let reply = tokio::select! {
                    () = s.token.cancelled() => return,
                    reply = read => match reply { Ok(r) => r, Err(_) => break },
                };
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    let Some(id) = entry.id.split('-').next().and_then(|n| n.parse().ok()) else {
                        continue;
                    };
                    last = id;
                    if id != s.feed.newest_id() + 1 {
                        counters.lp_out_of_step.fetch_add(1, Ordering::Relaxed);
                    }
                    let payload: String = entry.get("payload").unwrap_or_default();
                    s.feed
                        .publish(serde_json::from_str(&payload).unwrap_or(Value::String(payload)));
                }
            }
        }
        tokio::select! {
            () = s.token.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
