//! `bench tls`, lesson 13: what TLS 1.3 costs, in one run.
//!
//! * **Handshakes per second**: new connections each carrying one request
//!   and one answer, as fast as `--clients` loops can make them, against
//!   lesson 13's TLS server (`tls::serve`): full handshakes (the client keeps
//!   no session), resumed ones (it keeps the server's tickets), and plain TCP
//!   with the same request and answer as the baseline.
//! * **Bulk throughput**: one connection that receives `--megabytes`, over
//!   TLS and in the clear.
//! * **Time to first byte**: connect, handshake, request, first answer byte,
//!   one connection at a time, for plain TCP, TLS 1.3 full and TLS 1.3
//!   resumed. On loopback it is CPU; with `--link rtt=50ms` (root, lesson
//!   12) it is round trips.
//!
//! 0-RTT early data is not measured; chapter 13 says why.
//!
//! With `--link` only the time-to-first-byte table is run: rates through a
//! 50 ms link measure the link, not TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustls::pki_types::ServerName;
use tls::certs::Ca;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::link::{LinkSpec, Net};
use crate::stats::{percentile, rate};

/// Options of `bench tls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per handshake cell (plain, full, resumed).
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Client loops making connections at once in the handshake cells.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Megabytes in each bulk transfer.
    #[arg(long, default_value_t = 500)]
    pub megabytes: usize,
    /// Bulk transfers each way (TLS and plain); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub transfers: usize,
    /// Connections per row of the time-to-first-byte table; median, min, max.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Run the server on the server side of a netlab link and the client on
    /// the client side (root), e.g. `rtt=50ms`.
    #[arg(long, value_parser = crate::link::parse_spec)]
    pub link: Option<LinkSpec>,
}

/// The request every connection sends: the smallest HTTP/1.1 request the
/// lesson's server answers.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
/// The plain server's answer, about the size of the TLS server's.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 96\r\n\
Connection: close\r\n\r\nhello over plain TCP, no TLS: nothing negotiated, nothing checked, \
nothing hidden from the path.....\n";
/// A bound on every exchange, so a stuck server ends the report with an
/// error instead of hanging it.
const STUCK: Duration = Duration::from_secs(20);
/// Each write of the bulk transfer: 64 KiB, so system calls are not what is
/// measured (rustls cuts it into 16 KiB records).
const BULK_CHUNK: usize = 64 * 1024;
/// The largest request head the plain server reads.
const MAX_HEAD: usize = 8 * 1024;

/// `bench tls`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.clients == 0 || args.transfers == 0 || args.samples == 0 || args.megabytes == 0 {
        bail!("clients, transfers, samples and megabytes must be at least 1");
    }
    let net = Net::start(args.link.as_ref())?;
    let here = Arc::clone(&net);
    net.on_client(move || tokio::runtime::Runtime::new()?.block_on(report(args, &here)))??;
    if let Some(counters) = net.counters() {
        println!("{counters}");
    }
    Ok(())
}

/// The TLS settings both sides use: a fresh CA, lesson 13's server config,
/// and two client configs, one that resumes and one that never does.
struct Setup {
    server: Arc<rustls::ServerConfig>,
    resuming: Arc<rustls::ClientConfig>,
    full: Arc<rustls::ClientConfig>,
}

fn setup() -> anyhow::Result<Setup> {
    let ca = Ca::new("bench tls CA")?;
    let server = tls::server_config(&ca.server_cert()?)?;
    let resuming = tls::client::client_config(ca.roots());
    let mut full = (*resuming).clone();
    // A fresh session store, and none at that: every handshake is full.
    full.resumption = rustls::client::Resumption::disabled();
    Ok(Setup { server, resuming, full: Arc::new(full) })
}

async fn report(args: Args, net: &Net) -> anyhow::Result<()> {
    let setup = setup()?;
    let token = CancellationToken::new();
    let tls_listener = net.listener()?;
    let plain_listener = net.listener()?;
    let (tls_addr, plain_addr) = (tls_listener.local_addr()?, plain_listener.local_addr()?);
    let config = tls::Config { max_connections: 4096, ..tls::Config::default() };
    let stats = Arc::new(tls::Stats::default());
    tokio::spawn(tls::serve(
        tls_listener,
        Arc::clone(&setup.server),
        config,
        Arc::clone(&stats),
        token.clone(),
    ));
    tokio::spawn(plain_answers(plain_listener, token.clone()));
    println!(
        "bench tls: TLS 1.3 (rustls, ring, x25519, ECDSA P-256 certificate) against plain TCP \
         over {}; {} worker threads",
        net.describe(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    if net.link().is_none() {
        handshakes(&args, &setup, tls_addr, plain_addr).await?;
        bulk(&args, &setup, net).await?;
    }
    first_bytes(&args, &setup, tls_addr, plain_addr).await?;
    println!(
        "\nthe TLS server counted {} handshakes, {} of them resumed, {} failed",
        tls::Stats::get(&stats.handshakes),
        tls::Stats::get(&stats.resumed),
        tls::Stats::get(&stats.handshake_failures) + tls::Stats::get(&stats.handshake_timeouts),
    );
    token.cancel();
    Ok(())
}

/// Which kind of connection a cell or a row makes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Full,
    Resumed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain TCP",
            Kind::Full => "TLS 1.3 full",
            Kind::Resumed => "TLS 1.3 resumed",
        }
    }
}

