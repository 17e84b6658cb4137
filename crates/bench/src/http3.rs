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
//! With `--link rtt=50ms` (root: see [`crate::link`]) it prints instead
//! chapter 15's loss table: for each of `--losses` (default 0, 1 and 3%) a
//! fresh netlab link with that loss each way, the servers on its far side,
//! and lesson 14's two pages fetched `--runs` times each way: HTTP/3 on one
//! QUIC connection, HTTP/2 on one TCP connection over TLS (QUIC always
//! encrypts, so the fair peer is h2, not h2c), and HTTP/1.1 on six
//! connections in clear text (lesson 14's HTTP/1.1 reader speaks plain TCP
//! only; TLS would add one round trip to each of the six, in parallel).
//! Every fetch is new connections, handshake included, and has a deadline.
//! On the 0% link it first prints the handshake table: QUIC fresh and with
//! 0-RTT against TCP + TLS 1.3 full and resumed, time and bytes to the
//! first answer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::http2::{MAX_BODY, Page, WINDOWS, fetch_page, h2_page, page_paths};
use crate::link::{LinkSpec, Net};
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
    /// Print the loss table instead: the servers on the far side of a
    /// netlab link with this RTT, e.g. `rtt=50ms` (needs root). Its loss is
    /// replaced by each of `--losses`.
    #[arg(long, value_parser = crate::link::parse_spec)]
    pub link: Option<LinkSpec>,
    /// Loss rates of the loss table, in percent each way, one link each.
    #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
    pub losses: Vec<f64>,
    /// Fetches of each page per protocol and loss rate: completion times
    /// pooled over them, the page time reported as their median.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// How long the first (slow) request of each page takes, in ms.
    #[arg(long, default_value_t = 200)]
    pub slow_ms: u64,
}

