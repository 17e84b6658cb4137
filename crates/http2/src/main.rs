//! The command line of lesson 14. With no arguments it runs the demo; see
//! `cargo run -p http2 -- --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::{CancellationToken, Direction};
use http2::frames::Item;
use http2::show::{self, HeaderBytes, REPEATS, Seen};
use http2::{Config, PLAIN_ADDR, Stats, TLS_ADDR, client};

#[derive(Parser)]
#[command(about = "Lesson 14: HTTP/2, many streams on one connection, with hyper")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve h2c (HTTP/2 with prior knowledge) and HTTP/1.1 on ADDR, and
    /// TLS with ALPN h2 / http/1.1 on TLS_ADDR, until Ctrl-C. Try
    /// `curl --http2-prior-knowledge http://127.0.0.1:7082/resource/1`.
    Serve {
        #[arg(long, default_value = PLAIN_ADDR)]
        addr: SocketAddr,
        #[arg(long, default_value = TLS_ADDR)]
        tls_addr: SocketAddr,
        /// Where to write the throwaway CA's certificate (public; no key).
        #[arg(long, default_value_os_t = std::env::temp_dir().join("http2-lesson-ca.pem"))]
        ca_file: PathBuf,
    },
    /// Fetch PATHS at once on one HTTP/2 connection (h2c) and say which
    /// stream each came on and when it finished.
    Client {
        #[arg(long, default_value = PLAIN_ADDR)]
        addr: SocketAddr,
        #[arg(default_values_t = ["/slow?ms=500".to_owned(), "/resource/1".to_owned(), "/resource/2".to_owned()])]
        paths: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => {
            harness::init_logging_at("warn");
            demo().await
        }
        Some(Command::Serve { addr, tls_addr, ca_file }) => {
            harness::init_logging();
            serve(addr, tls_addr, ca_file).await
        }
        Some(Command::Client { addr, paths }) => {
            harness::init_logging();
            run_client(addr, paths).await
        }
    }
}

async fn serve(addr: SocketAddr, tls_addr: SocketAddr, ca_file: PathBuf) -> anyhow::Result<()> {
    let ca = tls::certs::Ca::new("http2 lesson throwaway CA")?;
    let cert = ca.server_cert()?;
    std::fs::write(&ca_file, ca.cert_pem())
        .with_context(|| format!("writing {}", ca_file.display()))?;
    let plain =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let secure = tokio::net::TcpListener::bind(tls_addr)
        .await
        .with_context(|| format!("binding {tls_addr}"))?;
    let path = ca_file.display();
    println!("h2c and HTTP/1.1 on {addr}, TLS (ALPN h2, http/1.1) on {tls_addr}; Ctrl-C stops");
    println!("CA certificate written to {path}");
    println!("try: curl --http2-prior-knowledge http://{addr}/resource/1");
    println!("     curl --http2 --cacert {path} https://localhost:{}/resource/1", tls_addr.port());
    println!("     nghttp -nv http://{addr}/resource/1");
    let token = harness::ctrl_c_token();
    let stats = Arc::new(Stats::default());
    let config = Config::default();
    let (a, b) = tokio::join!(
        http2::serve(plain, None, config, Arc::clone(&stats), token.clone()),
        http2::serve(secure, Some(http2::tls_config(&cert)?), config, stats, token),
    );
    a?;
    b?;
    Ok(())
}

async fn run_client(addr: SocketAddr, paths: Vec<String>) -> anyhow::Result<()> {
    let h2 = client::connect(addr, client::Windows::default()).await?;
    let start = std::time::Instant::now();
    let gets = paths.iter().map(|p| {
        let h2 = &h2;
        async move { (p, h2.get(p, 64 * 1024 * 1024).await, start.elapsed()) }
    });
    for (path, answer, at) in futures_join_all(gets).await {
        let a = answer?;
        println!(
            "stream {:>2} {path}: {} ({} bytes) after {} ms",
            a.stream,
            a.status,
            a.body.len(),
            at.as_millis()
        );
    }
    Ok(())
}

/// Runs the futures concurrently on this task and returns their outputs in
/// order (a tiny `join_all`, to keep a dependency out for one call).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

async fn start_server() -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await?;
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    tokio::spawn(http2::serve(
        listener,
        None,
        Config::default(),
        Arc::new(Stats::default()),
        token.clone(),
    ));
    Ok((addr, token))
}

async fn demo() -> anyhow::Result<()> {
    println!("== 1. three requests at once on one HTTP/2 connection (h2c, through the wire tap)");
    let (addr, stop) = start_server().await?;
    println!(
        "server on {addr}; GET {} (stream 1), GET {} (stream 3), GET {} (stream 5), sent together",
        show::SLOW,
        show::LARGE,
        show::QUICK
    );
    let exchange = show::three_streams(addr, stop).await?;
    for s in &exchange.seen {
        println!("{}", line(s));
    }
    println!(
        "\nStream {} (slow) ended last although it was asked first: its frames wait, nobody waits for it.",
        exchange.streams[0]
    );
    println!(
        "Stream {} was opened and cancelled with RST_STREAM; then the server stopped: GOAWAY.",
        exchange.cancelled
    );

    println!(
        "\n== 2. header bytes of the same GET {} sent {REPEATS} times on one connection",
        show::QUICK
    );
    let (addr, stop) = start_server().await?;
    let h = show::header_bytes(addr).await?;
    stop.cancel();
    print_headers(&h);
    Ok(())
}

fn line(s: &Seen) -> String {
    let arrow = match s.direction {
        Direction::ToServer => "client >>",
        Direction::ToClient => "    << server",
    };
    match &s.item {
        Item::Preface => {
            format!("{arrow:<14} preface \"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\" (24 bytes)")
        }
        Item::Frame(f) => format!("{arrow:<14} {}", f.describe()),
    }
}

fn print_headers(h: &HeaderBytes) {
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(0);
    println!("{:<28} {:>6} {:>6} {:>6}", "header bytes of request", "1st", "2nd", "100th");
    for (name, v) in [
        ("HTTP/1.1 request head", &h.h1_requests),
        ("HTTP/2 request (HPACK)", &h.h2_requests),
        ("HTTP/1.1 response head", &h.h1_responses),
        ("HTTP/2 response (HPACK)", &h.h2_responses),
    ] {
        println!("{name:<28} {:>6} {:>6} {:>6}", at(v, 0), at(v, 1), at(v, REPEATS - 1));
    }
    let sum = |v: &[usize]| v.iter().sum::<usize>();
    println!(
        "all {REPEATS} requests: HTTP/1.1 heads {} bytes up, {} down; HTTP/2 header blocks {} up, {} down",
        sum(&h.h1_requests),
        sum(&h.h1_responses),
        sum(&h.h2_requests),
        sum(&h.h2_responses)
    );
    println!(
        "everything on the wire: HTTP/1.1 {} + {} bytes, HTTP/2 {} + {} (frame headers, SETTINGS and WINDOW_UPDATEs included)",
        h.totals.2, h.totals.3, h.totals.0, h.totals.1
    );
}