/// One connection: connect, handshake if TLS, send [`REQUEST`], and read
/// the answer to its end. Returns the time to the answer's first byte and
/// whether the handshake was resumed.
async fn exchange(kind: Kind, addr: SocketAddr, setup: &Setup) -> anyhow::Result<(Duration, bool)> {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let config = match kind {
        Kind::Plain => return Ok((talk(tcp, start).await?, false)),
        Kind::Full => Arc::clone(&setup.full),
        Kind::Resumed => Arc::clone(&setup.resuming),
    };
    let name = ServerName::try_from("localhost")?;
    let tls = TlsConnector::from(config).connect(name, tcp).await.context("handshake")?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((talk(tls, start).await?, resumed))
}

/// Sends the request, reads the answer to the end (or close_notify);
/// returns when its first byte came, counted from `start`.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    start: Instant,
) -> anyhow::Result<Duration> {
    s.write_all(REQUEST).await?;
    s.flush().await?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await?;
    let first = start.elapsed();
    if n == 0 {
        bail!("closed without an answer");
    }
    let mut total = n;
    loop {
        match s.read(&mut buf).await? {
            0 => break,
            n => total += n,
        }
        if total > 64 * 1024 {
            bail!("answer larger than expected");
        }
    }
    Ok(first)
}

/// Connections per second, one request each, for each kind.
async fn handshakes(
    args: &Args,
    setup: &Setup,
    tls_addr: SocketAddr,
    plain_addr: SocketAddr,
) -> anyhow::Result<()> {
    let secs = Duration::from_secs_f64(args.secs);
    println!(
        "\nnew connections per second, one request and answer each, {} client loops, {:.1} s per row",
        args.clients, args.secs
    );
    println!(
        "{:<16} {:>11} {:>10} {:>9} {:>7}",
        "connection", "completed", "per s", "resumed", "errors"
    );
    let mut rates = Vec::new();
    for kind in [Kind::Plain, Kind::Full, Kind::Resumed] {
        let addr = if kind == Kind::Plain { plain_addr } else { tls_addr };
        let deadline = Instant::now() + secs;
        let started = Instant::now();
        let mut loops = Vec::new();
        for _ in 0..args.clients {
            let setup = Setup {
                server: Arc::clone(&setup.server),
                resuming: Arc::clone(&setup.resuming),
                full: Arc::clone(&setup.full),
            };
            loops.push(tokio::spawn(async move {
                let (mut done, mut resumed, mut errors) = (0u64, 0u64, 0u64);
                while Instant::now() < deadline {
                    match tokio::time::timeout(STUCK, exchange(kind, addr, &setup)).await {
                        Ok(Ok((_, r))) => {
                            done += 1;
                            resumed += u64::from(r);
                        }
                        _ => errors += 1,
                    }
                }
                (done, resumed, errors)
            }));
        }
        let (mut done, mut resumed, mut errors) = (0, 0, 0);
        for l in loops {
            let (d, r, e) = l.await?;
            (done, resumed, errors) = (done + d, resumed + r, errors + e);
        }
        let per_s = rate(done, started.elapsed());
        println!("{:<16} {:>11} {:>10.0} {:>9} {:>7}", kind.name(), done, per_s, resumed, errors);
        rates.push(per_s);
    }
    let (plain, full, resumed) = (rates[0], rates[1], rates[2]);
    println!(
        "ratios: full TLS / plain = {:.2}, resumed / plain = {:.2}, resumed / full = {:.2}",
        full / plain,
        resumed / plain,
        resumed / full
    );
    Ok(())
}

