//! The command line of lesson 7. With no arguments it runs the demo; see
//! `cargo run -p sse -- --help`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use feed::Feed;
use feed::client::HttpClient;
use harness::WireTap;
use serde_json::json;
use sse::{ClientConfig, Config, DEFAULT_ADDR};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Lesson 7: Server-Sent Events, Last-Event-ID and slow subscribers")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until Ctrl-C. Open http://127.0.0.1:7092/ or `curl -N .../events`.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Seconds between keep-alive comments on an idle stream (at least 1:
        /// a zero interval would make the server's timer panic).
        #[arg(long, default_value_t = sse::KEEP_ALIVE.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..))]
        keep_alive_secs: u64,
    },
    /// Follow a running server's stream and print each event.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Stop after this many updates.
        #[arg(long, default_value_t = u64::MAX)]
        updates: u64,
    },
    /// Publish one update (JSON `{"text": TEXT}`) to a running server.
    Publish {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        text: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::init_logging();
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve { addr, keep_alive_secs }) => {
            let listener =
                TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            let token = harness::ctrl_c_token();
            println!("SSE server on http://{addr}/; Ctrl-C stops it");
            println!("try: curl -N http://{addr}/events");
            let config =
                Config { keep_alive: Duration::from_secs(keep_alive_secs), ..Config::default() };
            sse::serve(listener, Feed::default(), config, token).await?;
            println!("stopped");
            Ok(())
        }
        Some(Command::Client { addr, updates }) => {
            let report = sse::follow(
                addr,
                updates,
                ClientConfig::default(),
                CancellationToken::new(),
                |e| println!("event: {} id: {} data: {}", e.event, e.id, e.data),
            )
            .await?;
            println!("{report:?}");
            Ok(())
        }
        Some(Command::Publish { addr, text }) => {
            let reply =
                HttpClient::new(addr).post_json("/update", &json!({ "text": text })).await?;
            println!("{} {}", reply.status, String::from_utf8_lossy(&reply.body));
            Ok(())
        }
    }
}

fn start(
    listener: TcpListener,
    feed: &Feed,
    config: &Config,
) -> (CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
    let token = CancellationToken::new();
    let task = tokio::spawn(sse::serve(listener, feed.clone(), config.clone(), token.clone()));
    (token, task)
}

/// Streams five updates to a follower behind a wire tap, restarts the server
/// in the middle (the follower resumes with Last-Event-ID), and shows the
/// bytes and the cost per update.
async fn demo() -> anyhow::Result<()> {
    let feed = Feed::default();
    let config = Config {
        keep_alive: Duration::from_millis(400),
        retry: Duration::from_millis(300),
        ..Config::default()
    };
    let listener = TcpListener::bind(harness::EPHEMERAL).await?;
    let addr = listener.local_addr()?;
    let (token, server) = start(listener, &feed, &config);
    let tap = WireTap::start(addr)?;
    println!("server on {addr}; the follower connects through a wire tap on {}", tap.addr());

    let start_at = Instant::now();
    let stamp = move || start_at.elapsed().as_millis();
    let follower = tokio::spawn(sse::follow(
        tap.addr(),
        5,
        ClientConfig { idle_timeout: Duration::from_secs(5), ..ClientConfig::default() },
        CancellationToken::new(),
        move |e| {
            println!(
                "[{:>5} ms] follower got event {:?} id {:?} data {:?}",
                stamp(),
                e.event,
                e.id,
                e.data
            )
        },
    ));
    harness::eventually(Duration::from_secs(5), "the follower to subscribe", || {
        feed.stats().subscribers == 1
    })
    .await;
    let mut publisher = HttpClient::new(addr);
    publisher.post_json("/update", &json!({ "text": "update 1" })).await?;
    publisher.post_json("/update", &json!("a text update\nin two lines")).await?;
    tokio::time::sleep(Duration::from_millis(600)).await; // a keep-alive comment goes out
    publisher.post_json("/update", &json!({ "text": "update 3" })).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    println!(
        "[{:>5} ms] restarting the server; two updates are published while it is down",
        stamp()
    );
    token.cancel();
    server.await??;
    feed.publish(json!({ "text": "update 4 (while down)" }));
    feed.publish(json!({ "text": "update 5 (while down)" }));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let (token, server) = start(socket.listen(64)?, &feed, &config);

    let report =
        harness::within(Duration::from_secs(10), "the follower to get 5 updates", follower)
            .await??;
    println!("\n{report:?}\n");
    println!("the first connection, as it crossed the wire (chunked framing and all):");
    harness::narrate::print_exchange(&tap, 0, 0, 6);
    println!("\nthe reconnect after the restart:");
    harness::narrate::print_exchange(&tap, 1, 0, 2);
    println!();
    harness::narrate::print_cost("sse", tap.stats(), report.connections, report.updates);
    println!("server counters: {:?}", feed.stats());
    token.cancel();
    harness::within(Duration::from_secs(10), "the server to stop", server).await??;
    println!("server stopped cleanly");
    Ok(())
}
