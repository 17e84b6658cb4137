//! WebSocket helpers for tests and demos, at two levels.
//!
//! * [`WsClient`]: a real client (tokio-tungstenite) with a deadline on every
//!   wait: connect, send text or JSON, receive the next text or JSON message,
//!   expect a close frame with a given code and reason. Pings are answered by
//!   tungstenite while we read, as a browser would.
//! * [`RawWs`] and [`Frame`]: the protocol by hand. A raw TCP socket sends the
//!   upgrade request itself and then reads and writes frames as bytes, so a test
//!   can send what no well-behaved client would (invalid UTF-8, an oversized
//!   frame), refuse to answer pings, or stop reading altogether.
//!
//! RFC 6455 in one paragraph, for reading [`Frame`]: every frame starts with a
//! byte holding FIN (last fragment of a message) and the opcode (1 text,
//! 2 binary, 8 close, 9 ping, 10 pong, 0 continuation), then a byte holding
//! the MASK bit and a 7-bit length (126 means "a 16-bit length follows", 127
//! "a 64-bit length follows"), then, if MASK is set, four masking-key bytes
//! that the payload is XORed with. Clients must mask; servers must not.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::net::IO_TIMEOUT;

/// Frame opcodes (RFC 6455 section 5.2).
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A UTF-8 text message.
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// Close, with an optional 2-byte code and a UTF-8 reason.
    pub const CLOSE: u8 = 0x8;
    /// Ping: the peer must answer with a pong carrying the same payload.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// The fixed GUID every server appends to `Sec-WebSocket-Key` before hashing
/// it into `Sec-WebSocket-Accept` (RFC 6455 section 1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Key` that [`RawWs`] sends: the RFC's own example, so its
/// expected accept value (`s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`) can be checked by eye.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn timed_out(what: &str, deadline: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out after {deadline:?}: {what}"))
}

fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

/// A WebSocket client whose every wait has a deadline.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server said when it closed the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (1000 normal, 1001 going away, 1007 bad data, 1008
    /// policy, 1009 too big, 1013 try again later, ...), or `None` if the
    /// close frame carried no code or the TCP connection simply ended.
    pub code: Option<u16>,
    /// The reason text, empty if none.
    pub reason: String,
}

impl WsClient {
    /// Connects to `url` (e.g. `ws://127.0.0.1:7093/ws`) within [`IO_TIMEOUT`].
    pub async fn connect(url: &str) -> io::Result<Self> {
        Self::connect_within(url, IO_TIMEOUT).await
    }

