//! The accept loop every axum lesson (5 to 10) runs on.
//!
//! The usual way to run an axum app is `axum::serve(listener, app)`: it
//! accepts connections and hands each to hyper. It has no settings, and two
//! that a server open to the network needs are missing:
//!
//! * **A limit on how long a client may take to send a request head.** A
//!   client that sends `GET / HTTP/1.1` and then one header every few seconds
//!   (a "slowloris") holds a connection, a task and its buffers forever;
//!   a few thousand of them take a server down without finishing a request.
//! * **A limit on connections.** Each costs a task and buffers.
//!
//! So [`serve`] writes the loop out with hyper and hyper-util, the crates axum
//! is built on. Chapter 10 walks through it; lesson 4 builds the same limits
//! by hand.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to send a request's head (request line and
/// headers), counted from the moment the server starts waiting for it. hyper
/// also starts this clock while a kept-alive connection waits for its next
/// request, so it is the idle timeout too. It does not run while a handler
/// works or a response streams: a held long poll or an open event stream is
/// not waiting for a head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once. The loop takes a slot before it accepts, so
/// past the cap new clients wait in the kernel's listen backlog (their
/// connect succeeds, their request waits) until a connection closes. The
/// feed lessons hold one per subscriber, and chapter 11 follows them with
/// 1,000.
pub const MAX_CONNECTIONS: usize = 4096;

/// How long [`serve`] waits, after the token is cancelled, for requests in
/// flight to finish before it returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// After a failed `accept` (out of file descriptors, say), wait this long
/// before trying again rather than spinning on the same error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How [`serve`] runs connections. Lessons take the defaults or set their
/// own; tests shorten them.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// Turn Nagle's algorithm off on each accepted socket (`TCP_NODELAY`).
    /// Off by default, as in `axum::serve`; chapter 11 shows what it costs a
    /// server that sends small messages close together.
    pub nodelay: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_grace: SHUTDOWN_GRACE,
            nodelay: false,
        }
    }
}

/// Serves `app` on `listener` until `token` is cancelled, then stops
/// accepting, closes idle kept-alive connections, lets requests in flight
/// finish, and returns, giving up on them after the shutdown grace.
///
/// Connections that became WebSockets are no longer HTTP: they are not
/// waited for (the WebSocket lessons close those themselves), and they give
/// their slot back at the upgrade (those lessons cap them with their own
/// `MAX_CONNECTIONS`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    token: CancellationToken,
    config: ServeConfig,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The timeout needs a timer to count with; without one hyper panics.
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    loop {
        // A slot first, then a connection: at the cap we stop accepting.
        let slot = tokio::select! {
            () = token.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!("accept failed ({e}); trying again shortly");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stop = token.clone();
        tracker.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // An error ends this connection only (garbage, a vanished
            // client, a header timeout); hyper answered what deserved it.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    // Finish the request in flight, if any, then close;
                    // an idle kept-alive connection closes at once.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tokio::select! {
        () = tracker.wait() => {}
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("requests still open after {:?}; stopping anyway", config.shutdown_grace);
        }
    }
    Ok(())
}
