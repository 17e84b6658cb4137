//! Load generators and the side-by-side measurements the chapters quote.
//!
//! ```text
//! cargo run -p bench --release -- echo        # lesson 3: busy connections, 1 to 500: round trips/s, p50, p99
//! cargo run -p bench --release -- c10k        # lesson 3: 100 to 10,000 connections: memory, threads, round trips/s
//! cargo run -p bench --release -- keepalive   # lesson 4: close per request against keep-alive
//! cargo run -p bench --release -- chat        # lesson 8: broadcast deliveries/s and latency
//! cargo run -p bench --release -- todo        # lesson 10: REST reads and writes, memory and SQLite
//! cargo run -p bench --release -- transports  # chapter 11: polling, long polling, SSE, WebSocket side by side
//! cargo run -p bench --release -- siege       # chapter 10: every HTTP server under silent bodies and stalled readers
//! cargo run -p bench --release -- ws-c10k     # lessons 8 and 9: 1,000 to 10,000 idle WebSockets: memory, connects, a broadcast
//! cargo run -p bench --release -- link        # lesson 12: netlab's forwarder against loopback (root)
//! cargo run -p bench --release -- tls         # lesson 13: handshakes/s, bulk throughput, time to first byte
//! cargo run -p bench --release -- http2       # lesson 14: a page with one slow request, streams vs connections, h2load
//! cargo run -p bench --release -- http3       # lesson 15: HTTP/3 against HTTP/2, requests/s at 1/10/100 streams
//! cargo run -p bench --release -- scale-out   # lesson 16: chat deliveries/s and p99 through HAProxy and Redis, 1-3 instances, against one process
//! cargo run -p bench --release -- webhooks    # lesson 17: deliveries/s to 1 and 10 endpoints, the drain after an outage
//! ```
//!
//! Every report runs bounded loops against loopback only and stops by itself.
//! Progress goes to stderr, the table to stdout, CSV and SVG files under
//! `target/bench/`; `--docs` writes them into `docs/` instead, replacing the
//! figures the chapters quote, and only then (see [`Output`]).
//! One module per report; the arithmetic they share is in `stats`.
//! Numbers from a busy 2-core machine are noisy: compare ratios, not digits.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use threads_vs_epoll::Flavour;

mod c10k;
mod chat;
mod echo;
mod http2;
mod http3;
mod keepalive;
mod link;
mod load;
mod measure;
mod plot;
mod scale_out;
mod siege;
mod stats;
mod tls;
mod todo;
mod transports;
mod webhooks;
mod ws_c10k;

#[derive(Parser)]
#[command(about = "Benchmarks behind the chapters' numbers (run with --release)")]
struct Cli {
    #[command(subcommand)]
    report: Report,
    /// Lesson 3 reports: threads of the load generator's tokio runtime (default: one per
    /// core). With every core busy, the server that spends less CPU per echo
    /// leaves more to the client, so round trips per second rank the servers.
    #[arg(long, global = true)]
    client_threads: Option<usize>,
    /// Lesson 3 reports: the listen backlog of the lesson's servers (the kernel caps it at
    /// net.core.somaxconn). Try 16 to watch a burst of connects stall.
    #[arg(long, global = true, default_value_t = threads_vs_epoll::BACKLOG)]
    backlog: i32,
    /// Lesson 3 reports: do not pin; let the server and the load generator share every core.
    #[arg(long, global = true)]
    no_pin: bool,
}

/// The listen backlog the lesson's servers get in reports (`--backlog`).
static BACKLOG: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

fn backlog() -> i32 {
    BACKLOG.get().copied().unwrap_or(threads_vs_epoll::BACKLOG)
}

/// The core a measured server is pinned to (core 0), or `None` when
/// pinning is off or the machine has one core. Set once in `main`.
static SERVER_CORE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

fn server_core() -> Option<usize> {
    SERVER_CORE.get().copied().flatten()
}

