//! `cargo run -p bench --release -- <report>`: the measurements the chapters
//! quote. Each report is one module and one subcommand; every run is bounded
//! in time, talks to loopback only, and stops by itself.

mod stats;
mod todo;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks for the lessons (run with --release).")]
struct Cli {
    #[command(subcommand)]
    report: Report,
}

#[derive(Debug, Subcommand)]
enum Report {
    /// rest-todo: reads and writes at 50 concurrent clients, memory vs SQLite.
    Todo(todo::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().report {
        Report::Todo(args) => todo::run(args),
    }
}
