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
//! and the demo read. The file opens with the event loop, the lesson's new
//! idea; the threaded server (lesson 1's loop, a thread each) and the tokio
//! server follow it. The limits, each with its reason, are in `limits.rs`.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use accept_policy::{AcceptErrors, Action, FailureLog};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

mod flavour;
mod limits;
mod stats;

pub use flavour::{EVENTED_ADDR, Flavour, THREADED_ADDR, TOKIO_ADDR};
use limits::fit_cap_to_nofile;
pub use limits::{
    BACKLOG, BUSY, Config, IDLE_TIMEOUT, MAX_CONNECTIONS, READ_CHUNK, RESERVED_FDS, SHUTDOWN_GRACE,
    TASK_READ_BUF, THREAD_STACK, TICK, WORST_CASE_BUFFERED, WRITE_BUF_CAP, cap_for_nofile,
    raise_nofile,
};
use stats::OpenGuard;
pub use stats::Stats;

// ---------------------------------------------------------------------------
// Flavour 2, the subject: one event loop for every connection
// ---------------------------------------------------------------------------

/// Serves every connection from this one thread until `stop` turns true, or
/// until the listener breaks.
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
    // Set when accept failed for want of descriptors or memory. Edge-triggered
    // readiness will not tell us again about connections still queued, so we
    // retry ourselves after the accept policy's pause.
    let mut retry_accept = false;
    let mut accepting = Accepting {
        max_connections: fit_cap_to_nofile("evented", config.max_connections),
        accept_failures: FailureLog::new("evented: accept failed"),
        register_failures: FailureLog::new("evented: cannot register a connection"),
    };
    // Set when the listener breaks: the loop stops, and the error is returned
    // after the connections are closed.
    let mut broken = None;

    while !stop.load(Ordering::SeqCst) {
        let timeout = if retry_accept { accept_policy::PAUSE } else { TICK };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if retry_accept || events.iter().any(|e| e.token() == LISTENER) {
            match accept_all(&listener, &poll, &mut conns, &mut accepting, stats) {
                Ok(retry) => retry_accept = retry,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        for event in events.iter().filter(|e| e.token() != LISTENER) {
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
    broken.map_or(Ok(()), Err)
}

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

/// What the event loop's accepting needs besides the listener: its cap
/// (lowered to the open-file limit at start) and its throttled error lines.
#[derive(Debug)]
struct Accepting {
    max_connections: usize,
    accept_failures: FailureLog,
    register_failures: FailureLog,
}

/// Accepts until the listener says WouldBlock (edge-triggered: one event may
/// stand for many queued connections). Returns true when it stopped on a
/// shortage (out of descriptors, say) and should be retried after
/// [`accept_policy::PAUSE`], and an error when the listener is broken.
fn accept_all(
    listener: &mio::net::TcpListener,
    poll: &Poll,
    conns: &mut Slab<Conn>,
    accepting: &mut Accepting,
    stats: &Stats,
) -> io::Result<bool> {
    loop {
        let (mut stream, _peer) = match listener.accept() {
            Ok(pair) => pair,
            // Drained: the next connection will raise a new edge.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            // The same answers as every accept loop (chapter 1, "When accept
            // fails"), except that a pause here is a shorter `poll` timeout.
            Err(e) => {
                if let Some(line) = accepting.accept_failures.failed(&e) {
                    eprintln!("{line}");
                }
                match accept_policy::classify(&e) {
                    Action::Retry => continue,
                    Action::PauseThenRetry => return Ok(true),
                    Action::Stop => return Err(e),
                }
            }
        };
        if let Some(line) = accepting.accept_failures.succeeded() {
            eprintln!("{line}");
        }
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
            if let Some(line) = accepting.register_failures.failed(&e) {
                eprintln!("{line}");
            }
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
// Flavour 1: a thread per connection
// ---------------------------------------------------------------------------

/// Serves with one OS thread per connection until `stop` turns true, or until
/// the listener breaks.
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
    let mut accept_errors = AcceptErrors::new("threaded: accept failed", |l| eprintln!("{l}"));
    let mut spawn_failures = FailureLog::new("threaded: cannot spawn a thread");
    for incoming in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(s) => s,
            // Chapter 1, "When accept fails": the same answers in every loop.
            Err(e) => {
                accept_errors.after_failure_blocking(e)?;
                continue;
            }
        };
        accept_errors.after_success();
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
        let line = match spawned {
            Ok(_) => spawn_failures.succeeded(),
            Err(e) => {
                // The kernel would not give us another thread (EAGAIN): the
                // closure and its stream were dropped, so the client sees a close.
                stats.open.fetch_sub(1, Ordering::SeqCst);
                spawn_failures.failed(&e)
            }
        };
        if let Some(line) = line {
            eprintln!("{line}");
        }
    }
    Ok(())
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
// Flavour 3: the same event loop behind async/await
// ---------------------------------------------------------------------------

/// Serves with one tokio task per connection until `token` is cancelled (or
/// the listener breaks), then stops accepting, cancels the connections and
/// waits for them (at most [`SHUTDOWN_GRACE`]).
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
    let mut accept_errors = AcceptErrors::new("tokio: accept failed", |l| eprintln!("{l}"));
    // Set when the listener breaks: the open connections are still closed
    // and waited for, then the error is returned.
    let mut broken = None;
    loop {
        let (mut stream, _) = tokio::select! {
            () = token.cancelled() => break,
            // Chapter 1, "When accept fails": the same answers in every loop.
            accepted = accept_errors.accept(&listener) => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                        broken = Some(e);
                        token.cancel();
                        break;
                }
            },
        };
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
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    broken.map_or(Ok(()), Err)
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
    let mut buf = vec![0u8; TASK_READ_BUF];
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
// Listening, and refusing past the cap
// ---------------------------------------------------------------------------

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
