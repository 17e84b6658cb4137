//! # Lesson 3: a thread per connection against an event loop
//!
//! One echo protocol (every byte a client sends comes back; when the client
//! half-closes, the server finishes the echo and closes) served three ways:
//!
//! * [`serve_threaded`]: `std::net`, blocking calls, one OS thread per
//!   connection, each with a small named stack ([`THREAD_STACK`]).
//! * [`serve_evented`]: `mio`, one thread, one `Poll` (epoll on Linux),
//!   non-blocking sockets kept in a `Slab`, a write buffer per connection
//!   capped at [`WRITE_BUF_CAP`] (back-pressure), edge-triggered readiness.
//! * [`serve_tokio`]: the same event loop hidden behind `async`/`await`.
//!
//! All three refuse politely past a connection limit (lowered at start to
//! what `ulimit -n` leaves room for, so the refusal itself never runs out of
//! descriptors) and count what they do in a shared [`Stats`], which the tests
//! and the demo read.
//!
//! ```text
//! cargo run -p threads-vs-epoll                                   # demo: threads and memory side by side
//! cargo run -p threads-vs-epoll -- serve --flavour threaded      # 127.0.0.1:7003 until Ctrl-C
//! cargo run -p threads-vs-epoll -- serve --flavour evented       # 127.0.0.1:7004
//! cargo run -p threads-vs-epoll -- serve --flavour tokio         # 127.0.0.1:7005
//! cargo run -p threads-vs-epoll -- client --addr 127.0.0.1:7004 "hello"
//! cargo run -p bench --release -- c10k                            # the measurements in the chapter
//! ```
//!
//! Read it beside `docs/03-threads-vs-epoll.md`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

pub mod measure;

/// Where `serve --flavour threaded` listens by default (loopback only).
pub const THREADED_ADDR: &str = "127.0.0.1:7003";
/// Where `serve --flavour evented` listens by default.
pub const EVENTED_ADDR: &str = "127.0.0.1:7004";
/// Where `serve --flavour tokio` listens by default.
pub const TOKIO_ADDR: &str = "127.0.0.1:7005";

/// How many finished handshakes the kernel may queue before we `accept` them.
/// A benchmark opens thousands of connections in a burst; with the classic
/// 128 the queue overflows, the kernel drops the final ACK of the handshake,
/// and the client waits for a retransmission (a connect that takes a second
/// instead of microseconds). The kernel silently caps this at
/// `/proc/sys/net/core/somaxconn` (4096 on the machine the chapter was
/// measured on).
pub const BACKLOG: i32 = 4096;

/// The stack each connection thread gets. Rust's default is 2 MiB of address
/// space; an echo loop needs a few KiB, so 64 KiB is plenty and lets 10,000
/// threads fit in 640 MiB of address space (only touched pages use memory).
pub const THREAD_STACK: usize = 64 * 1024;

/// How many bytes one `read` asks for. The threaded server keeps this buffer
/// on each thread's stack; the event loop has one, shared by all connections.
pub const READ_CHUNK: usize = 16 * 1024;

/// The most bytes the event loop keeps for one connection that it could not
/// send yet. Once a connection's buffer holds this much, the loop stops
/// reading from it until the client drains its echo: the client then feels
/// the back-pressure as its own writes blocking. Without a cap, a client that
/// sends and never reads would make the server buffer everything it sent.
pub const WRITE_BUF_CAP: usize = 64 * 1024;

/// How many connections a server holds at once before it refuses. Each one
/// costs a file descriptor (and, for the threaded server, a thread); running
/// out of either in the middle of an `accept` is worse than saying no.
/// 15,000 leaves room under this machine's open-file limit of 20,000; under a
/// lower limit each server lowers its cap when it starts ([`RESERVED_FDS`]).
pub const MAX_CONNECTIONS: usize = 15_000;

/// What a refused client reads before the server closes: a line it can show
/// a human, instead of a bare reset that looks like a crash.
pub const BUSY: &[u8] = b"busy: too many connections, try again later\n";

