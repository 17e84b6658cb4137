//! `bench chat`: how fast does lesson 8's server fan a message out, and how
//! does it compare with the notes' Node.js chat server?
//!
//! Setup: the chat server runs in a process of its own (this binary, `bench
//! chat --serve`), on loopback, so `/proc` can say what *it* holds; N
//! clients run in the bench's process. They are WebSocket clients on bare
//! TCP sockets (`RawClient` below) that find each frame from its header and
//! search it for a send time, and nothing more: on a 2-core machine the
//! clients share the cores with the server, and every cycle they spend is
//! one the server does not get. With `--target
//! notes-node` the same clients then drive the notes' server, rewritten in
//! `crates/bench/peers/notes-chat.js` (Node.js and the `ws` package, which
//! the bench installs with npm under `target/bench/peers/`), in the same
//! run, and the report prints the two side by side, as ratios. Each cell
//! (a window and a client count) runs ours, Node, Node, ours (`slots`), so
//! neither server always gets the earlier slot on a machine whose load
//! drifts; it prints every slot and compares the means of each server's two.
//!
//! The clients join one at a time: each sends `{"type":"username",...}` and
//! waits until it sees its own name come back (our server announces the
//! join; the notes' server relays the message itself). So every join is
//! settled before the next client connects; a `sync` message from the first
//! client, seen by all N, settles the notices. Resident memory is read
//! before the clients and after that: per connection is the growth over N.
//!
//! Then one client speaks with a window of messages in flight: it sends a
//! new one when its own copy of an earlier one comes back. That paces it at
//! the speed the server can fan out, instead of flooding the per-client
//! queues (which would measure how fast the server disconnects slow
//! clients, a different thing). Each window size (`--window`, 4 and 16 by
//! default) is a run of its own: with 4 the server mostly waits for round
//! trips, with 16 it is kept busy. Each message carries the time it was sent,
//! in microseconds since the start; each receiver records `now - sent` for
//! every delivery. The two servers send different shapes
//! (`{"type":"message","username":..,"message":"t=.."}` from ours, the
//! client's own `{"type":"message","data":"t=.."}` from Node's); the clients
//! read the time from either.
//!
//! Printed for each window and N: messages sent, deliveries, deliveries per
//! second, p50/p99/max delivery latency, memory per connection, how many
//! clients the server closed before the end (should be 0; if not, the
//! figures are suspect and it says so), and the CPU time the server process
//! and the clients used while the speaker spoke, from `/proc/<pid>/stat`:
//! server CPU per delivery is the figure the machine's load disturbs least,
//! and the per-work comparison (ours runs on tokio's two workers, Node's
//! relaying on one thread), so the rows print it beside deliveries/s and
//! the ratio line puts it first.
//!
//! Servers and clients share this machine's cores, so the figures are a
//! lower bound for the server alone and noisy: compare ratios from one run,
//! not absolutes.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;
use websocket_chat::{Chat, Config};

use crate::measure::ChildServer;
use crate::stats::{percentile_sorted, rate};

/// Options of `bench chat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client counts to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    clients: Vec<usize>,
    /// How long the speaker speaks, per client count.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Messages in flight (sent, own copy not yet back), one run each: 4
    /// keeps the servers waiting on round trips (latency-bound), 16 keeps
    /// them busy. Much more and our clients, on the same cores, fall a whole
    /// queue (256) behind, and lesson 8 closes them as too slow.
    #[arg(long, value_delimiter = ',', default_values_t = [4, 16])]
    window: Vec<usize>,
    /// Chat text size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// `ours` alone, or `notes-node`: ours and the notes' Node.js server
    /// with the same clients, side by side, in the order ours, Node, Node,
    /// ours for every cell (Node skipped, with the reason, where `node` or
    /// `npm` is missing).
    #[arg(long, value_enum, default_value_t = Target::Ours)]
    target: Target,
    /// Internal: run lesson 8's server (send limit lifted) on 127.0.0.1:0,
    /// print its address, and serve until killed.
    #[arg(long, hide = true)]
    serve: bool,
}

/// What `bench chat` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// websocket-chat alone.
    Ours,
    /// websocket-chat and the notes' Node.js `ws` server, in one run.
    NotesNode,
}