    /// Connects to `url` within `deadline`. A refused upgrade (a 503, say) is an
    /// error whose text includes the HTTP status.
    pub async fn connect_within(url: &str, deadline: Duration) -> io::Result<Self> {
        match tokio::time::timeout(deadline, tokio_tungstenite::connect_async(url)).await {
            Err(_) => Err(timed_out(&format!("connecting to {url}"), deadline)),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                Err(io::Error::other(format!("upgrade refused: HTTP {}", resp.status().as_u16())))
            }
            Ok(Err(e)) => Err(other(e)),
            Ok(Ok((ws, _response))) => Ok(Self { ws }),
        }
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(Message::text(text)).await
    }

    /// Sends one JSON value as a text message.
    pub async fn send_json(&mut self, value: &serde_json::Value) -> io::Result<()> {
        self.send_text(&value.to_string()).await
    }

    /// Sends any message (binary, ping, close...).
    pub async fn send(&mut self, msg: Message) -> io::Result<()> {
        match tokio::time::timeout(IO_TIMEOUT, self.ws.send(msg)).await {
            Err(_) => Err(timed_out("sending a message", IO_TIMEOUT)),
            Ok(r) => r.map_err(other),
        }
    }

    /// The next text message, skipping pings and pongs. A close frame or the
    /// end of the connection is an error of kind `ConnectionAborted` whose text
    /// names the close code.
    pub async fn recv_text(&mut self, deadline: Duration) -> io::Result<String> {
        let next = async {
            loop {
                match self.ws.next().await {
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "connection ended",
                        ));
                    }
                    Some(Err(e)) => return Err(other(e)),
                    Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                    Some(Ok(Message::Close(frame))) => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("closed by server: {frame:?}"),
                        ));
                    }
                    Some(Ok(_)) => continue,
                }
            }
        };
        match tokio::time::timeout(deadline, next).await {
            Err(_) => Err(timed_out("the next text message", deadline)),
            Ok(r) => r,
        }
    }

    /// The next text message parsed as JSON.
    pub async fn recv_json(&mut self, deadline: Duration) -> io::Result<serde_json::Value> {
        let text = self.recv_text(deadline).await?;
        serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}: {text}")))
    }

    /// Reads JSON messages until one satisfies `wanted`, and returns it; the
    /// others are dropped. The whole search shares one `deadline`.
    pub async fn recv_json_where<F>(
        &mut self,
        deadline: Duration,
        mut wanted: F,
    ) -> io::Result<serde_json::Value>
    where
        F: FnMut(&serde_json::Value) -> bool,
    {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let v = self.recv_json(left).await?;
            if wanted(&v) {
                return Ok(v);
            }
        }
    }

    /// Reads until the server's close frame (data messages before it are
    /// dropped) and returns its code and reason. The end of the TCP connection
    /// without a close frame gives `code: None`.
    pub async fn recv_close(&mut self, deadline: Duration) -> io::Result<Closed> {
        let next = async {
            loop {
                match self.ws.next().await {
                    None => return Ok(Closed { code: None, reason: String::new() }),
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite has queued the reply to the close
                        // frame; flushing sends it now, as a browser would,
                        // so the server's closing handshake completes.
                        let _ = self.ws.flush().await;
                        return Ok(match frame {
                            Some(CloseFrame { code, reason }) => {
                                Closed { code: Some(code.into()), reason: reason.to_string() }
                            }
                            None => Closed { code: None, reason: String::new() },
                        });
                    }
                    Some(Ok(_)) => continue,
                    // A reset after the server gave up counts as "no close frame".
                    Some(Err(_)) => return Ok(Closed { code: None, reason: String::new() }),
                }
            }
        };
        match tokio::time::timeout(deadline, next).await {
            Err(_) => Err(timed_out("a close frame", deadline)),
            Ok(r) => r,
        }
    }

    /// Like [`WsClient::recv_close`], and panics unless the code is `code` and
    /// the reason contains `reason_part`.
    pub async fn expect_close(&mut self, deadline: Duration, code: u16, reason_part: &str) {
        let closed = match self.recv_close(deadline).await {
            Ok(c) => c,
            Err(e) => panic!("expected close {code} ({reason_part}): {e}"),
        };
        assert_eq!(closed.code, Some(code), "close code (reason {:?})", closed.reason);
        assert!(
            closed.reason.contains(reason_part),
            "close reason {:?} should contain {reason_part:?}",
            closed.reason
        );
    }

    /// Starts a normal close (1000) and waits for the server's answer.
    pub async fn close(mut self) -> io::Result<()> {
        let _ = tokio::time::timeout(IO_TIMEOUT, self.ws.close(None)).await;
        // Drain until the server's close arrives or the stream ends.
        let _ = self.recv_close(IO_TIMEOUT).await;
        Ok(())
    }

    /// The tungstenite stream underneath, for anything not covered here.
    pub fn inner_mut(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }
}