/// A client silent for this long is hung up on. Long, because the benchmark
/// holds thousands of idle connections open on purpose for a minute or two.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the event loop waits in `poll` when nothing happens, so it can
/// look at the stop flag and sweep idle connections now and then.
pub const TICK: Duration = Duration::from_millis(200);

/// What every server may be tuned with. Tests lower the limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refuse connections past this many open at once.
    pub max_connections: usize,
    /// Event loop only: stop reading a connection whose unsent echo holds this many bytes.
    pub write_buf_cap: usize,
    /// Hang up on a client silent for this long.
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            write_buf_cap: WRITE_BUF_CAP,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Counters every server keeps, so tests and the demo can watch it from outside.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open right now.
    pub open: AtomicUsize,
    /// Connections accepted and served since the start.
    pub accepted: AtomicU64,
    /// Connections refused because of the limit.
    pub refused: AtomicU64,
    /// Connections that ended with an error (a reset, say) rather than a close.
    pub errors: AtomicU64,
    /// Bytes echoed back, all connections together.
    pub echoed: AtomicU64,
    /// Bytes the event loop holds in write buffers right now, all connections together.
    pub buffered: AtomicUsize,
    /// The largest one connection's write buffer has ever been.
    pub peak_buffered: AtomicUsize,
}

impl Stats {
    /// A fresh set of counters, shared between a server and whoever watches it.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        Self::get(&self.open)
    }

    /// Bytes held in write buffers right now.
    pub fn buffered(&self) -> usize {
        Self::get(&self.buffered)
    }

    /// The largest single write buffer seen so far.
    pub fn peak_buffered(&self) -> usize {
        Self::get(&self.peak_buffered)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Connections that ended with an error so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }
}

/// A listening socket built with socket2, so we choose the backlog
/// ([`BACKLOG`]) instead of taking `std`'s fixed 128, and set `SO_REUSEADDR`
/// so a restarted server can bind its port while old connections sit in
/// TIME_WAIT.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    listen_with_backlog(addr, BACKLOG)
}

/// [`listen`] with another backlog, to watch what a small one does to a
/// burst of connects (see the chapter's exercises).
pub fn listen_with_backlog(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Tells a refused client why, without waiting for it: one best-effort write
/// of [`BUSY`] into the fresh socket's empty send buffer, then close.
fn refuse(mut stream: impl Write, stats: &Stats) {
    stats.refused.fetch_add(1, Ordering::Relaxed);
    let _ = stream.write(BUSY);
}

/// Descriptors a server keeps out of its connection cap. `ls -l /proc/<pid>/fd`
/// on an idle `serve` counts three for stdio, one for the listener, and the
/// event loop's: one epoll for mio, about six for tokio's runtime (epolls, an
/// eventfd waker, a socket pair for signals). Add one for the connection a
/// server accepts only to refuse it, and spares for what else a process may
/// hold (a log file, a descriptor its parent forgot to close). Too few, and
/// the server runs out of descriptors before it reaches its cap: `accept`
/// fails, and a server that cannot accept cannot say [`BUSY`] either, so
/// clients hang in the backlog. A spare descriptor costs nothing.
pub const RESERVED_FDS: usize = 16;

/// The connection cap that an open-file limit of `nofile` descriptors can
/// really keep: `asked`, or fewer, so that [`RESERVED_FDS`] stay free.
/// `None` means no limit.
pub fn cap_for_nofile(asked: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(limit) => {
            let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(RESERVED_FDS);
            asked.min(room)
        }
        None => asked,
    }
}

/// `asked`, lowered to what this process's open-file limit (`ulimit -n`, the
/// soft limit of `RLIMIT_NOFILE`) allows, saying so in one line if it had to.
/// Each server calls it once, when it starts.
fn fit_cap_to_nofile(who: &str, asked: usize) -> usize {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let cap = cap_for_nofile(asked, nofile);
    if cap < asked {
        eprintln!(
            "{who}: open-file limit (ulimit -n) is {}: serving at most {cap} connections \
             instead of {asked}, keeping {RESERVED_FDS} descriptors for the listener, stdio, \
             the event loop and the busy reply",
            nofile.unwrap_or(u64::MAX)
        );
    }
    cap
}