pub fn run(args: Args) -> Result<()> {
    match &args.link {
        None => tokio::runtime::Runtime::new()?.block_on(report(args)),
        Some(spec) => loss_table(&args, spec),
    }
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

/// Lesson 14's two pages through the link: (requests, KiB each). 100 small
/// resources, where HTTP/2 beat six connections at every loss rate, and 13
/// of 256 KiB, where the transfer is the cost and HTTP/2 lost its lead
/// between 0 and 1% loss (chapter 14).
const PAGES: [(usize, u64); 2] = [(100, 16), (13, 256)];

/// The most one fetch of a page may take. At 50 ms and 3% loss a page takes
/// a second or two; a minute means something is stuck, and the report ends
/// with an error rather than hanging.
const PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// The client's flow-control windows, as large as bench http2's HTTP/2
/// client's ([`WINDOWS`]), so that neither protocol is held by its windows.
fn client_windows() -> http3::Config {
    http3::Config {
        stream_window: WINDOWS.stream,
        connection_window: WINDOWS.connection,
        ..http3::Config::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H3Cubic,
    H3Bbr,
    H2Tls,
    H1Six,
}

impl Proto {
    const ALL: [Proto; 4] = [Proto::H3Cubic, Proto::H3Bbr, Proto::H2Tls, Proto::H1Six];

    fn name(self) -> &'static str {
        match self {
            Proto::H3Cubic => "HTTP/3, 1 QUIC conn, quinn Cubic",
            Proto::H3Bbr => "HTTP/3, 1 QUIC conn, quinn BBR",
            Proto::H2Tls => "HTTP/2 + TLS, 1 TCP connection",
            Proto::H1Six => Page::SixConnections.name(),
        }
    }
}

/// One protocol's fetches of one page at one loss rate.
struct Cell {
    page: usize,
    proto: Proto,
    /// Every request's completion time, pooled over the runs.
    done: Vec<Duration>,
    /// Each run's page time (its last completion).
    pages: Vec<Duration>,
}

fn loss_table(args: &Args, base: &LinkSpec) -> Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    println!(
        "http3 loss table: the servers behind a netlab link, RTT {:?}; pages: {}; the first request \
         of each is /slow?ms={}; {} fetch(es) per cell, each on new connections",
        base.rtt,
        PAGES.map(|(n, kb)| format!("{n} x {kb} KiB")).join(" and "),
        args.slow_ms,
        args.runs
    );
    println!(
        "{:<12} {:>5} {:<34} {:>8} {:>8} {:>10} {:>15}",
        "page", "loss", "protocol", "p50 ms", "p99 ms", "page (med)", "page min-max"
    );
    for &loss in &args.losses {
        anyhow::ensure!((0.0..100.0).contains(&loss), "loss {loss}% is not a percentage below 100");
        let spec = LinkSpec { loss: loss / 100.0, ..base.clone() };
        let net = Net::start(Some(&spec))?;
        if loss == args.losses[0] {
            // TCP's congestion control is the kernel's, per namespace; the
            // server side sends the pages, so its setting is the one that counts.
            let tcp_cc = net.on_server(|| {
                std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            })??;
            println!("TCP congestion control on the server side: {}", tcp_cc.trim());
        }
        if loss == 0.0 {
            let here = Arc::clone(&net);
            let (runs, rtt) = (args.runs, spec.rtt);
            net.on_client(move || {
                tokio::runtime::Runtime::new()?.block_on(handshakes(&here, runs, rtt))
            })??;
        }
        let here = Arc::clone(&net);
        let (slow_ms, runs) = (args.slow_ms, args.runs);
        let mut cells = net.on_client(move || {
            tokio::runtime::Runtime::new()?.block_on(link_cells(&here, slow_ms, runs))
        })??;
        for (page, (n, kb)) in PAGES.iter().enumerate() {
            let mut totals = Vec::new();
            for cell in cells.iter_mut().filter(|c| c.page == page) {
                cell.pages.sort();
                let med = cell.pages[cell.pages.len() / 2];
                println!(
                    "{:<12} {:>4}% {:<34} {:>8} {:>8} {:>10} {:>15}",
                    format!("{n} x {kb} KiB"),
                    loss,
                    cell.proto.name(),
                    ms(percentile(&mut cell.done, 50.0).unwrap_or_default()),
                    ms(percentile(&mut cell.done, 99.0).unwrap_or_default()),
                    ms(med),
                    format!("{}-{}", ms(cell.pages[0]), ms(cell.pages[cell.pages.len() - 1])),
                );
                totals.push(med);
            }
            let ratio =
                |a: usize, b: usize| totals[a].as_secs_f64() / totals[b].as_secs_f64().max(1e-9);
            println!(
                "{:<18} page time, HTTP/3 Cubic / BBR against HTTP/2: {:.2}x / {:.2}x, \
                 against HTTP/1.1 x6: {:.2}x / {:.2}x (below 1: HTTP/3 is quicker)",
                "",
                ratio(0, 2),
                ratio(1, 2),
                ratio(0, 3),
                ratio(1, 3)
            );
        }
        if let Some(counters) = net.counters() {
            println!("{}", counters.replace('\n', "; "));
        }
    }
    Ok(())
}