/// How long one step may take: a connect, a join, the sync, the drain.
const STEP: Duration = Duration::from_secs(30);

/// Runs the report, or (`--serve`) the server it measures.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::transports::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.serve {
        return runtime.block_on(serve());
    }
    let node = match args.target {
        Target::Ours => None,
        Target::NotesNode => match notes_node() {
            Ok(command) => Some(command),
            Err(why) => {
                println!("bench chat: skipping notes-node: {why}");
                None
            }
        },
    };
    println!(
        "bench chat: one speaker, every message broadcast to all clients, {} s each, \
         {}-byte text; servers in their own processes; load average {} at the start",
        args.seconds,
        args.size,
        load_average()
    );
    for (&window, &n) in args.window.iter().flat_map(|w| args.clients.iter().map(move |n| (w, n))) {
        println!("window {window}, {n} clients:");
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for (slot, &server) in slots(node.is_some()).iter().enumerate() {
            let (command, name) = match server {
                Server::Ours => (ours_command()?, "ours"),
                Server::Node => {
                    (node.as_ref().context("a Node slot without node")?.command(), "node")
                }
            };
            let outcome = measure(ChildServer::spawn(command, STEP)?, n, window, &args);
            let outcome = runtime
                .block_on(outcome)
                .with_context(|| format!("{name} with {n} clients, slot {}", slot + 1))?;
            print_row(&format!("{name} {}", slot + 1), n, &outcome);
            match server {
                Server::Ours => ours.push(outcome),
                Server::Node => peer.push(outcome),
            }
        }
        if peer.is_empty() {
            continue;
        }
        let (ours, peer) = (Summary::mean(&ours), Summary::mean(&peer));
        for (name, s) in [("ours", &ours), ("node", &peer)] {
            println!(
                "{name:<6} mean of {} slots: server CPU {:.2} us/delivery; {:>9.0} deliveries/s; \
                 p99 {:.0} us; {:.1} KiB/conn",
                s.slots, s.us_per_delivery, s.rate, s.p99, s.per_conn_kib
            );
        }
        println!("{}", ratio_line(n, &ours, &peer));
    }
    Ok(())
}

/// Which server one slot of a cell measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    Node,
}

/// The order in which one cell (a window and a client count) measures the
/// servers: ours, Node, Node, ours. The machine is shared and its load
/// drifts over a cell's half minute; with ours always first (as before), a
/// reviewer found Node's slot squeezed by other work (1.94 s of CPU in
/// 3.08 s) while ours had had a quieter one. In this order each server has
/// the same mean position, so a steady drift favours neither, and its two
/// slots, both printed, show how much the figures move.
fn slots(with_node: bool) -> &'static [Server] {
    if with_node {
        &[Server::Ours, Server::Node, Server::Node, Server::Ours]
    } else {
        &[Server::Ours]
    }
}

/// One server's figures in one cell: the mean over its slots.
#[derive(Debug, PartialEq)]
struct Summary {
    slots: usize,
    rate: f64,
    p99: f64,
    per_conn_kib: f64,
    us_per_delivery: f64,
}

impl Summary {
    fn mean(slots: &[Outcome]) -> Self {
        let n = slots.len().max(1) as f64;
        let mean = |f: fn(&Outcome) -> f64| slots.iter().map(f).sum::<f64>() / n;
        Self {
            slots: slots.len(),
            rate: mean(|o| rate(o.deliveries, o.elapsed)),
            p99: mean(|o| o.p99 as f64),
            per_conn_kib: mean(|o| o.per_conn_kib),
            us_per_delivery: mean(Outcome::server_us_per_delivery),
        }
    }
}

/// Ours over Node's, CPU per delivery first: it is the per-work comparison
/// (ours runs on tokio's two workers, Node's relaying on one thread, so
/// deliveries per second also says how many cores each could use).
fn ratio_line(n: usize, ours: &Summary, peer: &Summary) -> String {
    format!(
        "{:<6} {n:>5} clients: server CPU per delivery {:.2}x Node's; deliveries/s {:.2}x \
         Node's; p99 {:.2}x Node's; memory per connection {:.2}x Node's",
        "ours/",
        ours.us_per_delivery / peer.us_per_delivery.max(0.001),
        ours.rate / peer.rate.max(1.0),
        ours.p99 / peer.p99.max(1.0),
        ours.per_conn_kib / peer.per_conn_kib.max(0.1),
    )
}

