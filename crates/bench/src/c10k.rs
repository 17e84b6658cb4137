//! `c10k`: each server holds 100, 1,000, 5,000 and 10,000 connections in
//! turn. At every step: how much memory and how many threads the server
//! uses, and how many 512-byte echo round trips per second a subset of the
//! connections gets through, with their median and 99th percentile latency.
//!
//! Every step is bounded: the ramp must finish within the connect timeout
//! and the active phase lasts `--seconds`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use threads_vs_epoll::Flavour;

use crate::load::{self, MESSAGE};
use crate::plot::{self, Series};
use crate::stats;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which server.
    pub server: String,
    /// Connections open at this step.
    pub connections: usize,
    /// How many of them did round trips.
    pub active: usize,
    /// How long opening the new connections (and one echo each) took.
    pub ramp: Duration,
    /// Server threads with every connection open, idle.
    pub threads: u64,
    /// Server resident memory with every connection open, idle (KiB).
    pub rss_idle_kib: u64,
    /// Server resident memory after the active phase (KiB).
    pub rss_after_kib: u64,
    /// Round trips per second, all active connections together.
    pub per_second: f64,
    /// Median round trip (µs).
    pub p50_us: u64,
    /// 99th percentile round trip (µs).
    pub p99_us: u64,
    /// The fewest round trips one active connection managed (fairness).
    pub fewest: u64,
    /// Server context switches (all threads) per round trip during the active phase.
    pub switches_per_trip: f64,
    /// Connections that failed during the active phase.
    pub errors: u64,
}

/// Options of the report.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Connection counts to ramp through.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,10000")]
    pub steps: Vec<usize>,
    /// How many connections do round trips at each step (the rest stay idle).
    #[arg(long, default_value_t = 500)]
    pub active: usize,
    /// Length of each active phase, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Which servers, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "threaded,evented,tokio")]
    pub servers: Vec<Flavour>,
    /// Also measure the minimal C epoll server built from
    /// crates/bench/c/epoll_echo.c (`gcc -O2 -o /tmp/epoll_echo crates/bench/c/epoll_echo.c`).
    #[arg(long)]
    pub c_epoll: Option<PathBuf>,
    /// Where c10k.csv and c10k.svg go.
    #[command(flatten)]
    pub output: crate::Output,
}

