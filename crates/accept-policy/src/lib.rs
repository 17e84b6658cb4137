//! What an accept loop does when `accept` fails.
//!
//! Every server in this workspace has a loop that calls `accept`, and
//! `accept` can fail for three different kinds of reasons. Each kind wants a
//! different answer, and getting it wrong costs either a dead server or a core
//! spinning at 100% while the log fills:
//!
//! * **The connection is gone** (`ECONNABORTED`: the client reset while it
//!   waited in the queue; `EINTR`: a signal; and on Linux the network errors
//!   already pending on the new socket, such as `EPROTO` or `EHOSTUNREACH`).
//!   It concerns one client, which has left. [`Action::Retry`]: accept the
//!   next one at once.
//! * **The process or the kernel is out of something** (`EMFILE`: this
//!   process's descriptors, `ulimit -n`; `ENFILE`: the whole system's;
//!   `ENOBUFS`, `ENOMEM`: socket buffers or memory). It passes when some
//!   connection closes, but until then the next `accept` fails the same way at
//!   once. [`Action::PauseThenRetry`]: wait [`PAUSE`], then try again; never
//!   stop a server for a shortage.
//! * **The listener itself is broken** (`EBADF`, `ENOTSOCK`: not a socket any
//!   more; `EINVAL`: not listening). No retry can help.
//!   [`Action::Stop`]: return the error to whoever started the server.
//!
//! An error not named here is treated as a shortage: pause and retry. Stopping
//! a server on a guess is worse than a retry every [`PAUSE`].
//!
//! A failure that repeats (a shortage lasting minutes) must not write a line
//! per attempt either: [`FailureLog`] counts them and writes one line per
//! [`LOG_EVERY`] that says how many it stands for.
//!
//! [`AcceptErrors`] puts the two together for a loop that can sleep: one call
//! per failure logs what is due, pauses if it should, and says whether to go
//! on. An event loop that must not sleep (lesson 3's mio loop) uses
//! [`classify`] and [`FailureLog`] directly.
//!
//! The other side of the same question, a connection accepted when the server
//! is already full, is [`busy`]: answer it at once and close it gently.
//!
//! The loops that use it: lesson 1 (`tcp-echo`), lesson 3's three servers
//! (`threads-vs-epoll`), lesson 4's two (`http-keepalive`), `http-serve`,
//! which every axum lesson runs on, and lesson 13's TLS server. Chapter 1
//! (`docs/01-tcp-echo.md`, "When accept fails") explains it.

pub mod busy;

use std::fmt::Display;
use std::io;
use std::time::{Duration, Instant};

use rustix::io::Errno;

/// What an accept loop should do after `accept` failed with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The error concerned one connection, which is gone: accept the next at once.
    Retry,
    /// Out of descriptors, buffers or memory: wait [`PAUSE`], then accept again.
    PauseThenRetry,
    /// The listener cannot accept any more: stop serving and return the error.
    Stop,
}

/// How long an accept loop waits after a shortage ([`Action::PauseThenRetry`])
/// before it calls `accept` again. Without a pause the loop spins: the next
/// `accept` fails the same way within microseconds, a core goes to 100% and
/// nothing improves. 10 ms is a hundred attempts a second at most, which costs
/// nothing, and a descriptor freed by a closing connection is used within
/// 10 ms.
pub const PAUSE: Duration = Duration::from_millis(10);

/// What to do after `accept` failed with `e`. See the crate's documentation
/// for why each error lands where it does.
pub fn classify(e: &io::Error) -> Action {
    // Interrupted and WouldBlock have portable kinds; a blocking loop sees
    // WouldBlock only if the listener has a timeout, and a non-blocking loop
    // handles it before asking (it means "nothing more to accept").
    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) {
        return Action::Retry;
    }
    let Some(errno) = Errno::from_io_error(e) else {
        // Not an error code from the kernel (a library's own error): a guess.
        return Action::PauseThenRetry;
    };
    if SHORTAGES.contains(&errno) {
        Action::PauseThenRetry
    } else if CONNECTION_GONE.contains(&errno) {
        Action::Retry
    } else if LISTENER_BROKEN.contains(&errno) {
        Action::Stop
    } else {
        Action::PauseThenRetry
    }
}

