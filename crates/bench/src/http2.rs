//! `cargo run -p bench --release -- http2`: lesson 14's claims, measured.
//!
//! 1. **Multiplexing.** A page of `--requests` resources, the first one slow
//!    (`/slow?ms=`): HTTP/1.1 pipelined on one connection (answers come back
//!    in order, so all wait behind the slow one), HTTP/1.1 on six keep-alive
//!    connections (a browser's habit: requests go to whichever connection is
//!    free), and HTTP/2 on one connection (all at once, as streams). Each
//!    request's completion time from the start of the page; p50, p99 and the
//!    total.
//! 2. **Streams against connections.** Requests per second and p99 with 1,
//!    10 and 100 requests in flight: HTTP/2 as that many streams on one
//!    connection, HTTP/1.1 keep-alive on that many connections.
//! 3. **h2load**, the standard HTTP/2 load tool (Debian `nghttp2-client`),
//!    against the same server, as the independent figure; skipped with a
//!    reason if it is not installed, and under `--link`.
//!
//! One server for every mode: lesson 14's, which speaks HTTP/1.1 and h2c on
//! one port, so the comparison is between protocols, not implementations.
//! With `--link rtt=50ms,loss=1%` (root: see [`crate::link`]) the server is
//! on the far side of a netlab link: the loss table of chapter 14, where one
//! lost packet holds up every stream of the one HTTP/2 connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http2::client::{self, H2, Windows};
use http2::show::Http1Reader;
use http2::{Config, Stats};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::link::{LinkSpec, Net};
use crate::stats::{ms, percentile, rate};

/// Options of the http2 report.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests in the page (the first one is the slow one).
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// How long the slow request takes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub slow_ms: u64,
    /// Size of each other resource in KiB (`/large?kb=N`); 0 for lesson 4's
    /// `/resource/N`, a dozen bytes.
    #[arg(long, default_value_t = 0)]
    pub kb: u64,
    /// How many times the page is fetched per mode; completion times are
    /// pooled over all runs, totals reported as the median run.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Requests in flight for part 2 (streams on one h2 connection, or
    /// HTTP/1.1 connections).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub streams: Vec<usize>,
    /// Seconds each cell of part 2 runs (0 skips parts 2 and 3).
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Run the server and the clients on the two sides of a netlab link,
    /// e.g. `rtt=50ms,loss=1%` (needs root).
    #[arg(long, value_parser = crate::link::parse_spec)]
    pub link: Option<LinkSpec>,
}

/// How many connections a browser opens to one host over HTTP/1.1.
const BROWSER_CONNECTIONS: usize = 6;

/// The most a benchmark body may be: 64 MiB.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// The client's windows for the benchmark: big enough not to be the
/// bottleneck on a 50 ms link (16 MiB a stream, 64 MiB the connection), as a
/// browser's are.
pub(crate) const WINDOWS: Windows = Windows { stream: 16 << 20, connection: 64 << 20 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Pipelined,
    SixConnections,
    H2,
}

impl Page {
    const ALL: [Page; 3] = [Page::Pipelined, Page::SixConnections, Page::H2];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Page::Pipelined => "HTTP/1.1 pipelined, 1 connection",
            Page::SixConnections => "HTTP/1.1, 6 connections",
            Page::H2 => "HTTP/2, 1 connection",
        }
    }
}

/// Runs the whole report and prints it.
pub fn run(args: Args) -> Result<()> {
    let net = Net::start(args.link.as_ref())?;
    let here = Arc::clone(&net);
    net.on_client(move || tokio::runtime::Runtime::new()?.block_on(report(args, &here)))??;
    if let Some(counters) = net.counters() {
        println!("{counters}");
    }
    Ok(())
}

