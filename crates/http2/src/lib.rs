//! Lesson 14: HTTP/2, many requests on one connection.
//!
//! HTTP/1.1 answers requests on a connection one after another, so one slow
//! answer holds up every answer behind it (lesson 4's head-of-line
//! blocking). HTTP/2 cuts each request and response into frames tagged with
//! a stream id, so they take turns on one connection and a slow one holds
//! up nobody. This crate serves lesson 4's resources over HTTP/2 with
//! hyper, and shows the frames on the wire.
//!
//! Run it:
//!
//! ```text
//! cargo run -p http2                          # the demo: three streams interleave, frames decoded from the tap
//! cargo run -p http2 -- serve                 # h2c + HTTP/1.1 on 127.0.0.1:7082, TLS (ALPN h2/http1.1) on :7444
//! curl --http2-prior-knowledge http://127.0.0.1:7082/resource/1
//! nghttp -nv http://127.0.0.1:7082/resource/1 # every frame, from an independent client
//! cargo run -p http2 -- client /slow?ms=500 /resource/1 /resource/2
//! ```
//!
//! Read in this order:
//!
//! * [`serve`] and [`connection`] below: the accept loop, how a connection
//!   is told to speak HTTP/2 (the preface on plain TCP, ALPN over TLS), and
//!   the limits HTTP/2 announces in its first SETTINGS frame.
//! * [`handle`] and [`Body`]: one request, lesson 4's [`route`] plus a
//!   `/large` body made as fast as flow control lets it go.
//! * [`frames`]: the 9-byte frame header, and a decoder for what the tap saw.
//! * [`client`]: the client, on the `h2` crate, which lets us see windows,
//!   PINGs and resets.
//! * [`show`]: what the demo and the tests measure through the tap.
//! * [`limits`]: every limit, with why.

pub mod client;
pub mod frames;
pub mod limits;
pub mod show;

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use accept_policy::AcceptErrors;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use http_keepalive::route;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use frames::PREFACE;
pub use limits::{Config, PLAIN_ADDR, Stats, TLS_ADDR};

/// The ALPN name of HTTP/2 over TLS. HTTP/2 in clear text has none: the
/// client simply starts with the preface ("prior knowledge").
pub const ALPN_H2: &[u8] = b"h2";

/// Accepts connections until `token` is cancelled; each speaks HTTP/2 or
/// HTTP/1.1 ([`connection`]). With `tls`, every connection first does a TLS
/// handshake and ALPN picks the protocol. On cancel, every HTTP/2
/// connection gets a GOAWAY and its open streams up to
/// `config.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: Config,
    stats: Arc<Stats>,
    token: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut accept_errors = AcceptErrors::new("accept failed", |line| tracing::warn!("{line}"));
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
        // Full: close at once (lesson 13 says why there is no polite "busy"
        // before a TLS handshake; for h2c we keep the same rule).
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let _ = stream.set_nodelay(true);
        let (tls, stats, token) = (tls.clone(), Arc::clone(&stats), token.clone());
        tracker.spawn(async move {
            if let Err(e) = connection(stream, tls, config, stats, token).await {
                tracing::debug!("{peer}: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    if timeout(config.shutdown_grace + Duration::from_secs(1), tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {:?}", config.shutdown_grace);
    }
    broken.map_or(Ok(()), Err)
}

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/2 (h2c with prior knowledge, or ALPN `h2`).
    H2,
    /// HTTP/1.1.
    H1,
}

/// One connection: pick the protocol, then let hyper speak it.
///
/// On plain TCP the first bytes decide: an HTTP/2 client opens with the
/// preface `PRI * HTTP/2.0...`, and no HTTP/1.1 request starts with `PRI`.
/// Over TLS, ALPN decided during the handshake. Either way an HTTP/2 client
/// must send its whole preface within `hello_timeout`: h2 would wait for it
/// for ever, and its PINGs start only after it.
pub async fn connection(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: Config,
    stats: Arc<Stats>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        let mut stream = stream;
        let (proto, first) = hello(&mut stream, &config, &stats).await?;
        return speak(proto, Rewind::new(first, stream), config, stats, token).await;
    };
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    let Ok(tls_stream) = timeout(config.hello_timeout, accept).await else {
        Stats::add(&stats.hello_timeouts, 1);
        anyhow::bail!("no TLS handshake within {:?}", config.hello_timeout);
    };
    let mut tls_stream = tls_stream?;
    let (proto, first) = match tls_stream.get_ref().1.alpn_protocol() {
        // ALPN said h2, and the preface must still come in time. If what
        // comes is not the preface, h2 refuses it.
        Some(ALPN_H2) => (Proto::H2, hello(&mut tls_stream, &config, &stats).await?.1),
        // `http/1.1`, or a client that offered no ALPN at all (openssl
        // s_client without -alpn): HTTP/1.1 is the safe guess, and hyper's
        // header timeout bounds its first request.
        _ => (Proto::H1, Vec::new()),
    };
    speak(proto, Rewind::new(first, tls_stream), config, stats, token).await
}

/// [`sniff`] within `hello_timeout`, counted in `hello_timeouts` if not.
async fn hello<I: AsyncRead + Unpin>(
    io: &mut I,
    config: &Config,
    stats: &Stats,
) -> anyhow::Result<(Proto, Vec<u8>)> {
    match timeout(config.hello_timeout, sniff(io)).await {
        Ok(sniffed) => Ok(sniffed?),
        Err(_) => {
            Stats::add(&stats.hello_timeouts, 1);
            anyhow::bail!("no whole preface or request within {:?}", config.hello_timeout)
        }
    }
}

