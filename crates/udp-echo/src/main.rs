//! The command line of lesson 2. With no arguments it runs the demo; see
//! `cargo run -p udp-echo -- --help`.

use std::io::{self, BufRead};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::BlockingServer;
use udp_echo::{Config, DEFAULT_ADDR, MAX_ATTEMPTS, REPLY_TIMEOUT, Stats};

#[derive(Parser)]
#[command(about = "Lesson 2: a UDP echo server and a client that retries")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until Ctrl-C. Try it with `nc -u 127.0.0.1 7002`.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Share of arriving datagrams to drop on purpose (0.0 to 1.0).
        #[arg(long, default_value_t = 0.0)]
        drop_rate: f64,
        /// Seed for the drop decisions: the same seed drops the same datagrams.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Send each MESSAGE (or each line of stdin) and print its echo, retrying on loss.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Milliseconds to wait for an echo before sending again.
        #[arg(long, default_value_t = REPLY_TIMEOUT.as_millis() as u64)]
        timeout_ms: u64,
        /// Sends per message before giving up.
        #[arg(long, default_value_t = MAX_ATTEMPTS)]
        attempts: u32,
        messages: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    harness::init_logging();
    match Cli::parse().command {
        None => demo(),
        Some(Command::Serve { addr, drop_rate, seed }) => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&drop_rate),
                "--drop-rate must be within 0.0..=1.0"
            );
            let socket = udp_echo::bind(addr).with_context(|| format!("binding {addr}"))?;
            println!(
                "UDP echo server on {addr}, dropping {:.0}% on purpose; Ctrl-C stops it",
                drop_rate * 100.0
            );
            println!("try: nc -u {} {}", addr.ip(), addr.port());
            let config = Config { drop_rate, seed, ..Config::default() };
            udp_echo::serve(&socket, &config, &AtomicBool::new(false), &Stats::default())?;
            Ok(())
        }
        Some(Command::Client { addr, timeout_ms, attempts, messages }) => {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            let timeout = Duration::from_millis(timeout_ms);
            let lines: Box<dyn Iterator<Item = io::Result<String>>> = if messages.is_empty() {
                Box::new(io::stdin().lock().lines())
            } else {
                Box::new(messages.into_iter().map(Ok))
            };
            for line in lines {
                let line = line?;
                let reply = udp_echo::request(&socket, addr, line.as_bytes(), timeout, attempts)
                    .with_context(|| format!("asking {addr}"))?;
                println!(
                    "{} (after {} send{})",
                    String::from_utf8_lossy(&reply.bytes),
                    reply.attempts,
                    if reply.attempts == 1 { "" } else { "s" }
                );
            }
            Ok(())
        }
    }
}

fn demo() -> anyhow::Result<()> {
    let stats = Arc::new(Stats::default());
    let config = Config { drop_rate: 0.3, seed: 7, ..Config::default() };
    let s = Arc::clone(&stats);
    let server = BlockingServer::start_udp("udp-echo", move |socket, stop| {
        udp_echo::serve(&socket, &config, &stop, &s)
    })?;
    let addr = server.addr();
    println!("UDP echo server on {addr}, dropping 30% of datagrams on purpose (seed 7)");

    println!("\n== 1. ten requests over a lossy server: time out, send again");
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.connect(addr)?;
    for i in 1..=10 {
        let msg = format!("message {i}");
        let reply = udp_echo::request(&client, addr, msg.as_bytes(), REPLY_TIMEOUT, 10)?;
        println!(
            "{msg:>10} -> echoed after {} send{}",
            reply.attempts,
            if reply.attempts == 1 { "" } else { "s" }
        );
    }
    println!(
        "server: {} received, {} dropped on purpose, {} echoed",
        stats.received.load(Ordering::SeqCst),
        stats.dropped.load(Ordering::SeqCst),
        stats.echoed.load(Ordering::SeqCst)
    );

    println!("\n== 2. datagram boundaries are kept (on a lossless server)");
    let stats2 = Arc::new(Stats::default());
    let s2 = Arc::clone(&stats2);
    let lossless = BlockingServer::start_udp("udp-echo lossless", move |socket, stop| {
        udp_echo::serve(&socket, &Config::default(), &stop, &s2)
    })?;
    let c = harness::UdpClient::connect(lossless.addr())?;
    for piece in ["one", "two", "three"] {
        c.send(piece.as_bytes())?;
    }
    for _ in 0..3 {
        let d = c.recv(64)?;
        println!("received one datagram of {} bytes: {:?}", d.len(), String::from_utf8_lossy(&d));
    }

    println!("\n== 3. a datagram too large for the buffer");
    c.send(&[b'x'; 2000])?;
    let d = c.recv(2048)?;
    println!("sent 2000 bytes, server answered: {:?}", String::from_utf8_lossy(&d));
    c.send(&[b'y'; 100])?;
    let cut = c.recv(10)?;
    println!(
        "sent 100 bytes, read them into a 10-byte buffer: got {} bytes, the other 90 are gone",
        cut.len()
    );

    lossless.shutdown()?;
    server.shutdown()?;
    println!(
        "\nservers stopped. Next: `cargo run -p udp-echo -- serve --drop-rate 0.5` and `nc -u 127.0.0.1 7002`."
    );
    Ok(())
}
