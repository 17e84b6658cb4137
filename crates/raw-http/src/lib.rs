//! A raw HTTP/1.x client: send exact bytes, read exact responses.
//!
//! Production clients hide what the lessons are about (which connection a
//! request went on, what the headers cost, what happens to a malformed
//! request). This one hides nothing: you write the request bytes yourself and
//! get back the status, the headers and the body exactly as the server framed
//! them. It is async, so it can share a runtime with the server under test.
//!
//! Lesson 4 (`http-keepalive`) is the one that teaches HTTP/1.x framing, and
//! its client is built on [`HttpConn`]; lesson 10's `rest_todo::Client` is
//! too. Every lesson's tests reach it as `harness::http`, a re-export, to send
//! requests a polite client never would. It is a crate of its own, not a
//! module of lesson 4, so that the test harness and lesson 10 can use it
//! without depending on a lesson's servers.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the client waits to connect, and then for each read, before it
/// fails with `TimedOut`. Loopback answers in microseconds; five seconds is
/// only ever reached when something is wrong, and then a test fails instead
/// of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest response head this client accepts. Lesson servers send a few
/// hundred bytes; anything near this is a bug worth failing on.
pub const MAX_HEAD: usize = 64 * 1024;

/// One parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code, e.g. 200.
    pub status: u16,
    /// The reason phrase, e.g. `OK` (may be empty).
    pub reason: String,
    /// Header fields in the order they came, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it was chunked.
    pub body: Vec<u8>,
    /// The head exactly as it crossed the wire, status line to blank line.
    pub raw_head: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection that can carry many requests (keep-alive) and read
/// responses one at a time (so pipelining can be tested too).
#[derive(Debug)]
pub struct HttpConn {
    stream: TcpStream,
    /// Bytes read from the socket but not yet consumed by a response.
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connects to `addr` within [`IO_TIMEOUT`].
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok(Self { stream, buf: Vec::new() })
    }

    /// Writes `bytes` as they are. Several requests in one call is pipelining.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response. Set `head_only` for a response to `HEAD`, which has
    /// headers describing a body that is not sent.
    pub async fn read_response(&mut self, head_only: bool) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response head larger than MAX_HEAD"));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("server closed with {} bytes of an unfinished head", self.buf.len()),
                ));
            }
        };
        let raw_head: Vec<u8> = self.buf.drain(..head_end).collect();
        let mut resp = parse_head(&raw_head)?;
        let no_body =
            head_only || resp.status / 100 == 1 || resp.status == 204 || resp.status == 304;
        if no_body {
            return Ok(resp);
        }
        let chunked =
            resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            resp.body = self.read_chunked().await?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.trim().parse().map_err(|_| invalid("bad Content-Length"))?;
            while self.buf.len() < len {
                if self.fill().await? == 0 {
                    return Err(invalid("server closed before the whole body arrived"));
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            // No length and not chunked: the body runs until the server closes.
            while self.fill().await? != 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Reads whatever arrives until the server closes the connection. Returns
    /// the bytes (possibly empty). Fails with `TimedOut` if it stays open.
    pub async fn read_until_close(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// The underlying stream, for tests that drop to raw reads and writes.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers (rare) end with a blank line, like the head.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(invalid("server closed inside a chunk"));
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2); // the CRLF after the chunk data
        }
    }

    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.fill().await? == 0 {
                return Err(invalid("server closed inside a chunked body"));
            }
        }
    }

    /// One read from the socket into `buf`, bounded by [`IO_TIMEOUT`].
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk)).await.map_err(
            |_| io::Error::new(io::ErrorKind::TimedOut, "no bytes from the server in time"),
        )??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// Connects, sends `request` exactly, and reads one response.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Response> {
    let mut conn = HttpConn::connect(addr).await?;
    conn.send(request).await?;
    conn.read_response(request.starts_with(b"HEAD ")).await
}

/// `GET path` over a new connection with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes()).await
}

/// Parses a response head (status line and header fields, ending in a blank
/// line). The body is left empty.
pub fn parse_head(raw: &[u8]) -> io::Result<Response> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_owned();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(&format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(&format!("no status code in {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) =
            line.split_once(':').ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Response { version, status, reason, headers, body: Vec::new(), raw_head: raw.to_vec() })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}
