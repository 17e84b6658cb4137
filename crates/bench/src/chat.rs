//! `bench chat`: how fast does lesson 8's server fan a message out, and how
//! does it compare with the notes' Node.js chat server?
//!
//! Setup: the chat server runs in a process of its own (this binary, `bench
//! chat --serve`), on loopback, so `/proc` can say what *it* holds; N
//! clients (tokio-tungstenite) run in the bench's process. With `--target
//! notes-node` the same clients then drive the notes' server, rewritten in
//! `crates/bench/peers/notes-chat.js` (Node.js and the `ws` package, which
//! the bench installs with npm under `target/bench/peers/`), in the same
//! run, and the report prints the two side by side, as ratios.
//!
//! The clients join one at a time: each sends `{"type":"username",...}` and
//! waits until it sees its own name come back (our server announces the
//! join; the notes' server relays the message itself). So every join is
//! settled before the next client connects; a `sync` message from the first
//! client, seen by all N, settles the notices. Resident memory is read
//! before the clients and after that: per connection is the growth over N.
//!
//! Then one client speaks with a window of messages in flight: it sends a
//! new one when its own copy of an earlier one comes back. That paces it at
//! the speed the server can fan out, instead of flooding the per-client
//! queues (which would measure how fast the server disconnects slow
//! clients, a different thing). Each message carries the time it was sent,
//! in microseconds since the start; each receiver records `now - sent` for
//! every delivery. The two servers send different shapes
//! (`{"type":"message","username":..,"message":"t=.."}` from ours, the
//! client's own `{"type":"message","data":"t=.."}` from Node's); the clients
//! read the time from either.
//!
//! Printed for each N: messages sent, deliveries, deliveries per second,
//! p50/p99/max delivery latency, memory per connection, and how many clients
//! the server closed before the end (should be 0; if not, the figures are
//! suspect and it says so).
//!
//! Servers and clients share this machine's cores, so the figures are a
//! lower bound for the server alone and noisy: compare ratios from one run,
//! not absolutes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use websocket_chat::{Chat, Config};

use crate::measure::ChildServer;
use crate::stats::{percentile_sorted, rate};

/// Options of `bench chat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client counts to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    clients: Vec<usize>,
    /// How long the speaker speaks, per client count.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Messages in flight (sent, own copy not yet back).
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Chat text size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// `ours` alone, or `notes-node`: ours and then the notes' Node.js
    /// server with the same clients, side by side (skipped, with the reason,
    /// where `node` or `npm` is missing).
    #[arg(long, value_enum, default_value_t = Target::Ours)]
    target: Target,
    /// Internal: run lesson 8's server (send limit lifted) on 127.0.0.1:0,
    /// print its address, and serve until killed.
    #[arg(long, hide = true)]
    serve: bool,
}

/// What `bench chat` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// websocket-chat alone.
    Ours,
    /// websocket-chat, then the notes' Node.js `ws` server, in one run.
    NotesNode,
}

/// How long one step may take: a connect, a join, the sync, the drain.
const STEP: Duration = Duration::from_secs(30);

/// Runs the report, or (`--serve`) the server it measures.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::transports::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.serve {
        return runtime.block_on(serve());
    }
    let node = match args.target {
        Target::Ours => None,
        Target::NotesNode => match notes_node() {
            Ok(command) => Some(command),
            Err(why) => {
                println!("bench chat: skipping notes-node: {why}");
                None
            }
        },
    };
    println!(
        "bench chat: one speaker, every message broadcast to all clients, {} s each, \
         window {}, {}-byte text; servers in their own processes",
        args.seconds, args.window, args.size
    );
    for &n in &args.clients {
        let ours = runtime.block_on(measure(ChildServer::spawn(ours_command()?, STEP)?, n, &args));
        let ours = ours.with_context(|| format!("ours with {n} clients"))?;
        print_row("ours", n, &ours);
        let Some(node) = &node else { continue };
        let peer = runtime.block_on(measure(ChildServer::spawn(node.command(), STEP)?, n, &args));
        let peer = peer.with_context(|| format!("notes-node with {n} clients"))?;
        print_row("node", n, &peer);
        println!(
            "{:<5} {n:>5} clients: deliveries/s {:.2}x Node's; p99 {:.2}x Node's; \
             memory per connection {:.2}x Node's",
            "ours/",
            rate(ours.deliveries, ours.elapsed) / rate(peer.deliveries, peer.elapsed),
            ours.p99 as f64 / peer.p99.max(1) as f64,
            ours.per_conn_kib / peer.per_conn_kib.max(0.1),
        );
    }
    Ok(())
}

