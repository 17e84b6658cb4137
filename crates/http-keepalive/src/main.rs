//! Command line for lesson 4. No arguments: the demo. `serve`: both servers on
//! their fixed loopback ports until Ctrl-C. `client`: the three ways of
//! fetching a page, against a running server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::{Direction, TapStats, WireTap};
use http_keepalive::client::{self, Mode};
use http_keepalive::{Config, HAND_PORT, HYPER_PORT, hyper_server, server};
use raw_http::{HttpConn, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "HTTP/1.0 close vs HTTP/1.1 keep-alive, pipelining and head-of-line blocking")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hand-written server and the hyper server until Ctrl-C.
    Serve {
        /// Where the hand-written server listens.
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], HAND_PORT)))]
        addr: SocketAddr,
        /// Where the hyper server listens.
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], HYPER_PORT)))]
        hyper_addr: SocketAddr,
    },
    /// Fetch a page of resources three ways from a running server, through a wire tap.
    Client {
        /// The server (7080 hand-written, 7081 hyper).
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], HAND_PORT)))]
        addr: SocketAddr,
        /// How many resources the page has.
        #[arg(long, default_value_t = 10)]
        resources: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    harness::init_logging();
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve { addr, hyper_addr }) => serve(addr, hyper_addr).await,
        Some(Command::Client { addr, resources }) => {
            let paths = client::page_paths(resources);
            for mode in Mode::ALL {
                let f = fetch_through_tap(addr, &paths, mode)
                    .await
                    .with_context(|| format!("fetching from {addr}; is `serve` running?"))?;
                report(&f);
            }
            Ok(())
        }
    }
}

async fn serve(addr: SocketAddr, hyper_addr: SocketAddr) -> Result<()> {
    let hand = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let hyper =
        TcpListener::bind(hyper_addr).await.with_context(|| format!("binding {hyper_addr}"))?;
    tracing::info!(
        "hand-written server on http://{addr}/, hyper on http://{hyper_addr}/; Ctrl-C stops"
    );
    let token = CancellationToken::new();
    let a = tokio::spawn(server::serve(hand, Config::default(), token.clone()));
    let b = tokio::spawn(hyper_server::serve(hyper, Config::default(), token.clone()));
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("Ctrl-C: finishing in-flight requests");
    token.cancel();
    a.await??;
    b.await??;
    Ok(())
}

/// One fetch of a page, measured.
struct Fetched {
    /// How it was fetched.
    mode: Mode,
    /// The responses, in request order.
    responses: Vec<Response>,
    /// What the wire tap counted: connections, bytes each way.
    stats: TapStats,
    /// Wall-clock time for the whole page.
    elapsed: std::time::Duration,
    /// The tap, still holding its transcript of the bytes.
    tap: WireTap,
}

/// Fetches `paths` from `server` through a fresh wire tap, so the connections
/// and bytes of this one fetch are counted on their own.
async fn fetch_through_tap(server: SocketAddr, paths: &[String], mode: Mode) -> Result<Fetched> {
    let tap = WireTap::start(server)?;
    let start = Instant::now();
    let responses = client::fetch(tap.addr(), paths, mode).await?;
    let elapsed = start.elapsed();
    Ok(Fetched { mode, responses, stats: tap.stats(), elapsed, tap })
}

fn report(f: &Fetched) {
    let ok = f.responses.iter().filter(|r| r.status == 200).count();
    println!(
        "  {:<40} {:>2} connection(s), {:>5} bytes out, {:>5} bytes in, {:>3} of {} OK, {:>7.2} ms",
        f.mode.name(),
        f.stats.connections,
        f.stats.to_server,
        f.stats.to_client,
        ok,
        f.responses.len(),
        f.elapsed.as_secs_f64() * 1000.0
    );
}

/// Bytes as text with the line ends made visible, indented.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace("\r\n", "\\r\\n\n")
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect()
}