/// Starts the three servers on the server side of `net` and fetches both
/// pages `runs` times with each protocol, from here (the client side).
async fn link_cells(net: &Net, slow_ms: u64, runs: usize) -> Result<Vec<Cell>> {
    let token = CancellationToken::new();
    let ca = tls::certs::Ca::new("bench http3 CA")?;
    let cert = ca.server_cert()?;
    let ip = net.server_ip();
    // Lesson 15's server twice: with quinn's default congestion controller
    // and with its BBR (the server sends nearly every byte of a page).
    let mut h3_servers = Vec::new();
    let mut h3_addrs = Vec::new();
    for congestion in [http3::Congestion::Cubic, http3::Congestion::Bbr] {
        let config = http3::Config { congestion, ..http3::Config::default() };
        let udp = net.on_server(move || std::net::UdpSocket::bind((ip, 0)))??;
        h3_addrs.push(udp.local_addr()?);
        let endpoint = http3::endpoint_on(udp, &cert, &config)?;
        let stats = Arc::new(http3::Stats::default());
        h3_servers.push(tokio::spawn(http3::serve(endpoint, config, stats, token.clone())));
    }
    // Lesson 14's server twice: over TLS (ALPN h2) and in clear text.
    let mut h2_servers = Vec::new();
    let mut addrs = Vec::new();
    for tls in [Some(http2::tls_config(&cert)?), None] {
        let listener = net.listener()?;
        addrs.push(listener.local_addr()?);
        h2_servers.push(tokio::spawn(http2::serve(
            listener,
            tls,
            http2::Config::default(),
            Arc::new(http2::Stats::default()),
            token.clone(),
        )));
    }
    let (h2_addr, h1_addr) = (addrs[0], addrs[1]);
    let client = http3::client::endpoint_at(
        SocketAddr::new(net.client_ip(), 0),
        http3::client::client_config_with(ca.roots(), &client_windows())?,
    )?;
    let mut tls = (*tls::client::client_config(ca.roots())).clone();
    tls.alpn_protocols = vec![http2::ALPN_H2.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));

    let mut cells = Vec::new();
    for (page, &(n, kb)) in PAGES.iter().enumerate() {
        let paths = page_paths(n, slow_ms, kb);
        for proto in Proto::ALL {
            let mut cell = Cell { page, proto, done: Vec::new(), pages: Vec::new() };
            for _ in 0..runs {
                let fetch = async {
                    match proto {
                        Proto::H3Cubic => h3_fetch(&client, h3_addrs[0], &paths).await,
                        Proto::H3Bbr => h3_fetch(&client, h3_addrs[1], &paths).await,
                        Proto::H2Tls => h2_tls_fetch(&connector, h2_addr, &paths).await,
                        Proto::H1Six => fetch_page(h1_addr, Page::SixConnections, &paths).await,
                    }
                };
                let times = timeout(PAGE_DEADLINE, fetch)
                    .await
                    .map_err(|_| anyhow::anyhow!("no page within {PAGE_DEADLINE:?}"))
                    .and_then(|r| r)
                    .with_context(|| format!("{} x {kb} KiB, {}", n, proto.name()))?;
                cell.pages.push(times.iter().copied().max().unwrap_or_default());
                cell.done.extend(times);
            }
            cells.push(cell);
        }
    }
    client.close(http3::H3_NO_ERROR, b"bench done");
    token.cancel();
    for s in h3_servers {
        s.await.context("an HTTP/3 server task")??;
    }
    for s in h2_servers {
        s.await.context("an HTTP/2 server task")??;
    }
    Ok(cells)
}

/// The page as streams on a new QUIC connection: completion times from
/// before the handshake, in request order.
async fn h3_fetch(
    client: &http3::quinn::Endpoint,
    addr: SocketAddr,
    paths: &[String],
) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let h3 = http3::client::connect(client, addr).await?;
    let mut tasks = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let (sender, path) = (h3.clone_sender(), path.clone());
        tasks.push(tokio::spawn(async move {
            let a = sender.get(&path, MAX_BODY).await?;
            anyhow::ensure!(a.status == 200, "status {}", a.status);
            anyhow::Ok((i, start.elapsed()))
        }));
    }
    let mut done = vec![Duration::ZERO; paths.len()];
    for t in tasks {
        let (i, at) = t.await.context("a stream task panicked")??;
        done[i] = at;
    }
    h3.close();
    Ok(done)
}

/// The page as streams on a new HTTP/2 connection over TLS 1.3 (lesson
/// 13's client settings, ALPN h2): times from before the TCP handshake.
async fn h2_tls_fetch(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    paths: &[String],
) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, tcp).await?;
    let h2 = http2::client::handshake(tls, format!("localhost:{}", addr.port()), WINDOWS).await?;
    h2_page(&h2, paths, start).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    QuicFresh,
    Quic0Rtt,
    TlsFresh,
    TlsResumed,
}

impl Start {
    const ALL: [Start; 4] = [Start::QuicFresh, Start::Quic0Rtt, Start::TlsFresh, Start::TlsResumed];

    fn name(self) -> &'static str {
        match self {
            Start::QuicFresh => "QUIC + HTTP/3, first visit",
            Start::Quic0Rtt => "QUIC + HTTP/3, resumed, 0-RTT",
            Start::TlsFresh => "TCP + TLS 1.3 + HTTP/2, full",
            Start::TlsResumed => "TCP + TLS 1.3 + HTTP/2, resumed",
        }
    }
}