pub(crate) fn print_row(name: &str, n: usize, r: &Outcome) {
    println!(
        "{name:<6} {n:>5} clients: {:>7} messages, {:>9} deliveries in {:.2} s = {:>9.0} \
         deliveries/s, server CPU {:.2} us/delivery ({:.2} s); latency p50 {} us, p99 {} us, \
         max {} us; {:.1} KiB/conn; closed early: {}\n{:<6} {n:>5} clients: clients' CPU \
         {:.2} s; load average {}",
        r.sent,
        r.deliveries,
        r.elapsed.as_secs_f64(),
        rate(r.deliveries, r.elapsed),
        r.server_us_per_delivery(),
        r.server_cpu,
        r.p50,
        r.p99,
        r.max,
        r.per_conn_kib,
        r.closed_early,
        "",
        r.clients_cpu,
        load_average(),
    );
    if r.closed_early > 0 {
        println!("       (clients were closed: their deliveries are missing; treat with care)");
    }
}

/// This binary as `bench chat --serve`.
pub(crate) fn ours_command() -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe().context("this program's path")?);
    command.args(["chat", "--serve"]);
    Ok(command)
}

/// The child's side: lesson 8's server with its default limits, except the
/// per-connection send limit (5 a second, a burst of 20): the speaker sends
/// as fast as the broadcast allows, and with the limit the bench would
/// measure the limit, not the fan-out. Lifted here and only here.
async fn serve() -> anyhow::Result<()> {
    let defaults = Config::default();
    let config = Config { send_rate: u32::MAX, send_burst: u32::MAX, ..defaults };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("chat listening on {}", listener.local_addr()?);
    Chat::new(config).serve(listener, CancellationToken::new()).await?;
    Ok(())
}

/// The notes' server, ready to start: `node` and the script, with `ws`
/// from the folder the bench installed it in.
pub(crate) struct NotesNode {
    script: PathBuf,
    modules: PathBuf,
}

impl NotesNode {
    /// `node notes-chat.js`, printing `... listening on 127.0.0.1:PORT`.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new("node");
        command.arg(&self.script).env("NODE_PATH", &self.modules);
        command
    }
}

/// Finds `node` and installs the peer's `ws` (the version pinned in
/// `crates/bench/peers/package.json`) with npm into `target/bench/peers/`,
/// once. `Err` says why the peer cannot run here.
pub(crate) fn notes_node() -> Result<NotesNode, String> {
    let version = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let node = version("node").ok_or("`node` is not installed (or does not run)")?;
    let peers = crate::workspace_dir().join("crates/bench/peers");
    let folder = crate::workspace_dir().join("target/bench/peers");
    let manifest = std::fs::read_to_string(peers.join("package.json"))
        .map_err(|e| format!("reading crates/bench/peers/package.json: {e}"))?;
    let installed = folder.join("node_modules/ws/package.json");
    if !same_ws(&manifest, &installed) {
        version("npm").ok_or("`npm` is not installed, so the peer's `ws` cannot be")?;
        std::fs::create_dir_all(&folder).map_err(|e| format!("creating {folder:?}: {e}"))?;
        std::fs::write(folder.join("package.json"), &manifest)
            .map_err(|e| format!("writing {folder:?}/package.json: {e}"))?;
        eprintln!("bench chat: npm install (ws, for the notes' server) in {}", folder.display());
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&folder)
            .status()
            .map_err(|e| format!("running npm: {e}"))?;
        if !status.success() || !same_ws(&manifest, &installed) {
            return Err(format!("`npm install` in {} failed ({status})", folder.display()));
        }
    }
    eprintln!("bench chat: notes-node peer on node {node}");
    Ok(NotesNode { script: peers.join("notes-chat.js"), modules: folder.join("node_modules") })
}

/// Whether the `ws` installed at `installed` is the version `manifest` pins.
fn same_ws(manifest: &str, installed: &Path) -> bool {
    let pinned = serde_json::from_str::<serde_json::Value>(manifest)
        .ok()
        .and_then(|m| m["dependencies"]["ws"].as_str().map(str::to_owned));
    let have = std::fs::read_to_string(installed)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|p| p["version"].as_str().map(str::to_owned));
    pinned.is_some() && pinned == have
}