/// Reads the first bytes until they say which protocol this is: the whole
/// 24-byte preface (HTTP/2), or the first byte that differs from it. The
/// bytes read are returned, for [`Rewind`] to give back to hyper.
async fn sniff<I: AsyncRead + Unpin>(io: &mut I) -> io::Result<(Proto, Vec<u8>)> {
    const PRI: usize = 3;
    let mut first = [0u8; PREFACE.len()];
    let mut n = 0;
    while n < PREFACE.len() {
        let got = io.read(&mut first[n..]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        n += got;
        if first[..n] != PREFACE[..n] {
            // Not `PRI`: HTTP/1.1. `PRI` and then something else: a broken
            // HTTP/2 client, which h2 refuses with its own error.
            let k = n.min(PRI);
            let proto = if first[..k] == PREFACE[..k] { Proto::H2 } else { Proto::H1 };
            return Ok((proto, first[..n].to_vec()));
        }
    }
    Ok((Proto::H2, first.to_vec()))
}

/// A connection with the bytes [`sniff`] already read put back in front, so
/// hyper reads the stream from its first byte.
#[derive(Debug)]
struct Rewind<I> {
    first: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    fn new(first: Vec<u8>, io: I) -> Self {
        Self { first: first.into(), io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.first.is_empty() && buf.remaining() > 0 {
            let n = this.first.len().min(buf.remaining());
            buf.put_slice(&this.first.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serves one connection with hyper in `proto`, until it ends or `token`
/// asks it to stop (HTTP/2: GOAWAY, then the open streams finish).
async fn speak<I>(
    proto: Proto,
    io: I,
    config: Config,
    stats: Arc<Stats>,
    token: CancellationToken,
) -> anyhow::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = Arc::clone(&stats);
    let service = service_fn(move |req| handle(req, config, Arc::clone(&s)));
    let io = TokioIo::new(io);
    match proto {
        Proto::H2 => {
            Stats::add(&stats.h2_connections, 1);
            let conn = h2_builder(&config).serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r?,
                () = token.cancelled() => {
                    // Two GOAWAYs (RFC 9113 6.8): the first says "no new
                    // streams soon" with the highest possible id, a PING
                    // flushes out requests already in flight, and the second
                    // names the last stream that will be answered. Streams up
                    // to it finish; anything later is refused.
                    conn.as_mut().graceful_shutdown();
                    timeout(config.shutdown_grace, conn).await??;
                }
            }
        }
        Proto::H1 => {
            Stats::add(&stats.h1_connections, 1);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(config.hello_timeout);
            let conn = builder.serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r?,
                () = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    timeout(config.shutdown_grace, conn).await??;
                }
            }
        }
    }
    Ok(())
}

/// hyper's HTTP/2 server with this lesson's limits. Most of them go to the
/// client in the server's first SETTINGS frame; the demo prints it.
pub fn h2_builder(config: &Config) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_frame_size(config.max_frame_size)
        .max_header_list_size(config.max_header_list_size)
        .initial_stream_window_size(config.stream_window)
        .initial_connection_window_size(config.connection_window)
        .max_send_buf_size(config.max_send_buffer)
        .max_pending_accept_reset_streams(config.max_pending_resets)
        .keep_alive_interval(config.ping_interval)
        .keep_alive_timeout(config.ping_timeout);
    b
}

/// One request, over either protocol: `/large?kb=N` streams N KiB, made
/// chunk by chunk as the client's window allows; everything else is lesson
/// 4's [`route`].
pub async fn handle(
    req: Request<Incoming>,
    config: Config,
    stats: Arc<Stats>,
) -> Result<Response<Body>, Infallible> {
    Stats::add(&stats.requests, 1);
    let method = req.method().clone();
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Some(query) = target.strip_prefix("/large") {
        // `?kb=N`, among any other parameters (a benchmark adds `&n=I` to
        // make each URL its own); 1 MiB if absent or not a number.
        let kb = query
            .trim_start_matches('?')
            .split('&')
            .find_map(|kv| kv.strip_prefix("kb="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1024)
            .min(limits::MAX_LARGE_KB);
        let body = Body::Large { left: kb * 1024, stats };
        return Ok(respond(200, "application/octet-stream", body));
    }
    // Only /echo reads a body: at most lesson 4's limit, and flow control
    // means a client cannot push more than a window ahead of our reading.
    let body = match Limited::new(req.into_body(), http_keepalive::MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(respond(413, "text/plain", Body::full("body too large\n"))),
    };
    let reply = route(method.as_str(), &target, &body, config.max_slow);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = respond(reply.status, reply.content_type, Body::full(reply.body));
    if let Some(allow) = reply.allow {
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    Ok(resp)
}

fn respond(status: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A response body: all at once, or `/large`, made one chunk at a time.
///
/// hyper asks a body for its next chunk only when the stream has window to
/// send it, so a client that stops reading stops the producing too: the
/// server never holds more than the window plus one chunk per stream.
#[derive(Debug)]
pub enum Body {
    /// The whole body (taken on the first poll).
    Full(Option<Bytes>),
    /// `left` more bytes of `/large`; each chunk produced is counted.
    Large {
        /// Bytes still to produce.
        left: u64,
        /// Where the produced bytes are counted.
        stats: Arc<Stats>,
    },
}

impl Body {
    fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Large { left, stats } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(limits::LARGE_CHUNK as u64);
                *left -= n;
                Stats::add(&stats.large_bytes_produced, n);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n as usize])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Large { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Large { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

/// Lesson 13's TLS settings with ALPN offering `h2` first, then
/// `http/1.1`: a client that speaks both gets HTTP/2.
pub fn tls_config(cert: &tls::certs::ServerCert) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = (*tls::server_config(cert)?).clone();
    config.alpn_protocols = vec![ALPN_H2.to_vec(), tls::ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}