fn print_row(name: &str, n: usize, r: &Outcome) {
    println!(
        "{name:<5} {n:>5} clients: {:>7} messages, {:>9} deliveries in {:.2} s = {:>9.0} \
         deliveries/s; latency p50 {} us, p99 {} us, max {} us; {:.1} KiB/conn; \
         closed early: {}",
        r.sent,
        r.deliveries,
        r.elapsed.as_secs_f64(),
        rate(r.deliveries, r.elapsed),
        r.p50,
        r.p99,
        r.max,
        r.per_conn_kib,
        r.closed_early
    );
    if r.closed_early > 0 {
        println!("       (clients were closed: their deliveries are missing; treat with care)");
    }
}

/// This binary as `bench chat --serve`.
fn ours_command() -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe().context("this program's path")?);
    command.args(["chat", "--serve"]);
    Ok(command)
}

/// The child's side: lesson 8's server with its default limits, except the
/// per-connection send limit (5 a second, a burst of 20): the speaker sends
/// as fast as the broadcast allows, and with the limit the bench would
/// measure the limit, not the fan-out. Lifted here and only here.
async fn serve() -> anyhow::Result<()> {
    let defaults = Config::default();
    let config = Config { send_rate: u32::MAX, send_burst: u32::MAX, ..defaults };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("chat listening on {}", listener.local_addr()?);
    Chat::new(config).serve(listener, CancellationToken::new()).await?;
    Ok(())
}

/// The notes' server, ready to start: `node` and the script, with `ws`
/// from the folder the bench installed it in.
pub(crate) struct NotesNode {
    script: PathBuf,
    modules: PathBuf,
}

impl NotesNode {
    /// `node notes-chat.js`, printing `... listening on 127.0.0.1:PORT`.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new("node");
        command.arg(&self.script).env("NODE_PATH", &self.modules);
        command
    }
}

/// Finds `node` and installs the peer's `ws` (the version pinned in
/// `crates/bench/peers/package.json`) with npm into `target/bench/peers/`,
/// once. `Err` says why the peer cannot run here.
pub(crate) fn notes_node() -> Result<NotesNode, String> {
    let version = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let node = version("node").ok_or("`node` is not installed (or does not run)")?;
    let peers = crate::workspace_dir().join("crates/bench/peers");
    let folder = crate::workspace_dir().join("target/bench/peers");
    let manifest = std::fs::read_to_string(peers.join("package.json"))
        .map_err(|e| format!("reading crates/bench/peers/package.json: {e}"))?;
    let installed = folder.join("node_modules/ws/package.json");
    if !same_ws(&manifest, &installed) {
        version("npm").ok_or("`npm` is not installed, so the peer's `ws` cannot be")?;
        std::fs::create_dir_all(&folder).map_err(|e| format!("creating {folder:?}: {e}"))?;
        std::fs::write(folder.join("package.json"), &manifest)
            .map_err(|e| format!("writing {folder:?}/package.json: {e}"))?;
        eprintln!("bench chat: npm install (ws, for the notes' server) in {}", folder.display());
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&folder)
            .status()
            .map_err(|e| format!("running npm: {e}"))?;
        if !status.success() || !same_ws(&manifest, &installed) {
            return Err(format!("`npm install` in {} failed ({status})", folder.display()));
        }
    }
    eprintln!("bench chat: notes-node peer on node {node}");
    Ok(NotesNode { script: peers.join("notes-chat.js"), modules: folder.join("node_modules") })
}

/// Whether the `ws` installed at `installed` is the version `manifest` pins.
fn same_ws(manifest: &str, installed: &Path) -> bool {
    let pinned = serde_json::from_str::<serde_json::Value>(manifest)
        .ok()
        .and_then(|m| m["dependencies"]["ws"].as_str().map(str::to_owned));
    let have = std::fs::read_to_string(installed)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|p| p["version"].as_str().map(str::to_owned));
    pinned.is_some() && pinned == have
}

struct Outcome {
    sent: u64,
    deliveries: u64,
    elapsed: Duration,
    p50: u64,
    p99: u64,
    max: u64,
    per_conn_kib: f64,
    closed_early: usize,
}

/// What every reader shares: deliveries so far, and who saw the sync.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    synced: AtomicUsize,
    closed_early: AtomicUsize,
}