async fn demo() -> Result<()> {
    let token = CancellationToken::new();
    let config = Config::default();
    let hand = TcpListener::bind(harness::EPHEMERAL).await?;
    let hyper = TcpListener::bind(harness::EPHEMERAL).await?;
    let (hand_addr, hyper_addr) = (hand.local_addr()?, hyper.local_addr()?);
    let a = tokio::spawn(server::serve(hand, config, token.clone()));
    let b = tokio::spawn(hyper_server::serve(hyper, config, token.clone()));

    let paths = client::page_paths(10);
    for (name, addr) in [("hand-written server", hand_addr), ("hyper server", hyper_addr)] {
        println!("== a page of {} resources from the {name} ({addr}), three ways ==", paths.len());
        let mut runs = Vec::new();
        for mode in Mode::ALL {
            let f = fetch_through_tap(addr, &paths, mode).await?;
            report(&f);
            runs.push(f);
        }
        let [new, kept, piped] = <[Fetched; 3]>::try_from(runs).ok().context("three runs")?;
        println!("\n-- HTTP/1.0, connection #0, request as it crossed the tap (hexdump) --");
        print!("{}", harness::hexdump(&new.tap.bytes(0, Direction::ToServer)));
        println!("-- and the response (text, \\r\\n made visible); the server then closed --");
        print!("{}", show(&new.tap.bytes(0, Direction::ToClient)));
        println!("-- keep-alive: the second request and response on the one connection --");
        let out = kept.tap.bytes(0, Direction::ToServer);
        let back = kept.tap.bytes(0, Direction::ToClient);
        print!("{}", show(&out[out.len() / 10..out.len() / 10 * 2]));
        print!("{}", show(&back[back.len() / 10..back.len() / 10 * 2]));
        let first = piped.tap.transcript().into_iter().find(|c| c.direction == Direction::ToServer);
        if let Some(c) = first {
            let starts: Vec<usize> = (0..c.bytes.len().saturating_sub(3))
                .filter(|&i| c.bytes[i..].starts_with(b"GET "))
                .collect();
            println!(
                "-- pipelined: the tap's first read from the client held {} bytes, {} requests; the first two: --",
                c.bytes.len(),
                starts.len()
            );
            let cut = starts.get(2).copied().unwrap_or(c.bytes.len());
            print!("{}", show(&c.bytes[..cut]));
        }
        println!();
    }

    println!("== head-of-line blocking on the hand-written server ==");
    head_of_line(hand_addr).await?;

    token.cancel();
    a.await??;
    b.await??;
    Ok(())
}

/// `/slow?ms=300` then two fast requests: pipelined on one connection, and
/// each on a connection of its own. Prints when each response arrived.
async fn head_of_line(addr: SocketAddr) -> Result<()> {
    let paths = ["/slow?ms=300", "/resource/1", "/resource/2"];
    let start = Instant::now();
    let mut conn = HttpConn::connect(addr).await?;
    let all: Vec<u8> = paths.iter().flat_map(|p| client::request(Mode::Pipelined, p)).collect();
    conn.send(&all).await?;
    println!("  pipelined on one connection:");
    for p in paths {
        let r = conn.read_response(false).await?;
        println!(
            "    {p:<14} -> {} {:?} after {:>4} ms",
            r.status,
            r.text().trim(),
            ms(start.elapsed())
        );
    }
    println!("  one connection each, sent at the same time:");
    let start = Instant::now();
    let tasks: Vec<_> = paths
        .iter()
        .map(|p| {
            let p = (*p).to_owned();
            tokio::spawn(async move {
                let r = raw_http::get(addr, &p).await;
                (p, r, start.elapsed())
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await?);
    }
    done.sort_by_key(|(_, _, at)| *at);
    for (p, r, at) in done {
        let r = r?;
        println!("    {p:<14} -> {} {:?} after {:>4} ms", r.status, r.text().trim(), ms(at));
    }
    Ok(())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}
