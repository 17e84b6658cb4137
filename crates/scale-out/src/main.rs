//! `cargo run -p scale-out`: the demo (Redis, three instances, HAProxy;
//! chat and push clients through HAProxy; one instance killed; the clients
//! resume). `serve` runs the same parts until Ctrl-C; `instance` is one
//! instance, as the others start it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use push_notifications::client::{self as push_client, Event};
use scale_out::parts::{self, Cluster, Launcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use websocket_chat::client::{self as chat_client, Backoff};

#[derive(Parser)]
#[command(about = "Lesson 16: the chat and push across several processes, Redis and HAProxy")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Redis, three instances and HAProxy until Ctrl-C, on fixed ports.
    Serve {
        /// Instances behind HAProxy.
        #[arg(long, default_value_t = 3)]
        instances: usize,
    },
    /// One instance (the others start it): prints `ready chat=ADDR push=ADDR ...`,
    /// and runs until Ctrl-C or until its standard input ends.
    Instance(scale_out::InstanceArgs),
}

/// HAProxy's ports for `serve`: chat, push, stats, and lesson 6's long
/// polling three ways (per-instance state; the same with cookie
/// stickiness; state in Redis).
const SERVE_PORTS: [u16; 6] = [7160, 7161, 7162, 7163, 7164, 7165];

/// Notifications the demo publishes, and chat lines it says, around the kill.
const DEMO_NOTIFICATIONS: u64 = 40;

/// How long the demo waits for anything (a reconnect, the last notification).
const DEMO_WAIT: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> ExitCode {
    harness::init_logging_at("warn");
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Instance(args)) => scale_out::run_instance(args).await,
        other => {
            if let Some(missing) = parts::missing_programs() {
                eprintln!("{missing}");
                return ExitCode::FAILURE;
            }
            // Dropping the future drops the cluster it started: every part
            // is killed and reaped, whichever way we were asked to stop.
            let stop = stop_token();
            let run = async {
                match other {
                    Some(Cmd::Serve { instances }) => serve(instances, stop.clone()).await,
                    _ => demo().await,
                }
            };
            tokio::select! {
                // `serve` ends by itself on the token, and that is success.
                biased;
                r = run => r,
                () = stop.cancelled() => Err(anyhow::anyhow!("stopped; everything it started is stopped too")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale-out: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding this program, to start instances of it")
}

async fn start(instances: usize, ports: Option<[u16; 6]>) -> anyhow::Result<Cluster> {
    let exe = exe()?;
    let launcher = Launcher::this_crate(exe);
    tokio::task::spawn_blocking(move || Cluster::start(&launcher, instances, ports)).await?
}

/// Cancelled by Ctrl-C and, on Unix, by SIGTERM (what `kill PID` and
/// `timeout` send), so either way the parts are stopped.
fn stop_token() -> CancellationToken {
    let token = harness::ctrl_c_token();
    #[cfg(unix)]
    {
        let on_term = token.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                on_term.cancel();
            });
        }
    }
    token
}

async fn serve(instances: usize, token: CancellationToken) -> anyhow::Result<()> {
    let cluster = start(instances, Some(SERVE_PORTS)).await?;
    println!("redis      {} (redis-cli -p {} MONITOR)", cluster.redis.url(), cluster.redis.port());
    for i in &cluster.instances {
        println!("instance   {} pid {}: chat {} push {}", i.name, i.part.pid(), i.chat, i.push);
    }
    println!(
        "chat       ws://{}/ws   (cargo run -p websocket-chat -- client --addr {})",
        cluster.haproxy.chat, cluster.haproxy.chat
    );
    println!(
        "push       ws://{}/ws   (POST http://{}/notify)",
        cluster.haproxy.push, cluster.haproxy.push
    );
    println!("stats      http://{}/", cluster.haproxy.stats);
    let h = &cluster.haproxy;
    println!("long poll  http://{}/data (own feed per instance)", h.lp_local);
    println!("           http://{}/data (the same, sticky by cookie)", h.lp_sticky);
    println!("           http://{}/data (the feed in Redis)", h.lp_shared);
    println!("config     {}", cluster.haproxy.config.display());
    println!("Ctrl-C stops everything.");
    token.cancelled().await;
    drop(cluster);
    Ok(())
}

/// One chat client of lesson 8 (its terminal client's loop, with its
/// backoff), through HAProxy; what it prints goes to our stdout.
fn chat_user(url: &str, name: &str, stop: &CancellationToken) -> mpsc::Sender<String> {
    let (input, lines) = mpsc::channel(16);
    let (out, mut output) = mpsc::channel::<String>(64);
    let (url, name2, stop) = (url.to_owned(), name.to_owned(), stop.clone());
    tokio::spawn(async move {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        chat_client::run(&url, &name2, lines, out, backoff, stop).await;
    });
    let name = name.to_owned();
    tokio::spawn(async move {
        while let Some(line) = output.recv().await {
            println!("  chat  {name:<5} | {line}");
        }
    });
    input
}