async fn report(args: Args, net: &Net) -> Result<()> {
    let listener = net.listener()?;
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let server = tokio::spawn(http2::serve(
        listener,
        None,
        Config::default(),
        Arc::clone(&stats),
        token.clone(),
    ));
    let paths = page(&args);
    println!(
        "http2: over {}; a page of {} requests, the first /slow?ms={}, the others {}; {} run(s) per mode",
        net.describe(),
        args.requests,
        args.slow_ms,
        if args.kb == 0 { "/resource/N".to_owned() } else { format!("/large?kb={}", args.kb) },
        args.runs
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>11} {:>9}",
        "mode", "p50 ms", "p99 ms", "max ms", "total (med)", "fast p50"
    );
    let mut totals = Vec::new();
    for mode in Page::ALL {
        let mut done = Vec::new();
        let mut fast = Vec::new();
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            let times = fetch_page(addr, mode, &paths).await.with_context(|| mode.name())?;
            runs.push(times.iter().copied().max().unwrap_or_default());
            fast.extend(times.iter().skip(1).copied());
            done.extend(times);
        }
        runs.sort();
        let total = runs[runs.len() / 2];
        let max = done.iter().copied().max().unwrap_or_default();
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>11} {:>9}",
            mode.name(),
            ms(percentile(&mut done, 50.0).unwrap_or_default()),
            ms(percentile(&mut done, 99.0).unwrap_or_default()),
            ms(max),
            ms(total),
            ms(percentile(&mut fast, 50.0).unwrap_or_default()),
        );
        totals.push((mode, total, percentile(&mut fast, 50.0).unwrap_or_default()));
    }
    let h2 = totals[2];
    println!("(fast p50: the median completion of the requests other than the slow one)");
    for (mode, total, fast) in &totals[..2] {
        println!(
            "  HTTP/2 against {}: total {:.2}x, fast p50 {:.2}x (below 1: HTTP/2 is quicker)",
            mode.name(),
            h2.1.as_secs_f64() / total.as_secs_f64().max(1e-9),
            h2.2.as_secs_f64() / fast.as_secs_f64().max(1e-9),
        );
    }

    if args.secs > 0.0 {
        throughput(addr, &args).await?;
        if args.link.is_none() {
            h2load(addr, &args.streams).await;
        } else {
            println!(
                "\nh2load: not run through the link (it would have to run in the client namespace)"
            );
        }
    }
    token.cancel();
    server.await.context("the server task")??;
    println!("server: {} requests handled", Stats::get(&stats.requests));
    Ok(())
}

fn page(args: &Args) -> Vec<String> {
    page_paths(args.requests, args.slow_ms, args.kb)
}

/// The page: `requests` paths, the first `/slow?ms=slow_ms`, the others
/// `kb` KiB each (or lesson 4's `/resource/N` with `kb` 0). `bench http3`
/// fetches the same page.
pub(crate) fn page_paths(requests: usize, slow_ms: u64, kb: u64) -> Vec<String> {
    let mut paths = vec![format!("/slow?ms={slow_ms}")];
    for i in 1..requests {
        paths.push(if kb == 0 {
            format!("/resource/{i}")
        } else {
            format!("/large?kb={kb}&n={i}")
        });
    }
    paths
}

/// Fetches `paths` the way `mode` says, and returns each request's
/// completion time from the start, in request order.
pub(crate) async fn fetch_page(
    addr: SocketAddr,
    mode: Page,
    paths: &[String],
) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let mut done = vec![Duration::ZERO; paths.len()];
    match mode {
        Page::Pipelined => {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let all: String = paths.iter().map(|p| client::http1_request("bench", p)).collect();
            tcp.write_all(all.as_bytes()).await?;
            let mut reader = Http1Reader::default();
            for slot in done.iter_mut() {
                reader.next_response(&mut tcp).await?;
                *slot = start.elapsed();
            }
        }
        Page::SixConnections => {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let paths = Arc::new(paths.to_vec());
            let mut workers = Vec::new();
            for _ in 0..BROWSER_CONNECTIONS {
                let (next, paths) = (Arc::clone(&next), Arc::clone(&paths));
                workers.push(tokio::spawn(async move {
                    let mut tcp = TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    let mut reader = Http1Reader::default();
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        tcp.write_all(client::http1_request("bench", path).as_bytes()).await?;
                        reader.next_response(&mut tcp).await?;
                        mine.push((i, start.elapsed()));
                    }
                    anyhow::Ok(mine)
                }));
            }
            for w in workers {
                for (i, t) in w.await.context("a worker panicked")?? {
                    done[i] = t;
                }
            }
        }
        Page::H2 => {
            let h2 = connect(addr).await?;
            done = h2_page(&h2, paths, start).await?;
        }
    }
    Ok(done)
}

/// The page as streams on the open connection `h2`: each request's
/// completion time from `start`, in request order. `bench http3` calls it
/// on an HTTP/2 connection over TLS.
pub(crate) async fn h2_page(h2: &H2, paths: &[String], start: Instant) -> Result<Vec<Duration>> {
    let mut done = vec![Duration::ZERO; paths.len()];
    // Every request queued first, then awaited, as a browser does:
    // their HEADERS frames leave together (see `H2::send_get`).
    let mut responses = Vec::new();
    for path in paths {
        responses.push(h2.send_get(path).await?);
    }
    let mut tasks = Vec::new();
    for (i, response) in responses.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let a = client::read_answer(response, MAX_BODY).await?;
            anyhow::ensure!(a.status == 200, "status {}", a.status);
            anyhow::Ok((i, start.elapsed()))
        }));
    }
    for t in tasks {
        let (i, at) = t.await.context("a stream task panicked")??;
        done[i] = at;
    }
    Ok(done)
}

