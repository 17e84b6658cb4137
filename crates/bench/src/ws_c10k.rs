//! `bench ws-c10k`: what idle WebSocket connections cost lessons 8 and 9,
//! from 1,000 to 10,000 of them, and how long one broadcast takes to reach
//! them all (chapter 8, "What a connection costs").
//!
//! For each server (`chat`, `push`, and `notes-node` when asked) and each
//! count N:
//!
//! 1. The server starts in a process of its own (this binary, `bench
//!    ws-c10k --serve chat|push`, with the lesson's default limits; or the
//!    notes' Node.js server of `bench chat --target notes-node`), so `/proc`
//!    says what *it* holds. Its resident memory is read once it listens.
//! 2. N clients (tokio-tungstenite, in this process) connect, 64 at a time,
//!    and each sends one message and waits for the answer: a subscription
//!    (`{"event":"bench"}`, answered `subscribed`) for push; a username for
//!    the chat, answered with the client's own join notice (in the lobby
//!    past [`websocket_chat::ANNOUNCE_UP_TO`] members only the newcomer
//!    hears it; announcing each of 10,000 joins to everyone would be 50
//!    million deliveries); a ping for the Node server, answered with a
//!    pong (anything else it would relay to everyone).
//! 3. Idle: the server's resident memory and threads are read again;
//!    memory per connection is the growth divided by N.
//! 4. One broadcast: for push a `POST /notify` on `bench`; for the chat and
//!    Node the first client says one message (the cap is 10,000, so a
//!    speaker of its own would not fit). Every client notes
//!    when it arrives; the report prints the last arrival and the p99,
//!    counted from just before the POST or the send.
//!
//! Everything is on loopback and bounded: every wait has a deadline, and the
//! server process is killed when its cell ends.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::measure::ChildServer;
use crate::stats::percentile;

/// Options of `bench ws-c10k`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Client counts to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000, 10000])]
    clients: Vec<usize>,
    /// Servers to measure (`notes-node`: the notes' Node.js chat server,
    /// skipped with the reason where node or npm is missing).
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [Target::Chat, Target::Push])]
    targets: Vec<Target>,
    /// tungstenite's read buffer on the server, in bytes (default: the
    /// lessons' `READ_BUFFER_BYTES`); 131072 is tungstenite's own default.
    #[arg(long)]
    read_buffer: Option<usize>,
    /// Internal: run this server on 127.0.0.1:0, print its address, and
    /// serve until killed.
    #[arg(long, value_enum, hide = true)]
    serve: Option<Target>,
}

/// The two WebSocket lessons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Lesson 8: websocket-chat.
    Chat,
    /// Lesson 9: push-notifications.
    Push,
    /// The notes' chat server on Node.js and `ws` (`crates/bench/peers/`).
    NotesNode,
}

/// Connects in flight at once: enough to keep the server's accept loop busy,
/// few enough not to overflow its listen backlog.
const CONNECTS_AT_ONCE: usize = 64;

/// How long any one step (a connect, an answer, the broadcast) may take.
const STEP: Duration = Duration::from_secs(60);

/// The event the push clients subscribe to.
const EVENT: &str = "bench";

/// What the broadcast says, and how each client recognises it.
const BROADCAST: &str = "to everyone";

