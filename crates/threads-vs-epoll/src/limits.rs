//! The numbers lesson 3's servers run with, each with the reason for its
//! value; the [`Config`] tests lower; and fitting the connection cap to the
//! open-file limit (`ulimit -n`).

use std::io;
use std::time::Duration;

/// How many finished handshakes the kernel may queue before we `accept` them.
/// A benchmark opens thousands of connections in a burst; with the classic
/// 128 the queue overflows, the kernel drops the final ACK of the handshake,
/// and the client waits for a retransmission (a connect that takes a second
/// instead of microseconds). The kernel silently caps this at
/// `/proc/sys/net/core/somaxconn`.
pub const BACKLOG: i32 = 4096;

/// The stack each connection thread gets. Rust's default is 2 MiB of address
/// space; an echo loop needs a few KiB plus its [`READ_CHUNK`] buffer, so
/// 64 KiB is plenty and lets 10,000 threads fit in 640 MiB of address space
/// (only touched pages use memory).
pub const THREAD_STACK: usize = 64 * 1024;
const _: () = assert!(THREAD_STACK >= 2 * READ_CHUNK, "the read buffer lives on this stack");
const _: () = assert!(10_000 * THREAD_STACK <= 640 * 1024 * 1024);

/// How many bytes one `read` asks for. The threaded server keeps this buffer
/// on each thread's stack; the event loop has one, shared by all connections.
pub const READ_CHUNK: usize = 16 * 1024;

/// The read buffer each tokio task owns for its whole life. Smaller than
/// [`READ_CHUNK`], because it lives in the task, on the heap, idle or not:
/// this number times the connections is most of the tokio server's memory.
pub const TASK_READ_BUF: usize = 4 * 1024;

/// The most bytes the event loop keeps for one connection that it could not
/// send yet. Once a connection's buffer holds this much, the loop stops
/// reading from it until the client drains its echo: the client then feels
/// the back-pressure as its own writes blocking. Without a cap, a client that
/// sends and never reads would make the server buffer everything it sent.
pub const WRITE_BUF_CAP: usize = 64 * 1024;

/// How many connections a server holds at once before it refuses. Each one
/// costs a file descriptor (and, for the threaded server, a thread); running
/// out of either in the middle of an `accept` is worse than saying no. The
/// chapter's largest step is 10,000 connections, so 15,000 leaves room; under
/// a lower open-file limit each server lowers its cap when it starts
/// ([`cap_for_nofile`]).
pub const MAX_CONNECTIONS: usize = 15_000;

/// The most the event loop can hold in write buffers, all connections
/// together: every connection at its cap. Under a gigabyte, so a crowd of
/// clients that never read cannot take the machine's memory.
pub const WORST_CASE_BUFFERED: usize = MAX_CONNECTIONS * WRITE_BUF_CAP;
const _: () = assert!(WORST_CASE_BUFFERED <= 1024 * 1024 * 1024);

/// What a refused client reads before the server closes: a line it can show
/// a human, instead of a bare reset that looks like a crash.
pub const BUSY: &[u8] = b"busy: too many connections, try again later\n";

/// A client silent for this long is hung up on. Long, because the benchmark
/// holds thousands of idle connections open on purpose for a minute or two.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the event loop waits in `poll` when nothing happens, so it can
/// look at the stop flag and sweep idle connections now and then.
pub const TICK: Duration = Duration::from_millis(200);

/// How long the tokio server waits, once cancelled, for its open connections
/// to finish closing. Each is told at once and closes in microseconds; the
/// bound only keeps a stuck one from holding the shutdown forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every server may be tuned with. Tests lower the limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections served at once; past it a new client reads [`BUSY`] and is
    /// closed. Lowered at start to what `ulimit -n` leaves room for
    /// ([`cap_for_nofile`]). Default [`MAX_CONNECTIONS`], 15,000: room for the
    /// chapter's 10,000 and a bound on threads and descriptors.
    pub max_connections: usize,
    /// Event loop only: a connection whose unsent echo holds this many bytes
    /// is not read again until the client drains it (back-pressure). Default
    /// [`WRITE_BUF_CAP`], 64 KiB: a few round trips of any sane client, and
    /// at most [`WORST_CASE_BUFFERED`] for every connection together.
    pub write_buf_cap: usize,
    /// A client that neither sends nor drains its echo for this long is hung
    /// up on. Default [`IDLE_TIMEOUT`], 300 s, because the benchmark keeps
    /// thousands of connections idle on purpose.
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
pub(crate) fn fit_cap_to_nofile(who: &str, asked: usize) -> usize {
    let nofile = open_file_limit();
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

/// Raises this process's soft limit on open files (`ulimit -n`) to its hard
/// limit, and returns `(old soft, new soft)`. Children inherit it. Ten
/// thousand connections need ten thousand descriptors on each side, and the
/// usual soft limit is 1024. Unprivileged: a process may always raise its
/// soft limit up to the hard one.
#[cfg(unix)]
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let old = limit.current.unwrap_or(u64::MAX);
    let mut raised = limit;
    raised.current = limit.maximum;
    #[cfg(target_os = "macos")]
    if setrlimit(Resource::Nofile, raised).is_err() {
        // macOS refuses a soft limit above kern.maxfilesperproc (its hard
        // limit is often "unlimited"); OPEN_MAX is one it always takes.
        raised.current = Some(raised.current.map_or(MACOS_OPEN_MAX, |m| m.min(MACOS_OPEN_MAX)));
    }
    setrlimit(Resource::Nofile, raised).map_err(io::Error::from)?;
    Ok((old, raised.current.unwrap_or(u64::MAX)))
}

/// macOS's OPEN_MAX: a soft limit on open files that every macOS accepts.
#[cfg(target_os = "macos")]
const MACOS_OPEN_MAX: u64 = 10_240;

/// Windows has no open-file limit to raise (sockets are handles, bounded by
/// memory), so this says "no limit" before and after.
#[cfg(not(unix))]
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    Ok((u64::MAX, u64::MAX))
}

/// The soft limit on open files (`ulimit -n`); `None` means no limit.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Windows has no `ulimit -n`: no limit.
#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_free() {
        assert_eq!(cap_for_nofile(15_000, Some(20_000)), 15_000);
        assert_eq!(cap_for_nofile(1_000, Some(64)), 64 - RESERVED_FDS);
        assert_eq!(cap_for_nofile(1_000, Some(4)), 0, "no room: refuse everyone");
        assert_eq!(cap_for_nofile(1_000, None), 1_000, "no limit");
    }
}