#[derive(Subcommand)]
enum Report {
    /// Lesson 3: every connection busy, from 1 to 500 connections.
    Echo(echo::Options),
    /// Lesson 3: memory, threads and throughput from 100 to 10,000 connections.
    #[command(name = "c10k")]
    C10k(c10k::Options),
    /// Lesson 4: requests/s and p99 for a new connection per request against
    /// keep-alive, hand-written server and hyper, 1 and 50 concurrent clients.
    Keepalive(keepalive::Args),
    /// Lesson 8: websocket-chat broadcast deliveries/s and p99 delivery
    /// latency with 100 and 1,000 connected clients.
    Chat(chat::Args),
    /// Lesson 10: rest-todo reads and writes at 50 concurrent clients, memory vs SQLite.
    Todo(todo::Args),
    /// Chapter 11: short polling, long polling, SSE and WebSocket on one feed:
    /// bytes and requests per update, latency, loss, server CPU and memory.
    Transports(transports::Args),
    /// Chapter 10: every HTTP server under silent request bodies and readers
    /// that stopped reading: what a new client sees, memory, recovery.
    Siege(siege::Args),
    /// Lessons 8 and 9: 1,000 to 10,000 idle WebSocket clients of the chat
    /// and the push server: memory per connection, threads, connect time,
    /// and one broadcast to them all.
    #[command(name = "ws-c10k")]
    WsC10k(ws_c10k::Args),
    /// Lesson 12: TCP throughput and a small packet's round trip through
    /// netlab's link at 0 ms, against loopback (needs root).
    Link(link::Args),
    /// Lesson 13: TLS 1.3 handshakes per second (full, resumed) and bulk
    /// throughput against plain TCP, and time to first byte (`--link rtt=50ms`).
    Tls(tls::Args),
    /// Lesson 14: a page of 100 requests with one slow one (HTTP/1.1
    /// pipelined, on six connections, HTTP/2), requests/s at 1/10/100 in
    /// flight, and h2load; `--link rtt=50ms,loss=1%` for the loss table.
    Http2(http2::Args),
    /// Lesson 15: requests/s and p99 at 1/10/100 streams, HTTP/3 on one
    /// QUIC connection against HTTP/2 on one TCP connection (loopback).
    Http3(http3::Args),
    /// Lesson 16: lesson 8's chat through HAProxy and Redis on 1, 2 and 3
    /// instances against one process, with bench chat's clients:
    /// deliveries/s, p99, CPU and memory. Needs redis-server and haproxy.
    #[command(name = "scale-out")]
    ScaleOut(scale_out::Args),
    /// Lesson 17: deliveries per second to 1 and 10 endpoints, and how long
    /// the outbox takes to drain after a receiver outage.
    Webhooks(webhooks::Args),
    /// Internal: run one of lesson 3's servers on 127.0.0.1:0 and print its
    /// address; the reports start this binary this way as a child process.
    #[command(hide = true)]
    Server {
        #[arg(long, value_enum)]
        flavour: Flavour,
    },
}

/// The workspace's root folder, wherever the command is run from.
fn workspace_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Where a report writes its CSV and SVG files. The chapters quote the files
/// in `docs/`, and a run on a busy laptop should not replace them by accident
/// (`git status` would show every figure changed), so a report writes them
/// under `target/bench/` unless told `--docs`.
#[derive(Debug, Clone, clap::Args)]
pub struct Output {
    /// Write the files into docs/, replacing the figures the chapters quote:
    /// only for a run meant to refresh the chapter.
    #[arg(long)]
    pub docs: bool,
    /// Write the files into this folder (default: target/bench/ in the workspace).
    #[arg(long, conflicts_with = "docs")]
    pub out_dir: Option<PathBuf>,
}

impl Output {
    /// The folder the files go to.
    pub fn dir(&self) -> PathBuf {
        match (&self.out_dir, self.docs) {
            (Some(dir), _) => dir.clone(),
            (None, true) => workspace_dir().join("docs"),
            (None, false) => workspace_dir().join("target").join("bench"),
        }
    }

    /// `name` in that folder, which is created if it is missing.
    pub fn file(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir.join(name))
    }
}

