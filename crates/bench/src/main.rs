//! Benchmarks for the lessons, one report per subcommand:
//! `cargo run -p bench --release -- <report>`. Always `--release`: a debug
//! build measures the compiler's checks, not the network.
//!
//! Everything runs on loopback and stops by itself. The numbers are noisy
//! (the client and the server share the machine): quote ratios, not absolutes.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod keepalive;
mod stats;

#[derive(Parser)]
#[command(about = "Side-by-side measurements for the lessons' chapters")]
struct Cli {
    #[command(subcommand)]
    report: Report,
}

#[derive(Subcommand)]
enum Report {
    /// Lesson 4: requests/s and p99 for a new connection per request against
    /// keep-alive, hand-written server and hyper, 1 and 50 concurrent clients.
    Keepalive(keepalive::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().report {
        Report::Keepalive(args) => keepalive::run(args).await,
    }
}