/// Out of a resource that comes back when a connection closes. (Winsock has
/// no ENFILE or ENOMEM: Windows says WSAEMFILE or WSAENOBUFS for both.)
const SHORTAGES: &[Errno] = &[
    Errno::MFILE, // this process is at its open-file limit (`ulimit -n`)
    #[cfg(unix)]
    Errno::NFILE, // the whole system is at its open-file limit
    Errno::NOBUFS, // no memory for socket buffers
    #[cfg(unix)]
    Errno::NOMEM, // no memory
];

/// Errors about the one connection being accepted, which has already gone.
/// accept(2) on Linux reports the network errors pending on the new socket
/// and says to treat them like EAGAIN, by retrying. (Winsock has no EPROTO
/// or EPERM, so Windows leaves those two out.)
const CONNECTION_GONE: &[Errno] = &[
    Errno::CONNABORTED, // the client gave up (reset) while queued
    Errno::CONNRESET,   // the same on some systems
    #[cfg(unix)]
    Errno::PROTO, // a protocol error on the new connection
    Errno::NOPROTOOPT,
    Errno::HOSTDOWN,
    Errno::HOSTUNREACH,
    Errno::NETDOWN,
    Errno::NETUNREACH,
    Errno::OPNOTSUPP,
    Errno::TIMEDOUT,
    #[cfg(unix)]
    Errno::PERM, // a firewall rule refused the connection
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Errno::NONET,
];

/// The listener cannot accept at all: retrying would fail forever.
const LISTENER_BROKEN: [Errno; 4] = [
    Errno::BADF,    // not an open descriptor
    Errno::NOTSOCK, // not a socket
    Errno::INVAL,   // a socket, but not listening
    Errno::FAULT,   // a bad address buffer: a bug in the caller
];

/// How often a [`FailureLog`] writes a line while a failure keeps repeating.
/// Every failure is counted; one line per interval says how many there were,
/// instead of the hundred lines a second an accept loop pausing [`PAUSE`]
/// would write. Five seconds still shows a human watching that the shortage
/// goes on.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// One log line per [`LOG_EVERY`] at most for a failure that repeats, with
/// how many failures that line stands for. It does not write anything itself:
/// each method returns the line that is due, and the caller writes it with
/// its own logger (`tracing`, `eprintln!`).
#[derive(Debug)]
pub struct FailureLog {
    /// What failed, as each line starts: `"accept failed"`.
    what: &'static str,
    /// When the last line was written.
    last_line: Option<Instant>,
    /// Failures since then, not yet in any line.
    unlogged: u64,
    /// The most recent failure's message, for the next line.
    latest: String,
}

impl FailureLog {
    /// A log whose lines start with `what`.
    pub fn new(what: &'static str) -> Self {
        Self { what, last_line: None, unlogged: 0, latest: String::new() }
    }

    /// Counts one failure; returns the line to write now, if one is due (the
    /// first failure always is).
    pub fn failed(&mut self, e: &impl Display) -> Option<String> {
        self.failed_at(e, Instant::now())
    }

    /// Called after a success: returns the line for failures not yet logged,
    /// if one is due, so the tail of a burst that has ended is reported too.
    /// Costs one comparison when there is nothing to report.
    pub fn succeeded(&mut self) -> Option<String> {
        if self.unlogged == 0 {
            return None;
        }
        self.line_at(Instant::now())
    }

    /// [`FailureLog::failed`] at a given time.
    fn failed_at(&mut self, e: &impl Display, now: Instant) -> Option<String> {
        self.unlogged += 1;
        self.latest = e.to_string();
        self.line_at(now)
    }