/// The handshake table, on a link without loss: from nothing to the whole
/// answer of `GET /resource/1` (a dozen bytes, so the first response byte
/// and the last arrive together), each way of starting `runs` times; the
/// median, in round trips of the link, and the bytes both ways (IP headers
/// included) counted by the link around each attempt.
async fn handshakes(net: &Net, runs: usize, rtt: Duration) -> Result<()> {
    let link = net.link().context("the handshake table needs the link")?;
    let token = CancellationToken::new();
    let ca = tls::certs::Ca::new("bench http3 CA")?;
    let cert = ca.server_cert()?;
    let ip = net.server_ip();
    let udp = net.on_server(move || std::net::UdpSocket::bind((ip, 0)))??;
    let h3_addr = udp.local_addr()?;
    let config = http3::Config::default();
    let h3_server = tokio::spawn(http3::serve(
        http3::endpoint_on(udp, &cert, &config)?,
        config,
        Arc::new(http3::Stats::default()),
        token.clone(),
    ));
    let listener = net.listener()?;
    let h2_addr = listener.local_addr()?;
    let h2_server = tokio::spawn(http2::serve(
        listener,
        Some(http2::tls_config(&cert)?),
        http2::Config::default(),
        Arc::new(http2::Stats::default()),
        token.clone(),
    ));
    let mine = SocketAddr::new(net.client_ip(), 0);
    let quic = http3::client::client_config_with(ca.roots(), &http3::Config::default())?;
    // One endpoint that keeps its tickets across the 0-RTT attempts.
    let warm = http3::client::endpoint_at(mine, quic.clone())?;
    let mut tls = (*tls::client::client_config(ca.roots())).clone();
    tls.alpn_protocols = vec![http2::ALPN_H2.to_vec()];
    let resuming = tokio_rustls::TlsConnector::from(Arc::new(tls.clone()));
    tls.resumption = rustls::client::Resumption::disabled();
    let full = tokio_rustls::TlsConnector::from(Arc::new(tls));
    // A first visit of each kind, so the resumed ones have tickets.
    let first = http3::client::connect(&warm, h3_addr).await?;
    first.get("/resource/1", 1024).await?;
    first.close();
    h2_tls_fetch(&resuming, h2_addr, &["/resource/1".to_owned()]).await?;

    println!(
        "\nhandshake table: until the answer to GET /resource/1, median of {runs}, RTT {rtt:?}"
    );
    println!(
        "{:<34} {:>9} {:>12} {:>13} {:>13}",
        "start", "ms", "round trips", "bytes up", "bytes down"
    );
    for start in Start::ALL {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let (up, down) = (link.up(), link.down());
            let t = Instant::now();
            let one = async {
                match start {
                    Start::QuicFresh => {
                        let ep = http3::client::endpoint_at(mine, quic.clone())?;
                        let h3 = http3::client::connect(&ep, h3_addr).await?;
                        h3.get("/resource/1", 1024).await?;
                        let took = t.elapsed();
                        h3.close();
                        anyhow::Ok(took)
                    }
                    Start::Quic0Rtt => {
                        let (h3, early) = http3::client::connect_0rtt(&warm, h3_addr).await?;
                        let early = early.context("no ticket, so no 0-RTT")?;
                        h3.get("/resource/1", 1024).await?;
                        let took = t.elapsed();
                        anyhow::ensure!(early.await, "the server refused the 0-RTT data");
                        h3.close();
                        anyhow::Ok(took)
                    }
                    Start::TlsFresh | Start::TlsResumed => {
                        let c = if start == Start::TlsFresh { &full } else { &resuming };
                        h2_tls_fetch(c, h2_addr, &["/resource/1".to_owned()]).await?;
                        anyhow::Ok(t.elapsed())
                    }
                }
            };
            let took = timeout(PAGE_DEADLINE, one)
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {PAGE_DEADLINE:?}"))
                .and_then(|r| r)
                .context(start.name())?;
            // Let the close and the last acknowledgements cross, so that
            // they are not counted against the next attempt.
            tokio::time::sleep(rtt * 2).await;
            let (up2, down2) = (link.up(), link.down());
            samples.push((took, up2.bytes - up.bytes, down2.bytes - down.bytes));
        }
        samples.sort();
        let (took, up, down) = samples[samples.len() / 2];
        println!(
            "{:<34} {:>9} {:>12.1} {:>13} {:>13}",
            start.name(),
            ms(took),
            took.as_secs_f64() / rtt.as_secs_f64().max(1e-9),
            up,
            down
        );
    }
    println!(
        "(bytes: everything both ways around each attempt, the closes included; the 0-RTT row's \
         early data was accepted every time)"
    );
    warm.close(http3::H3_NO_ERROR, b"bench done");
    token.cancel();
    h3_server.await.context("the HTTP/3 server task")??;
    h2_server.await.context("the HTTP/2 server task")??;
    Ok(())
}