/// Runs the report: progress on stderr, the table on stdout, CSV and SVG to disk.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let (old, new) =
        threads_vs_epoll::raise_nofile().context("raising the open-file limit (RLIMIT_NOFILE)")?;
    eprintln!("c10k: open-file soft limit raised from {old} to {new} (children inherit it)");
    let most = opts.steps.iter().copied().max().unwrap_or(0);
    // Each side needs one descriptor per connection, plus a few for itself.
    if (new as usize) < most + 100 {
        eprintln!(
            "c10k: WARNING: {new} descriptors cannot hold {most} connections; steps above {} will fail. \
             Raise the hard limit (ulimit -Hn, /etc/security/limits.conf) to go further.",
            new.saturating_sub(100)
        );
    }
    let duration = Duration::from_secs_f64(opts.seconds);
    let mut rows = Vec::new();
    for srv in load::targets(&opts.servers, opts.c_epoll.as_ref()) {
        let server = srv.spawn(crate::server_core())?;
        let name = srv.name();
        eprintln!("c10k: {} server is pid {} on {}", name, server.pid(), server.addr());
        let mut pool = Vec::new();
        for &target in &opts.steps {
            eprint!("c10k: {:>8} ramp to {target:>5} connections ... ", name);
            let ramp = match load::ramp(server.addr(), &mut pool, target).await {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("failed with {} open: {e:#}", pool.len());
                    break;
                }
            };
            let idle = server.status()?;
            eprint!("{ramp:.2?}; {} active for {duration:?} ... ", opts.active.min(target));
            let switches_before = server.context_switches()?;
            let measured = load::hammer(&mut pool, opts.active, duration).await?;
            let switches = server.context_switches()?.saturating_sub(switches_before);
            let after = server.status()?;
            let latency = stats::summarize(measured.latencies_us.clone());
            let row = Row {
                server: name.clone(),
                connections: target,
                active: opts.active.min(target),
                ramp,
                threads: idle.threads,
                rss_idle_kib: idle.rss_kib,
                rss_after_kib: after.rss_kib,
                per_second: stats::rate(measured.round_trips, measured.elapsed),
                p50_us: latency.map_or(0, |l| l.p50),
                p99_us: latency.map_or(0, |l| l.p99),
                fewest: measured.fewest,
                switches_per_trip: switches as f64 / measured.round_trips.max(1) as f64,
                errors: measured.errors,
            };
            eprintln!("{:.0} round trips/s", row.per_second);
            rows.push(row);
        }
        drop(pool);
        drop(server);
    }
    print_table(&rows);
    let csv = opts.output.file("c10k.csv")?;
    std::fs::write(&csv, to_csv(&rows)).with_context(|| format!("writing {}", csv.display()))?;
    let svg = opts.output.file("c10k.svg")?;
    std::fs::write(&svg, to_svg(&rows, &opts.steps, opts.active, duration))
        .with_context(|| format!("writing {}", svg.display()))?;
    eprintln!("c10k: wrote {} and {}", csv.display(), svg.display());
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_table(rows: &[Row]) {
    println!(
        "{:>8} {:>6} {:>6} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>3}",
        "server",
        "conns",
        "active",
        "ramp",
        "threads",
        "RSS idle",
        "RSS busy",
        "echo/s",
        "p50",
        "p99",
        "fewest",
        "cs/echo",
        "err"
    );
    for r in rows {
        println!(
            "{:>8} {:>6} {:>6} {:>7.2}s {:>7} {:>5.1} MiB {:>5.1} MiB {:>8.0} {:>6}µs {:>6}µs {:>7} {:>7.2} {:>3}",
            r.server,
            r.connections,
            r.active,
            r.ramp.as_secs_f64(),
            r.threads,
            mib(r.rss_idle_kib),
            mib(r.rss_after_kib),
            r.per_second,
            r.p50_us,
            r.p99_us,
            r.fewest,
            r.switches_per_trip,
            r.errors
        );
    }
}

/// The table as CSV, one header line, one line per step.
pub fn to_csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "server,connections,active,ramp_s,threads,rss_idle_kib,rss_busy_kib,round_trips_per_s,p50_us,p99_us,fewest_per_conn,switches_per_trip,errors\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{:.3},{},{},{},{:.0},{},{},{},{:.3},{}\n",
            r.server,
            r.connections,
            r.active,
            r.ramp.as_secs_f64(),
            r.threads,
            r.rss_idle_kib,
            r.rss_after_kib,
            r.per_second,
            r.p50_us,
            r.p99_us,
            r.fewest,
            r.switches_per_trip,
            r.errors
        ));
    }
    out
}

/// Memory (left) and throughput (right) against connections, one line per server.
fn to_svg(rows: &[Row], steps: &[usize], active: usize, duration: Duration) -> String {
    let mut servers: Vec<&str> = rows.iter().map(|r| r.server.as_str()).collect();
    servers.dedup();
    let series = |f: &dyn Fn(&Row) -> f64| -> Vec<Series> {
        servers
            .iter()
            .map(|&name| Series {
                name: name.to_owned(),
                colour: plot::colour_of(name),
                points: rows
                    .iter()
                    .filter(|r| r.server == name)
                    .map(|r| (r.connections as f64, f(r)))
                    .collect(),
            })
            .collect()
    };
    let memory = series(&|r| mib(r.rss_idle_kib));
    let rate = series(&|r| r.per_second);
    let ticks: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
    // The command that drew it, so the picture says where it came from.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let caption = format!(
        "cargo run -p bench --release -- {}: {MESSAGE}-byte echoes on min(n, {active}) connections, {:.0?} per step",
        args.join(" "),
        duration
    );
    plot::two_panels(
        ("server resident memory", "MiB", &memory),
        ("echo round trips per second", "round trips/s", &rate),
        &ticks,
        &caption,
    )
}
