//! The load generator both echo reports share: start a server as a child
//! process, open many connections to it, and make some of them do echo round
//! trips for a fixed time while timing each one.
//!
//! The client side is tokio on this process's threads: one task per active
//! connection, each writing a message and reading its echo back in a loop.
//! The server runs in a separate process, so its threads and memory, read
//! from `/proc/<pid>/status`, are its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use threads_vs_epoll::Flavour;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::measure::ChildServer;

/// Bytes per echo message, as in the chapter.
pub const MESSAGE: usize = 512;

/// How long one connect plus its first echo may take before the step fails.
/// Generous: a thread-per-connection server under a burst of thousands of
/// connects is slow to get to each, and that slowness is part of the result.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one round trip may take before the client gives up on it.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connects are in flight at once while ramping up. More than the
/// server's backlog would only measure the kernel dropping handshakes.
pub const CONNECT_CONCURRENCY: usize = 256;

/// A server to measure: one of lesson 3's flavours, or an outside program
/// (the minimal C epoll server in `crates/bench/c/`) that takes a port as its
/// first argument and prints its address on its first line.
#[derive(Debug, Clone)]
pub enum Target {
    /// Lesson 3's server, run by this bench binary's hidden `server` subcommand.
    Lesson(Flavour),
    /// An outside program, with the name it gets in tables.
    External(String, PathBuf),
}

impl Target {
    /// The name in tables and plots.
    pub fn name(&self) -> String {
        match self {
            Target::Lesson(f) => f.name().to_owned(),
            Target::External(name, _) => name.clone(),
        }
    }

    /// Starts it as a child process on a port the kernel picks, pinned to
    /// `core` if given (before any connection, so every thread it starts
    /// inherits the pin).
    pub fn spawn(&self, core: Option<usize>) -> anyhow::Result<ChildServer> {
        let cmd = match self {
            Target::Lesson(flavour) => {
                let mut cmd = Command::new(std::env::current_exe()?);
                let backlog = crate::backlog().to_string();
                cmd.args(["server", "--flavour", flavour.name(), "--backlog", &backlog]);
                cmd
            }
            Target::External(_, path) => {
                let mut cmd = Command::new(path);
                cmd.arg("0");
                cmd
            }
        };
        let server = ChildServer::spawn(cmd, Duration::from_secs(10))
            .with_context(|| format!("starting the {} server", self.name()))?;
        if let Some(core) = core {
            pin(Some(server.pid()), core).context("pinning the server to a core")?;
        }
        Ok(server)
    }
}

/// Pins process `pid` (its main thread, and so every thread it starts from
/// now on), or with `None` the calling thread, to one CPU core.
///
/// Why: on a small machine the server and the load generator fight for the
/// same cores, and a thread-per-connection server would spread over all of
/// them while an event loop uses one. Pinned, each server gets exactly one
/// core and the client the other, so a round-trip rate compares what each
/// server does with one core, and other processes' noise shrinks.
#[cfg(target_os = "linux")]
pub fn pin(pid: Option<u32>, core: usize) -> std::io::Result<()> {
    use rustix::thread::{CpuSet, Pid, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(core);
    let pid = pid.and_then(|p| Pid::from_raw(i32::try_from(p).ok()?));
    sched_setaffinity(pid, &set).map_err(std::io::Error::from)
}

/// macOS and Windows have no `sched_setaffinity`: say so rather than report
/// a pin that did not happen.
#[cfg(not(target_os = "linux"))]
pub fn pin(_pid: Option<u32>, _core: usize) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "needs Linux: pinning to a core (sched_setaffinity); run with --no-pin",
    ))
}

/// The servers a report measures: the lesson's flavours asked for, then the
/// C server if its binary was given.
pub fn targets(flavours: &[Flavour], c_epoll: Option<&PathBuf>) -> Vec<Target> {
    let mut out: Vec<Target> = flavours.iter().map(|&f| Target::Lesson(f)).collect();
    if let Some(path) = c_epoll {
        out.push(Target::External("c-epoll".into(), path.clone()));
    }
    out
}