// ---------------------------------------------------------------------------
// Flavour 1: a thread per connection
// ---------------------------------------------------------------------------

/// How long the accept loops pause after `accept` fails for want of
/// resources (EMFILE, ENFILE, ENOMEM, ENOBUFS). Long enough not to spin, short
/// enough that a freed descriptor is used almost at once.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// Serves with one OS thread per connection until `stop` turns true.
///
/// Each thread runs a plain blocking loop, [`echo_blocking`]: the kernel
/// parks the thread inside `read` until bytes arrive, and the scheduler
/// switches between threads for us. That is why the code is so short, and why
/// it costs a stack and a kernel task per client.
///
/// Stopping ends the accept loop only: each connection thread runs on until
/// its client leaves or goes idle, since a thread blocked in `read` cannot be
/// interrupted from outside (the event loops can simply drop their sockets).
pub fn serve_threaded(
    listener: TcpListener,
    config: &Config,
    stats: &Arc<Stats>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let max_connections = fit_cap_to_nofile("threaded", config.max_connections);
    let mut accept_failures = Throttled::new("threaded: accept failed");
    let mut spawn_failures = Throttled::new("threaded: cannot spawn a thread");
    for incoming in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(s) => s,
            // Out of file descriptors, or the client gave up before we got to
            // it: this connection is lost, the server is not.
            Err(e) => {
                accept_failures.failed(&e);
                // Out of descriptors or memory, the next accept fails the same
                // way at once: pause, or this loop spins a core until some
                // connection closes.
                if matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) {
                    thread::sleep(ACCEPT_PAUSE);
                }
                continue;
            }
        };
        accept_failures.log_if_due();
        if stats.open() >= max_connections {
            refuse(&stream, stats);
            continue;
        }
        stats.open.fetch_add(1, Ordering::SeqCst);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let for_thread = Arc::clone(stats);
        let idle = config.idle_timeout;
        let spawned = thread::Builder::new()
            .name("echo-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                // However the connection ends, it is no longer open.
                let _open = OpenGuard(&for_thread);
                if let Err(e) = echo_blocking(stream, idle, &for_thread) {
                    for_thread.errors.fetch_add(1, Ordering::Relaxed);
                    // Resets and idle timeouts (a read timeout is reported as
                    // WouldBlock on Linux) are a client's doing: count, do not log.
                    use io::ErrorKind::{ConnectionReset, TimedOut, WouldBlock};
                    if !matches!(e.kind(), ConnectionReset | TimedOut | WouldBlock) {
                        eprintln!("threaded: connection ended with {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => spawn_failures.log_if_due(),
            Err(e) => {
                // The kernel would not give us another thread (EAGAIN): the
                // closure and its stream were dropped, so the client sees a close.
                stats.open.fetch_sub(1, Ordering::SeqCst);
                spawn_failures.failed(&e);
            }
        }
    }
    Ok(())
}

/// Decrements `open` when a connection thread ends, even by panic.
struct OpenGuard<'a>(&'a Stats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection, blocking: read, write it all back, until the client
/// half-closes. `write_all` blocks while the client is not reading, which is
/// this flavour's back-pressure: the thread simply stops reading.
pub fn echo_blocking(mut stream: TcpStream, idle: Duration, stats: &Stats) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    let mut buf = [0u8; READ_CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
        stats.echoed.fetch_add(n as u64, Ordering::Relaxed);
    }
    stream.shutdown(Shutdown::Write)
}

// ---------------------------------------------------------------------------
// Flavour 2: one thread, one event loop (mio over epoll)
// ---------------------------------------------------------------------------

/// The listener's token. Connections get the slab key as their token, and a
/// slab key never reaches `usize::MAX`.
const LISTENER: Token = Token(usize::MAX);

/// Everything the loop knows about one connection. This struct *is* the
/// connection's state; a thread would keep the same facts on its stack.
#[derive(Debug)]
struct Conn {
    stream: MioStream,
    /// Echo bytes read but not yet written, oldest first. Empty (and
    /// unallocated) for a connection that keeps up with its echo.
    out: Vec<u8>,
    /// The client half-closed: no more reads, finish the echo, then close.
    read_closed: bool,
    last_active: Instant,
}

