//! # Lesson 1: a blocking TCP echo server and client
//!
//! The smallest useful TCP server: it accepts a connection, sends back every
//! byte it receives, and closes when the client does. It is written with
//! `std::net` and blocking calls, so every line does exactly one thing and you
//! can read it top to bottom. It also serves **one client at a time**: while it
//! talks to one, the next waits in the kernel's listen queue. That limit is on
//! purpose; lesson 3 (threads-vs-epoll) is about getting past it.
//!
//! ```text
//! cargo run -p tcp-echo                          # demo: server and clients talk, then it exits
//! cargo run -p tcp-echo -- serve                 # server on 127.0.0.1:7001 until Ctrl-C
//! cargo run -p tcp-echo -- client "hello"        # send one message, print the echo
//! nc 127.0.0.1 7001                              # or talk to `serve` by hand
//! ```
//!
//! Read it beside `docs/01-tcp-echo.md`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use accept_policy::AcceptErrors;
use socket2::{Domain, Protocol, Socket, Type};

mod limits;

pub use limits::{BACKLOG, Config, DEFAULT_ADDR, IDLE_TIMEOUT, READ_BUF, WRITE_TIMEOUT};

/// Accepts clients one after another and echoes each until it leaves, until
/// `stop` is set. Returns only on stop, or when the listener itself is broken.
///
/// One client at a time: `accept` is not called again until [`handle`]
/// returns. A client that connects meanwhile finishes its handshake with the
/// kernel and waits in the backlog, connected but unanswered.
pub fn serve(listener: TcpListener, config: &Config, stop: &AtomicBool) -> io::Result<()> {
    let mut accept_errors = AcceptErrors::new("accept failed", |line| tracing::warn!("{line}"));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            // A client that reset while it waited in the queue, a process out
            // of descriptors, a listener that broke: each wants another
            // answer, and every accept loop of the workspace gives the same
            // one (chapter 1, "When accept fails"). A shortage that lasts is
            // logged once per interval, not once per attempt.
            Err(e) => {
                accept_errors.after_failure_blocking(e)?;
                continue;
            }
        };
        accept_errors.after_success();
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        tracing::info!("{peer}: connected");
        let ending = handle(stream, config);
        tracing::info!("{peer}: {ending:?}");
    }
}

/// Echoes one connection until the client closes, goes quiet, or breaks.
///
/// This is the heart of the lesson. Three things to notice:
///
/// 1. `read` returns however many bytes have arrived, from 1 to the buffer's
///    size. TCP carries a stream of bytes, not messages: five `write`s by the
///    client can arrive as one read here, and one `write` as five.
/// 2. `write_all`, not `write`: a `write` may send only part of the buffer
///    (when the socket's send buffer is nearly full); `write_all` loops until
///    every byte is handed to the kernel.
/// 3. `Ok(0)` from `read` is the client's FIN: it has finished sending. We
///    answer with our own FIN (`shutdown(Write)`) once the echo is out.
pub fn handle(mut stream: TcpStream, config: &Config) -> Ending {
    let mut echoed = 0u64;
    let broken = |echoed, e: io::Error| Ending::Broken { echoed, error: e.kind() };
    if let Err(e) = configure(&stream, config) {
        return broken(echoed, e);
    }
    let mut buf = [0u8; READ_BUF];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                // Half-close: the client will send no more, but it may still
                // be reading. Send our FIN so its read ends too.
                return match stream.shutdown(Shutdown::Write) {
                    Ok(()) => Ending::ClientClosed { echoed },
                    Err(e) => broken(echoed, e),
                };
            }
            Ok(n) => n,
            // A read timeout shows up as WouldBlock on Unix, TimedOut on Windows.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Ending::Idle { echoed };
            }
            // A signal interrupted the read before any byte came: just retry.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return broken(echoed, e),
        };
        if let Err(e) = stream.write_all(&buf[..n]) {
            return broken(echoed, e);
        }
        echoed += n as u64;
    }
}

fn configure(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_read_timeout(Some(config.idle_timeout))?;
    stream.set_write_timeout(Some(config.write_timeout))?;
    // Nagle's algorithm holds back a small write while earlier data is not yet
    // acknowledged, hoping to merge it with the next. For an echo that answers
    // each read at once, that only adds delay.
    stream.set_nodelay(config.nodelay)
}

/// How one connection ended, for the log and for tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed its sending side (FIN) and got all its echo back.
    ClientClosed {
        /// Bytes echoed on this connection.
        echoed: u64,
    },
    /// The client was silent for longer than `idle_timeout`.
    Idle {
        /// Bytes echoed before it went quiet.
        echoed: u64,
    },
    /// The connection broke: a reset, a write timeout, or another I/O error.
    Broken {
        /// Bytes echoed before it broke.
        echoed: u64,
        /// What the operating system said.
        error: io::ErrorKind,
    },
}

/// Creates the listening socket with socket2, so that each option is set on
/// purpose and can be explained:
///
/// * `SO_REUSEADDR`: lets a restarted server bind its port again while
///   connections from its previous life still sit in `TIME_WAIT` (the
///   chapter shows the `AddrInUse` you get without it).
/// * the backlog, [`BACKLOG`]: how many finished handshakes wait for `accept`.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Sends `message` to the echo server at `addr` and returns what came back.
///
/// The client writes from a second thread while this one reads. With a large
/// message that matters: if we wrote everything before reading, the server's
/// echo would fill our receive buffer, the server would block writing to us,
/// stop reading, fill its own receive buffer, and our `write` would block too.
/// Both sides waiting on each other forever is a deadlock every TCP
/// programmer meets once; reading and writing at the same time avoids it.
///
/// After the last byte the client half-closes (`shutdown(Write)`): that tells
/// the server "no more from me", and the server's FIN in return ends our read.
pub fn echo(addr: SocketAddr, message: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let outgoing = message.to_vec();
    let sending = thread::Builder::new().name("echo client writer".into()).spawn(move || {
        writer.write_all(&outgoing)?;
        writer.shutdown(Shutdown::Write)
    })?;
    let mut reader = stream;
    let mut echoed = Vec::with_capacity(message.len());
    let read = reader.read_to_end(&mut echoed);
    let sent = sending.join().map_err(|_| io::Error::other("the writer thread panicked"))?;
    sent?;
    read?;
    Ok(echoed)
}
