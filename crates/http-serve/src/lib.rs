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
//! * **A limit on how long the body may take once the head is in.** The
//!   header timeout stops counting when the head is complete; a client that
//!   sends `Content-Length: 16000` and then nothing would hold its
//!   connection for as long as it likes. [`BODY_TIMEOUT`] ends that with 408.
//! * **A limit on how long a write may make no progress.** A client that
//!   stops reading an event stream (or a WebSocket) leaves the server blocked
//!   in a write, holding the connection and megabytes of kernel buffer.
//!   [`WRITE_TIMEOUT`] closes it.
//! * **A limit on connections**, each of which costs a task and buffers, and
//!   an answer for the client who arrives when the limit is reached: 503 at
//!   once, not a hang in the listen backlog.
//! * **`Host` on every HTTP/1.1 request** (RFC 9112 section 3.2): hyper lets a
//!   request without one through, so [`serve`] answers it 400.
//!
//! So [`serve`] writes the loop out with hyper and hyper-util, the crates axum
//! is built on. Chapter 10 walks through it; lesson 4 builds the same limits
//! by hand.
//!
//! **TLS, optionally.** With [`ServeConfig::tls`] set, each accepted socket
//! does a TLS handshake (rustls, lesson 13) before hyper sees a byte, under
//! [`ServeConfig::handshake_timeout`]; a failed or stalled handshake is
//! logged and closes that connection only. The same app is then served as
//! `https://` (and its WebSockets as `wss://`) without a line of it changing.
//! [`throwaway_tls`] makes a certificate for `localhost` and `127.0.0.1`
//! with lesson 13's throwaway CA, for the lessons' `serve --tls`. (Both come
//! with the `tls` cargo feature, on by default.)

#[cfg(feature = "tls")]
pub mod https;
#[cfg(not(feature = "tls"))]
mod no_tls;

#[cfg(feature = "tls")]
pub use https::{HANDSHAKE_TIMEOUT, TlsConfig, throwaway_tls};
#[cfg(not(feature = "tls"))]
pub use no_tls::{HANDSHAKE_TIMEOUT, TlsConfig};
#[cfg(not(feature = "tls"))]
use no_tls::{TlsAcceptor, tls_handshake};
#[cfg(feature = "tls")]
use tokio_rustls::TlsAcceptor;

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use accept_policy::busy::{HTTP_503, Refusals};
use accept_policy::{AcceptErrors, FailureLog};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// How long a client has to send a request's head (request line and
/// headers), counted from the moment the server starts waiting for it. hyper
/// also starts this clock while a kept-alive connection waits for its next
/// request, so it is the idle timeout too. It does not run while a handler
/// works or a response streams: a held long poll or an open event stream is
/// not waiting for a head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request's body may take to arrive, counted from the moment its
/// head was read. The lessons take bodies of at most 16 KiB, which even a
/// slow link delivers in well under a second; ten seconds is generous for
/// any honest client and short enough that a silent body cannot hold a slot
/// for long. Past it the request is answered 408 and the connection closed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a write may make no progress before the connection is closed.
/// A write waits only when the kernel's send buffer is full, which means the
/// peer's receive buffer is full too: megabytes unread. A live client that
/// is merely slow drains some of it within seconds; one that has stopped
/// reading never does. It also covers WebSockets: an upgraded connection
/// writes through the same socket.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once. Past the cap a new client is answered
/// `503 Service Unavailable` with `Retry-After` at once and closed, so it
/// learns the server is full instead of hanging in the kernel's listen
/// backlog. The feed lessons hold one per subscriber, and chapter 11
/// follows them with 1,000.
pub const MAX_CONNECTIONS: usize = 4096;

/// hyper's limit on what it buffers per connection, for reading a request
/// head and for queueing a response the client has not taken yet (its
/// default is about 400 KiB). For a client that stops reading an event
/// stream, this is what the server holds in memory on top of the kernel's
/// buffers until [`WRITE_TIMEOUT`]: 64 KiB is a dozen events of the largest
/// size the feed takes, and well over any request head the lessons accept.
pub const MAX_BUFFER: usize = 64 * 1024;

