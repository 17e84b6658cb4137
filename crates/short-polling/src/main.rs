//! The command line of lesson 5. With no arguments it runs the demo; see
//! `cargo run -p short-polling -- --help`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use feed::Feed;
use feed::client::HttpClient;
use harness::WireTap;
use serde_json::json;
use short_polling::DEFAULT_ADDR;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Lesson 5: short polling, the client asks on a timer")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until Ctrl-C. Open http://127.0.0.1:7090/ or use curl.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
    },
    /// Poll a running server and print each update.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Milliseconds between polls (at least 1: a zero interval would make
        /// the client's timer panic).
        #[arg(long, default_value_t = short_polling::INTERVAL.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
        /// Do not send If-None-Match (every idle poll gets a full 200).
        #[arg(long)]
        no_etag: bool,
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
        Some(Command::Serve { addr }) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let token = harness::ctrl_c_token();
            println!("short-polling server on http://{addr}/; Ctrl-C stops it");
            println!("try: curl -i 'http://{addr}/data?since=0'");
            short_polling::serve(listener, Feed::default(), token).await?;
            println!("stopped");
            Ok(())
        }
        Some(Command::Client { addr, interval_ms, no_etag, updates }) => {
            let token = harness::ctrl_c_token();
            let report = short_polling::follow(
                addr,
                0,
                Duration::from_millis(interval_ms),
                !no_etag,
                updates,
                token,
                |u| println!("#{} {}", u.id, u.data),
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

/// Two pollers (one with ETag, one without), each behind its own wire tap,
/// follow three updates published over about a second and a half.
async fn demo() -> anyhow::Result<()> {
    let interval = Duration::from_millis(100);
    let feed = Feed::default();
    let token = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(short_polling::serve(listener, feed.clone(), token.clone()));
    let (plain_tap, etag_tap) = (WireTap::start(addr)?, WireTap::start(addr)?);
    println!("server on {addr}; two pollers ask every {interval:?}, each through its own wire tap");

    let start = Instant::now();
    let spawn_poller = |tap: &WireTap, use_etag: bool| {
        let who = if use_etag { "etag " } else { "plain" };
        tokio::spawn(short_polling::follow(
            tap.addr(),
            0,
            interval,
            use_etag,
            3,
            CancellationToken::new(),
            move |u| {
                println!(
                    "[{:>5} ms] {who} poller got #{} {}",
                    start.elapsed().as_millis(),
                    u.id,
                    u.data
                )
            },
        ))
    };
    let plain = spawn_poller(&plain_tap, false);
    let etag = spawn_poller(&etag_tap, true);
    let mut publisher = HttpClient::new(addr);
    for (i, wait) in [(1, 450), (2, 700), (3, 350)] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        publisher.post_json("/update", &json!({ "text": format!("update {i}") })).await?;
        println!("[{:>5} ms] published update {i}", start.elapsed().as_millis());
    }
    let within = |what, task| harness::within(Duration::from_secs(10), what, task);
    let plain = within("the plain poller", plain).await??;
    let etag = within("the etag poller", etag).await??;
    println!("\nplain: {plain:?}\netag:  {etag:?}\n");

    println!("an idle poll without ETag: the full answer every time");
    harness::narrate::print_answer_containing(&plain_tap, "\"updates\":[]");
    println!("\nthe same poll with If-None-Match: 304, headers only");
    harness::narrate::print_answer_containing(&etag_tap, "304 Not Modified");
    println!();
    harness::narrate::print_cost(
        "short polling, plain",
        plain_tap.stats(),
        plain.requests,
        plain.updates,
    );
    harness::narrate::print_cost(
        "short polling, ETag ",
        etag_tap.stats(),
        etag.requests,
        etag.updates,
    );
    println!("server counters: {:?}", feed.stats());
    token.cancel();
    harness::within(Duration::from_secs(10), "the server to stop", server).await??;
    println!("server stopped cleanly");
    Ok(())
}
