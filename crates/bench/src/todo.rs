//! `cargo run -p bench --release -- todo`: the rest-todo API under load.
//!
//! For each store (in memory, then a SQLite file in the temp folder) it starts
//! the real server on 127.0.0.1:0, creates `--todos` todos, and runs two
//! phases of `--secs` seconds each with `--clients` concurrent clients, each on
//! its own kept-alive connection, sending one request at a time:
//!
//! * reads:  `GET /todos/{random id}`
//! * writes: `PATCH /todos/{random id}` with `{"completed": true|false}`
//!
//! and prints requests per second and the 50th and 99th percentile of the
//! latency each client saw (from writing the request to having the whole
//! response). Server and clients share this machine's cores, so the figures
//! are for comparing stores and kinds of request with each other, not for
//! quoting as the server's capacity.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use harness::TaskServer;
use rest_todo::{Client, MemoryStore, SqliteStore, Store, serve};

use crate::stats::{micros, percentile_sorted as percentile, rate};

/// Options of the `todo` report.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent clients, each with one connection and one request in flight.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds each phase runs (reads, writes) per store.
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Todos created before measuring; requests pick ids among them.
    #[arg(long, default_value_t = 1000)]
    todos: u64,
}

/// Requests sent before the clock starts, per client: connections open,
/// caches warm, SQLite's statement cache filled.
const WARMUP_PER_CLIENT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// One phase's result.
struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

/// Runs the report.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.clients == 0 || args.todos == 0 || args.secs == 0 {
        bail!("--clients, --todos and --secs must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        println!(
            "rest-todo under load: {} clients, {} s per phase, {} todos, one request in flight per client",
            args.clients, args.secs, args.todos
        );
        println!("server and clients share this machine ({} cores)\n", cores());
        println!(
            "{:<8} {:<6} {:>9} {:>8} {:>9} {:>9} {:>7}",
            "store", "kind", "requests", "req/s", "p50", "p99", "errors"
        );
        bench_store("memory", MemoryStore::new(), &args).await?;
        let db = TempFile::new();
        let store = SqliteStore::open(&db.0).context("opening the temp SQLite file")?;
        bench_store("sqlite", store, &args).await?;
        Ok(())
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

async fn bench_store<S: Store>(name: &str, store: S, args: &Args) -> anyhow::Result<()> {
    let server = TaskServer::start(|listener, token| serve(listener, store, token)).await?;
    let addr = server.addr();
    seed(addr, args.todos).await?;
    for kind in [Kind::Read, Kind::Write] {
        let o = phase(addr, kind, args).await?;
        let mut lat = o.latencies_us;
        lat.sort_unstable();
        println!(
            "{:<8} {:<6} {:>9} {:>8.0} {:>9} {:>9} {:>7}",
            name,
            if kind == Kind::Read { "read" } else { "write" },
            o.requests,
            rate(o.requests, o.elapsed),
            percentile(&lat, 50.0).map(micros).unwrap_or_default(),
            percentile(&lat, 99.0).map(micros).unwrap_or_default(),
            o.errors,
        );
    }
    server.shutdown().await?;
    Ok(())
}

async fn seed(addr: SocketAddr, todos: u64) -> anyhow::Result<()> {
    let mut c = Client::connect(addr).await?;
    for i in 1..=todos {
        let body = serde_json::json!({ "task": format!("todo number {i}") });
        let resp = c.json("POST", "/todos", &body).await?;
        if resp.status != 201 {
            bail!("seeding: POST answered {}: {}", resp.status, resp.text());
        }
    }
    Ok(())
}

async fn phase(addr: SocketAddr, kind: Kind, args: &Args) -> anyhow::Result<Outcome> {
    let run_for = Duration::from_secs(args.secs);
    let mut clients = Vec::with_capacity(args.clients);
    for n in 0..args.clients {
        clients.push(Client::connect(addr).await?);
        // Warm each connection up before anyone starts the clock.
        let mut rng = Rng::new(n as u64 + 1);
        let c = clients.last_mut().context("just pushed")?;
        for _ in 0..WARMUP_PER_CLIENT {
            one_request(c, kind, &mut rng, args.todos).await?;
        }
    }
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for (n, mut c) in clients.into_iter().enumerate() {
        let todos = args.todos;
        tasks.spawn(async move {
            let mut rng = Rng::new(1000 + n as u64);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match one_request(&mut c, kind, &mut rng, todos).await {
                    Ok(true) => latencies.push(t0.elapsed().as_micros() as u64),
                    Ok(false) | Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for (lat, err) in tasks.join_all().await {
        latencies_us.extend(lat);
        errors += err;
    }
    let elapsed = start.elapsed();
    Ok(Outcome { requests: latencies_us.len() as u64, errors, elapsed, latencies_us })
}

/// One request; `Ok(true)` if it got the expected 200.
async fn one_request(
    c: &mut Client,
    kind: Kind,
    rng: &mut Rng,
    todos: u64,
) -> anyhow::Result<bool> {
    let id = 1 + rng.next() % todos;
    let path = format!("/todos/{id}");
    let resp = match kind {
        Kind::Read => c.get(&path).await?,
        Kind::Write => {
            let body = serde_json::json!({ "completed": rng.next().is_multiple_of(2) });
            c.json("PATCH", &path, &body).await?
        }
    };
    Ok(resp.status == 200)
}

/// xorshift64: good enough to spread ids, and no dependency for it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A SQLite file in the temp folder, removed with its WAL files on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new() -> Self {
        let name = format!("bench-rest-todo-{}.sqlite", std::process::id());
        let file = Self(std::env::temp_dir().join(name));
        file.remove(); // a leftover from a run that was killed starts us off wrong
        file
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.remove();
    }
}
