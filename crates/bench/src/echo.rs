//! `echo`: throughput and latency with every connection busy, from one
//! connection to a few hundred. It answers the question c10k does not: at
//! low concurrency, does the event loop win at all? (Usually not by much: a
//! blocked thread woken by the kernel is about as cheap as an epoll wakeup.)

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use threads_vs_epoll::Flavour;

use crate::load;
use crate::stats;

/// Options of the report.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Numbers of connections, all active.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50,500")]
    pub connections: Vec<usize>,
    /// Length of each step, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Which servers, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "threaded,evented,tokio")]
    pub servers: Vec<Flavour>,
    /// Also measure the minimal C epoll server built from
    /// crates/bench/c/epoll_echo.c (`gcc -O2 -o /tmp/epoll_echo crates/bench/c/epoll_echo.c`).
    #[arg(long)]
    pub c_epoll: Option<PathBuf>,
    /// Where echo.csv goes.
    #[command(flatten)]
    pub output: crate::Output,
}

/// Runs the report: progress on stderr, the table on stdout, CSV to disk.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let (_, limit) = threads_vs_epoll::raise_nofile()?;
    eprintln!("echo: open-file soft limit {limit}");
    let duration = Duration::from_secs_f64(opts.seconds);
    let mut csv =
        String::from("server,connections,round_trips_per_s,p50_us,p99_us,fewest_per_conn,errors\n");
    println!(
        "{:>8} {:>6} {:>10} {:>8} {:>8} {:>7} {:>4}",
        "server", "conns", "echo/s", "p50", "p99", "fewest", "err"
    );
    let mut lines = Vec::new();
    for srv in load::targets(&opts.servers, opts.c_epoll.as_ref()) {
        let server = srv.spawn(crate::server_core())?;
        let name = srv.name();
        let mut pool = Vec::new();
        for &n in &opts.connections {
            eprintln!("echo: {} with {n} busy connections for {duration:?}", name);
            load::ramp(server.addr(), &mut pool, n).await?;
            let m = load::hammer(&mut pool, n, duration).await?;
            let rate = stats::rate(m.round_trips, m.elapsed);
            let lat = stats::summarize(m.latencies_us);
            let (p50, p99) = lat.map_or((0, 0), |l| (l.p50, l.p99));
            lines.push(format!(
                "{:>8} {:>6} {:>10.0} {:>6}µs {:>6}µs {:>7} {:>4}",
                name, n, rate, p50, p99, m.fewest, m.errors
            ));
            csv.push_str(&format!("{name},{n},{rate:.0},{p50},{p99},{},{}\n", m.fewest, m.errors));
        }
    }
    for l in lines {
        println!("{l}");
    }
    let path = opts.output.file("echo.csv")?;
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("echo: wrote {}", path.display());
    Ok(())
}