pub(crate) struct Outcome {
    sent: u64,
    pub(crate) deliveries: u64,
    pub(crate) elapsed: Duration,
    p50: u64,
    pub(crate) p99: u64,
    max: u64,
    per_conn_kib: f64,
    closed_early: usize,
    /// CPU time the server process used while the speaker spoke (and the
    /// last window drained), user plus system.
    server_cpu: f64,
    /// The same for this process: every client.
    clients_cpu: f64,
}

impl Outcome {
    /// Server CPU time per delivery, in microseconds.
    fn server_us_per_delivery(&self) -> f64 {
        self.server_cpu * 1e6 / self.deliveries.max(1) as f64
    }
}

/// What every reader shares: deliveries so far, and who saw the sync.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    synced: AtomicUsize,
    closed_early: AtomicUsize,
}

/// The send time in a timed chat message of either server, if it is one:
/// the digits after `":"t=`.
fn sent_at_bytes(text: &[u8]) -> Option<u64> {
    let at = find(text, b"\":\"t=")? + 5;
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

// The bench's WebSocket client, on a bare TCP socket. The clients are half
// of what runs on this machine, so they do as little as a client can: one
// `read` takes whatever the socket holds (up to READ_CHUNK), and each frame
// in it is found from its 2-byte header and searched for its send time; no
// UTF-8 check, no JSON, no allocation per message. The same clients drive
// both servers. (They were tokio-tungstenite clients, which copy each
// message into a `Message` of its own and validate it: in a run of 100 and
// 1,000 clients against both servers they used 18.7 s of CPU, the two
// servers 9.6 s together.)

/// Opcodes (RFC 6455, section 5.2).
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// How much one `read` may take: many broadcast frames at once when the
/// client has fallen a little behind.
const READ_CHUNK: usize = 64 * 1024;

/// A client's masking key. RFC 6455 wants it unpredictable, against
/// proxies that a browser's page could confuse; a bench on loopback has no
/// such proxy, and the servers only check that frames are masked.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// What the bench needs to know about one frame from the server.
enum Frame<'a> {
    /// Text or binary: the payload, to search.
    Text(&'a [u8]),
    Ping,
    Closed,
    Other,
}

struct RawClient {
    reader: RawReader,
    writer: RawWriter,
}

impl RawClient {
    /// Connects and does the opening handshake by hand.
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        // The key of RFC 6455's own example; any 16 bytes in base64 will do.
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        write.write_all(request.as_bytes()).await?;
        let mut reader = RawReader { stream: read, buf: vec![0; READ_CHUNK], start: 0, end: 0 };
        let head_end = loop {
            if let Some(at) = find(&reader.buf[..reader.end], b"\r\n\r\n") {
                break at + 4;
            }
            if reader.end == reader.buf.len() {
                bail!("the handshake's answer has no end");
            }
            reader.fill().await?;
        };
        if !reader.buf.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&reader.buf[..head_end]);
            bail!("the server did not upgrade: {head}");
        }
        reader.start = head_end;
        Ok(Self { reader, writer: RawWriter { stream: write, frame: Vec::new() } })
    }

    async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.writer.send_text(text).await
    }

    /// The next frame, reading as needed.
    async fn next_frame(&mut self) -> io::Result<Frame<'_>> {
        while self.reader.whole().is_none() {
            self.reader.fill().await?;
        }
        Ok(self.reader.parsed().expect("a whole frame is in the buffer"))
    }

    fn split(self) -> (RawReader, RawWriter) {
        (self.reader, self.writer)
    }
}

/// The reading half: a buffer and where its unparsed bytes are.
struct RawReader {
    stream: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RawReader {
    /// One `read`: whatever the socket holds, after the unparsed bytes.
    /// The end of the stream is an error: the server closed on us.
    async fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            // A frame larger than the buffer: make room for it.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let read = self.stream.read(&mut self.buf[self.end..]).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += read;
        Ok(())
    }

    /// The next whole frame in the buffer, if there is one: its opcode and
    /// where its payload is. Server frames are never masked.
    fn whole(&self) -> Option<(u8, usize, usize)> {
        let (opcode, from, to) = frame_at(&self.buf[self.start..self.end])?;
        Some((opcode, self.start + from, self.start + to))
    }