/// What [`drive`] decided about a connection.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Waiting for the next readiness event.
    Wait,
    /// Echo finished after the client's half-close: close it.
    Done,
}

/// Serves every connection from this one thread until `stop` turns true.
///
/// The loop asks the kernel one question, "which of my sockets can make
/// progress?" (`poll`), and then does the non-blocking work for each socket
/// the answer names. No call in here ever blocks except `poll` itself.
pub fn serve_evented(
    listener: TcpListener,
    config: &Config,
    stats: &Stats,
    stop: &AtomicBool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    // One read buffer for every connection: we copy out of it at once, so
    // an idle connection owns no buffer at all.
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut last_sweep = Instant::now();
    // Set when accept failed for a reason other than WouldBlock (out of file
    // descriptors, say). Edge-triggered readiness will not tell us again about
    // connections still queued, so we retry on the next tick ourselves.
    let mut retry_accept = false;
    let mut accepting = Accepting {
        max_connections: fit_cap_to_nofile("evented", config.max_connections),
        accept_failures: Throttled::new("evented: accept failed (retrying every 10ms)"),
        register_failures: Throttled::new("evented: cannot register a connection"),
    };

    while !stop.load(Ordering::SeqCst) {
        let timeout = if retry_accept { Duration::from_millis(10) } else { TICK };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if retry_accept {
            retry_accept = accept_all(&listener, &poll, &mut conns, &mut accepting, stats);
        }
        for event in &events {
            if event.token() == LISTENER {
                retry_accept = accept_all(&listener, &poll, &mut conns, &mut accepting, stats);
                continue;
            }
            let key = event.token().0;
            // A token can name a connection we closed earlier in this batch
            // (skip it), or one whose slab key was reused by a connection
            // accepted since (harmless: drive() just meets WouldBlock).
            let Some(conn) = conns.get_mut(key) else { continue };
            // We do not look at *which* readiness the event reports: drive()
            // tries to write and to read until each says WouldBlock (or the
            // back-pressure cap stops reading), which covers both and is what
            // edge-triggered readiness demands.
            let peer_closed = event.is_read_closed();
            let outcome = drive(conn, &mut scratch, config.write_buf_cap, peer_closed, stats);
            match outcome {
                Ok(Next::Wait) => {}
                Ok(Next::Done) => close(&poll, &mut conns, key, stats),
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    if e.kind() != io::ErrorKind::ConnectionReset {
                        eprintln!("evented: connection {key} ended with {e}");
                    }
                    close(&poll, &mut conns, key, stats);
                }
            }
        }
        if last_sweep.elapsed() >= TICK {
            last_sweep = Instant::now();
            let idle: Vec<usize> = conns
                .iter()
                .filter(|(_, c)| c.last_active.elapsed() > config.idle_timeout)
                .map(|(k, _)| k)
                .collect();
            for key in idle {
                close(&poll, &mut conns, key, stats);
            }
        }
    }
    // Stopping: dropping the slab closes every connection.
    for (_, conn) in conns.iter() {
        stats.buffered.fetch_sub(conn.out.len(), Ordering::Relaxed);
    }
    stats.open.fetch_sub(conns.len(), Ordering::SeqCst);
    Ok(())
}

/// What the event loop's accepting needs besides the listener: its cap
/// (lowered to the open-file limit at start) and its throttled error lines.
#[derive(Debug)]
struct Accepting {
    max_connections: usize,
    accept_failures: Throttled,
    register_failures: Throttled,
}