    /// The line that is due at `now`, if any, counting afresh from there.
    fn line_at(&mut self, now: Instant) -> Option<String> {
        if self.unlogged == 0 {
            return None;
        }
        let line = match self.last_line {
            None => format!(
                "{}: {} (from now on counted, and logged at most every {:?})",
                self.what, self.latest, LOG_EVERY
            ),
            Some(t) if now.duration_since(t) >= LOG_EVERY => format!(
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

/// An accept loop's whole answer to a failed `accept`: [`FailureLog`] for the
/// log, [`classify`] for the action, and the pause, in one call.
///
/// ```text
/// Err(e) => match accept_errors.after_failure(e).await {
///     Ok(()) => continue,          // accept again (after the pause, for a shortage)
///     Err(e) => return Err(e),     // the listener is broken
/// },
/// ```
///
/// or, on tokio, `accept_errors.accept(&listener).await` in place of
/// `listener.accept().await`, which does the same in a loop of its own.
#[derive(Debug)]
pub struct AcceptErrors {
    log: FailureLog,
    /// Where a due line goes: `tracing::warn!` in most servers, stderr in
    /// lesson 3, which has no logger.
    write: fn(&str),
}

impl AcceptErrors {
    /// Lines start with `what` (`"accept failed"`) and go to `write`.
    pub fn new(what: &'static str, write: fn(&str)) -> Self {
        Self { log: FailureLog::new(what), write }
    }

    /// After `accept` failed with `e`: logs the line that is due, then
    /// `Ok(())` to accept again (at once, or after [`PAUSE`] for a
    /// shortage), or `Err(e)` when the listener is broken. For a loop on a
    /// tokio runtime.
    pub async fn after_failure(&mut self, e: io::Error) -> io::Result<()> {
        match self.failed(e)? {
            Action::PauseThenRetry => tokio::time::sleep(PAUSE).await,
            Action::Retry | Action::Stop => {}
        }
        Ok(())
    }

    /// Accepts the next connection on a tokio listener, handling every
    /// failure on the way as [`AcceptErrors::after_failure`] does; an error
    /// comes back only when the listener is broken. What most tokio accept
    /// loops here call in place of `listener.accept()`.
    pub async fn accept(
        &mut self,
        listener: &tokio::net::TcpListener,
    ) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
        loop {
            match listener.accept().await {
                Ok(pair) => {
                    self.after_success();
                    return Ok(pair);
                }
                Err(e) => self.after_failure(e).await?,
            }
        }
    }

    /// [`AcceptErrors::after_failure`] for a loop on a thread of its own.
    pub fn after_failure_blocking(&mut self, e: io::Error) -> io::Result<()> {
        match self.failed(e)? {
            Action::PauseThenRetry => std::thread::sleep(PAUSE),
            Action::Retry | Action::Stop => {}
        }
        Ok(())
    }

    /// After an `accept` that worked: reports the failures of a burst that
    /// has just ended, if a line is due. Costs one comparison otherwise.
    pub fn after_success(&mut self) {
        if let Some(line) = self.log.succeeded() {
            (self.write)(&line);
        }
    }

    /// Logs `e` if a line is due and classifies it; `Err` for [`Action::Stop`].
    fn failed(&mut self, e: io::Error) -> io::Result<Action> {
        if let Some(line) = self.log.failed(&e) {
            (self.write)(&line);
        }
        match classify(&e) {
            Action::Stop => Err(e),
            action => Ok(action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.raw_os_error())
    }

    #[test]
    fn a_shortage_pauses_and_never_stops_the_server() {
        // Winsock has no ENFILE or ENOMEM (see SHORTAGES).
        for errno in [
            Errno::MFILE,
            #[cfg(unix)]
            Errno::NFILE,
            Errno::NOBUFS,
            #[cfg(unix)]
            Errno::NOMEM,
        ] {
            assert_eq!(classify(&os(errno)), Action::PauseThenRetry, "{errno:?}");
        }
    }

    #[test]
    fn a_connection_that_is_gone_is_retried_at_once() {
        for errno in [
            Errno::CONNABORTED,
            Errno::INTR,
            #[cfg(unix)] // Winsock has no EPROTO
            Errno::PROTO,
            Errno::HOSTUNREACH,
        ] {
            assert_eq!(classify(&os(errno)), Action::Retry, "{errno:?}");
        }
        assert_eq!(classify(&io::ErrorKind::WouldBlock.into()), Action::Retry);
    }

    static LINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count(_line: &str) {
        LINES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn accept_errors_pause_for_a_shortage_stop_for_a_broken_listener_and_log_once() {
        let mut errors = AcceptErrors::new("accept failed", count);
        let started = Instant::now();
        assert!(errors.after_failure_blocking(os(Errno::CONNABORTED)).is_ok());
        assert!(started.elapsed() < PAUSE, "a vanished connection is retried at once");
        assert!(errors.after_failure_blocking(os(Errno::MFILE)).is_ok());
        assert!(started.elapsed() >= PAUSE, "a shortage pauses");
        let stop = errors.after_failure_blocking(os(Errno::BADF)).expect_err("a broken listener");
        assert_eq!(stop.raw_os_error(), Some(Errno::BADF.raw_os_error()));
        errors.after_success();
        // Three failures within LOG_EVERY: one line, the first.
        assert_eq!(LINES.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_broken_listener_stops_the_loop() {
        for errno in [Errno::BADF, Errno::NOTSOCK, Errno::INVAL] {
            assert_eq!(classify(&os(errno)), Action::Stop, "{errno:?}");
        }
    }

    #[test]
    fn an_error_it_does_not_know_is_a_shortage() {
        // EIO, or on Windows (which has no EIO) WSAEALREADY: neither is named.
        #[cfg(unix)]
        assert_eq!(classify(&os(Errno::IO)), Action::PauseThenRetry);
        #[cfg(windows)]
        assert_eq!(classify(&os(Errno::ALREADY)), Action::PauseThenRetry);
        assert_eq!(classify(&io::Error::other("a library's own error")), Action::PauseThenRetry);
    }

    #[test]
    fn one_line_per_interval_with_the_count_it_stands_for() {
        let emfile = os(Errno::MFILE);
        let mut log = FailureLog::new("test: accept failed");
        let start = Instant::now();
        let first = log.failed_at(&emfile, start).expect("the first failure is logged at once");
        // Windows words WSAEMFILE "Too many open sockets".
        #[cfg(unix)]
        assert!(first.starts_with("test: accept failed: Too many open files"), "{first}");
        #[cfg(windows)]
        assert!(first.starts_with("test: accept failed: Too many open sockets"), "{first}");
        // A hundred a second for just under one interval: all counted, none logged.
        let step = PAUSE;
        let mut now = start;
        let mut quiet = 0;
        while now + step < start + LOG_EVERY {
            now += step;
            assert_eq!(log.failed_at(&emfile, now), None);
            quiet += 1;
        }
        assert_eq!(log.line_at(now), None, "nothing is due yet");
        // The first failure past the interval writes one line for all of them.
        let line = log.failed_at(&emfile, start + LOG_EVERY).expect("due");
        assert!(line.contains(&format!("({} times in the last", quiet + 1)), "{line}");
        // The failures of a burst that ends are reported by the next success
        // after the interval, and a quiet interval writes nothing.
        assert_eq!(log.failed_at(&emfile, start + LOG_EVERY + step), None);
        let later = start + 2 * LOG_EVERY + step;
        let tail = log.line_at(later).expect("the tail is due");
        assert!(tail.contains("(1 time in the last"), "{tail}");
        assert_eq!(log.line_at(later + 3 * LOG_EVERY), None);
    }
}