    /// Takes the next whole frame off the buffer.
    fn parsed(&mut self) -> Option<Frame<'_>> {
        let (opcode, from, to) = self.whole()?;
        self.start = to;
        Some(match opcode {
            OP_TEXT | OP_BINARY => Frame::Text(&self.buf[from..to]),
            OP_PING => Frame::Ping,
            OP_CLOSE => Frame::Closed,
            _ => Frame::Other,
        })
    }
}

/// The opcode and payload range of the unmasked frame at the start of `b`,
/// if all of it is there.
fn frame_at(b: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, header): (u64, usize) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        short => (u64::from(short), 2),
    };
    let end = header.checked_add(usize::try_from(len).ok()?)?;
    (b.len() >= end).then_some((b0 & 0x0f, header, end))
}

/// The writing half: masked frames, one `write` each.
struct RawWriter {
    stream: OwnedWriteHalf,
    frame: Vec<u8>,
}

impl RawWriter {
    async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.frame.clear();
        self.frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => self.frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                self.frame.push(0x80 | 126);
                self.frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.frame.push(0x80 | 127);
                self.frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.frame.extend_from_slice(&MASK);
        self.frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&self.frame).await
    }
}

/// What [`measure`] drives and watches: the address the clients join, and
/// the processes whose memory and CPU time count as the server's (one for
/// lesson 8; HAProxy, the instances and Redis for `bench scale-out`).
pub(crate) trait Measured {
    fn addr(&self) -> SocketAddr;
    fn pids(&self) -> Vec<u32>;
}

impl Measured for ChildServer {
    fn addr(&self) -> SocketAddr {
        ChildServer::addr(self)
    }
    fn pids(&self) -> Vec<u32> {
        vec![self.pid()]
    }
}

/// Resident memory of all of `server`'s processes, in KiB.
fn rss_kib(server: &impl Measured) -> anyhow::Result<u64> {
    let mut sum = 0;
    for pid in server.pids() {
        sum += crate::measure::proc_status(pid)?.rss_kib;
    }
    Ok(sum)
}

/// CPU time of all of `server`'s processes so far, in seconds.
fn server_cpu_seconds(server: &impl Measured) -> anyhow::Result<f64> {
    server.pids().into_iter().map(cpu_seconds).sum()
}

async fn measure(
    server: impl Measured,
    n: usize,
    window: usize,
    args: &Args,
) -> anyhow::Result<Outcome> {
    measure_with(server, n, window, args.size, args.seconds).await
}