/// Runs the report, or the server of one cell (`--serve`).
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::transports::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(target) = args.serve {
        return runtime.block_on(serve(target, args.read_buffer));
    }
    println!(
        "bench ws-c10k: idle WebSocket clients, server in its own process (read buffer {} \
         bytes); load average {} at the start",
        args.read_buffer.unwrap_or(websocket_chat::conn::READ_BUFFER_BYTES),
        crate::chat::load_average()
    );
    println!(
        "{:<5} {:>6} {:>9} {:>9} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "", "N", "RSS MiB", "KiB/conn", "threads", "conn s", "conn p99", "last ms", "p99 ms"
    );
    let mut node = None;
    if args.targets.contains(&Target::NotesNode) {
        match crate::chat::notes_node() {
            Ok(peer) => node = Some(peer),
            Err(why) => println!("bench ws-c10k: skipping notes-node: {why}"),
        }
    }
    for &target in &args.targets {
        if target == Target::NotesNode && node.is_none() {
            continue;
        }
        for &n in &args.clients {
            let row = runtime
                .block_on(measure(target, n, args.read_buffer, node.as_ref()))
                .with_context(|| format!("{target:?} with {n} clients"))?;
            let (last, p99) = match row.broadcast {
                Some((last, p99)) => (ms(last), ms(p99)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<5} {n:>6} {:>9.1} {:>9.1} {:>8} {:>8.2} {:>10} {:>10} {:>10}",
                name(target),
                row.rss_kib as f64 / 1024.0,
                row.per_conn_kib,
                row.threads,
                row.connect_all.as_secs_f64(),
                ms(row.connect_p99),
                last,
                p99,
            );
        }
    }
    Ok(())
}

