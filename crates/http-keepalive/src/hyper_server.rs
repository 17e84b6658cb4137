//! The same routes served by hyper 1.x: what a production HTTP/1.1 server
//! does for you.
//!
//! Compare with [`crate::server`]: the accept loop, the connection cap and the
//! graceful shutdown are ours in both, but here hyper's `http1::Builder`
//! parses, frames, keeps connections alive, answers pipelined requests in
//! order, caps the head size (431) and times out slow heads. What hyper does
//! *not* do is cap requests per connection; the service does that by adding
//! `Connection: close` to a response, which hyper honours. Nor does hyper
//! close gently: when it ends a connection it drops the socket, and if the
//! client has pipelined more requests than it will answer, the unread bytes
//! make the kernel send a reset that can destroy answers already sent. So we
//! take the socket back from hyper and close it as the hand-written server
//! does ([`crate::server`]'s lingering close). It also lets through a body
//! that never arrives and an HTTP/1.1 request without `Host`; [`handle`]
//! answers those 408 and 400, as the hand-written server does.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use accept_policy::AcceptErrors;
use accept_policy::busy::{HTTP_503, Refusals};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::server::lingering_close;
use crate::{Config, Reply, route};

/// Serves connections from `listener` with hyper until `token` is cancelled,
/// then asks every connection to shut down gracefully (finish the request in
/// flight, close when idle) and waits up to [`Config::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    config: Config,
    token: CancellationToken,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        // hyper's header timeout runs whenever it waits for a head, so it is
        // also the idle timeout of a kept connection. It closes without a 408.
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_header_size(config.max_head);
    let builder = Arc::new(builder);
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let refusals = Refusals::default();
    let mut accept_errors = AcceptErrors::new("hyper: accept failed", |line| warn!("{line}"));
    // Set when the listener breaks: the open connections are still given
    // their grace, then the error is returned.
    let mut broken = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => break,
            // Chapter 1, "When accept fails": the same answers in every loop.
            accepted = accept_errors.accept(&listener) => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                        broken = Some(e);
                        break;
                }
            },
        };
        // Past the cap: 503 at once, as the hand-written server does.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refusals.turn_away(stream, HTTP_503, &tracker);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (builder, token) = (Arc::clone(&builder), token.clone());
        tracker.spawn(async move {
            let _permit = permit;
            // Counts the requests on this connection, for the per-connection cap.
            let served = Arc::new(AtomicUsize::new(0));
            let service = service_fn(move |req| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                // Boxed so the connection is `Unpin`, which taking the
                // socket back at the end (`poll_without_shutdown`) needs.
                Box::pin(handle(req, config, n >= config.max_requests))
            });
            let mut conn = builder.serve_connection(TokioIo::new(stream), service);
            // `poll_without_shutdown` runs the connection like awaiting it
            // does, but leaves the socket open at the end, so we can close
            // it properly ourselves.
            let result = tokio::select! {
                r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
                () = token.cancelled() => {
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                    std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
                }
            };
            match result {
                Ok(()) => {
                    let stream = conn.into_parts().io.into_inner();
                    lingering_close(stream, config.linger).await;
                }
                Err(e) => debug!(%peer, "hyper connection ended: {e}"),
            }
        });
    }
    drop(listener);
    tracker.close();
    if timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        warn!("hyper connections still open after {:?}", config.shutdown_grace);
    }
    info!("hyper server stopped");
    broken.map_or(Ok(()), Err)
}

/// One request: read the body (bounded), route, wait if the route says so,
/// and build the response. hyper adds `Date`, frames the body, and leaves the
/// body out for `HEAD`.
async fn handle(
    req: Request<Incoming>,
    config: Config,
    last_on_connection: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
        let reply = Reply::text(400, "an HTTP/1.1 request needs a Host header\n");
        return Ok(response(reply, true));
    }
    let body = match read_body(req, config).await {
        Ok(b) => b,
        Err((status, why)) => return Ok(response(Reply::text(status, why), true)),
    };
    let reply = route(method.as_str(), &target, &body, config.max_slow);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    Ok(response(reply, last_on_connection))
}

/// The body, or the status and reason to refuse it with: 413 if it is (or
/// claims to be) over the limit, 400 if it is malformed, 408 if it has not
/// all arrived within the header timeout (the hand-written server gives a
/// body the same time).
async fn read_body(req: Request<Incoming>, config: Config) -> Result<Bytes, (u16, &'static str)> {
    const TOO_LARGE: (u16, &str) = (413, "request body larger than the limit\n");
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(Bytes::new());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > config.max_body) {
        return Err(TOO_LARGE);
    }
    // Without a Content-Length (a chunked body) the limit is enforced as the
    // bytes arrive. Any other error is a malformed body or a client that
    // vanished mid-body (nobody reads the 400 then, and that is fine).
    let body = Limited::new(req.into_body(), config.max_body).collect();
    match timeout(config.header_timeout, body).await {
        Err(_) => Err((408, "request body not received in time\n")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(TOO_LARGE),
        Ok(Err(_)) => Err((400, "malformed request body\n")),
    }
}

fn response(reply: Reply, close: bool) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Some(allow) = reply.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
