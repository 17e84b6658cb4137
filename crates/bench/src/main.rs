//! Benchmarks for the lessons, one report per subcommand:
//! `cargo run -p bench --release -- <report>`. Always `--release`: a debug
//! build measures the compiler's checks, not the network.
//!
//! Each report is one module. Everything runs on loopback, is bounded in
//! time, and stops by itself. The numbers are noisy (the client and the server
//! share the machine): the chapters quote ratios, not absolutes.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod chat;
mod keepalive;
mod stats;
mod todo;
mod transports;

#[derive(Parser)]
#[command(about = "Side-by-side measurements for the lessons' chapters (run with --release)")]
struct Cli {
    #[command(subcommand)]
    report: Report,
}

#[derive(Subcommand)]
enum Report {
    /// Lesson 4: requests/s and p99 for a new connection per request against
    /// keep-alive, hand-written server and hyper, 1 and 50 concurrent clients.
    Keepalive(keepalive::Args),
    /// Lesson 10: rest-todo reads and writes at 50 concurrent clients, memory vs SQLite.
    Todo(todo::Args),
    /// Lesson 8: websocket-chat broadcast deliveries/s and p99 delivery
    /// latency with 100 and 1,000 connected clients.
    Chat(chat::Args),
    /// Chapter 11: short polling, long polling, SSE and WebSocket on one feed:
    /// bytes and requests per update, latency, loss, server CPU and memory.
    Transports(transports::Args),
}

fn main() -> Result<()> {
    match Cli::parse().report {
        Report::Keepalive(args) => tokio::runtime::Runtime::new()?.block_on(keepalive::run(args)),
        Report::Todo(args) => todo::run(args),
        Report::Chat(args) => chat::run(args),
        Report::Transports(args) => transports::run(args),
    }
}
