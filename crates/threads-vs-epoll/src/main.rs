//! The command line of lesson 3. With no arguments it runs the demo; see
//! `cargo run -p threads-vs-epoll -- --help`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::{Direction, WireTap};
use threads_vs_epoll::{Config, Flavour, Stats, raise_nofile};

// Running a server as a child process and reading its threads and memory from
// `/proc` is the bench's job (crates/bench/src/measure.rs); the demo borrows
// the same file rather than keep a second copy, and uses part of it.
#[path = "../../bench/src/measure.rs"]
#[allow(dead_code)]
mod measure;
use measure::{ChildServer, ProcStatus};

#[derive(Parser)]
#[command(about = "Lesson 3: a thread per connection against an event loop")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Demo only: how many clients to hold open against each server.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one server until Ctrl-C. Try it with `nc 127.0.0.1 7004`.
    Serve {
        #[arg(long, value_enum, default_value = "evented")]
        flavour: Flavour,
        /// Default: 7003 threaded, 7004 evented, 7005 tokio (loopback).
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// Refuse connections past this many.
        #[arg(long, default_value_t = threads_vs_epoll::MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// Send MESSAGE, half-close, print the echo.
    Client {
        #[arg(long, default_value = threads_vs_epoll::EVENTED_ADDR)]
        addr: SocketAddr,
        message: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => demo(cli.clients),
        Some(Cmd::Serve { flavour, addr, max_connections }) => {
            let addr = match addr {
                Some(a) => a,
                None => flavour.default_addr().parse()?,
            };
            // A server that wants many clients needs many descriptors.
            raise_nofile().context("raising the open-file limit")?;
            let listener =
                threads_vs_epoll::listen(addr).with_context(|| format!("binding {addr}"))?;
            let local = listener.local_addr()?;
            // The last word of this line is the address: the demo and the bench
            // read it when they start us as a child process on port 0.
            println!("{} echo server listening on {local}", flavour.name());
            println!("try: nc {} {}   (Ctrl-C stops it)", local.ip(), local.port());
            std::io::stdout().flush()?;
            let config = Config { max_connections, ..Config::default() };
            // Ctrl-C ends the process; the kernel closes every socket.
            flavour.serve(
                listener,
                &config,
                &Stats::shared(),
                &Arc::new(AtomicBool::new(false)),
            )?;
            Ok(())
        }
        Some(Cmd::Client { addr, message }) => {
            let echoed = threads_vs_epoll::echo(addr, message.as_bytes(), Duration::from_secs(10))
                .with_context(|| format!("talking to {addr}"))?;
            println!("{}", String::from_utf8_lossy(&echoed));
            Ok(())
        }
    }
}

/// Starts this same program as `serve --flavour F --addr 127.0.0.1:0`.
fn spawn_server(flavour: Flavour) -> anyhow::Result<ChildServer> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--flavour", flavour.name(), "--addr", "127.0.0.1:0"]);
    Ok(ChildServer::spawn(cmd, Duration::from_secs(10))?)
}

/// Opens `n` connections, each echoing one short message, and keeps them open.
fn open_clients(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connection {i}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let msg = format!("hello from client {i:05}\n");
        s.write_all(msg.as_bytes())?;
        let mut back = vec![0; msg.len()];
        s.read_exact(&mut back).with_context(|| format!("echo on connection {i}"))?;
        anyhow::ensure!(back == msg.as_bytes(), "connection {i} got a wrong echo");
        held.push(s);
    }
    Ok(held)
}

fn mib(s: ProcStatus) -> f64 {
    s.rss_kib as f64 / 1024.0
}

