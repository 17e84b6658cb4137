//! The same routes served by hyper 1.x: what a production HTTP/1.1 server
//! does for you.
//!
//! Compare with [`crate::server`]: the accept loop, the connection cap and the
//! graceful shutdown are ours in both, but here hyper's `http1::Builder`
//! parses, frames, keeps connections alive, answers pipelined requests in
//! order, caps the head size (431) and times out slow heads. What hyper does
//! *not* do is cap requests per connection; the service does that by adding
//! `Connection: close` to a response, which hyper honours.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

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
    loop {
        let permit = tokio::select! {
            () = token.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (builder, token) = (Arc::clone(&builder), token.clone());
        tracker.spawn(async move {
            let _permit = permit;
            // Counts the requests on this connection, for the per-connection cap.
            let served = Arc::new(AtomicUsize::new(0));
            let service = service_fn(move |req| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                handle(req, config, n >= config.max_requests)
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, "hyper connection ended: {e}");
            }
        });
    }
    drop(listener);
    tracker.close();
    if timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        warn!("hyper connections still open after {:?}", config.shutdown_grace);
    }
    info!("hyper server stopped");
    Ok(())
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
    let body = match read_body(req, config.max_body).await {
        Ok(b) => b,
        Err(status) => {
            let reply = Reply::text(status, "request body larger than the limit\n");
            return Ok(response(reply, true));
        }
    };
    let reply = route(method.as_str(), &target, &body, config.max_slow);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    Ok(response(reply, last_on_connection))
}

/// The body, or 413 if it is (or claims to be) over `max`.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, u16> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(Bytes::new());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(413);
    }
    // Without a Content-Length (a chunked body) the limit is enforced as the
    // bytes arrive. An error here is either "over the limit" or the client
    // vanishing mid-body; in the second case nobody reads the 413 anyway.
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(413),
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