/// One frame as it crossed the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN: this is the last (or only) fragment of a message.
    pub fin: bool,
    /// The opcode, see [`opcode`].
    pub opcode: u8,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// The payload, already unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A client frame: masked with `mask`, as RFC 6455 requires of clients.
    pub fn client(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Self {
        Self { fin: true, opcode, mask: Some(mask), payload: payload.to_vec() }
    }

    /// The frame's bytes: header, masking key, masked payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(if self.fin { 0x80 } else { 0 } | (self.opcode & 0x0F));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&short.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }

    /// Parses one frame from the front of `buf`. `Ok(None)` means "not all of
    /// it is here yet"; otherwise returns the frame and how many bytes it used.
    pub fn parse(buf: &[u8]) -> io::Result<Option<(Frame, usize)>> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let fin = buf[0] & 0x80 != 0;
        let opcode = buf[0] & 0x0F;
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame length overflows"))?;
        let mask = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(key)
        } else {
            None
        };
        // A hostile 64-bit length must not overflow `at + len` (a panic in a
        // debug build): such a frame can never be complete, so say so.
        let end = at
            .checked_add(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "frame length overflows"))?;
        if buf.len() < end {
            return Ok(None);
        }
        let mut payload = buf[at..end].to_vec();
        if let Some(key) = mask {
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        }
        Ok(Some((Frame { fin, opcode, mask, payload }, end)))
    }

    /// For a close frame: its code, if the payload carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// For a close frame: its reason text (lossy).
    pub fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
    }

    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The upgrade request a browser would send, with `key` as its
/// `Sec-WebSocket-Key`.
pub fn upgrade_request(addr: SocketAddr, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    )
}

/// A WebSocket spoken by hand over a plain TCP socket.
#[derive(Debug)]
pub struct RawWs {
    stream: TcpStream,
    /// Bytes read but not yet parsed into frames.
    buf: Vec<u8>,
    /// The server's 101 response head, as it came.
    pub response_head: String,
}

impl RawWs {
    /// Connects to `addr`, sends the upgrade request for `path` with
    /// [`SAMPLE_KEY`], and reads the response head. Fails unless it is a 101.
    pub async fn connect(addr: SocketAddr, path: &str) -> io::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connect", IO_TIMEOUT))??;
        Self::handshake(stream, addr, path).await
    }

    /// Runs the upgrade on a stream the caller connected (with its own socket
    /// options, such as a tiny receive buffer).
    pub async fn handshake(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
    ) -> io::Result<Self> {
        stream.write_all(upgrade_request(addr, path, SAMPLE_KEY).as_bytes()).await?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
                .await
                .map_err(|_| timed_out("the 101 response", IO_TIMEOUT))??;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during upgrade"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let response_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !response_head.starts_with("HTTP/1.1 101") {
            return Err(io::Error::other(format!("upgrade refused: {response_head}")));
        }
        buf.drain(..head_end);
        Ok(Self { stream, buf, response_head })
    }

    /// Writes raw bytes (one frame, half a frame, garbage...).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends one masked text frame holding `payload` (which need not be UTF-8).
    pub async fn send_text_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_bytes(&Frame::client(opcode::TEXT, payload, [1, 2, 3, 4]).encode()).await
    }

    /// The next frame, or `None` if the server ended the connection.
    pub async fn read_frame(&mut self, deadline: Duration) -> io::Result<Option<Frame>> {
        let read = async {
            loop {
                if let Some((frame, used)) = Frame::parse(&self.buf)? {
                    self.buf.drain(..used);
                    return Ok(Some(frame));
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = match self.stream.read(&mut chunk).await {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    return Ok(None);
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        match tokio::time::timeout(deadline, read).await {
            Err(_) => Err(timed_out("the next frame", deadline)),
            Ok(r) => r,
        }
    }

    /// Reads frames until a close frame (returned) or the end of the
    /// connection (`None`), dropping the rest. `deadline` covers all of it.
    pub async fn read_until_close(&mut self, deadline: Duration) -> io::Result<Option<Frame>> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await? {
                None => return Ok(None),
                Some(f) if f.opcode == opcode::CLOSE => return Ok(Some(f)),
                Some(_) => continue,
            }
        }
    }

    /// The socket underneath.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