/// The first three fields of /proc/loadavg: how busy the machine was (other
/// processes included). Reports print it before and after, because a
/// throughput figure means little without it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("bench: this is a debug build; numbers mean little without --release");
    }
    let cli = Cli::parse();
    let report = cli.report;
    // The reports of later lessons set up their own runtimes and run client
    // and server in one process; only lesson 3's reports pin cores below.
    let report = match report {
        Report::Keepalive(args) => return keepalive::run(args),
        Report::Chat(args) => return chat::run(args),
        Report::Todo(args) => return todo::run(args),
        Report::Transports(args) => return transports::run(args),
        Report::Siege(args) => return siege::run(args),
        Report::WsC10k(args) => return ws_c10k::run(args),
        Report::Link(args) => return link::run(args),
        Report::Tls(args) => return tls::run(args),
        Report::Http2(args) => return http2::run(args),
        Report::Http3(args) => return http3::run(args),
        Report::Webhooks(args) => return webhooks::run(args),
        Report::ScaleOut(args) => return scale_out::run(args),
        other => other,
    };
    if let Report::Server { flavour } = report {
        let listener = threads_vs_epoll::listen_with_backlog("127.0.0.1:0".parse()?, cli.backlog)?;
        println!("{} listening on {}", flavour.name(), listener.local_addr()?);
        // Killed by the parent when the report is done.
        let stats = threads_vs_epoll::Stats::shared();
        let config = threads_vs_epoll::Config::default();
        flavour.serve(listener, &config, &stats, &Arc::new(AtomicBool::new(false)))?;
        return Ok(());
    }
    let _ = BACKLOG.set(cli.backlog);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = !cli.no_pin && cores >= 2;
    let threads = cli.client_threads.unwrap_or(if pinned { 1 } else { cores });
    if pinned {
        // Before the runtime exists, so its threads inherit the pin.
        load::pin(None, 1)?;
        let _ = SERVER_CORE.set(Some(0));
        eprintln!("bench: server pinned to core 0, load generator ({threads} thread) to core 1");
    } else {
        let _ = SERVER_CORE.set(None);
        eprintln!("bench: no pinning; load generator on {threads} thread(s)");
    }
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    let before = load_average();
    rt.block_on(async {
        match report {
            Report::Echo(opts) => echo::run(opts).await,
            Report::C10k(opts) => c10k::run(opts).await,
            Report::Server { .. }
            | Report::Keepalive(_)
            | Report::Chat(_)
            | Report::Todo(_)
            | Report::Transports(_)
            | Report::WsC10k(_)
            | Report::Siege(_)
            | Report::Link(_)
            | Report::Tls(_)
            | Report::Http2(_)
            | Report::Http3(_)
            | Report::Webhooks(_)
            | Report::ScaleOut(_) => Ok(()),
        }
    })?;
    println!("load average (1, 5, 15 min) before: {before}; after: {}", load_average());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(args: &[&str]) -> Report {
        Cli::try_parse_from(["bench"].iter().chain(args)).expect("valid arguments").report
    }

    fn output_of(args: &[&str]) -> Output {
        match report(args) {
            Report::C10k(o) => o.output,
            Report::Echo(o) => o.output,
            Report::Transports(a) => a.output,
            _ => panic!("not a report that writes files"),
        }
    }

    #[test]
    fn reports_write_under_target_unless_told_docs() {
        let target = workspace_dir().join("target").join("bench");
        let docs = workspace_dir().join("docs");
        for name in ["c10k", "echo", "transports"] {
            assert_eq!(output_of(&[name]).dir(), target, "{name} by default");
            assert_eq!(output_of(&[name, "--docs"]).dir(), docs, "{name} --docs");
            assert_eq!(
                output_of(&[name, "--out-dir", "/tmp/elsewhere"]).dir(),
                PathBuf::from("/tmp/elsewhere"),
                "{name} --out-dir"
            );
        }
        assert!(Cli::try_parse_from(["bench", "c10k", "--docs", "--out-dir", "x"]).is_err());
    }
}

/// The `/proc` parsers of `measure.rs`, tested here rather than in that file:
/// lesson 3 compiles `measure.rs` too and would run them again.
#[cfg(test)]
mod measure_tests {
    use crate::measure::*;

    #[test]
    fn parses_threads_and_resident_memory() {
        let text = "Name:\tthreads-vs-epo\nVmPeak:\t  100 kB\nVmRSS:\t    4720 kB\nThreads:\t3\n";
        assert_eq!(parse_status(text), Some(ProcStatus { rss_kib: 4720, threads: 3 }));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn parses_context_switches() {
        let text = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_switches(text), 127);
        assert_eq!(parse_switches("Name:\tx\n"), 0);
    }
}