fn name(target: Target) -> &'static str {
    match target {
        Target::Chat => "chat",
        Target::Push => "push",
        Target::NotesNode => "node",
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The child's side: the lesson's server with its defaults (or the read
/// buffer asked for), until the parent kills it.
async fn serve(target: Target, read_buffer: Option<usize>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("ws-c10k listening on {}", listener.local_addr()?);
    let token = tokio_util::sync::CancellationToken::new();
    match target {
        Target::Chat => {
            let mut config = websocket_chat::Config::default();
            if let Some(bytes) = read_buffer {
                config.connection.read_buffer_bytes = bytes;
            }
            websocket_chat::Chat::new(config).serve(listener, token).await?;
        }
        Target::Push => {
            let mut config = push_notifications::Config::default();
            if let Some(bytes) = read_buffer {
                config.connection.read_buffer_bytes = bytes;
            }
            push_notifications::Push::new(config).serve(listener, token).await?;
        }
        Target::NotesNode => bail!("the Node server is started with node, not --serve"),
    }
    Ok(())
}

struct Row {
    rss_kib: u64,
    per_conn_kib: f64,
    threads: u64,
    connect_all: Duration,
    connect_p99: Duration,
    /// The last delivery of the broadcast and the p99, from just before it.
    broadcast: Option<(Duration, Duration)>,
}

async fn measure(
    target: Target,
    n: usize,
    read_buffer: Option<usize>,
    node: Option<&crate::chat::NotesNode>,
) -> anyhow::Result<Row> {
    let command = match (target, node) {
        (Target::NotesNode, Some(node)) => node.command(),
        (Target::NotesNode, None) => bail!("no Node peer"),
        _ => {
            let exe = std::env::current_exe().context("this program's path")?;
            let mut command = std::process::Command::new(exe);
            command.args(["ws-c10k", "--serve", name(target)]);
            if let Some(bytes) = read_buffer {
                command.args(["--read-buffer", &bytes.to_string()]);
            }
            command
        }
    };
    let server = ChildServer::spawn(command, Duration::from_secs(10))?;
    let addr = server.addr();
    let before = server.status()?;

    // Connect everyone, CONNECTS_AT_ONCE at a time; each client's task
    // then waits for the broadcast and keeps reading until told to stop.
    let started = Instant::now();
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::channel::<Instant>(n);
    let stop = tokio_util::sync::CancellationToken::new();
    let (speak_tx, speak_rx) = tokio::sync::oneshot::channel::<()>();
    let mut speak_rx = Some(speak_rx);
    let connects: Vec<anyhow::Result<Duration>> = stream::iter(0..n)
        .map(|i| {
            let (arrived, stop) = (arrived_tx.clone(), stop.clone());
            let speak = if i == 0 { speak_rx.take() } else { None };
            async move { client(target, addr, i, arrived, stop, speak).await }
        })
        .buffer_unordered(CONNECTS_AT_ONCE)
        .collect()
        .await;
    drop(arrived_tx);
    let connect_all = started.elapsed();
    let mut times = Vec::with_capacity(n);
    for c in connects {
        times.push(c?);
    }
    let connect_p99 = percentile(&mut times, 99.0).unwrap_or_default();

    // Let the server settle (the last answers written, tasks parked).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.status()?;
    let per_conn_kib = idle.rss_kib.saturating_sub(before.rss_kib) as f64 / n as f64;

    let broadcast = {
        let sent = match target {
            Target::Push => {
                let sent = Instant::now();
                publish(addr).await?;
                sent
            }
            Target::Chat | Target::NotesNode => {
                let sent = Instant::now();
                speak_tx.send(()).map_err(|()| anyhow::anyhow!("the first client is gone"))?;
                sent
            }
        };
        {
            let mut lat = Vec::with_capacity(n);
            while lat.len() < n {
                match tokio::time::timeout(STEP, arrived.recv()).await {
                    Ok(Some(at)) => lat.push(at - sent),
                    Ok(None) => bail!("only {} of {n} clients got the broadcast", lat.len()),
                    Err(_) => bail!("only {} of {n} got it within {STEP:?}", lat.len()),
                }
            }
            let last = lat.iter().copied().max().unwrap_or_default();
            Some((last, percentile(&mut lat, 99.0).unwrap_or_default()))
        }
    };
    stop.cancel();
    drop(server);
    Ok(Row {
        rss_kib: idle.rss_kib,
        per_conn_kib,
        threads: idle.threads,
        connect_all,
        connect_p99,
        broadcast,
    })
}

/// One client: connect, say one thing, wait for the answer (that is the
/// connect time returned), then, on a task of its own, wait for a
/// notification and report when it came, reading until `stop`.
async fn client(
    target: Target,
    addr: SocketAddr,
    i: usize,
    arrived: tokio::sync::mpsc::Sender<Instant>,
    stop: tokio_util::sync::CancellationToken,
    speak: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(&url))
        .await
        .with_context(|| format!("client {i}: connect timed out"))?
        .with_context(|| format!("client {i}: connect"))?;
    let (hello, answer) = match target {
        Target::Chat => (
            Message::text(format!(r#"{{"type":"username","data":"u{i}x"}}"#)),
            format!("u{i}x joined"),
        ),
        Target::Push => (Message::text(format!(r#"{{"event":"{EVENT}"}}"#)), String::new()),
        Target::NotesNode => (Message::Ping(Vec::new().into()), String::new()),
    };
    ws.send(hello).await?;
    // The first text (push), the pong (Node), or the own join notice (the
    // chat, after the notices of earlier joins in a small lobby).
    let answered = async {
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Pong(_) if target == Target::NotesNode => return Ok(()),
                Message::Text(t) if t.as_str().contains(answer.as_str()) => return Ok(()),
                _ => {}
            }
        }
        bail!("closed")
    };
    match tokio::time::timeout(STEP, answered).await {
        Ok(Ok(())) => {}
        other => bail!("client {i}: no answer to its first message: {other:?}"),
    }
    let took = started.elapsed();
    tokio::spawn(async move {
        // The first chat client says the broadcast when told to.
        let speak = async move {
            match speak {
                Some(rx) => rx.await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::pin!(speak);
        let mut spoke = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                go = &mut speak, if !spoke => {
                    spoke = true;
                    let say = format!(r#"{{"type":"message","data":"{BROADCAST}"}}"#);
                    if go && ws.send(Message::text(say)).await.is_err() {
                        break;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) if t.as_str().contains(BROADCAST) => {
                        let _ = arrived.send(Instant::now()).await;
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
    });
    Ok(took)
}

/// `POST /notify` once, by hand, and checks the answer is a 200.
async fn publish(addr: SocketAddr) -> anyhow::Result<()> {
    let body = format!(r#"{{"event":"{EVENT}","payload":"to everyone"}}"#);
    let request = format!(
        "POST /notify HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut answer)).await??;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("POST /notify answered {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}
