//! What the demo shows and the tests check, measured through the harness's
//! wire tap: the frames of one connection carrying three requests at once,
//! and the header bytes of the same request sent 100 times over HTTP/2
//! and over HTTP/1.1.

use std::net::SocketAddr;
use std::time::Duration;

use harness::{Direction, WireTap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Windows};
use crate::frames::{Decoder, Item, Kind};

/// A bound on each step of the demo on loopback.
pub const STEP: Duration = Duration::from_secs(10);

/// The largest body the demo reads.
const MAX_BODY: usize = 1024 * 1024;

/// One item the tap saw, and which way it went.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Client to server, or back.
    pub direction: Direction,
    /// The preface or a frame.
    pub item: Item,
}

/// The three-stream exchange: the streams' ids in the order they were
/// opened, the PING's round trip, and every frame.
#[derive(Debug)]
pub struct Exchange {
    /// Streams of `/slow?ms=300`, `/large?kb=64` and `/resource/1`.
    pub streams: [u32; 3],
    /// The stream opened and cancelled at once.
    pub cancelled: u32,
    /// Each frame as the tap saw it, in order.
    pub seen: Vec<Seen>,
}

/// The slow request of the exchange.
pub const SLOW: &str = "/slow?ms=300";
/// The large one: 64 KiB, one byte more than a stream's default window, so
/// the server must wait for the client's WINDOW_UPDATE to finish it.
pub const LARGE: &str = "/large?kb=64";
/// The quick one.
pub const QUICK: &str = "/resource/1";

