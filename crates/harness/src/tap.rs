//! The wire tap: a loopback TCP proxy that counts what crosses it.
//!
//! Put it between a client and a server and every connection the client opens
//! goes through the tap, which forwards the bytes untouched both ways and
//! keeps count: connections opened, bytes to the server, bytes to the client.
//! It also keeps a bounded transcript of the bytes themselves, in the order
//! they crossed, so a demo can print them as a hexdump and a test can assert
//! what was on the wire.
//!
//! It counts application bytes (what `read`/`write` see), not the TCP/IP
//! headers around them; a chapter that quotes "bytes on the wire" from the tap
//! means bytes of the protocol under study.
//!
//! The tap runs on a thread of its own with its own small tokio runtime, so it
//! works the same under a blocking test and under an async one.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How many bytes of transcript the tap keeps in all. Past it the counters go
/// on but the transcript stops growing (and says it was cut), so a benchmark
/// through the tap cannot fill memory.
pub const TRANSCRIPT_LIMIT: usize = 1024 * 1024;

/// Which way a chunk of bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client, through the tap, to the server.
    ToServer,
    /// From the server, through the tap, to the client.
    ToClient,
}

/// One read's worth of bytes, as forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Which connection (0 for the first one the tap accepted, then 1, ...).
    pub conn: usize,
    /// Which way the bytes went.
    pub direction: Direction,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Connections the tap accepted from clients since it started.
    pub connections: u64,
    /// Connections currently open through the tap.
    pub open: u64,
    /// Bytes forwarded from clients to the server.
    pub to_server: u64,
    /// Bytes forwarded from the server to clients.
    pub to_client: u64,
}

#[derive(Debug, Default)]
struct Shared {
    connections: AtomicU64,
    open: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    transcript: Mutex<Transcript>,
}

#[derive(Debug, Default)]
struct Transcript {
    chunks: Vec<Chunk>,
    kept: usize,
    cut: bool,
}

/// A running tap. Dropping it stops the proxy and closes its connections.
#[derive(Debug)]
pub struct WireTap {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl WireTap {
    /// Starts a tap on `127.0.0.1:0` that forwards every connection to
    /// `upstream`. Point clients at [`WireTap::addr`].
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(crate::EPHEMERAL)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let token = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (s, t) = (Arc::clone(&shared), token.clone());
        let thread = thread::Builder::new().name(format!("wire tap {addr}")).spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => panic!("wire tap could not adopt its listener: {e}"),
                };
                accept_loop(listener, upstream, s, t).await;
            });
            // Dropping the runtime here cancels every proxy task and closes
            // their sockets.
        })?;
        Ok(Self { addr, upstream, shared, token, thread: Some(thread) })
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the tap forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The counters now.
    pub fn stats(&self) -> TapStats {
        TapStats {
            connections: self.shared.connections.load(Ordering::SeqCst),
            open: self.shared.open.load(Ordering::SeqCst),
            to_server: self.shared.to_server.load(Ordering::SeqCst),
            to_client: self.shared.to_client.load(Ordering::SeqCst),
        }
    }

    /// The chunks forwarded so far, in order, up to [`TRANSCRIPT_LIMIT`] bytes.
    pub fn transcript(&self) -> Vec<Chunk> {
        self.lock().chunks.clone()
    }

    /// Whether the transcript stopped at [`TRANSCRIPT_LIMIT`].
    pub fn transcript_cut(&self) -> bool {
        self.lock().cut
    }

    /// All bytes that went one way on connection `conn`, joined.
    pub fn bytes(&self, conn: usize, direction: Direction) -> Vec<u8> {
        self.lock()
            .chunks
            .iter()
            .filter(|c| c.conn == conn && c.direction == direction)
            .flat_map(|c| c.bytes.iter().copied())
            .collect()
    }

    /// The transcript as text: one block a chunk, `#conn >>` for bytes to the
    /// server and `#conn <<` for bytes to the client, each as a [`hexdump`].
    pub fn dump(&self) -> String {
        let t = self.lock();
        let mut out = String::new();
        for c in &t.chunks {
            let arrow = match c.direction {
                Direction::ToServer => ">>",
                Direction::ToClient => "<<",
            };
            let _ = writeln!(out, "#{} {arrow} {} bytes", c.conn, c.bytes.len());
            out.push_str(&hexdump(&c.bytes));
        }
        if t.cut {
            out.push_str("[transcript cut at TRANSCRIPT_LIMIT; counters are still exact]\n");
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Transcript> {
        // A poisoned lock means a proxy task panicked mid-push; the data is
        // still a valid Vec, so read it anyway.
        self.shared.transcript.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for WireTap {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else { continue };
        let id = shared.connections.fetch_add(1, Ordering::SeqCst) as usize;
        shared.open.fetch_add(1, Ordering::SeqCst);
        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(upstream).await {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                // Each direction is its own pump, so a half-close (FIN) one way
                // is forwarded without stopping the other way.
                tokio::join!(
                    pump(cr, sw, id, Direction::ToServer, &s),
                    pump(sr, cw, id, Direction::ToClient, &s),
                );
            }
            s.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conn: usize,
    direction: Direction,
    shared: &Shared,
) {
    let counter = match direction {
        Direction::ToServer => &shared.to_server,
        Direction::ToClient => &shared.to_client,
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Count and record before forwarding: once the receiver has the bytes,
        // the counters already include them, so a test never reads a stale count.
        counter.fetch_add(n as u64, Ordering::SeqCst);
        {
            let mut t = shared.transcript.lock().unwrap_or_else(|p| p.into_inner());
            if t.kept + n <= TRANSCRIPT_LIMIT {
                t.kept += n;
                t.chunks.push(Chunk { conn, direction, bytes: buf[..n].to_vec() });
            } else {
                t.cut = true;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Pass the end of stream on: the other side sees FIN where we saw FIN.
    let _ = to.shutdown().await;
}

/// Formats bytes the way `hexdump -C` does: offset, 16 bytes in hex, and the
/// printable ones as text.
///
/// ```
/// let d = harness::hexdump(b"GET / HTTP/1.1\r\n");
/// assert!(d.starts_with("00000000  47 45 54 20"));
/// assert!(d.contains("|GET / HTTP/1.1..|"));
/// ```
pub fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", i * 16);
        for j in 0..16 {
            if j == 8 {
                out.push(' ');
            }
            match line.get(j) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        for &b in line {
            out.push(if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' });
        }
        out.push_str("|\n");
    }
    out
}
