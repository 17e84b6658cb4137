//! `bench chat`: how fast does lesson 8's server fan a message out?
//!
//! Setup: the chat server from `websocket-chat` in this process, on
//! loopback, and N clients (tokio-tungstenite), all in the lobby. One of them
//! speaks; every message is delivered to all N (the speaker included).
//!
//! The speaker keeps a window of messages in flight: it sends a new one when
//! its own copy of an earlier one comes back. That paces it at the speed the
//! server can fan out, instead of flooding the per-client queues (which would
//! measure how fast the server disconnects slow clients, a different thing).
//! Each message carries the time it was sent, in microseconds since the
//! start; each receiver records `now - sent` for every delivery.
//!
//! Printed for each N: messages sent, deliveries, deliveries per second, and
//! p50/p99/max delivery latency, plus how many clients the server dropped as
//! too slow (should be 0; if not, the figures are suspect and it says so).
//!
//! Server and clients share this machine's cores, so the figures are a
//! lower bound for the server alone and noisy: compare ratios, not absolutes.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use websocket_chat::conn::Limits;
use websocket_chat::{Chat, Config};

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
}

/// Runs the report.
pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "bench chat: one speaker, every message broadcast to all clients, {} s each, \
         window {}, {}-byte text",
        args.seconds, args.window, args.size
    );
    for &n in &args.clients {
        let r = runtime.block_on(measure(n, &args))?;
        println!(
            "{n:>5} clients: {:>7} messages, {:>9} deliveries in {:.2} s = {:>9.0} deliveries/s; \
             latency p50 {} us, p99 {} us, max {} us; dropped as slow: {}",
            r.sent,
            r.deliveries,
            r.elapsed.as_secs_f64(),
            rate(r.deliveries, r.elapsed),
            r.p50,
            r.p99,
            r.max,
            r.kicked
        );
        if r.kicked > 0 {
            println!(
                "       (clients were dropped: their deliveries are missing; treat with care)"
            );
        }
    }
    Ok(())
}

struct Outcome {
    sent: u64,
    deliveries: u64,
    elapsed: Duration,
    p50: u64,
    p99: u64,
    max: u64,
    kicked: u64,
}

async fn measure(n: usize, args: &Args) -> anyhow::Result<Outcome> {
    // The speaker sends as fast as the broadcast allows; the per-connection
    // send limit (5 a second, a burst of 20) would measure the limit, not the
    // fan-out, so it is lifted here and only here.
    let defaults = Config::default();
    let config = Config {
        connection: Limits { max_connections: n + 10, ..defaults.connection },
        send_rate: u32::MAX,
        send_burst: u32::MAX,
        ..defaults
    };
    let chat = Chat::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    let server = tokio::spawn(chat.clone().serve(listener, token.clone()));
    let url = format!("ws://{addr}/ws");
    let base = Instant::now();

    // Connect everyone (a few at a time would be kinder to the accept
    // queue; sequential is simple and the setup is not measured).
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting client {i}"))?;
        let hello = format!(r#"{{"type":"username","data":"c{i}"}}"#);
        ws.send(Message::text(hello)).await?;
        sockets.push(ws);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while chat.stats().named < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} clients joined", chat.stats().named);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every client records the latency of each delivery; the speaker's
    // receiving half also feeds its window.
    let (echo_tx, mut echo_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut speaker = None;
    let mut receivers = Vec::with_capacity(n);
    for (i, ws) in sockets.into_iter().enumerate() {
        let (sink, mut stream) = ws.split();
        if i == 0 {
            speaker = Some(sink);
        }
        // Listeners never write; dropping their half of the socket is fine
        // (the reading half keeps the connection open) and tungstenite still
        // answers pings through the shared stream underneath.
        let echo = (i == 0).then(|| echo_tx.clone());
        receivers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                // Cheap parse: the text is `t=<micros>;...` inside the JSON.
                let Some(at) = t.as_str().find("\"message\":\"t=") else { continue };
                let rest = &t.as_str()[at + 13..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let Ok(sent) = digits.parse::<u64>() else { continue };
                let now = base.elapsed().as_micros() as u64;
                lat.push(now.saturating_sub(sent));
                if let Some(e) = &echo {
                    let _ = e.send(());
                }
            }
            lat
        }));
    }
    drop(echo_tx);
    let mut speaker = speaker.context("at least one client")?;

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
    // Let the last window land everywhere: wait until no queue holds anything.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while chat.stats().queued > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let elapsed = started.elapsed();
    let kicked = chat.stats().kicked_slow;

    // Shut down: the server closes every connection, the receivers end.
    token.cancel();
    let _ = speaker.close().await;
    let mut all = Vec::new();
    for r in receivers {
        all.extend(r.await?);
    }
    server.await??;
    all.sort_unstable();
    let deliveries = all.len() as u64;
    Ok(Outcome {
        sent,
        deliveries,
        elapsed,
        p50: percentile_sorted(&all, 50.0).unwrap_or_default(),
        p99: percentile_sorted(&all, 99.0).unwrap_or_default(),
        max: all.last().copied().unwrap_or_default(),
        kicked,
    })
}
