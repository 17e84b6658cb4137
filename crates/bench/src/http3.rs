//! `cargo run -p bench --release -- http3`: lesson 15 against lesson 14 on
//! loopback.
//!
//! Requests per second and p50/p99 with 1, 10 and 100 requests in flight:
//! HTTP/3 as that many streams on one QUIC connection (lesson 15's server),
//! HTTP/2 as that many streams on one TCP connection (lesson 14's server,
//! with [`crate::http2`]'s client settings). Both serve lesson 4's
//! `/resource/1` through the same `route`, so the difference is the
//! protocol stack: QUIC's encryption and acknowledgements in user space
//! against TCP's in the kernel and TLS-less h2c.
//!
//! Not written yet: the loss table through netlab (50 ms, 0/1/3% loss,
//! HTTP/3 against HTTP/2 and HTTP/1.1 on six connections); chapter 15 says so.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::stats::{ms, percentile, rate};

/// Options of the http3 report.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests in flight (streams on one connection, for both protocols).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub streams: Vec<usize>,
    /// Seconds each cell runs.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
}

pub fn run(args: Args) -> Result<()> {
    tokio::runtime::Runtime::new()?.block_on(report(args))
}

async fn report(args: Args) -> Result<()> {
    let token = CancellationToken::new();
    // Lesson 15's server, with a throwaway CA the client trusts.
    let ca = tls::certs::Ca::new("bench http3 CA")?;
    let config = http3::Config::default();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let endpoint = http3::endpoint(loopback, &ca.server_cert()?, &config)?;
    let h3_addr = endpoint.local_addr()?;
    let h3_stats = Arc::new(http3::Stats::default());
    let h3_server =
        tokio::spawn(http3::serve(endpoint, config, Arc::clone(&h3_stats), token.clone()));
    // Lesson 14's, h2c on TCP.
    let listener = tokio::net::TcpListener::bind(loopback).await?;
    let h2_addr = listener.local_addr()?;
    let h2_stats = Arc::new(http2::Stats::default());
    let h2_server = tokio::spawn(http2::serve(
        listener,
        None,
        http2::Config::default(),
        Arc::clone(&h2_stats),
        token.clone(),
    ));

    let length = Duration::from_secs_f64(args.secs);
    println!("http3: GET /resource/1 back to back on loopback, {:.1} s per cell", args.secs);
    println!(
        "{:>9} {:<36} {:>9} {:>10} {:>9} {:>9}",
        "in flight", "mode", "requests", "req/s", "p50 ms", "p99 ms"
    );
    let client = http3::client::endpoint(ca.roots())?;
    for &n in &args.streams {
        let h3 = Arc::new(http3::client::connect(&client, h3_addr).await?);
        let (h3_rate, h3_lat) = cell(n, length, move || {
            let h3 = Arc::clone(&h3);
            async move { h3.get("/resource/1", 1024).await.map(drop) }
        })
        .await
        .context("HTTP/3")?;
        line(n, "HTTP/3, streams on 1 QUIC connection", h3_rate, h3_lat);
        let h2 = Arc::new(crate::http2::connect(h2_addr).await?);
        let (h2_rate, h2_lat) = cell(n, length, move || {
            let h2 = Arc::clone(&h2);
            async move { h2.get("/resource/1", 1024).await.map(drop) }
        })
        .await
        .context("HTTP/2")?;
        line(n, "HTTP/2 (h2c), streams on 1 TCP conn", h2_rate, h2_lat);
        println!(
            "{:>9} HTTP/3 / HTTP/2 requests per second: {:.2}x",
            "",
            h3_rate / h2_rate.max(1e-9)
        );
    }
    client.close(http3::H3_NO_ERROR, b"bench done");
    token.cancel();
    h3_server.await.context("the HTTP/3 server task")??;
    h2_server.await.context("the HTTP/2 server task")??;
    println!(
        "servers: HTTP/3 {} requests, HTTP/2 {}",
        http3::Stats::get(&h3_stats.requests),
        http2::Stats::get(&h2_stats.requests)
    );
    Ok(())
}

/// `n` workers, each sending one request after another for `length`.
/// Returns requests per second and every latency.
async fn cell<F, Fut>(n: usize, length: Duration, one: F) -> Result<(f64, Vec<Duration>)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + length;
    let mut workers = Vec::new();
    for _ in 0..n {
        let one = one.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                one().await?;
                lat.push(t0.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.context("a worker panicked")??);
    }
    Ok((rate(lat.len() as u64, start.elapsed()), lat))
}

fn line(n: usize, name: &str, r: f64, mut lat: Vec<Duration>) {
    println!(
        "{:>9} {:<36} {:>9} {:>10.0} {:>9} {:>9}",
        n,
        name,
        lat.len(),
        r,
        ms(percentile(&mut lat, 50.0).unwrap_or_default()),
        ms(percentile(&mut lat, 99.0).unwrap_or_default()),
    );
}
