//! `cargo run -p bench --release -- keepalive`: what a new TCP connection per
//! request costs against a kept connection, on lesson 4's two servers.
//!
//! For each server (hand-written, hyper), each number of concurrent clients
//! (1 and 50) and each mode, clients send `GET /resource/1` as fast as the
//! answers come back, for a fixed time per cell:
//!
//! * `close`: every request on a new connection (`Connection: close`): connect
//!   (three-way handshake, accept), request, response, FIN both ways.
//! * `keep-alive`: each client opens one connection and reuses it.
//!
//! Latency is measured per request as the client sees it, so in `close` mode
//! it includes the connect. The report prints requests per second, p50, p99,
//! and the keep-alive/close ratio per server and concurrency.
//!
//! With `--link rtt=50ms` (root: see [`crate::link`]) the servers listen on
//! the server side of a netlab link and the clients run on the client side,
//! so the handshake's round trip, free on loopback, costs what it costs on a
//! real network: `close` pays two round trips per request, `keep-alive` one.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::http::HttpConn;
use http_keepalive::{Config, hyper_server, server};
use tokio_util::sync::CancellationToken;

use crate::link::{LinkSpec, Net};
use crate::stats::{ms, percentile, rate};

/// Options of the keepalive report.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds each cell runs (8 cells in all).
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Concurrent client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,50")]
    pub clients: Vec<usize>,
    /// Run the servers and the clients on the two sides of a netlab link,
    /// e.g. `rtt=50ms,loss=0.5%` (needs root).
    #[arg(long, value_parser = crate::link::parse_spec)]
    pub link: Option<LinkSpec>,
}

/// The request every client sends. `Connection: close` only in close mode.
const KEEP: &[u8] = b"GET /resource/1 HTTP/1.1\r\nHost: bench\r\n\r\n";
const CLOSE: &[u8] = b"GET /resource/1 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Close,
    KeepAlive,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Close => "close",
            Mode::KeepAlive => "keep-alive",
        }
    }
}

/// One cell's result.
#[derive(Debug)]
struct Cell {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

/// Runs the whole report and prints it: on loopback, or with `--link` on the
/// client side of a link (the runtime is built there, so every client socket
/// is on that side; the listeners are made on the server side).
pub fn run(args: Args) -> Result<()> {
    let net = Net::start(args.link.as_ref())?;
    let here = Arc::clone(&net);
    net.on_client(move || tokio::runtime::Runtime::new()?.block_on(report(args, &here)))??;
    if let Some(counters) = net.counters() {
        println!("{counters}");
    }
    Ok(())
}

async fn report(args: Args, net: &Net) -> Result<()> {
    let per_cell = Duration::from_secs_f64(args.secs);
    // The benchmark wants to see connection setup, not the lesson's request
    // cap, so keep-alive connections may carry any number of requests here.
    let config = Config { max_requests: usize::MAX, ..Config::default() };
    let token = CancellationToken::new();
    let hand = net.listener()?;
    let hyper = net.listener()?;
    let servers = [("hand-written", hand.local_addr()?), ("hyper", hyper.local_addr()?)];
    let a = tokio::spawn(server::serve(hand, config, token.clone()));
    let b = tokio::spawn(hyper_server::serve(hyper, config, token.clone()));

    println!(
        "keepalive: GET /resource/1 over {}, {:.1} s per cell, {} worker threads",
        net.describe(),
        args.secs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<13} {:>7} {:<11} {:>9} {:>10} {:>9} {:>9} {:>7}",
        "server", "clients", "mode", "requests", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let mut ratios = Vec::new();
    for (name, addr) in servers {
        for &clients in &args.clients {
            let mut rates = [0.0; 2];
            let mut p99s = [Duration::ZERO; 2];
            for (i, mode) in [Mode::Close, Mode::KeepAlive].into_iter().enumerate() {
                let c = cell(addr, mode, clients, per_cell).await?;
                let r = rate(c.requests, c.elapsed);
                rates[i] = r;
                p99s[i] = c.p99;
                println!(
                    "{:<13} {:>7} {:<11} {:>9} {:>10.0} {:>9} {:>9} {:>7}",
                    name,
                    clients,
                    mode.name(),
                    c.requests,
                    r,
                    ms(c.p50),
                    ms(c.p99),
                    c.errors
                );
            }
            ratios.push((name, clients, rates[1] / rates[0].max(f64::MIN_POSITIVE), p99s));
        }
    }
    println!("\nkeep-alive / close, requests per second (and p99 close -> keep-alive):");
    for (name, clients, ratio, p99s) in ratios {
        println!(
            "  {name:<13} {clients:>3} client(s): {ratio:.1}x   (p99 {} ms -> {} ms)",
            ms(p99s[0]),
            ms(p99s[1])
        );
    }
    token.cancel();
    a.await.context("hand-written server task")??;
    b.await.context("hyper server task")??;
    Ok(())
}

/// Runs `clients` workers against `addr` for `length`, and merges their
/// latencies.
async fn cell(addr: SocketAddr, mode: Mode, clients: usize, length: Duration) -> Result<Cell> {
    let start = Instant::now();
    let deadline = start + length;
    let workers: Vec<_> =
        (0..clients).map(|_| tokio::spawn(worker(addr, mode, deadline))).collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.context("a bench worker panicked")?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    let requests = latencies.len() as u64;
    let p50 = percentile(&mut latencies, 50.0).unwrap_or_default();
    let p99 = percentile(&mut latencies, 99.0).unwrap_or_default();
    Ok(Cell { requests, errors, elapsed, p50, p99 })
}

/// One client: requests back to back until `deadline`. Returns the latency
/// of every answered request and the number of failures.
async fn worker(addr: SocketAddr, mode: Mode, deadline: Instant) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    let mut kept: Option<HttpConn> = None;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let result = match mode {
            Mode::Close => one_on_new_connection(addr).await,
            Mode::KeepAlive => one_on_kept_connection(addr, &mut kept).await,
        };
        match result {
            Ok(()) => latencies.push(t0.elapsed()),
            Err(_) => {
                errors += 1;
                kept = None;
                // Back off a little: the usual cause is running out of
                // ephemeral ports, and hammering does not free them faster.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    (latencies, errors)
}

async fn one_on_new_connection(addr: SocketAddr) -> io::Result<()> {
    let mut conn = HttpConn::connect(addr).await?;
    conn.send(CLOSE).await?;
    check(conn.read_response(false).await?.status)
    // Dropped here: the server has already sent its FIN after the response.
}

async fn one_on_kept_connection(addr: SocketAddr, kept: &mut Option<HttpConn>) -> io::Result<()> {
    let conn = match kept {
        Some(c) => c,
        None => kept.insert(HttpConn::connect(addr).await?),
    };
    conn.send(KEEP).await?;
    check(conn.read_response(false).await?.status)
}

fn check(status: u16) -> io::Result<()> {
    if status == 200 { Ok(()) } else { Err(io::Error::other(format!("status {status}"))) }
}