/// How long [`serve`] waits, after the token is cancelled, for requests in
/// flight to finish before it returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How [`serve`] runs connections. Lessons take the defaults or set their
/// own; tests shorten them.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How long a client has to send a request head, and how long a
    /// kept-alive connection may sit idle ([`HEADER_TIMEOUT`], 10 s).
    pub header_timeout: Duration,
    /// How long a request body may take once its head is in; then 408
    /// ([`BODY_TIMEOUT`], 10 s).
    pub body_timeout: Duration,
    /// How long a write may make no progress before the connection is
    /// closed ([`WRITE_TIMEOUT`], 30 s).
    pub write_timeout: Duration,
    /// Connections served at once; past it a new client gets 503
    /// ([`MAX_CONNECTIONS`], 4,096).
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight ([`SHUTDOWN_GRACE`],
    /// 5 s).
    pub shutdown_grace: Duration,
    /// Turn Nagle's algorithm off on each accepted socket (`TCP_NODELAY`).
    /// Off by default, as in `axum::serve`; chapter 11 shows what it costs a
    /// server that sends small messages close together.
    pub nodelay: bool,
    /// Terminate TLS with these settings before HTTP (`None`: plain HTTP,
    /// the default). Lesson 13's `tls::server_config` or [`throwaway_tls`]
    /// makes one; its ALPN must offer `http/1.1`, the only HTTP served here.
    pub tls: Option<Arc<TlsConfig>>,
    /// How long a TLS client has from connecting to the end of its
    /// handshake ([`HANDSHAKE_TIMEOUT`], 10 s). Unused without `tls`.
    pub handshake_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_grace: SHUTDOWN_GRACE,
            nodelay: false,
            tls: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
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
/// `MAX_CONNECTIONS`). They keep the write timeout: it lives in the socket.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    token: CancellationToken,
    config: ServeConfig,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The timeout needs a timer to count with; without one hyper panics.
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    http.max_buf_size(MAX_BUFFER);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let refusals = Refusals::default();
    let mut accept_errors = AcceptErrors::new("accept failed", |line| tracing::warn!("{line}"));
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    let handshake_failures =
        Arc::new(std::sync::Mutex::new(FailureLog::new("TLS handshake failed")));
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
        // A slot, or a quick 503: a full server says so.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refusals.turn_away(stream, HTTP_503, &tracker);
            continue;
        };
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let write_timeout = config.write_timeout;
        let service = Handler { app: app.clone(), body_timeout: config.body_timeout };
        let (http, stop) = (http.clone(), token.clone());
        let (acceptor, handshake_timeout) = (acceptor.clone(), config.handshake_timeout);
        let handshake_failures = Arc::clone(&handshake_failures);
        tracker.spawn(async move {
            let Some(acceptor) = acceptor else {
                run_connection(&http, WriteTimeout::new(stream, write_timeout), service, stop)
                    .await;
                drop(slot);
                return;
            };
            // The handshake has its own deadline: hyper's header timeout
            // starts only once hyper has the socket, and rustls would wait
            // for a ClientHello for ever. Shutdown drops a connection still
            // mid-handshake.
            let handshake = tokio::time::timeout(
                handshake_timeout,
                tls_handshake(stream, &acceptor, write_timeout),
            );
            let outcome = tokio::select! {
                outcome = handshake => outcome,
                () = stop.cancelled() => return,
            };
            let failure = match outcome {
                Ok(Ok(Some(tls))) => return run_connection(&http, tls, service, stop).await,
                Ok(Ok(None)) => format!("{peer}: plain HTTP on the TLS port; answered 400"),
                Ok(Err(e)) => format!("{peer}: {e}"),
                Err(_) => format!("{peer}: not finished within {handshake_timeout:?}; closed"),
            };
            // One line per few seconds however many fail: a scanner or a
            // misconfigured client must not flood the log.
            let line =
                handshake_failures.lock().unwrap_or_else(|p| p.into_inner()).failed(&failure);
            if let Some(line) = line {
                tracing::warn!("{line}");
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
    broken.map_or(Ok(()), Err)
}

/// The server's side of a TLS handshake. A first byte that is a capital
/// letter is a plain-HTTP request on the TLS port (a TLS record starts with
/// `0x16`): it gets lesson 13's readable 400 instead of a binary alert, and
/// `Ok(None)`.
#[cfg(feature = "tls")]
async fn tls_handshake(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    write_timeout: Duration,
) -> io::Result<Option<tokio_rustls::server::TlsStream<WriteTimeout>>> {
    // Peek, don't read: if it is TLS, rustls must see the first byte too.
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase() {
        tls::answer_plain_http(stream).await;
        return Ok(None);
    }
    acceptor.accept(WriteTimeout::new(stream, write_timeout)).await.map(Some)
}

/// Serves HTTP/1.1 on one connection, plain or TLS, until it ends or `stop`
/// is cancelled.
async fn run_connection<I>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: Handler,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http.serve_connection(TokioIo::new(io), service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    // An error ends this connection only (garbage, a vanished client, a
    // header timeout, a stalled write); hyper answered what deserved it.
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            // Finish the request in flight, if any, then close; an idle
            // kept-alive connection closes at once.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// What hyper calls for each request: checks `Host`, gives the body its
/// deadline, and runs the app.
#[derive(Debug, Clone)]
struct Handler {
    app: Router,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut app = self.app.clone();
        let body_timeout = self.body_timeout;
        Box::pin(async move {
            if req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    "an HTTP/1.1 request needs a Host header\n",
                ));
            }
            // The app reads the body through a deadline. If it fires, the
            // app sees a body error and answers as it does for any unreadable
            // body (400, in its own shape); we then say what really happened:
            // 408, and the connection closes, since the rest of the body
            // may still be on its way.
            let expired = Arc::new(AtomicBool::new(false));
            let req = req
                .map(|body| Body::new(DeadlineBody::new(body, body_timeout, Arc::clone(&expired))));
            let mut response = app.call(req).await?;
            if expired.load(Ordering::Relaxed) {
                *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that must arrive in full before a deadline, counted from
/// when the head was read. Past it, reading the body is an error, and
/// `expired` tells [`Handler`] to answer 408.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration, expired: Arc<AtomicBool>) -> Self {
        Self { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit, expired }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.expired.store(true, Ordering::Relaxed);
        let limit = self.limit;
        Poll::Ready(Some(Err(format!("request body not received within {limit:?}").into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail with `TimedOut` once one has waited
/// `limit` without the peer taking a byte. The clock starts when a write
/// first finds the send buffer full and stops at the next byte written.
/// hyper and tungstenite see an ordinary I/O error and close the connection.
struct WriteTimeout {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteTimeout {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// Called with what a write returned: progress resets the clock, a
    /// wait starts it (once) and fails when it runs out.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read nothing for {limit:?}"),
        )))
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
