//! The hand-written HTTP/1.1 server: every byte of the protocol in plain sight.
//!
//! One task per connection. A connection is a loop: wait for a request (with
//! an idle timeout), read its head (with a header timeout and a size cap),
//! read its body (`Content-Length` only), answer, and either go round again
//! (keep-alive) or close. Requests are answered one at a time, in the order
//! they arrived; that is how HTTP/1.1 pipelining must behave, and it is also
//! where head-of-line blocking comes from.
//!
//! Parsing the head uses `httparse`, the parser hyper uses: it finds the
//! request line and header fields in a byte slice without copying and tells us
//! "incomplete" or "malformed". Everything around it (framing, keep-alive,
//! limits, timeouts, errors) is written out here.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use accept_policy::AcceptErrors;
use accept_policy::busy::{HTTP_503, Refusals};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::{Config, MAX_HEADERS, Reply, reason, route};

/// Serves connections from `listener` until `token` is cancelled, then stops
/// accepting, lets in-flight requests finish (their responses say
/// `Connection: close`), closes idle connections at once, and returns when
/// every connection is gone or after [`Config::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    config: Config,
    token: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    // A permit per connection. When they are all out, a new client is told
    // so at once (503) instead of waiting unanswered in the kernel's backlog.
    // Past the cap, `accept_policy::busy` answers the 503 and closes with a
    // short linger (chapter 1 shows the same policy for lesson 1's loop).
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let refusals = Refusals::default();
    let mut accept_errors = AcceptErrors::new("accept failed", |line| warn!("{line}"));
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refusals.turn_away(stream, HTTP_503, &tracker);
            continue;
        };
        // Nagle's algorithm would hold back a small response while an earlier
        // one is unacknowledged; with pipelining that is a 40 ms stall per
        // response (Linux's delayed ACK). Each response is one write, so
        // sending it at once costs nothing.
        let _ = stream.set_nodelay(true);
        let (config, token) = (config, token.clone());
        tracker.spawn(async move {
            let _permit = permit; // released when this connection ends
            match handle_connection(stream, config, token).await {
                Ok(served) => debug!(%peer, served, "connection closed"),
                Err(e) => debug!(%peer, "connection ended with an error: {e}"),
            }
        });
    }
    drop(listener); // new clients are refused from here on
    tracker.close();
    if timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        warn!("connections still open after {:?}; leaving them", config.shutdown_grace);
    }
    info!("server stopped");
    broken.map_or(Ok(()), Err)
}

/// One parsed request, with its body.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor_version: u8,
    /// What the client asked for, after applying its version's default.
    keep_alive: bool,
    body: Vec<u8>,
}

/// Why reading a request ended without one.
#[derive(Debug)]
enum NoRequest {
    /// Nothing to answer: the client closed between requests, the kept
    /// connection sat idle too long, the server is stopping, or the client
    /// vanished mid-request (nobody is left to read an error).
    Close(&'static str),
    /// The request is bad: answer with this status and message, then close,
    /// because after a framing error we no longer know where the next
    /// request would start.
    Reject(u16, &'static str),
}

/// Serves one connection until it closes. Returns how many requests it served.
async fn handle_connection(
    mut stream: TcpStream,
    config: Config,
    token: CancellationToken,
) -> io::Result<usize> {
    // Bytes read but not yet used. With pipelining it holds the next requests
    // while we answer this one, so nothing the client sent is lost.
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut served = 0;
    loop {
        let request = match read_request(&mut stream, &mut buf, &config, &token).await {
            Ok(r) => r,
            Err(NoRequest::Close(why)) => {
                debug!(served, "closing: {why}");
                return Ok(served);
            }
            Err(NoRequest::Reject(status, why)) => {
                debug!(status, "rejecting a request: {why}");
                let reply = Reply::text(status, format!("{why}\n"));
                stream.write_all(&encode_response(&reply, false, 1, false)).await?;
                lingering_close(stream, config.linger).await;
                return Ok(served);
            }
        };
        served += 1;
        let reply = route(&request.method, &request.target, &request.body, config.max_slow);
        // The slow route waits here, and so does every request pipelined
        // behind it: they sit unread in `buf` (or in the socket) until this
        // response is written. That is head-of-line blocking.
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        // Decide after the wait, so a shutdown that began meanwhile still
        // gets `Connection: close` on this last response.
        let keep_alive =
            request.keep_alive && served < config.max_requests && !token.is_cancelled();
        let head_only = request.method == "HEAD";
        let bytes = encode_response(&reply, head_only, request.minor_version, keep_alive);
        stream.write_all(&bytes).await?;
        if !keep_alive {
            lingering_close(stream, config.linger).await;
            return Ok(served);
        }
    }
}

/// Waits for the next request on a connection and reads it whole.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    config: &Config,
    token: &CancellationToken,
) -> Result<Request, NoRequest> {
    // 1. Idle: nothing of the next request yet. A pipelining client may have
    //    sent it already, in which case `buf` is not empty and we skip this.
    if buf.is_empty() {
        let read = tokio::select! {
            // Biased: a request that has already arrived is still served
            // (its response will say `Connection: close`) even if shutdown
            // began at the same moment.
            biased;
            r = timeout(config.idle_timeout, stream.read_buf(buf)) => r,
            () = token.cancelled() => return Err(NoRequest::Close("server is stopping")),
        };
        match read {
            Err(_) => return Err(NoRequest::Close("idle timeout")),
            Ok(Ok(0)) => return Err(NoRequest::Close("client closed")),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(NoRequest::Close("read error")),
        }
    }

    // 2. The head: read until httparse finds the blank line, within the
    //    header timeout counted from the first byte, and within max_head.
    let deadline = Instant::now() + config.header_timeout;
    let (head_len, method, target, minor_version, connection, content_length) = loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        // Parsing again from the start after each read is quadratic in the
        // head size, but max_head bounds it at a few KiB, and it keeps the
        // code simple. hyper remembers where it stopped instead.
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n <= config.max_head => {
                let method = req.method.unwrap_or_default().to_owned();
                let target = req.path.unwrap_or_default().to_owned();
                let version = req.version.unwrap_or_default();
                let fields = parse_fields(req.headers, version)?;
                break (n, method, target, version, fields.0, fields.1);
            }
            Ok(httparse::Status::Complete(_)) => {
                return Err(NoRequest::Reject(431, "request head larger than the limit"));
            }
            Ok(httparse::Status::Partial) if buf.len() >= config.max_head => {
                return Err(NoRequest::Reject(431, "request head larger than the limit"));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(NoRequest::Reject(431, "too many header fields"));
            }
            Err(httparse::Error::Version) => {
                return Err(NoRequest::Reject(505, "only HTTP/1.0 and HTTP/1.1 are spoken here"));
            }
            Err(_) => return Err(NoRequest::Reject(400, "malformed request line or header")),
        }
        match timeout_at(deadline, stream.read_buf(buf)).await {
            // The slowloris case: bytes trickle in, but the head never ends.
            Err(_) => return Err(NoRequest::Reject(408, "request head not received in time")),
            Ok(Ok(0)) => return Err(NoRequest::Close("client left in the middle of a head")),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(NoRequest::Close("read error in the middle of a head")),
        }
    };

    // 3. The body: exactly Content-Length bytes (none if absent). Refuse an
    //    oversized one before reading it: the header says how big it is.
    if content_length > config.max_body {
        return Err(NoRequest::Reject(413, "request body larger than the limit"));
    }
    buf.drain(..head_len);
    let deadline = Instant::now() + config.header_timeout;
    while buf.len() < content_length {
        match timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Err(NoRequest::Reject(408, "request body not received in time")),
            Ok(Ok(0)) => return Err(NoRequest::Close("client left in the middle of a body")),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(NoRequest::Close("read error in the middle of a body")),
        }
    }
    // Whatever follows the body is the next pipelined request: leave it in buf.
    let body: Vec<u8> = buf.drain(..content_length).collect();

    // 4. Keep-alive: HTTP/1.1 keeps the connection unless the client says
    //    `close`; HTTP/1.0 closes it unless the client says `keep-alive`.
    let keep_alive = match minor_version {
        1 => !connection.close,
        _ => connection.keep_alive && !connection.close,
    };
    Ok(Request { method, target, minor_version, keep_alive, body })
}

