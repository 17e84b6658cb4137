//! Every HTTP server of Part 1 under two cheap attacks at once, and what a
//! new client sees meanwhile (chapter 10's serving section).
//!
//! * **Silent bodies.** Thousands of connections each send a complete
//!   request head that promises `Content-Length: 4000` (under every lesson's
//!   body limit, so the server has to wait for it rather than refuse it from
//!   the header), one byte of it, and then nothing. Before the body
//!   deadline, each held a connection slot for as long as it liked.
//! * **Stopped readers** (the two servers that stream: SSE and push over a
//!   WebSocket). Subscribers with a tiny receive buffer that never read,
//!   while updates are published until the server's writes to them block.
//!   Before the write timeout, each held its slot and its buffers for ever.
//!
//! For each server, in a process of its own (so its memory is its own): the
//! attack is set up, then a fresh client asks for a page every 200 ms, and
//! the report prints the slowest of the first five answers and their
//! statuses (503 while the server is full, 200 once it has room; 0 for no
//! answer or a reset); the server's resident memory before and during; how
//! long setting the attack up took (past a server's cap, the kernel's accept
//! queue overflows and connects are retried after a second or more); how
//! long after the first attacking connection a fresh client first got a
//! 200; and what the silent connections had been told by then.
//!
//! Everything is bounded: a fixed number of connections, on loopback, a
//! fixed number of publishes, and a 60 s limit on waiting for recovery; the
//! attack's sockets are closed at the end of each server's turn.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use futures_util::SinkExt as _;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::transports::child::{Server, serve_until_stdin_closes};

/// The servers under siege: every HTTP server of Part 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Lesson 4, the hand-written server.
    KeepaliveByHand,
    /// Lesson 4, the hyper server.
    KeepaliveHyper,
    /// Lesson 5.
    ShortPolling,
    /// Lesson 6.
    LongPolling,
    /// Lesson 7.
    Sse,
    /// Lesson 8 (no route takes a body; the silent heads get a quick 404 or 405).
    WebsocketChat,
    /// Lesson 9.
    PushNotifications,
    /// Lesson 10, the memory store.
    RestTodo,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::KeepaliveByHand => "keepalive-by-hand",
            Self::KeepaliveHyper => "keepalive-hyper",
            Self::ShortPolling => "short-polling",
            Self::LongPolling => "long-polling",
            Self::Sse => "sse",
            Self::WebsocketChat => "websocket-chat",
            Self::PushNotifications => "push-notifications",
            Self::RestTodo => "rest-todo",
        }
    }

    /// Where a silent body is sent: a route that reads bodies.
    fn body_path(self) -> &'static str {
        match self {
            Self::KeepaliveByHand | Self::KeepaliveHyper => "/echo",
            Self::ShortPolling | Self::LongPolling | Self::Sse => "/update",
            Self::WebsocketChat => "/",
            Self::PushNotifications => "/notify",
            Self::RestTodo => "/todos",
        }
    }

    /// What a fresh client asks for.
    fn probe_path(self) -> &'static str {
        match self {
            Self::KeepaliveByHand | Self::KeepaliveHyper => "/resource/1",
            Self::ShortPolling | Self::LongPolling | Self::Sse | Self::PushNotifications => {
                "/stats"
            }
            Self::WebsocketChat => "/",
            Self::RestTodo => "/todos",
        }
    }
}

/// `bench siege`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections that send a complete head and then a body that never comes.
    #[arg(long, default_value_t = 5000)]
    silent: usize,
    /// Subscribers that stop reading (SSE and push only).
    #[arg(long, default_value_t = 1000)]
    stalled: usize,
    /// Which servers (default: all of them).
    #[arg(long, value_enum, value_delimiter = ',')]
    targets: Vec<Target>,
    /// Internal: be the server process for one target.
    #[arg(long, hide = true, value_enum)]
    serve: Option<Target>,
}

/// One server's line in the table.
struct Row {
    target: Target,
    worst_probe_ms: f64,
    probe_statuses: Vec<u16>,
    rss_before_mib: f64,
    rss_during_mib: f64,
    peak_mib: f64,
    /// From the first attacking connection until the last was in place.
    set_up_secs: f64,
    /// From the first attacking connection until a fresh client got a 200.
    recovered_after_s: Option<f64>,
    silent_told: Told,
}

/// What the silent connections had been answered by the end.
#[derive(Debug, Default)]
struct Told {
    s408: usize,
    s503: usize,
    other: usize,
    /// No answer yet: still held by the server, waiting for the body.
    waiting: usize,
}