/// Opens connections until `pool` holds `target`, each proven served by one
/// echo of a short message; returns how long that took.
pub async fn ramp(
    addr: SocketAddr,
    pool: &mut Vec<TcpStream>,
    target: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut next = pool.len();
    let mut in_flight = JoinSet::new();
    while pool.len() < target {
        while next < target && in_flight.len() < CONNECT_CONCURRENCY {
            in_flight.spawn(tokio::time::timeout(CONNECT_TIMEOUT, connect_and_echo(addr, next)));
            next += 1;
        }
        let Some(done) = in_flight.join_next().await else { break };
        let stream = done
            .context("a connect task panicked")?
            .map_err(|_| anyhow::anyhow!("a connect and first echo took over {CONNECT_TIMEOUT:?}"))?
            .context("connect and first echo")?;
        pool.push(stream);
    }
    Ok(started.elapsed())
}

async fn connect_and_echo(addr: SocketAddr, id: usize) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let hello = format!("hello {id:08}\n");
    s.write_all(hello.as_bytes()).await?;
    let mut back = vec![0; hello.len()];
    s.read_exact(&mut back).await?;
    if back != hello.as_bytes() {
        return Err(std::io::Error::other(format!("connection {id}: wrong echo")));
    }
    Ok(s)
}

/// What one active phase measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Round trips that completed before the deadline.
    pub round_trips: u64,
    /// Wall time of the phase, from the first write to the last task's end.
    pub elapsed: Duration,
    /// Every round trip's latency, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Connections that failed (timeout, reset, wrong bytes) and were dropped.
    pub errors: u64,
    /// The fewest round trips any one active connection completed: a server
    /// can post a fine median while starving some of its clients.
    pub fewest: u64,
}

/// Takes up to `active` connections from the front of `pool`, makes each do
/// `MESSAGE`-byte echo round trips back to back for `duration`, and puts the
/// survivors back.
pub async fn hammer(
    pool: &mut Vec<TcpStream>,
    active: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let take = active.min(pool.len());
    let workers: Vec<TcpStream> = pool.drain(..take).collect();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for (i, stream) in workers.into_iter().enumerate() {
        tasks.spawn(round_trips(stream, i, deadline));
    }
    let mut out = Measured { fewest: u64::MAX, ..Measured::default() };
    while let Some(done) = tasks.join_next().await {
        let (stream, mut latencies) = done.context("a load task panicked")?;
        out.fewest = out.fewest.min(latencies.len() as u64);
        out.round_trips += latencies.len() as u64;
        out.latencies_us.append(&mut latencies);
        match stream {
            Some(s) => pool.push(s),
            None => out.errors += 1,
        }
    }
    out.elapsed = started.elapsed();
    if out.fewest == u64::MAX {
        out.fewest = 0;
    }
    Ok(out)
}

/// One connection's loop: write, read the echo, time it, until the deadline.
/// Returns the stream (or `None` if it failed) and its latencies.
async fn round_trips(
    mut stream: TcpStream,
    id: usize,
    deadline: tokio::time::Instant,
) -> (Option<TcpStream>, Vec<u64>) {
    let message: Vec<u8> = (0..MESSAGE).map(|j| ((id + j) % 251) as u8).collect();
    let mut back = vec![0u8; MESSAGE];
    let mut latencies = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let t0 = Instant::now();
        let trip = async {
            stream.write_all(&message).await?;
            stream.read_exact(&mut back).await?;
            std::io::Result::Ok(())
        };
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, trip).await {
            Ok(Ok(())) if back == message => {
                latencies.push(t0.elapsed().as_micros() as u64);
            }
            _ => return (None, latencies),
        }
    }
    (Some(stream), latencies)
}