/// Accepts until the listener says WouldBlock (edge-triggered: one event may
/// stand for many queued connections). Returns true when it stopped on an
/// error and should be retried soon.
fn accept_all(
    listener: &mio::net::TcpListener,
    poll: &Poll,
    conns: &mut Slab<Conn>,
    accepting: &mut Accepting,
    stats: &Stats,
) -> bool {
    loop {
        let (mut stream, _peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ECONNABORTED: the client left before we accepted; next one.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                accepting.accept_failures.failed(&e);
                return true;
            }
        };
        accepting.accept_failures.log_if_due();
        if conns.len() >= accepting.max_connections {
            refuse(&mut stream, stats);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let entry = conns.vacant_entry();
        let token = Token(entry.key());
        // Readable and writable, once, for the connection's whole life. With
        // edge-triggered epoll a writable event only comes when the send
        // buffer goes from full to not full, so this costs nothing while idle.
        if let Err(e) =
            poll.registry().register(&mut stream, token, Interest::READABLE.add(Interest::WRITABLE))
        {
            accepting.register_failures.failed(&e);
            continue;
        }
        entry.insert(Conn {
            stream,
            out: Vec::new(),
            read_closed: false,
            last_active: Instant::now(),
        });
        stats.open.fetch_add(1, Ordering::SeqCst);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

/// Removes a connection: deregisters it, forgets its buffer, closes the socket.
fn close(poll: &Poll, conns: &mut Slab<Conn>, key: usize, stats: &Stats) {
    if let Some(mut conn) = conns.try_remove(key) {
        let _ = poll.registry().deregister(&mut conn.stream);
        stats.buffered.fetch_sub(conn.out.len(), Ordering::Relaxed);
        stats.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Moves one connection forward as far as it can go without blocking.
///
/// The rules of an edge-triggered loop, each one a bug when forgotten:
/// * every call may say `WouldBlock`; that means "not now", never an error;
/// * after an event, keep reading (or writing) until the socket is drained,
///   because the kernel will not report the same readiness twice;
/// * a write may take only part of the buffer: keep the rest for later;
/// * when the unsent echo reaches `cap`, stop reading (back-pressure). The
///   client's data then waits in the kernel, the client's own writes block,
///   and our memory stays bounded. The next writable event calls us again and
///   we resume reading, since no new readable edge will come for data that
///   was already waiting.
///
/// `peer_closed` says the event carried a hang-up (`EPOLLRDHUP`): then we
/// read until the end-of-file, never stopping early (see the short read below).
fn drive(
    conn: &mut Conn,
    scratch: &mut [u8],
    cap: usize,
    peer_closed: bool,
    stats: &Stats,
) -> io::Result<Next> {
    loop {
        flush(conn, stats)?;
        if conn.read_closed {
            if conn.out.is_empty() {
                // All echoed: send our FIN so the client's read-until-close ends.
                conn.stream.shutdown(Shutdown::Write)?;
                return Ok(Next::Done);
            }
            return Ok(Next::Wait); // the rest goes out on the next writable event
        }
        if conn.out.len() >= cap {
            return Ok(Next::Wait); // back-pressure: no reads until the client drains
        }
        let room = scratch.len().min(cap - conn.out.len());
        let n = match conn.stream.read(&mut scratch[..room]) {
            Ok(0) => {
                conn.read_closed = true;
                continue;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Next::Wait),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        conn.last_active = Instant::now();
        // The common case: nothing is queued, so echo straight from the
        // scratch buffer and keep only what the socket would not take.
        let sent =
            if conn.out.is_empty() { write_some(&mut conn.stream, &scratch[..n])? } else { 0 };
        stats.echoed.fetch_add(sent as u64, Ordering::Relaxed);
        if sent < n {
            conn.out.extend_from_slice(&scratch[sent..n]);
            stats.buffered.fetch_add(n - sent, Ordering::Relaxed);
            stats.peak_buffered.fetch_max(conn.out.len(), Ordering::Relaxed);
        }
        // A short read took everything the socket had, so the next read would
        // only say WouldBlock: skip that syscall. It is safe because any byte
        // arriving from now on raises a new edge, and an end-of-file that was
        // already waiting showed up as `peer_closed` on this very event.
        if n < room && !peer_closed {
            return Ok(Next::Wait);
        }
    }
}

/// Writes as much of `conn.out` as the socket takes right now and keeps the
/// unsent tail, in order.
fn flush(conn: &mut Conn, stats: &Stats) -> io::Result<()> {
    if conn.out.is_empty() {
        return Ok(());
    }
    let sent = write_some(&mut conn.stream, &conn.out)?;
    conn.last_active = Instant::now();
    stats.echoed.fetch_add(sent as u64, Ordering::Relaxed);
    stats.buffered.fetch_sub(sent, Ordering::Relaxed);
    if sent == conn.out.len() {
        // Drop the allocation too: a connection that keeps up owns no buffer.
        conn.out = Vec::new();
    } else {
        conn.out.drain(..sent);
    }
    Ok(())
}

/// Writes until `buf` is all sent or the socket says WouldBlock; returns how
/// many bytes went out. A partial write is normal: the socket's send buffer
/// had room for only part of it.
fn write_some(stream: &mut MioStream, buf: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < buf.len() {
        match stream.write(&buf[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

// ---------------------------------------------------------------------------
// Flavour 3: the same event loop behind async/await
// ---------------------------------------------------------------------------

/// Serves with one tokio task per connection until `token` is cancelled, then
/// stops accepting, cancels the connections and waits for them (at most
/// `harness::SHUTDOWN_DEADLINE`).
///
/// Underneath, tokio runs the loop of [`serve_evented`]: tasks are the
/// per-connection state, `.await` is the place a `WouldBlock` would be, and
/// the runtime registers sockets with epoll for us.
pub async fn serve_tokio(
    listener: tokio::net::TcpListener,
    config: Config,
    stats: Arc<Stats>,
    token: tokio_util::sync::CancellationToken,
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tracker = tokio_util::task::TaskTracker::new();
    let max_connections = fit_cap_to_nofile("tokio", config.max_connections);
    let mut accept_failures = Throttled::new("tokio: accept failed");
    loop {
        let (mut stream, _) = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failures.failed(&e);
                    // Out of descriptors: do not spin on an error that repeats.
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        accept_failures.log_if_due();
        if stats.open() >= max_connections {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.try_write(BUSY);
            continue;
        }
        stats.open.fetch_add(1, Ordering::SeqCst);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::clone(&stats);
        let token = token.clone();
        let idle = config.idle_timeout;
        tracker.spawn(async move {
            let _open = OpenGuard(&stats);
            let _ = stream.set_nodelay(true);
            let result = tokio::select! {
                () = token.cancelled() => Ok(()),
                r = echo_async(&mut stream, idle, &stats) => r,
            };
            match result {
                Ok(()) => {
                    let _ = stream.shutdown().await;
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    use io::ErrorKind::{ConnectionReset, TimedOut};
                    if !matches!(e.kind(), ConnectionReset | TimedOut) {
                        eprintln!("tokio: connection ended with {e}");
                    }
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(harness::SHUTDOWN_DEADLINE, tracker.wait()).await;
    Ok(())
}

/// One connection as a task: reads and writes look blocking, but each
/// `.await` hands the thread back to the runtime instead of parking it.
async fn echo_async(
    stream: &mut tokio::net::TcpStream,
    idle: Duration,
    stats: &Stats,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // On the heap: a task's state lives in its future, and a 16 KiB array
    // there would make every idle task cost 16 KiB.
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match tokio::time::timeout(idle, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
        stats.echoed.fetch_add(n as u64, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// Sends `message`, half-closes, and reads until the server closes: the echo.
/// Works with every flavour; reading *while* sending is not needed as long as
/// the message fits in the socket buffers, so large payloads use
/// [`echo_large`].
pub fn echo(addr: SocketAddr, message: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(message)?;
    stream.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// Like [`echo`] for payloads bigger than the socket buffers (1 MiB, say):
/// a second thread writes while this one reads, because a client that writes
/// everything before reading deadlocks with any server that applies
/// back-pressure: both sides wait for the other to read.
pub fn echo_large(addr: SocketAddr, message: Vec<u8>, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let sending = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&message)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    sending.join().map_err(|_| io::Error::other("the writer thread panicked"))??;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Logging a failure that repeats
// ---------------------------------------------------------------------------

/// How often a server may log the same kind of failure that repeats for as
/// long as its cause lasts (`accept` out of descriptors, a thread that cannot
/// be spawned). Each failure is counted; one line per interval says how many
/// there were, instead of a hundred lines a second.
pub const REPEATED_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

/// One line per [`REPEATED_ERROR_LOG_EVERY`] at most for an error that repeats,
/// with how many occurrences that line stands for.
#[derive(Debug)]
struct Throttled {
    /// What failed, as the line starts: `"threaded: accept failed"`.
    what: &'static str,
    /// When the last line was written.
    last_line: Option<Instant>,
    /// Failures since then, not yet in any line.
    unlogged: u64,
    /// The most recent failure's message, for the next line.
    latest: String,
}

impl Throttled {
    fn new(what: &'static str) -> Self {
        Self { what, last_line: None, unlogged: 0, latest: String::new() }
    }

    /// Counts one failure, and writes a line if one is due.
    fn failed(&mut self, e: &io::Error) {
        if let Some(line) = self.failed_at(e, Instant::now()) {
            eprintln!("{line}");
        }
    }

    /// Writes the failures not yet logged, if a line is due. Called after a
    /// success too, so the tail of a burst that has ended is reported.
    fn log_if_due(&mut self) {
        // The common case, on every accept, costs one comparison.
        if self.unlogged == 0 {
            return;
        }
        if let Some(line) = self.line_at(Instant::now()) {
            eprintln!("{line}");
        }
    }

    /// [`Throttled::failed`] at a given time, returning the line to write.
    fn failed_at(&mut self, e: &io::Error, now: Instant) -> Option<String> {
        self.unlogged += 1;
        self.latest = e.to_string();
        self.line_at(now)
    }

    /// The line that is due at `now`, if any, counting from there.
    fn line_at(&mut self, now: Instant) -> Option<String> {
        if self.unlogged == 0 {
            return None;
        }
        let line = match self.last_line {
            None => format!(
                "{}: {} (from now on counted, and logged at most every {:?})",
                self.what, self.latest, REPEATED_ERROR_LOG_EVERY
            ),
            Some(t) if now.duration_since(t) >= REPEATED_ERROR_LOG_EVERY => format!(
                "{}: {} ({} time{} in the last {:.1?})",
                self.what,
                self.latest,
                self.unlogged,
                if self.unlogged == 1 { "" } else { "s" },
                now.duration_since(t)
            ),
            Some(_) => return None,
        };
        self.unlogged = 0;
        self.last_line = Some(now);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_it_stands_for() {
        let emfile = io::Error::from_raw_os_error(24);
        let mut t = Throttled::new("test: accept failed");
        let start = Instant::now();
        let first = t.failed_at(&emfile, start).expect("the first failure is logged at once");
        assert!(first.starts_with("test: accept failed: Too many open files"), "{first}");
        // A hundred a second for just under one interval: all counted, none logged.
        let step = Duration::from_millis(10);
        let mut now = start;
        let mut quiet = 0;
        while now + step < start + REPEATED_ERROR_LOG_EVERY {
            now += step;
            assert_eq!(t.failed_at(&emfile, now), None);
            quiet += 1;
        }
        assert_eq!(t.line_at(now), None, "nothing is due yet");
        // The first failure past the interval writes one line for all of them.
        let line = t.failed_at(&emfile, start + REPEATED_ERROR_LOG_EVERY).expect("due");
        assert!(line.contains(&format!("({} times in the last", quiet + 1)), "{line}");
        // The failures of a burst that ends are reported by the next success
        // after the interval, and a quiet interval writes nothing.
        assert_eq!(t.failed_at(&emfile, start + REPEATED_ERROR_LOG_EVERY + step), None);
        let later = start + 2 * REPEATED_ERROR_LOG_EVERY + step;
        let tail = t.line_at(later).expect("the tail is due");
        assert!(tail.contains("(1 time in the last"), "{tail}");
        assert_eq!(t.line_at(later + 3 * REPEATED_ERROR_LOG_EVERY), None);
    }

    #[test]
    fn the_cap_leaves_the_reserve_free() {
        assert_eq!(cap_for_nofile(15_000, Some(20_000)), 15_000);
        assert_eq!(cap_for_nofile(1_000, Some(64)), 64 - RESERVED_FDS);
        assert_eq!(cap_for_nofile(1_000, Some(4)), 0, "no room: refuse everyone");
        assert_eq!(cap_for_nofile(1_000, None), 1_000, "no limit");
    }
}