/// The tokens of the `Connection` header(s) this server acts on.
#[derive(Debug, Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
}

/// Pulls what framing needs out of the header fields: `Connection` tokens and
/// the body length. Rejects what would make the framing ambiguous.
fn parse_fields(
    fields: &[httparse::Header<'_>],
    minor_version: u8,
) -> Result<(ConnectionTokens, usize), NoRequest> {
    let mut connection = ConnectionTokens::default();
    let mut length: Option<usize> = None;
    let mut host = false;
    for field in fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("connection") {
            // A comma-separated list of tokens, case-insensitive.
            for token in String::from_utf8_lossy(field.value).split(',') {
                let token = token.trim();
                connection.close |= token.eq_ignore_ascii_case("close");
                connection.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(field.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(NoRequest::Reject(400, "Content-Length is not a number"))?;
            // Two different lengths are how request smuggling starts: refuse.
            if length.is_some_and(|old| old != n) {
                return Err(NoRequest::Reject(400, "conflicting Content-Length fields"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked request bodies are not implemented here. Guessing at the
            // framing instead would desynchronise the connection.
            return Err(NoRequest::Reject(
                501,
                "Transfer-Encoding is not supported; send Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    // HTTP/1.1 requires Host (RFC 9112, section 3.2); 1.0 predates it.
    if minor_version == 1 && !host {
        return Err(NoRequest::Reject(400, "HTTP/1.1 request without a Host header"));
    }
    Ok((connection, length.unwrap_or(0)))
}

/// Frames a reply as HTTP/1.1 response bytes: status line, headers, blank
/// line, body. `Content-Length` always, so the client knows where this
/// response ends and the next begins without the connection closing.
///
/// `Connection: close` goes on every response after which the server closes,
/// whatever the client's version: the status line says HTTP/1.1, whose default
/// is to keep, so a 1.0 client reading it would otherwise believe the
/// connection stays open (curl then finds it "dead" on its next request).
/// `Connection: keep-alive` goes only to a 1.0 client whose connection is kept.
pub fn encode_response(
    reply: &Reply,
    head_only: bool,
    minor_version: u8,
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    if let Some(allow) = reply.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    } else if minor_version == 0 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&reply.body);
    }
    bytes
}

/// Closes a connection without destroying the last response.
///
/// If we simply dropped the socket while the client's bytes (a pipelined
/// request, the rest of an oversized head) sat unread in our receive buffer,
/// the kernel would answer with RST instead of FIN, and the client's kernel
/// may throw away our response before the client reads it. So: send FIN
/// (`shutdown`), then read and discard until the client closes too, for at
/// most `linger`.
pub(crate) async fn lingering_close(mut stream: TcpStream, linger: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = timeout(linger, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