/// How long a fresh client may wait for any answer before it counts as none.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the server to serve a 200 again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// Connections opened at once while setting up the attack.
const CONNECT_BATCH: usize = 200;

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(target) = args.serve {
        return serve(target);
    }
    crate::transports::raise_open_file_limit();
    let targets = if args.targets.is_empty() {
        Target::value_variants().to_vec()
    } else {
        args.targets.clone()
    };
    println!(
        "bench siege: {} silent bodies on every server, {} stopped readers on the streaming ones; \
         load average {}",
        args.silent,
        args.stalled,
        crate::load_average()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    for target in targets {
        eprintln!("== {}", target.name());
        let row = runtime.block_on(siege(target, &args)).with_context(|| target.name())?;
        rows.push(row);
    }
    println!(
        "{:<20} {:>10} {:<22} {:>8} {:>8} {:>8} {:>7} {:>9}  silent bodies, when a 200 came back",
        "server",
        "new client",
        "(statuses of 5 tries)",
        "RSS MiB",
        "during",
        "peak",
        "set up",
        "200 after"
    );
    for r in &rows {
        let statuses: Vec<String> = r.probe_statuses.iter().map(u16::to_string).collect();
        let recovered = r.recovered_after_s.map_or("never".to_owned(), |s| format!("{s:.1} s"));
        println!(
            "{:<20} {:>7.0} ms {:<22} {:>8.1} {:>8.1} {:>8.1} {:>5.1} s {:>9}  408: {}, 503: {}, other: {}, waiting: {}",
            r.target.name(),
            r.worst_probe_ms,
            format!("({})", statuses.join(" ")),
            r.rss_before_mib,
            r.rss_during_mib,
            r.peak_mib,
            r.set_up_secs,
            recovered,
            r.silent_told.s408,
            r.silent_told.s503,
            r.silent_told.other,
            r.silent_told.waiting,
        );
    }
    println!("load average after: {}", crate::load_average());
    Ok(())
}

/// The child's side: the lesson's server with its default limits.
fn serve(target: Target) -> anyhow::Result<()> {
    serve_until_stdin_closes(move |listener, token| async move {
        match target {
            Target::KeepaliveByHand => {
                http_keepalive::server::serve(listener, http_keepalive::Config::default(), token)
                    .await
            }
            Target::KeepaliveHyper => {
                let config = http_keepalive::Config::default();
                http_keepalive::hyper_server::serve(listener, config, token).await
            }
            Target::ShortPolling => {
                short_polling::serve(listener, feed::Feed::default(), token).await
            }
            Target::LongPolling => {
                let config = long_polling::Config::default();
                long_polling::serve(listener, feed::Feed::default(), config, token).await
            }
            Target::Sse => {
                sse::serve(listener, feed::Feed::default(), sse::Config::default(), token).await
            }
            Target::WebsocketChat => {
                let chat = websocket_chat::Chat::new(websocket_chat::Config::default());
                chat.serve(listener, token).await
            }
            Target::PushNotifications => {
                let push = push_notifications::Push::new(push_notifications::Config::default());
                push.serve(listener, token).await
            }
            Target::RestTodo => {
                rest_todo::serve(listener, rest_todo::MemoryStore::new(), token).await
            }
        }
    })
}

