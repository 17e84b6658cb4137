//! `cargo run -p bench --release -- <report>`: the measurements the chapters
//! quote. Every report runs against loopback only and stops by itself.

use clap::{Parser, Subcommand};

mod chat;
mod stats;

#[derive(Parser)]
#[command(about = "Measurements for the lessons (run with --release)")]
struct Cli {
    #[command(subcommand)]
    report: Report,
}

#[derive(Subcommand)]
enum Report {
    /// Lesson 8: websocket-chat broadcast deliveries/s and p99 delivery
    /// latency with 100 and 1,000 connected clients.
    Chat(chat::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().report {
        Report::Chat(args) => chat::run(args),
    }
}