/// Through a tap in front of `server`: one connection; three requests at
/// once (slow, large, quick); a PING; a stream opened and cancelled; then
/// `stop` is cancelled, which makes the server send GOAWAY and close.
pub async fn three_streams(
    server: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<Exchange> {
    let tap = WireTap::start(server)?;
    let mut h2 = client::connect(tap.addr(), Windows::default()).await?;
    let (slow, large, quick) = tokio::time::timeout(STEP, async {
        tokio::join!(h2.get(SLOW, MAX_BODY), h2.get(LARGE, MAX_BODY), h2.get(QUICK, MAX_BODY))
    })
    .await?;
    let streams = [slow?.stream, large?.stream, quick?.stream];
    tokio::time::timeout(STEP, h2.ping()).await??;
    let cancelled = h2.open_and_cancel("/slow?ms=5000").await?;
    // A second PING: frames go out in order, so once it is answered the
    // server has read the RST_STREAM.
    tokio::time::timeout(STEP, h2.ping()).await??;
    stop.cancel();
    // The server's GOAWAY, then its close, end the client's connection task.
    let _ = tokio::time::timeout(STEP, &mut h2.task).await?;
    drop(h2);
    let start = std::time::Instant::now();
    while tap.stats().open > 0 {
        anyhow::ensure!(start.elapsed() < STEP, "the tap's connection did not close");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Exchange { streams, cancelled, seen: decode(&tap, 0)? })
}

/// Every frame of connection `conn` the tap saw, in the order it crossed.
pub fn decode(tap: &WireTap, conn: usize) -> anyhow::Result<Vec<Seen>> {
    let (mut to_server, mut to_client) = (Decoder::client_side(), Decoder::server_side());
    let mut seen = Vec::new();
    for chunk in tap.transcript().into_iter().filter(|c| c.conn == conn) {
        let decoder = match chunk.direction {
            Direction::ToServer => &mut to_server,
            Direction::ToClient => &mut to_client,
        };
        let items = decoder.push(&chunk.bytes).map_err(|e| anyhow::anyhow!("{}", e.0))?;
        seen.extend(items.into_iter().map(|item| Seen { direction: chunk.direction, item }));
    }
    Ok(seen)
}

/// Header bytes per request and per response, for the same request sent
/// [`REPEATS`] times on one connection, over HTTP/2 (the HPACK block of each
/// HEADERS frame) and over HTTP/1.1 (each head, up to its blank line).
#[derive(Debug, Clone)]
pub struct HeaderBytes {
    /// HTTP/2 request header blocks, in order.
    pub h2_requests: Vec<usize>,
    /// HTTP/2 response header blocks, in order.
    pub h2_responses: Vec<usize>,
    /// HTTP/1.1 request heads, in order.
    pub h1_requests: Vec<usize>,
    /// HTTP/1.1 response heads, in order.
    pub h1_responses: Vec<usize>,
    /// All bytes each way for the whole run: (h2 to server, h2 to client,
    /// h1 to server, h1 to client).
    pub totals: (u64, u64, u64, u64),
}

/// How many identical requests [`header_bytes`] sends.
pub const REPEATS: usize = 100;

/// Sends `GET /resource/1` [`REPEATS`] times on one HTTP/2 connection and on
/// one HTTP/1.1 connection, each through a tap, and counts header bytes.
pub async fn header_bytes(server: SocketAddr) -> anyhow::Result<HeaderBytes> {
    let tap2 = WireTap::start(server)?;
    let h2 = client::connect(tap2.addr(), Windows::default()).await?;
    for _ in 0..REPEATS {
        let a = tokio::time::timeout(STEP, h2.get(QUICK, MAX_BODY)).await??;
        anyhow::ensure!(a.status == 200, "status {}", a.status);
    }
    let (mut h2_requests, mut h2_responses) = (Vec::new(), Vec::new());
    for s in decode(&tap2, 0)? {
        if let Item::Frame(f) = s.item
            && f.kind == Kind::Headers
        {
            match s.direction {
                Direction::ToServer => h2_requests.push(f.hpack_len()),
                Direction::ToClient => h2_responses.push(f.hpack_len()),
            }
        }
    }

    let tap1 = WireTap::start(server)?;
    let mut tcp = TcpStream::connect(tap1.addr()).await?;
    let request = client::http1_request(&server.to_string(), QUICK);
    let mut reader = Http1Reader::default();
    for _ in 0..REPEATS {
        tcp.write_all(request.as_bytes()).await?;
        tokio::time::timeout(STEP, reader.next_response(&mut tcp)).await??;
    }
    let h1_requests = heads(&tap1.bytes(0, Direction::ToServer))?;
    let h1_responses = heads(&tap1.bytes(0, Direction::ToClient))?;
    let (s2, s1) = (tap2.stats(), tap1.stats());
    Ok(HeaderBytes {
        h2_requests,
        h2_responses,
        h1_requests,
        h1_responses,
        totals: (s2.to_server, s2.to_client, s1.to_server, s1.to_client),
    })
}

/// The head sizes of the HTTP/1.1 messages in `bytes`, one after another,
/// each followed by `Content-Length` bytes of body (0 if it has none).
pub fn heads(mut bytes: &[u8]) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("an unfinished head"))?
            + 4;
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let body = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(Ok(0), |v| v.trim().parse::<usize>())?;
        anyhow::ensure!(bytes.len() >= end + body, "an unfinished body");
        out.push(end);
        bytes = &bytes[end + body..];
    }
    Ok(out)
}

/// Reads one HTTP/1.1 response at a time (head, then `Content-Length`
/// bytes), keeping any bytes past it for the next.
#[derive(Debug, Default)]
pub struct Http1Reader {
    buf: Vec<u8>,
}

impl Http1Reader {
    /// Reads until one whole response is in, and returns its length.
    pub async fn next_response(&mut self, tcp: &mut TcpStream) -> anyhow::Result<usize> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let body = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(Ok(0), |v| v.trim().parse::<usize>())?;
                let whole = end + 4 + body;
                if self.buf.len() >= whole {
                    self.buf.drain(..whole);
                    return Ok(whole);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tcp.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the server closed mid-response");
            anyhow::ensure!(self.buf.len() + n <= 4 * MAX_BODY, "response too large");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