/// Sets up the attack on one server, probes it, and waits for it to recover.
async fn siege(target: Target, args: &Args) -> anyhow::Result<Row> {
    let server = Server::spawn(&["siege", "--serve", target.name()]).await?;
    let addr = server.addr;
    let rss_before = server.usage()?.rss_kib;
    let attack_start = Instant::now();

    // Stopped readers first: they need a slot to subscribe at all.
    let mut stalled_tcp = Vec::new();
    let mut stalled_ws = Vec::new();
    match target {
        Target::Sse => {
            for _ in 0..args.stalled {
                let mut stream = small_buffer_connect(addr).await?;
                stream.write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await?;
                stalled_tcp.push(stream);
            }
            // Publish until every stalled subscriber has been dropped from
            // the feed (its queue overflowed), bounded.
            let payload = json!("x".repeat(4000));
            for n in 0..2000 {
                post_json(addr, "/update", &payload).await?;
                if n % 50 == 49 && feed_dropped(addr).await? >= args.stalled as u64 {
                    break;
                }
            }
            eprintln!(
                "  {} stalled SSE subscribers dropped from the feed",
                feed_dropped(addr).await?
            );
        }
        Target::PushNotifications => {
            for _ in 0..args.stalled {
                let stream = small_buffer_connect(addr).await?;
                let url = format!("ws://{addr}/ws");
                let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
                ws.send(Message::text(r#"{"event":"siege"}"#)).await?;
                stalled_ws.push(ws);
            }
            // Publishing is limited (50 a second, burst 100): pace under it,
            // long enough to overflow every subscriber's queue (512).
            let payload = json!({ "event": "siege", "payload": "x".repeat(4000) });
            let mut tick = tokio::time::interval(Duration::from_millis(22));
            for _ in 0..700 {
                tick.tick().await;
                post_json(addr, "/notify", &payload).await?;
            }
        }
        _ => {}
    }

    // Silent bodies, in batches.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 4000\r\n\r\n[",
        target.body_path()
    );
    let mut silent = Vec::with_capacity(args.silent);
    while silent.len() < args.silent {
        let batch = CONNECT_BATCH.min(args.silent - silent.len());
        let opened = futures_util::future::join_all((0..batch).map(|_| async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(head.as_bytes()).await?;
            anyhow::Ok(stream)
        }))
        .await;
        for stream in opened {
            silent.push(stream?);
        }
    }
    let set_up_secs = attack_start.elapsed().as_secs_f64();
    eprintln!(
        "  attack set up in {set_up_secs:.1} s: {} silent, {} stalled",
        silent.len(),
        stalled_tcp.len() + stalled_ws.len()
    );

    // A fresh client every 200 ms: the first five answers, and the first 200.
    let mut worst = Duration::ZERO;
    let mut statuses = Vec::new();
    let mut recovered = None;
    let mut during = None;
    while attack_start.elapsed() < RECOVERY_LIMIT && (statuses.len() < 5 || recovered.is_none()) {
        let (took, status) = probe(addr, target.probe_path()).await;
        if statuses.len() < 5 {
            worst = worst.max(took);
            statuses.push(status);
        }
        if status == 200 && recovered.is_none() {
            recovered = Some(attack_start.elapsed().as_secs_f64());
        }
        if statuses.len() == 3 && during.is_none() {
            during = Some(server.usage()?);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = during.context("the probes ran")?;
    let told = told(&silent);
    let peak = server.usage()?.peak_kib;
    drop((silent, stalled_tcp, stalled_ws));
    server.stop().await?;
    Ok(Row {
        target,
        worst_probe_ms: worst.as_secs_f64() * 1000.0,
        probe_statuses: statuses,
        rss_before_mib: rss_before as f64 / 1024.0,
        rss_during_mib: during.rss_kib as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
        set_up_secs,
        recovered_after_s: recovered,
        silent_told: told,
    })
}

/// A connection whose receive buffer is as small as the kernel allows, so a
/// reader that never reads fills it (and then the server's send buffer)
/// quickly.
async fn small_buffer_connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    Ok(socket.connect(addr).await?)
}

/// One request on a fresh connection: how long until an answer, and its
/// status (0 for no answer within [`PROBE_TIMEOUT`]).
async fn probe(addr: SocketAddr, path: &str) -> (Duration, u16) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    let answer =
        tokio::time::timeout(PROBE_TIMEOUT, harness::http::exchange(addr, request.as_bytes()))
            .await;
    let status = match answer {
        Ok(Ok(response)) => response.status,
        _ => 0,
    };
    (started.elapsed(), status)
}

async fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> anyhow::Result<u16> {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response =
        tokio::time::timeout(PROBE_TIMEOUT, harness::http::exchange(addr, request.as_bytes()))
            .await
            .context("a publish got no answer in time")??;
    Ok(response.status)
}

async fn feed_dropped(addr: SocketAddr) -> anyhow::Result<u64> {
    let request = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let response = harness::http::exchange(addr, request).await?;
    let stats: serde_json::Value = serde_json::from_slice(&response.body)?;
    Ok(stats["dropped"].as_u64().unwrap_or(0))
}

/// Reads what each silent connection was answered, without waiting.
fn told(silent: &[TcpStream]) -> Told {
    let mut told = Told::default();
    let mut buf = [0u8; 64];
    for stream in silent {
        match stream.try_read(&mut buf) {
            Ok(n) if n >= 12 && buf.starts_with(b"HTTP/1.") => match &buf[9..12] {
                b"408" => told.s408 += 1,
                b"503" => told.s503 += 1,
                _ => told.other += 1,
            },
            _ => told.waiting += 1,
        }
    }
    told
}