/// The send time in a timed chat message of either server, if it is one:
/// the digits after `":"t=`.
fn sent_at(text: &str) -> Option<u64> {
    let at = text.find("\":\"t=")?;
    let digits: String = text[at + 5..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The text of a frame, text or binary (the notes' server relays what it
/// gets; an older `ws` would turn text into binary).
fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        Message::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

async fn measure(server: ChildServer, n: usize, args: &Args) -> anyhow::Result<Outcome> {
    let addr: SocketAddr = server.addr();
    let url = format!("ws://{addr}/ws");
    let before = server.status()?;
    let base = Instant::now();
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();

    // Join one at a time: connect, name yourself, wait for the name to come
    // back, then read on a task of your own. `u{i}x`: no name contains another.
    let (echo_tx, mut echo_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut speaker = None;
    let mut receivers = Vec::with_capacity(n);
    for i in 0..n {
        let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(&url))
            .await
            .with_context(|| format!("client {i}: connect timed out"))?
            .with_context(|| format!("connecting client {i}"))?;
        let (mut sink, mut stream) = ws.split();
        let name = format!("u{i}x");
        sink.send(Message::text(format!(r#"{{"type":"username","data":"{name}"}}"#))).await?;
        let joined = async {
            while let Some(msg) = stream.next().await {
                if text_of(&msg?).is_some_and(|t| t.contains(&name)) {
                    return Ok(());
                }
            }
            bail!("closed before its join came back")
        };
        tokio::time::timeout(STEP, joined)
            .await
            .with_context(|| format!("client {i}: its join did not come back"))??;
        if i == 0 {
            speaker = Some(sink);
        }
        // Listeners never write; dropping their half of the socket is fine
        // (the reading half keeps the connection open) and tungstenite still
        // answers pings through the shared stream underneath.
        let echo = (i == 0).then(|| echo_tx.clone());
        let (tally, stop) = (tally.clone(), stop.clone());
        receivers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => break,
                    msg = stream.next() => msg,
                };
                let Some(Ok(msg)) = msg else {
                    tally.closed_early.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                let Some(text) = text_of(&msg) else { continue };
                let Some(sent) = sent_at(text) else {
                    if text.contains("\"sync\"") {
                        tally.synced.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                };
                let now = base.elapsed().as_micros() as u64;
                lat.push(now.saturating_sub(sent));
                tally.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(e) = &echo {
                    let _ = e.send(());
                }
            }
            lat
        }));
    }
    drop(echo_tx);
    let mut speaker = speaker.context("at least one client")?;

    // Settle: a message everybody sees after every join notice.
    speaker.send(Message::text(r#"{"type":"message","data":"sync"}"#)).await?;
    wait_for(|| tally.synced.load(Ordering::Relaxed) >= n, "every client to see the sync").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.status()?;
    let per_conn_kib = idle.rss_kib.saturating_sub(before.rss_kib) as f64 / n as f64;

    let pad = "x".repeat(args.size.saturating_sub(24));
    let run_for = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut in_flight = 0usize;
    while started.elapsed() < run_for {
        while in_flight < args.window {
            let text = format!("t={};{pad}", base.elapsed().as_micros());
            let msg = format!(r#"{{"type":"message","data":"{text}"}}"#);
            speaker.send(Message::text(msg)).await?;
            sent += 1;
            in_flight += 1;
        }
        match tokio::time::timeout(Duration::from_secs(5), echo_rx.recv()).await {
            Ok(Some(())) => in_flight -= 1,
            _ => bail!("the speaker's own message did not come back within 5 s"),
        }
    }
    // Let the last window land everywhere (or give up after STEP: a client
    // closed early never gets its share).
    let expected = sent * n as u64;
    let _ = wait_for(|| tally.delivered.load(Ordering::Relaxed) >= expected, "the drain").await;
    let elapsed = started.elapsed();
    let closed_early = tally.closed_early.load(Ordering::Relaxed);

    stop.cancel();
    let _ = speaker.close().await;
    let mut all = Vec::new();
    for r in receivers {
        all.extend(r.await?);
    }
    drop(server);
    all.sort_unstable();
    Ok(Outcome {
        sent,
        deliveries: all.len() as u64,
        elapsed,
        p50: percentile_sorted(&all, 50.0).unwrap_or_default(),
        p99: percentile_sorted(&all, 99.0).unwrap_or_default(),
        max: all.last().copied().unwrap_or_default(),
        per_conn_kib,
        closed_early,
    })
}

/// Polls `done` every 2 ms until it holds, or fails after [`STEP`].
async fn wait_for(done: impl Fn() -> bool, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP;
    while !done() {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after {STEP:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_send_time_from_both_servers_shapes() {
        let ours = r#"{"type":"message","username":"u0x","message":"t=1234;xx","room":"lobby"}"#;
        let node = r#"{"type":"message","data":"t=987;xx"}"#;
        assert_eq!(sent_at(ours), Some(1234));
        assert_eq!(sent_at(node), Some(987));
        assert_eq!(sent_at(r#"{"type":"info","message":"u1x joined lobby"}"#), None);
        assert_eq!(sent_at(r#"{"type":"message","data":"sync"}"#), None);
    }
}
