//! What every test file of this lesson starts with: a server on a free
//! port, a polite HTTP/2 client, and a raw one that writes frames by hand.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use harness::TaskServer;
use http2::client::{self, H2, Windows};
use http2::frames::{self, Decoder, Frame, Item, Kind};
use http2::{Config, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on one step of a test on loopback.
pub const STEP: Duration = Duration::from_secs(10);

/// How soon after an attack the server must answer a good client.
pub const STILL_UP: Duration = Duration::from_secs(1);

pub struct Server {
    pub stats: Arc<Stats>,
    pub server: TaskServer<std::io::Result<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Self {
        let stats = Arc::new(Stats::default());
        let s = Arc::clone(&stats);
        let server = TaskServer::start(move |listener, token| {
            http2::serve(listener, None, config, s, token)
        })
        .await
        .expect("bind 127.0.0.1:0");
        Self { stats, server }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub async fn h2(&self) -> H2 {
        harness::within(STEP, "h2 handshake", client::connect(self.addr(), Windows::default()))
            .await
            .expect("h2 connect")
    }

    /// A good client, on a new connection, gets `/resource/1` within
    /// [`STILL_UP`]: the server is still serving.
    pub async fn still_answers(&self) {
        let check = async {
            let h2 = client::connect(self.addr(), Windows::default()).await?;
            h2.get("/resource/1", 1024).await
        };
        let a = harness::within(STILL_UP, "a good client's answer after the attack", check)
            .await
            .expect("a good client is served");
        assert_eq!(a.status, 200);
        assert_eq!(&a.body[..], b"resource 1\n");
    }
}

/// A raw HTTP/2 connection: exact bytes out, frames in.
pub struct Raw {
    pub tcp: TcpStream,
    decoder: Decoder,
    queue: std::collections::VecDeque<Frame>,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        Self { tcp, decoder: Decoder::server_side(), queue: Default::default() }
    }

    /// Connects and sends the preface and an empty SETTINGS, as any client must.
    pub async fn start(addr: std::net::SocketAddr) -> Self {
        let mut raw = Self::connect(addr).await;
        let mut hello = frames::PREFACE.to_vec();
        hello.extend(frames::encode(Kind::Settings, 0, 0, &[]));
        raw.send(&hello).await.expect("send the preface");
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// The next frame from the server, or `None` once it closed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.queue.pop_front() {
                return Some(f);
            }
            let mut buf = [0u8; 16 * 1024];
            let n = harness::within(STEP, "a frame from the server", self.tcp.read(&mut buf))
                .await
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            for item in self.decoder.push(&buf[..n]).expect("the server speaks HTTP/2") {
                if let Item::Frame(f) = item {
                    self.queue.push_back(f);
                }
            }
        }
    }

    /// Reads frames until one matches, or the server closes (`None`).
    pub async fn until(&mut self, mut want: impl FnMut(&Frame) -> bool) -> Option<Frame> {
        while let Some(f) = self.next().await {
            if want(&f) {
                return Some(f);
            }
        }
        None
    }

    /// Reads (and drops) everything until the server closes; bounded.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut all = Vec::new();
        while let Some(f) = self.next().await {
            all.push(f);
            assert!(all.len() < 100_000, "the server never closed");
        }
        all
    }
}

/// An HPACK header block for `GET path` over http, without Huffman or
/// indexing, so it is easy to read: static-table entries for `:method GET`
/// (index 2) and `:scheme http` (6), then `:path` (name index 4) and
/// `:authority` (1) as literals "without indexing".
pub fn hpack_get(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    for (index, value) in [(0x04u8, path), (0x01, "localhost")] {
        assert!(value.len() < 127, "a one-byte length");
        b.push(index); // 0000xxxx: literal without indexing, name from the static table
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// HEADERS for `GET path` on `stream`, a whole request (END_HEADERS | END_STREAM).
pub fn get_frame(stream: u32, path: &str) -> Vec<u8> {
    frames::encode(
        Kind::Headers,
        frames::END_HEADERS | frames::END_STREAM,
        stream,
        &hpack_get(path),
    )
}

/// Rapid reset (CVE-2023-44487): `pairs` streams, each opened with HEADERS
/// and cancelled at once with RST_STREAM, written 100 pairs at a time until
/// the server stops taking them. Returns the GOAWAY that ended it (if any)
/// and how many pairs went out.
pub async fn rapid_reset_flood(addr: std::net::SocketAddr, pairs: u32) -> (Option<Frame>, u32) {
    const BATCH: u32 = 100;
    let mut raw = Raw::start(addr).await;
    let cancel = frames::code::CANCEL.to_be_bytes();
    let mut sent = 0;
    for batch in 0..pairs / BATCH {
        let mut bytes = Vec::new();
        for i in 0..BATCH {
            let stream = 1 + 2 * (batch * BATCH + i);
            bytes.extend(get_frame(stream, "/resource/1"));
            bytes.extend(frames::encode(Kind::RstStream, 0, stream, &cancel));
        }
        if raw.send(&bytes).await.is_err() {
            break;
        }
        sent += BATCH;
    }
    (raw.until(|f| f.kind == Kind::GoAway).await, sent)
}

/// A header block that never ends: HEADERS without END_HEADERS, then
/// `count` CONTINUATION frames of 1 KiB that never set it either. Returns
/// the GOAWAY that ended it, if any.
pub async fn continuation_flood(addr: std::net::SocketAddr, count: usize) -> Option<Frame> {
    let mut raw = Raw::start(addr).await;
    let mut flood = frames::encode(Kind::Headers, 0, 1, &[0x82]);
    let junk = vec![b'a'; 1024];
    for _ in 0..count {
        flood.extend(frames::encode(Kind::Continuation, 0, 1, &junk));
    }
    // The server may close while we are still writing; that is its answer.
    let _ = raw.send(&flood).await;
    raw.until(|f| f.kind == Kind::GoAway).await
}
