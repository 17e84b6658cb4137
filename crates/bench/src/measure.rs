//! Measuring a server from outside: run it as a child process and read its
//! threads, resident memory and context switches from `/proc/<pid>`.
//!
//! Why a child process: memory and threads are per *process*. If a report ran
//! the servers inside its own process, `/proc/self/status` would add up the
//! servers, the clients and the report itself. A child per server gives each
//! server its own honest line.
//!
//! Lesson 3's demo and tests use the same tools, so this file names nothing
//! of the bench (no `crate::` paths) and needs only `std`: they compile it
//! with `#[path = "../../bench/src/measure.rs"]`, and the lesson's library
//! exports none of it.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What `/proc/<pid>/status` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStatus {
    /// Resident set size: memory pages actually in RAM, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Number of threads (`Threads`).
    pub threads: u64,
}

/// Parses the `VmRSS:` and `Threads:` lines of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<ProcStatus> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(ProcStatus { rss_kib: field("VmRSS:")?, threads: field("Threads:")? })
}

/// Only Linux has `/proc`: elsewhere this says so, where reading `path`
/// would only say "No such file or directory".
pub fn needs_linux(path: &str) -> io::Result<()> {
    if cfg!(target_os = "linux") {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::Unsupported, format!("needs Linux: reads {path}")))
}

/// Reads threads and resident memory of process `pid` (Linux only).
pub fn proc_status(pid: u32) -> io::Result<ProcStatus> {
    needs_linux("/proc/<pid>/status")?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&text)
        .ok_or_else(|| io::Error::other(format!("no VmRSS/Threads in /proc/{pid}/status")))
}

/// Context switches of every thread of process `pid` so far: the sum of
/// `voluntary_ctxt_switches` (the thread blocked: waiting in `read`,
/// `epoll_wait`...) and `nonvoluntary_ctxt_switches` (the scheduler took the
/// CPU away) over `/proc/<pid>/task/*/status`. Threads that already ended
/// are not counted, so read it while the connections are open.
pub fn context_switches(pid: u32) -> io::Result<u64> {
    needs_linux("/proc/<pid>/task/*/status")?;
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read: skip it.
        let Ok(text) = std::fs::read_to_string(task?.path().join("status")) else { continue };
        total += parse_switches(&text);
    }
    Ok(total)
}

/// Voluntary plus involuntary context switches in one `status` text.
pub fn parse_switches(text: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// A server running as a child process, which printed its address on its
/// first line of stdout. Dropping it kills that child (and only it).
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    /// Spawns `command`, waits (up to `timeout`) for its first stdout line,
    /// and takes the last word of that line as the server's address, e.g.
    /// `listening on 127.0.0.1:41234`.
    pub fn spawn(mut command: Command, timeout: Duration) -> io::Result<Self> {
        let mut child = command.stdout(Stdio::piped()).stdin(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(timeout) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "child server did not say its address: {other:?}"
                )));
            }
        };
        let Some(addr) = line.split_whitespace().last().and_then(|w| w.parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!("cannot find an address in {line:?}")));
        };
        Ok(Self { child, addr })
    }

    /// Where the child listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id, for `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Context switches of all its threads so far (see [`context_switches`]).
    pub fn context_switches(&self) -> io::Result<u64> {
        context_switches(self.pid())
    }

    /// Its threads and resident memory right now.
    pub fn status(&self) -> io::Result<ProcStatus> {
        proc_status(self.pid())
    }

    /// The read end of its stderr, if the command was spawned with
    /// `stderr(Stdio::piped())` and nobody took it yet. Whoever takes it
    /// should keep reading it, or the child blocks once the pipe is full.
    #[allow(
        dead_code,
        reason = "lesson 3's tests read a server's log through it; the bench does not"
    )]
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
