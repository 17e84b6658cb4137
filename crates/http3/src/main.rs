//! The command line of lesson 15. With no arguments it runs the demo; see
//! `cargo run -p http3 -- --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::CancellationToken;
use http3::relay::{self, Dir, Relay};
use http3::{ADDR, Config, Stats, client};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Parser)]
#[command(about = "Lesson 15: HTTP/3 on QUIC, with quinn and h3")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP/3 on ADDR (UDP) until Ctrl-C, with a throwaway CA whose
    /// certificate is written to CA_FILE for clients to trust.
    Serve {
        #[arg(long, default_value = ADDR)]
        addr: SocketAddr,
        /// Where to write the throwaway CA's certificate (public; no key).
        #[arg(long, default_value_os_t = default_ca_file())]
        ca_file: PathBuf,
    },
    /// Fetch PATHS at once on one HTTP/3 connection and say which stream
    /// each came on and when it finished.
    Client {
        #[arg(long, default_value = ADDR)]
        addr: SocketAddr,
        /// The CA certificate `serve` wrote.
        #[arg(long, default_value_os_t = default_ca_file())]
        ca_file: PathBuf,
        #[arg(default_values_t = ["/slow?ms=500".to_owned(), "/resource/1".to_owned(), "/resource/2".to_owned()])]
        paths: Vec<String>,
    },
}

fn default_ca_file() -> PathBuf {
    std::env::temp_dir().join("http3-lesson-ca.pem")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None => {
            harness::init_logging_at("warn");
            demo().await
        }
        Some(Command::Serve { addr, ca_file }) => {
            harness::init_logging();
            serve(addr, ca_file).await
        }
        Some(Command::Client { addr, ca_file, paths }) => {
            harness::init_logging();
            run_client(addr, ca_file, paths).await
        }
    }
}

async fn serve(addr: SocketAddr, ca_file: PathBuf) -> anyhow::Result<()> {
    let ca = tls::certs::Ca::new("http3 lesson throwaway CA")?;
    let cert = ca.server_cert()?;
    std::fs::write(&ca_file, ca.cert_pem())
        .with_context(|| format!("writing {}", ca_file.display()))?;
    let config = Config::default();
    let endpoint =
        http3::endpoint(addr, &cert, &config).with_context(|| format!("binding {addr}/udp"))?;
    println!("HTTP/3 on {addr} (UDP); Ctrl-C stops");
    println!("CA certificate written to {}", ca_file.display());
    println!("try: cargo run -p http3 -- client /slow?ms=500 /resource/1 /resource/2");
    let token = harness::ctrl_c_token();
    http3::serve(endpoint, config, Arc::new(Stats::default()), token).await?;
    Ok(())
}

async fn run_client(addr: SocketAddr, ca_file: PathBuf, paths: Vec<String>) -> anyhow::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(&ca_file)
        .with_context(|| format!("reading {} (does `serve` run?)", ca_file.display()))?;
    roots.add(ca)?;
    let endpoint = client::endpoint(Arc::new(roots))?;
    let h3 = client::connect(&endpoint, addr).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in paths {
        let send = h3.clone_sender();
        tasks.push(tokio::spawn(async move {
            let a = send.get(&p, 64 * 1024 * 1024).await;
            (p, a, start.elapsed())
        }));
    }
    for t in tasks {
        let (path, answer, at) = t.await?;
        let a = answer?;
        println!(
            "stream {:>2} {path}: {} ({} bytes) after {} ms",
            a.stream,
            a.status,
            a.body.len(),
            at.as_millis()
        );
    }
    h3.close();
    endpoint.wait_idle().await;
    Ok(())
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    stats: Arc<Stats>,
    roots: Arc<rustls::RootCertStore>,
}

async fn start_server() -> anyhow::Result<Server> {
    let ca = tls::certs::Ca::new("http3 demo CA")?;
    let config = Config::default();
    let endpoint =
        http3::endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), &ca.server_cert()?, &config)?;
    let addr = endpoint.local_addr()?;
    let stop = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    tokio::spawn(http3::serve(endpoint, config, Arc::clone(&stats), stop.clone()));
    Ok(Server { addr, stop, stats, roots: ca.roots() })
}

/// The demo's slow link: each datagram waits this long in the relay each
/// way, so one round trip is 50 ms and round trips can be counted by clock.
const ONE_WAY: Duration = Duration::from_millis(25);