/// One large transfer each way over TLS and plain: the server sends
/// `--megabytes` and closes; the client reads to the end.
async fn bulk(args: &Args, setup: &Setup, net: &Net) -> anyhow::Result<()> {
    let bytes = args.megabytes * 1_000_000;
    let token = CancellationToken::new();
    let tls_listener = net.listener()?;
    let plain_listener = net.listener()?;
    let (tls_addr, plain_addr) = (tls_listener.local_addr()?, plain_listener.local_addr()?);
    let acceptor = TlsAcceptor::from(Arc::clone(&setup.server));
    tokio::spawn(senders(tls_listener, Some(acceptor), bytes, token.clone()));
    tokio::spawn(senders(plain_listener, None, bytes, token.clone()));
    println!(
        "\nbulk: the server sends {} MB on one connection, the client reads it all (median of {})",
        args.megabytes, args.transfers
    );
    println!("{:<16} {:>12}", "connection", "Mbit/s");
    let mut rows = Vec::new();
    for kind in [Kind::Plain, Kind::Full] {
        let mut rates = Vec::new();
        for _ in 0..args.transfers {
            let took = tokio::time::timeout(
                STUCK * 3,
                receive(
                    kind,
                    if kind == Kind::Plain { plain_addr } else { tls_addr },
                    setup,
                    bytes,
                ),
            )
            .await
            .context("a bulk transfer stalled")??;
            rates.push(bytes as f64 * 8.0 / took.as_secs_f64() / 1e6);
        }
        rates.sort_by(f64::total_cmp);
        let mbit = rates[rates.len() / 2];
        let name = if kind == Kind::Plain { "plain TCP" } else { "TLS 1.3" };
        println!("{name:<16} {mbit:>12.0}");
        rows.push(mbit);
    }
    println!("ratio: TLS / plain throughput = {:.2}", rows[1] / rows[0]);
    token.cancel();
    Ok(())
}

/// Reads one bulk transfer to its end; the time from connect to the last byte.
async fn receive(
    kind: Kind,
    addr: SocketAddr,
    setup: &Setup,
    bytes: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await?;
    let got = if kind == Kind::Plain {
        drain(tcp).await?
    } else {
        let name = ServerName::try_from("localhost")?;
        drain(TlsConnector::from(Arc::clone(&setup.full)).connect(name, tcp).await?).await?
    };
    if got != bytes {
        bail!("received {got} bytes of {bytes}");
    }
    Ok(start.elapsed())
}

async fn drain<S: AsyncRead + Unpin>(mut s: S) -> std::io::Result<usize> {
    let mut buf = vec![0u8; BULK_CHUNK];
    let mut got = 0;
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(got),
            n => got += n,
        }
    }
}

/// Accepts connections and sends each `bytes` bytes, over TLS if given an
/// acceptor, then closes (with close_notify over TLS).
async fn senders(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    bytes: usize,
    token: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let send = async {
                match acceptor {
                    None => send_all(tcp, bytes).await,
                    Some(a) => send_all(a.accept(tcp).await?, bytes).await,
                }
            };
            let _ = tokio::time::timeout(STUCK * 3, send).await;
        });
    }
}

async fn send_all<S: AsyncWrite + Unpin>(mut s: S, bytes: usize) -> std::io::Result<()> {
    let chunk = vec![b'x'; BULK_CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BULK_CHUNK);
        s.write_all(&chunk[..n]).await?;
        left -= n;
    }
    s.shutdown().await
}

/// The plain baseline: read a request head, send [`ANSWER`], close.
async fn plain_answers(listener: TcpListener, token: CancellationToken) {
    loop {
        let (mut tcp, _) = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let answer = async {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                    match tcp.read(&mut buf).await? {
                        0 => return Ok(()),
                        n => head.extend_from_slice(&buf[..n]),
                    }
                }
                tcp.write_all(ANSWER).await?;
                tcp.shutdown().await
            };
            let _: Result<std::io::Result<()>, _> = tokio::time::timeout(STUCK, answer).await;
        });
    }
}

/// One connection at a time: connect to the first answer byte.
async fn first_bytes(
    args: &Args,
    setup: &Setup,
    tls_addr: SocketAddr,
    plain_addr: SocketAddr,
) -> anyhow::Result<()> {
    let rtt = args.link.as_ref().map_or(Duration::ZERO, |l| l.rtt);
    println!(
        "\ntime to first answer byte (connect, handshake, request), one connection at a time, {} each",
        args.samples
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>9} {:>8}",
        "connection", "median ms", "min ms", "max ms", "resumed", "in RTTs"
    );
    // One connection first, so the resuming client holds a ticket.
    exchange(Kind::Resumed, tls_addr, setup).await?;
    for kind in [Kind::Plain, Kind::Full, Kind::Resumed] {
        let addr = if kind == Kind::Plain { plain_addr } else { tls_addr };
        let mut times = Vec::new();
        let mut resumed = 0;
        for _ in 0..args.samples {
            let (t, r) = tokio::time::timeout(STUCK, exchange(kind, addr, setup))
                .await
                .context("an exchange stalled")??;
            times.push(t);
            resumed += usize::from(r);
        }
        let median = percentile(&mut times, 50.0).unwrap_or_default();
        let (min, max) = (times[0], times[times.len() - 1]);
        let rtts = if rtt.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.2}", median.as_secs_f64() / rtt.as_secs_f64())
        };
        println!(
            "{:<16} {:>10.2} {:>10.2} {:>10.2} {:>9} {:>8}",
            kind.name(),
            median.as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            format!("{resumed}/{}", args.samples),
            rtts
        );
    }
    Ok(())
}