/// One cell: `n` clients join `server`, one speaks with `window` messages
/// in flight for `seconds`, each `size` bytes of text.
pub(crate) async fn measure_with(
    server: impl Measured,
    n: usize,
    window: usize,
    size: usize,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    let addr: SocketAddr = server.addr();
    let before = rss_kib(&server)?;
    let base = Instant::now();
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();

    // Join one at a time: connect, name yourself, wait for the name to come
    // back, then read on a task of your own. `u{i}x`: no name contains another.
    let (echo_tx, mut echo_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut speaker = None;
    let mut receivers = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = tokio::time::timeout(STEP, RawClient::connect(addr))
            .await
            .with_context(|| format!("client {i}: connect timed out"))?
            .with_context(|| format!("connecting client {i}"))?;
        let name = format!("u{i}x");
        client.send_text(&format!(r#"{{"type":"username","data":"{name}"}}"#)).await?;
        let joined = async {
            loop {
                match client.next_frame().await? {
                    Frame::Text(t) if contains(t, name.as_bytes()) => return Ok(()),
                    Frame::Closed => bail!("closed before its join came back"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(STEP, joined)
            .await
            .with_context(|| format!("client {i}: its join did not come back"))??;
        // The speaker's writing half stays here; the others keep theirs, to
        // answer the server's pings.
        let (reader, writer) = client.split();
        let writer = if i == 0 {
            speaker = Some(writer);
            None
        } else {
            Some(writer)
        };
        let echo = (i == 0).then(|| echo_tx.clone());
        let (tally, stop) = (tally.clone(), stop.clone());
        receivers.push(tokio::spawn(listen(reader, writer, echo, tally, stop, base)));
    }
    drop(echo_tx);
    let mut speaker = speaker.context("at least one client")?;

    // Settle: a message everybody sees after every join notice.
    speaker.send_text(r#"{"type":"message","data":"sync"}"#).await?;
    wait_for(|| tally.synced.load(Ordering::Relaxed) >= n, "every client to see the sync").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(&server)?;
    let per_conn_kib = idle.saturating_sub(before) as f64 / n as f64;

    let pad = "x".repeat(size.saturating_sub(24));
    let run_for = Duration::from_secs_f64(seconds);
    let cpu_before = (server_cpu_seconds(&server)?, cpu_seconds(std::process::id())?);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut in_flight = 0usize;
    while started.elapsed() < run_for {
        while in_flight < window {
            let text = format!("t={};{pad}", base.elapsed().as_micros());
            speaker.send_text(&format!(r#"{{"type":"message","data":"{text}"}}"#)).await?;
            sent += 1;
            in_flight += 1;
        }
        match tokio::time::timeout(Duration::from_secs(5), echo_rx.recv()).await {
            Ok(Some(())) => in_flight -= 1,
            _ => bail!("the speaker's own message did not come back within 5 s"),
        }
    }
    // Let the last window land everywhere (or give up after STEP: a client
    // closed early never gets its share).
    let expected = sent * n as u64;
    let _ = wait_for(|| tally.delivered.load(Ordering::Relaxed) >= expected, "the drain").await;
    let elapsed = started.elapsed();
    let server_cpu = server_cpu_seconds(&server)? - cpu_before.0;
    let clients_cpu = cpu_seconds(std::process::id())? - cpu_before.1;
    let closed_early = tally.closed_early.load(Ordering::Relaxed);

    stop.cancel();
    let mut all = Vec::new();
    for r in receivers {
        all.extend(r.await?);
    }
    drop(speaker);
    drop(server);
    all.sort_unstable();
    Ok(Outcome {
        sent,
        deliveries: all.len() as u64,
        elapsed,
        p50: percentile_sorted(&all, 50.0).unwrap_or_default(),
        p99: percentile_sorted(&all, 99.0).unwrap_or_default(),
        max: all.last().copied().unwrap_or_default(),
        per_conn_kib,
        closed_early,
        server_cpu,
        clients_cpu,
    })
}

/// One client's reading task: counts and times every timed chat message,
/// notes the sync, answers pings (if it has a writing half), and hands the
/// latencies back when told to stop. Deliveries are added to the shared
/// tally once per read, not once per frame, so the clients do not queue up
/// on one counter.
async fn listen(
    mut reader: RawReader,
    mut writer: Option<RawWriter>,
    echo: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    tally: Arc<Tally>,
    stop: CancellationToken,
    base: Instant,
) -> Vec<u64> {
    let mut lat = Vec::new();
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => break,
            read = reader.fill() => read,
        };
        if read.is_err() {
            tally.closed_early.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let now = base.elapsed().as_micros() as u64;
        let (mut timed, mut pings, mut closed) = (0, 0, false);
        while let Some(frame) = reader.parsed() {
            match frame {
                Frame::Text(text) => match sent_at_bytes(text) {
                    Some(sent) => {
                        lat.push(now.saturating_sub(sent));
                        timed += 1;
                    }
                    None if contains(text, b"\"sync\"") => {
                        tally.synced.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                },
                Frame::Ping => pings += 1,
                Frame::Closed => closed = true,
                Frame::Other => {}
            }
        }
        if timed > 0 {
            tally.delivered.fetch_add(timed, Ordering::Relaxed);
            if let Some(e) = &echo {
                for _ in 0..timed {
                    let _ = e.send(());
                }
            }
        }
        if let Some(w) = writer.as_mut().filter(|_| pings > 0) {
            // An empty pong answers any ping: the server only wants a sign of life.
            if w.send(OP_PONG, b"").await.is_err() {
                closed = true;
            }
        }
        if closed {
            tally.closed_early.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    lat
}

/// User and system CPU time a process has used so far, in seconds, from
/// fields 14 and 15 of `/proc/<pid>/stat` (in clock ticks).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; count from after its ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("no ')' in stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Field 14 is index 11 after the ')' (field 3 is index 0).
    Ok((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK`: the unit of `/proc/<pid>/stat`'s times (100 on every
/// Linux this runs on; asked rather than assumed).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The load average over the last minute, from `/proc/loadavg`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Polls `done` every 2 ms until it holds, or fails after [`STEP`].
async fn wait_for(done: impl Fn() -> bool, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP;
    while !done() {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after {STEP:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_frames_from_their_headers() {
        // A 5-byte text frame and the first byte of the next one.
        let b = [0x81, 0x05, b'h', b'e', b'l', b'l', b'o', 0x89];
        assert_eq!(frame_at(&b), Some((OP_TEXT, 2, 7)));
        assert_eq!(frame_at(&b[7..]), None, "a lone first byte is not a frame");
        assert_eq!(frame_at(&b[..6]), None, "nor is a payload cut short");
        // 300 bytes: the length in the 2 bytes after 126.
        let mut long = vec![0x81, 126, 0x01, 0x2c];
        long.extend([b'x'; 300]);
        assert_eq!(frame_at(&long), Some((OP_TEXT, 4, 304)));
        assert_eq!(frame_at(&[0x89, 0x00]), Some((OP_PING, 2, 2)));
    }

    #[test]
    fn reads_the_send_time_from_both_servers_shapes() {
        let ours = br#"{"type":"message","username":"u0x","message":"t=1234;xx","room":"lobby"}"#;
        let node = br#"{"type":"message","data":"t=987;xx"}"#;
        assert_eq!(sent_at_bytes(ours), Some(1234));
        assert_eq!(sent_at_bytes(node), Some(987));
        assert_eq!(sent_at_bytes(br#"{"type":"info","message":"u1x joined lobby"}"#), None);
        assert_eq!(sent_at_bytes(br#"{"type":"message","data":"sync"}"#), None);
    }

    /// Per cell, each server gets the same number of slots and the same
    /// mean position, so neither always gets the earlier (or quieter) one.
    #[test]
    fn neither_server_always_runs_first() {
        let order = slots(true);
        let positions = |who: Server| -> Vec<usize> {
            order.iter().enumerate().filter(|&(_, &s)| s == who).map(|(i, _)| i).collect()
        };
        let (ours, node) = (positions(Server::Ours), positions(Server::Node));
        assert_eq!(ours.len(), 2, "two slots each, so the noise shows: {order:?}");
        assert_eq!(node.len(), 2, "two slots each, so the noise shows: {order:?}");
        assert_eq!(ours.iter().sum::<usize>(), node.iter().sum::<usize>(), "{order:?}");
        assert_eq!(slots(false), &[Server::Ours], "ours alone: one slot, as before");
    }

    #[test]
    fn a_summary_is_the_mean_of_the_slots_and_ratios_lead_with_cpu() {
        let slot = |deliveries: u64, cpu: f64, p99: u64, kib: f64| Outcome {
            sent: 0,
            deliveries,
            elapsed: Duration::from_secs(2),
            p50: 0,
            p99,
            max: 0,
            per_conn_kib: kib,
            closed_early: 0,
            server_cpu: cpu,
            clients_cpu: 0.0,
        };
        // 100 and 300 deliveries/s; 10 and 30 us per delivery.
        let ours = Summary::mean(&[slot(200, 0.002, 100, 4.0), slot(600, 0.018, 300, 8.0)]);
        assert_eq!(ours.slots, 2);
        assert!((ours.rate - 200.0).abs() < 1e-9, "{ours:?}");
        assert!((ours.us_per_delivery - 20.0).abs() < 1e-9, "{ours:?}");
        assert!((ours.p99 - 200.0).abs() < 1e-9, "{ours:?}");
        assert!((ours.per_conn_kib - 6.0).abs() < 1e-9, "{ours:?}");
        let peer = Summary::mean(&[slot(100, 0.004, 400, 12.0), slot(100, 0.004, 400, 12.0)]);
        let line = ratio_line(100, &ours, &peer);
        assert!(
            line.contains("clients: server CPU per delivery 0.50x Node's; deliveries/s 4.00x"),
            "{line}"
        );
        assert!(line.ends_with("p99 0.50x Node's; memory per connection 0.50x Node's"), "{line}");
    }
}