async fn demo() -> anyhow::Result<()> {
    let server = start_server().await?;
    let relay = Relay::start_with(server.addr, Box::new(|_, _| true), ONE_WAY).await?;
    println!(
        "== 1. the handshake, counted (server {}, relay {} adding {} ms each way)",
        server.addr,
        relay.addr(),
        ONE_WAY.as_millis()
    );
    let endpoint = client::endpoint(Arc::clone(&server.roots))?;
    let h3 = client::connect(&endpoint, relay.addr()).await?;
    let mut first = None;
    let a = h3.get_with("/resource/1", 1024, |_| first = first.or(Some(relay.elapsed()))).await?;
    let first = first.context("the answer had a body")?;
    let rtt = 2 * ONE_WAY;
    // The relay logs a datagram when it receives it; one to the client
    // arrives ONE_WAY later. Everything that arrived before the answer:
    let arrived = |d: &relay::Datagram| if d.dir == Dir::ToClient { d.at + ONE_WAY } else { d.at };
    let before: Vec<_> = relay.datagrams().into_iter().filter(|d| arrived(d) < first).collect();
    for d in &before {
        print_datagram(d);
    }
    let up: usize = before.iter().filter(|d| d.dir == Dir::ToServer).map(|d| d.bytes.len()).sum();
    let down: usize = before.iter().filter(|d| d.dir == Dir::ToClient).map(|d| d.bytes.len()).sum();
    println!(
        "GET /resource/1 answered {} after {} ms: {:.1} round trips of {} ms (QUIC's handshake, with TLS 1.3 inside it, and the request); {up} bytes up, {down} down before it",
        a.status,
        first.as_millis(),
        first.as_secs_f64() / rtt.as_secs_f64(),
        rtt.as_millis()
    );
    println!("quinn's own estimate of the round trip: {} ms", h3.conn.rtt().as_millis());

    println!("\n== 2. three requests at once, each on its own stream");
    let start = Instant::now();
    let get = |p: &'static str| {
        let h3 = &h3;
        async move { (p, h3.get(p, 1 << 20).await, start.elapsed()) }
    };
    // join! polls them in this order, so the streams open in this order.
    let all = tokio::join!(get("/slow?ms=300"), get("/large?kb=512"), get("/resource/2"));
    let mut done = vec![all.0, all.1, all.2];
    done.sort_by_key(|(_, _, at)| *at);
    for (p, a, at) in done {
        let a = a?;
        println!(
            "stream {:>2} GET {p:<14} {} {:>7} bytes, done after {:>4} ms",
            a.stream,
            a.status,
            a.body.len(),
            at.as_millis()
        );
    }
    println!(
        "/slow was asked first, yet /resource/2, asked last, did not wait for it (nor for /large)."
    );
    h3.close();
    endpoint.wait_idle().await;
    drop(relay);

    println!("\n== 3. connection migration: the client changes its UDP port mid-download");
    let relay = Relay::start(server.addr).await?;
    let endpoint = client::endpoint(Arc::clone(&server.roots))?;
    let h3 = client::connect(&endpoint, relay.addr()).await?;
    let id = h3.conn.stable_id();
    let old = endpoint.local_addr()?;
    let handshakes = Stats::get(&server.stats.handshakes);
    let mut moved = None;
    let kb = 8 * 1024;
    let a = h3
        .get_with(&format!("/large?kb={kb}"), kb * 1024, |n| {
            if moved.is_none() && n >= 1024 * 1024 {
                moved = Some(client::rebind(&endpoint));
            }
        })
        .await?;
    let new = moved.context("the download ended before 1 MiB")??;
    println!(
        "client port {} -> {} after 1 MiB; download finished: {} bytes, status {}",
        old.port(),
        new.port(),
        a.body.len(),
        a.status
    );
    let mut seen: Vec<SocketAddr> = Vec::new();
    for d in relay.datagrams() {
        if !seen.contains(&d.client) {
            seen.push(d.client);
        }
    }
    println!("the relay saw the client at {} addresses: {seen:?}", seen.len());
    println!(
        "same connection (stable id {} before and {} after), new handshakes: {}, responses the server finished at a new address: {}",
        id,
        h3.conn.stable_id(),
        Stats::get(&server.stats.handshakes) - handshakes,
        Stats::get(&server.stats.migrated)
    );
    println!(
        "With TCP (lesson 14) a new port is a new connection: a new handshake, and the download starts over."
    );
    h3.close();
    endpoint.wait_idle().await;
    server.stop.cancel();
    Ok(())
}

fn print_datagram(d: &relay::Datagram) {
    let arrow = match d.dir {
        Dir::ToServer => "client >>",
        Dir::ToClient => "    << server",
    };
    let headers = relay::decode(&d.bytes, 8);
    let parts: Vec<String> = headers.iter().map(relay::describe).collect();
    println!(
        "{:>4} ms {arrow:<14} {:>5} bytes  {}",
        d.at.as_millis(),
        d.bytes.len(),
        parts.join(" + ")
    );
}