/// Part 1: what crosses the wire is the same whichever server answers. One
/// echo through the wire tap per flavour, the first one printed.
fn wire() -> anyhow::Result<()> {
    println!("== 1. the same bytes, whichever server answers");
    let mut first: Option<Vec<(Direction, Vec<u8>)>> = None;
    for flavour in Flavour::ALL {
        let server = spawn_server(flavour)?;
        let tap = WireTap::start(server.addr())?;
        let echoed =
            threads_vs_epoll::echo(tap.addr(), b"ping 1\nping 2\n", Duration::from_secs(5))?;
        anyhow::ensure!(echoed == b"ping 1\nping 2\n", "{} echoed {echoed:?}", flavour.name());
        // The proxy forwards the server's close a moment after the client saw it.
        harness::eventually_blocking(Duration::from_secs(5), "the tap to see both sides", || {
            tap.stats().to_client == 14
        });
        let seen: Vec<(Direction, Vec<u8>)> =
            tap.transcript().into_iter().map(|c| (c.direction, c.bytes)).collect();
        match &first {
            None => {
                println!(
                    "{} server, through the wire tap (>> to the server, << back):",
                    flavour.name()
                );
                print!("{}", tap.dump());
                first = Some(seen);
            }
            Some(same) => println!(
                "{} server: {} chunks, {} bytes back: {}",
                flavour.name(),
                seen.len(),
                tap.stats().to_client,
                if *same == seen { "the same transcript" } else { "a different split, same bytes" }
            ),
        }
    }
    // Past the limit, a polite refusal instead of a reset.
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--flavour", "evented", "--addr", "127.0.0.1:0", "--max-connections", "1"]);
    let server = ChildServer::spawn(cmd, Duration::from_secs(10))?;
    let _only = open_clients(server.addr(), 1)?;
    let mut second = TcpStream::connect(server.addr())?;
    second.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut said = Vec::new();
    second.read_to_end(&mut said)?;
    println!(
        "with --max-connections 1, a second client reads {:?} and then the close",
        String::from_utf8_lossy(&said)
    );
    Ok(())
}

fn demo(clients: usize) -> anyhow::Result<()> {
    let (old, new) = raise_nofile()?;
    println!(
        "open-file limit (ulimit -n) raised from {old} to {new} for this demo and its servers"
    );
    println!(
        "each server runs as its own child process, so /proc/<pid>/status counts that server alone\n"
    );
    wire()?;
    if !cfg!(target_os = "linux") {
        println!(
            "\n== 2. skipped: needs Linux (the table reads each server's threads and memory \
             from /proc/<pid>/status). Run `serve --flavour threaded` and watch its threads \
             with `ps -M -p PID` or Activity Monitor on macOS, Task Manager on Windows"
        );
        return Ok(());
    }
    println!("\n== 2. {clients} clients held open against each server");
    let mut rows = Vec::new();
    for flavour in Flavour::ALL {
        let server = spawn_server(flavour)?;
        let before = server.status()?;
        let started = Instant::now();
        let held = open_clients(server.addr(), clients)?;
        let took = started.elapsed();
        // The threaded server starts each connection's thread after accept;
        // give the last few a moment to show up in the count.
        let wanted = before.threads + clients as u64;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut after = server.status()?;
        while flavour == Flavour::Threaded && after.threads < wanted && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            after = server.status()?;
        }
        println!(
            "{:>8} (pid {}, {}): {} clients connected and echoed in {:.0?}",
            flavour.name(),
            server.pid(),
            server.addr(),
            clients,
            took
        );
        rows.push((flavour, before, after));
        drop(held);
        drop(server);
    }
    println!(
        "\n{:>8} | {:>14} | {:>14} | {:>12} | {:>12} | {:>14}",
        "server", "threads idle", "threads busy", "RSS idle", "RSS busy", "per connection"
    );
    for (flavour, before, after) in rows {
        let per_conn_kib = (after.rss_kib.saturating_sub(before.rss_kib)) as f64 / clients as f64;
        println!(
            "{:>8} | {:>14} | {:>14} | {:>8.1} MiB | {:>8.1} MiB | {:>10.1} KiB",
            flavour.name(),
            before.threads,
            after.threads,
            mib(before),
            mib(after),
            per_conn_kib
        );
    }
    println!(
        "\nthe threaded server pays a thread (stack pages, kernel task) per connection;\n\
         the event loops pay a small struct and a socket. For throughput and latency up to\n\
         10,000 connections run `cargo run -p bench --release -- c10k`."
    );
    Ok(())
}
