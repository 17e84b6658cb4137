//! `bench scale-out`: what lesson 16's backplane costs per message. The same
//! clients as `bench chat` (its bare-socket WebSocket clients and its
//! `measure`: one speaker with a window of messages in flight, N
//! listeners, every delivery timed) drive lesson 8's chat twice:
//!
//! * alone, in one process (`bench chat --serve`, the send limit lifted);
//! * through lesson 16's cluster: HAProxy in front of 1, 2 and 3 instances
//!   (this binary as `bench scale-out --instance`, the send limit lifted
//!   too), Redis between them. The clients join through HAProxy, so
//!   round-robin spreads them over the instances, and every line crosses
//!   Redis: speaker -> HAProxy -> instance -> Redis -> every instance ->
//!   HAProxy -> listener.
//!
//! Memory and CPU are summed over every process of the cluster (HAProxy,
//! the instances, Redis). On a 2-core machine more instances cannot be
//! faster: they share the same two cores with Redis, HAProxy and the
//! clients. What the table shows is the price of the hops, per message.
//! Needs redis-server and haproxy (it says so and stops without them).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use scale_out::parts::{Cluster, Launcher};

use crate::chat::{self, Measured};
use crate::measure::ChildServer;
use crate::stats::rate;

/// Options of `bench scale-out`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connected clients (one speaks, all listen), one cell per value.
    #[arg(long, value_delimiter = ',', default_values_t = [100])]
    clients: Vec<usize>,
    /// Instances behind HAProxy, one cell per value.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3])]
    instances: Vec<usize>,
    /// Messages the speaker keeps in flight (bench chat's window).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Seconds of speaking per cell.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Chat text size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Internal: be one instance of the cluster (the report starts this
    /// binary this way, as `scale-out instance` would be started), in
    /// Redis at `--redis`, named `--name`, the send limit lifted.
    #[arg(long, hide = true)]
    instance: bool,
    #[arg(long, hide = true)]
    redis: Option<String>,
    #[arg(long, hide = true, default_value = "i1")]
    name: String,
}

/// How long a server or cluster may take to start.
const START: Duration = Duration::from_secs(30);

/// The cluster as `measure` sees it: HAProxy's chat port, and every
/// process whose memory and CPU count.
struct Behind(Cluster);

impl Measured for Behind {
    fn addr(&self) -> SocketAddr {
        self.0.haproxy.chat
    }
    fn pids(&self) -> Vec<u32> {
        self.0.pids()
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.instance {
        let instance = scale_out::InstanceArgs {
            redis: args.redis.context("--instance needs --redis")?,
            name: args.name,
            chat: "127.0.0.1:0".parse()?,
            push: "127.0.0.1:0".parse()?,
            hold_ms: scale_out::long_poll::HOLD.as_millis() as u64,
            unlimited_send: true,
        };
        return runtime.block_on(scale_out::run_instance(instance));
    }
    if let Some(missing) = scale_out::parts::missing_programs() {
        anyhow::bail!(missing);
    }
    crate::transports::raise_open_file_limit();
    let exe = std::env::current_exe().context("this program's path")?;
    let launcher = Launcher {
        program: exe,
        before: vec!["scale-out".into(), "--instance".into()],
        after: Vec::new(),
    };
    println!(
        "bench scale-out: bench chat's clients, one speaker with {} in flight, {} s a cell, \
         {}-byte text; load average {} at the start",
        args.window,
        args.seconds,
        args.size,
        chat::load_average()
    );
    for &n in &args.clients {
        println!("{n} clients:");
        let single = ChildServer::spawn(chat::ours_command()?, START)?;
        let outcome = chat::measure_with(single, n, args.window, args.size, args.seconds);
        let alone = runtime.block_on(outcome).context("lesson 8 alone")?;
        chat::print_row("alone", n, &alone);
        for &k in &args.instances {
            let cluster = Cluster::start(&launcher, k, None)?;
            let outcome =
                chat::measure_with(Behind(cluster), n, args.window, args.size, args.seconds);
            let behind = runtime.block_on(outcome).with_context(|| format!("{k} instances"))?;
            let name = format!("{k} inst");
            chat::print_row(&name, n, &behind);
            println!(
                "{name:<6} {n:>5} clients: {:.2}x alone's deliveries/s, p99 {:.1}x alone's",
                rate(behind.deliveries, behind.elapsed) / rate(alone.deliveries, alone.elapsed),
                behind.p99 as f64 / alone.p99.max(1) as f64,
            );
        }
    }
    Ok(())
}
