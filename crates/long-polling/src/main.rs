//! The command line of lesson 6. With no arguments it runs the demo; see
//! `cargo run -p long-polling -- --help`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use feed::Feed;
use feed::client::HttpClient;
use harness::WireTap;
use long_polling::{Config, DEFAULT_ADDR};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Lesson 6: long polling, the server holds the request until there is news")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until Ctrl-C. Open http://127.0.0.1:7091/ or use curl.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Answer a held poll with `{"data": null}` after this many seconds.
        #[arg(long, default_value_t = long_polling::HOLD.as_secs())]
        hold_secs: u64,
    },
    /// Follow a running server's feed and print each update.
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
        Some(Command::Serve { addr, hold_secs }) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let token = harness::ctrl_c_token();
            println!("long-polling server on http://{addr}/ (hold {hold_secs}s); Ctrl-C stops it");
            println!("try: curl 'http://{addr}/data?since=0'");
            let config = Config { hold: Duration::from_secs(hold_secs) };
            long_polling::serve(listener, Feed::default(), config, token).await?;
            println!("stopped");
            Ok(())
        }
        Some(Command::Client { addr, updates }) => {
            let report = long_polling::follow(
                addr,
                0,
                updates,
                long_polling::HOLD,
                CancellationToken::new(),
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

/// Starts a server with a 1 s hold, follows it through a wire tap, publishes
/// five updates with a quiet spell in the middle, and shows the cost.
async fn demo() -> anyhow::Result<()> {
    let hold = Duration::from_secs(1);
    let feed = Feed::default();
    let token = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await?;
    let addr = listener.local_addr()?;
    let server =
        tokio::spawn(long_polling::serve(listener, feed.clone(), Config { hold }, token.clone()));
    let tap = WireTap::start(addr)?;
    println!(
        "server on {addr} (hold {hold:?}); the follower connects through a wire tap on {}",
        tap.addr()
    );

    let start = Instant::now();
    let follower =
        tokio::spawn(long_polling::follow(tap.addr(), 0, 5, hold, token.clone(), move |u| {
            println!("[{:>5} ms] follower got #{} {}", start.elapsed().as_millis(), u.id, u.data)
        }));
    // The publisher talks to the server directly, so the tap counts only
    // what following the feed costs.
    let mut publisher = HttpClient::new(addr);
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    for (i, wait) in [(1, 300), (2, 100), (3, 1800), (4, 50), (5, 0)] {
        pause(wait).await;
        let reply =
            publisher.post_json("/update", &json!({ "text": format!("update {i}") })).await?;
        println!("[{:>5} ms] published, server said {}", start.elapsed().as_millis(), reply.status);
    }
    let report =
        harness::within(Duration::from_secs(10), "the follower to get 5 updates", follower)
            .await??;
    println!("\n{report:?}");
    println!(
        "({} poll(s) came back empty: the 1.8 s quiet spell outlasted the 1 s hold)\n",
        report.empty
    );

    println!("the first poll and its answer, as they crossed the wire:");
    harness::narrate::print_exchange(&tap, 0, 0, 2);
    println!("\nthe poll that was held through the quiet spell, answered when the hold ran out:");
    harness::narrate::print_answer_containing(&tap, "\"updates\":[]");
    println!();
    harness::narrate::print_cost("long polling", tap.stats(), report.requests, report.updates);
    println!("server counters: {:?}", feed.stats());
    token.cancel();
    harness::within(Duration::from_secs(10), "the server to stop", server).await??;
    println!("server stopped cleanly");
    Ok(())
}