async fn publish(addr: SocketAddr, n: u64) -> anyhow::Result<u64> {
    let body = serde_json::json!({"event": "news", "payload": {"n": n}}).to_string();
    let req = format!(
        "POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = harness::http::exchange(addr, req.as_bytes()).await?;
    anyhow::ensure!(resp.status == 200, "POST /notify: {}", resp.status);
    let v: serde_json::Value = serde_json::from_slice(&resp.body)?;
    v["id"].as_u64().context("an id")
}

async fn demo() -> anyhow::Result<()> {
    println!("Starting redis-server, three instances of this program and haproxy, on loopback.");
    let mut cluster = start(3, None).await?;
    println!("  redis   {}", cluster.redis.url());
    for i in &cluster.instances {
        println!("  {}      pid {:>6}  chat {}  push {}", i.name, i.part.pid(), i.chat, i.push);
    }
    println!(
        "  haproxy chat {}  push {}  stats http://{}/  (round-robin)\n",
        cluster.haproxy.chat, cluster.haproxy.push, cluster.haproxy.stats
    );
    let stop = CancellationToken::new();

    println!("Three chat users through HAProxy: round-robin puts each on another instance.");
    let users: Vec<_> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|n| (n, chat_user(&cluster.chat_url(), n, &stop)))
        .collect();

    println!("Three push subscribers to `news`, through HAProxy too (lesson 9's client).");
    let (events, mut received) = mpsc::channel(1024);
    for s in 0..3 {
        let (tx, mut rx) = mpsc::channel(256);
        let (url, stop) = (cluster.push_url(), stop.clone());
        tokio::spawn(push_client::follow(url, vec!["news".into()], None, tx, stop));
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if events.send((s, e)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(events);
    tokio::time::sleep(Duration::from_millis(500)).await; // let them connect (the demo's pace, not a test)
    users[0].1.send("hello from alice".into()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut ids = Vec::new();
    let mut per_sub: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut disconnects = 0;
    let killed = cluster.instances[0].name.clone();
    for n in 1..=DEMO_NOTIFICATIONS {
        if n == DEMO_NOTIFICATIONS / 2 {
            let victim = &mut cluster.instances[0];
            println!(
                "\n>>> kill -9 {} (pid {}) in the middle of it all\n",
                victim.name,
                victim.part.pid()
            );
            victim.part.kill();
        }
        // A publish that meets the dead instance gets an error from
        // HAProxy; the publisher tries again, as a real one would.
        let started = Instant::now();
        loop {
            match publish(cluster.haproxy.push, n).await {
                Ok(id) => break ids.push(id),
                Err(e) if started.elapsed() < DEMO_WAIT => {
                    println!("  publish #{n}: {e}; again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        while let Ok((s, e)) = received.try_recv() {
            note(s, e, &mut per_sub, &mut disconnects);
        }
    }
    users[1].1.send("bob still here after the kill".into()).await?;

    // Wait until every subscriber has every id (or give up, loudly).
    let deadline = Instant::now() + DEMO_WAIT;
    while per_sub.len() < 3 || per_sub.values().any(|got| got.len() < ids.len()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, received.recv()).await {
            Ok(Some((s, e))) => note(s, e, &mut per_sub, &mut disconnects),
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!(
        "\nPush: {} notifications published, ids {:?}..{:?}",
        ids.len(),
        ids.first(),
        ids.last()
    );
    let mut all_ok = true;
    for (s, got) in &per_sub {
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let exact = sorted == ids && got.len() == ids.len();
        all_ok &= exact;
        println!(
            "  subscriber {s}: {} received, {} distinct: {}",
            got.len(),
            sorted.len(),
            if exact { "every id exactly once" } else { "NOT every id exactly once" }
        );
    }
    println!(
        "  ({disconnects} subscriber connections were cut by the kill and resumed with their last id)"
    );
    println!(
        "\nChat over pub/sub is at-most-once: lines said while a user was reconnecting are not replayed."
    );

    println!("\nStopping: clients, then haproxy, the instances and redis (killed and reaped).");
    stop.cancel();
    let pids = cluster.pids();
    drop(cluster);
    println!(
        "  pids {pids:?} are gone; {killed} was killed with SIGKILL, the rest on the way out."
    );
    anyhow::ensure!(all_ok && per_sub.len() == 3, "a subscriber missed or repeated a notification");
    Ok(())
}

fn note(s: usize, e: Event, per_sub: &mut BTreeMap<usize, Vec<u64>>, disconnects: &mut usize) {
    match e {
        Event::Notification(n) => per_sub.entry(s).or_default().push(n.id),
        Event::Connected { since } => {
            per_sub.entry(s).or_default();
            println!("  push  sub {s} | connected (since {since:?})");
        }
        Event::Disconnected { why, retry_in } => {
            *disconnects += 1;
            println!("  push  sub {s} | disconnected ({why}); again in {retry_in:?}");
        }
        Event::Gap { since, oldest } => {
            println!("  push  sub {s} | GAP since {since}, oldest {oldest}")
        }
    }
}