pub(crate) async fn connect(addr: SocketAddr) -> Result<H2> {
    client::connect(addr, WINDOWS).await
}

/// Part 2: `n` requests always in flight, for `secs`.
async fn throughput(addr: SocketAddr, args: &Args) -> Result<()> {
    let length = Duration::from_secs_f64(args.secs);
    println!("\nGET /resource/1 back to back, {:.1} s per cell", args.secs);
    println!(
        "{:>9} {:<34} {:>9} {:>10} {:>9} {:>9}",
        "in flight", "mode", "requests", "req/s", "p50 ms", "p99 ms"
    );
    for &n in &args.streams {
        let mut rates = [0.0; 2];
        for (k, h2) in [true, false].into_iter().enumerate() {
            let deadline = Instant::now() + length;
            let start = Instant::now();
            let shared = if h2 { Some(Arc::new(connect(addr).await?)) } else { None };
            let mut workers = Vec::new();
            for _ in 0..n {
                let shared = shared.clone();
                workers.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    match shared {
                        Some(h2) => {
                            while Instant::now() < deadline {
                                let t0 = Instant::now();
                                h2.get("/resource/1", 1024).await?;
                                lat.push(t0.elapsed());
                            }
                        }
                        None => {
                            let mut tcp = TcpStream::connect(addr).await?;
                            tcp.set_nodelay(true)?;
                            let mut reader = Http1Reader::default();
                            let req = client::http1_request("bench", "/resource/1");
                            while Instant::now() < deadline {
                                let t0 = Instant::now();
                                tcp.write_all(req.as_bytes()).await?;
                                reader.next_response(&mut tcp).await?;
                                lat.push(t0.elapsed());
                            }
                        }
                    }
                    anyhow::Ok(lat)
                }));
            }
            let mut lat = Vec::new();
            for w in workers {
                lat.extend(w.await.context("a worker panicked")??);
            }
            let elapsed = start.elapsed();
            let r = rate(lat.len() as u64, elapsed);
            rates[k] = r;
            let name = if h2 {
                format!("HTTP/2, {n} stream(s) on 1 connection")
            } else {
                format!("HTTP/1.1 keep-alive, {n} connection(s)")
            };
            println!(
                "{:>9} {:<34} {:>9} {:>10.0} {:>9} {:>9}",
                n,
                name,
                lat.len(),
                r,
                ms(percentile(&mut lat, 50.0).unwrap_or_default()),
                ms(percentile(&mut lat, 99.0).unwrap_or_default()),
            );
        }
        println!(
            "{:>9} HTTP/2 / HTTP/1.1 requests per second: {:.2}x",
            "",
            rates[0] / rates[1].max(1e-9)
        );
    }
    Ok(())
}

/// Part 3: h2load against the same server, if installed.
async fn h2load(addr: SocketAddr, streams: &[usize]) {
    let url = format!("http://{addr}/resource/1");
    println!("\nh2load -n 20000 (the same server, nghttp2's load tool)");
    for &n in streams {
        for (label, extra) in [
            (
                format!("HTTP/2, -c 1 -m {n}"),
                vec!["-c".to_owned(), "1".into(), "-m".into(), n.to_string()],
            ),
            (format!("HTTP/1.1, --h1 -c {n}"), vec!["--h1".to_owned(), "-c".into(), n.to_string()]),
        ] {
            let out = tokio::process::Command::new("h2load")
                .args(["-n", "20000"])
                .args(&extra)
                .arg(&url)
                .output()
                .await;
            match out {
                Err(e) => {
                    println!(
                        "  skipped: h2load did not run ({e}); on Debian: apt-get install nghttp2-client"
                    );
                    return;
                }
                Ok(o) => {
                    let text = String::from_utf8_lossy(&o.stdout);
                    let finished =
                        text.lines().find(|l| l.starts_with("finished in")).unwrap_or("no result");
                    // "time for request:  min  max  mean  sd  +/- sd"
                    let times: Vec<String> = text
                        .lines()
                        .find_map(|l| l.strip_prefix("time for request:"))
                        .map(|l| l.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default();
                    let field = |i: usize| times.get(i).map_or("?", String::as_str);
                    println!(
                        "  {label:<26} {finished}; per request mean {}, max {}",
                        field(2),
                        field(1)
                    );
                }
            }
        }
    }
}
