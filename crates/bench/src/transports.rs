//! `bench transports`: one feed, four ways to follow it, measured side by
//! side (chapter 11, `docs/11-choosing-a-transport.md`).
//!
//! For each technique (short polling, long polling, Server-Sent Events, a
//! WebSocket), each payload size and each number of subscribers N, one cell:
//!
//! 1. The lesson's server starts in a process of its own (see [`child`]), so
//!    `/proc` can say what *it* spent in CPU time and memory.
//! 2. A [`harness::WireTap`] starts in front of it, and N subscribers follow
//!    the feed through the tap, each with the lesson's own client
//!    (`short_polling::follow`, `long_polling::follow`, `sse::follow`,
//!    `push_notifications::client::follow`). The tap counts every byte each way,
//!    HTTP heads, chunked framing and WebSocket frame headers included.
//! 3. Once every subscriber is connected (the server's `/stats` says so),
//!    the counters are read, and one publisher posts `rate` updates a second
//!    for `seconds`, straight to the server (not through the tap: we price
//!    delivery, not publishing). It notes the instant before each POST.
//! 4. Each subscriber stops once it has every update; then the counters are
//!    read again. Bytes and requests per update are the differences divided
//!    by the updates delivered, so connection setup is left out of them (it
//!    is reported on its own, per subscriber). Latency is receipt minus the
//!    publisher's instant, over every delivery to every subscriber.
//! 5. Every subscriber's ids are checked: each of 1..=published exactly once.
//!    Anything else is printed loudly and marked in the table.
//!
//! Short polling's cost depends on its interval (`--poll-ms`, 250 ms unless
//! told otherwise): halve it and idle requests double while latency halves.
//!
//! With `--link rtt=50ms` (root: see [`crate::link`]) the server process runs
//! on the server side of a netlab link, the subscribers and the tap on the
//! client side, and the publisher beside the server, so latency is what
//! delivery across the link costs: one way for a stream, more for long
//! polling (an update that lands while the next poll is still on its way
//! waits for it), half an interval more for short polling.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use feed::client::HttpClient;
use harness::WireTap;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::link::{LinkSpec, Net};
use crate::stats::percentile;

pub(crate) mod child;
mod follow;
mod plot;
pub(crate) mod tally;

use tally::{IdCheck, check_ids, per};

/// The four techniques, each served and followed by its lesson's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Technique {
    /// Lesson 5: `short-polling`, `GET /data?since=` on a timer, with ETag.
    ShortPolling,
    /// Lesson 6: `long-polling`, the server holds `GET /data?since=`.
    LongPolling,
    /// Lesson 7: `sse`, one `GET /events` streaming `text/event-stream`.
    Sse,
    /// Lesson 9: `push-notifications`, one WebSocket, JSON text frames.
    #[value(name = "websocket")]
    WebSocket,
}

impl Technique {
    const ALL: [Technique; 4] = [Self::ShortPolling, Self::LongPolling, Self::Sse, Self::WebSocket];

    /// The name on the command line, in the table and in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Self::ShortPolling => "short-polling",
            Self::LongPolling => "long-polling",
            Self::Sse => "sse",
            Self::WebSocket => "websocket",
        }
    }
}

/// Options of `bench transports`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriber counts, one cell each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100, 1000])]
    subscribers: Vec<usize>,
    /// Payload sizes in bytes (the update's JSON, exactly this long), one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [30, 5000])]
    payload: Vec<usize>,
    /// Updates published per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of publishing per cell.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Short polling's interval in milliseconds (its cost depends on it).
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
    /// Techniques to measure.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = Technique::ALL)]
    techniques: Vec<Technique>,
    /// Where transports.csv and transports.svg go.
    #[command(flatten)]
    pub(crate) output: crate::Output,
    /// Write the CSV to this file instead (`-` for nowhere).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write the SVG plot to this file instead (`-` for nowhere).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Run the server and the subscribers on the two sides of a netlab
    /// link, e.g. `rtt=50ms,loss=0.5%` (needs root).
    #[arg(long, value_parser = crate::link::parse_spec)]
    link: Option<LinkSpec>,
    /// Internal: be the server process for one technique (see `child.rs`).
    #[arg(long, hide = true, value_enum)]
    serve: Option<Technique>,
    /// Internal: the address the server process binds (127.0.0.1 unless
    /// it runs on the server side of a link).
    #[arg(long, hide = true, default_value = "127.0.0.1")]
    bind: IpAddr,
}

/// One cell's figures: one row of the table and of the CSV.
#[derive(Debug, Clone)]
pub struct Row {
    technique: Technique,
    payload: usize,
    subscribers: usize,
    published: u64,
    ids: IdCheck,
    /// Subscribers whose ids were not exactly 1..=published.
    bad_subscribers: usize,
    down_per_update: f64,
    up_per_update: f64,
    requests_per_update: f64,
    connections: u64,
    setup_bytes_per_sub: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms_per_sub: f64,
    rss_kib_per_sub: f64,
    publish_secs: f64,
}

/// Runs the report (or, with `--serve`, one server process).
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(technique) = args.serve {
        return child::serve(technique, args.bind);
    }
    raise_open_file_limit();
    let net = Net::start(args.link.as_ref())?;
    let here = Arc::clone(&net);
    // With a link, everything but the server and the publisher runs on the
    // client side: the runtime built there keeps its threads there.
    net.on_client(move || report(args, &here))??;
    if let Some(counters) = net.counters() {
        println!("{counters}");
    }
    Ok(())
}

fn report(args: Args, net: &Net) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let updates = (args.rate * args.seconds).round() as u64;
    if updates == 0 || updates > feed::HISTORY as u64 {
        bail!(
            "rate x seconds must publish between 1 and {} updates (the feed's history), not {updates}",
            feed::HISTORY
        );
    }
    println!(
        "bench transports: {updates} updates per cell ({} /s for {} s), short polling every {} ms \
         with ETag; every subscriber through one wire tap; server in its own process; over {}",
        args.rate,
        args.seconds,
        args.poll_ms,
        net.describe()
    );
    let mut rows = Vec::new();
    for &payload in &args.payload {
        for &technique in &args.techniques {
            for &n in &args.subscribers {
                eprintln!("== {} payload {payload} B, {n} subscribers", technique.name());
                let row = runtime
                    .block_on(measure(technique, payload, n, updates, &args, net))
                    .with_context(|| format!("{} with {n} subscribers", technique.name()))?;
                if !row.ids.is_exact() {
                    eprintln!(
                        "!! {} payload {payload} N={n}: {} lost, {} duplicated, {} unexpected \
                         over {} subscribers",
                        technique.name(),
                        row.ids.lost,
                        row.ids.duplicated,
                        row.ids.unexpected,
                        row.bad_subscribers
                    );
                }
                rows.push(row);
            }
        }
    }
    print!("{}", table(&rows));
    let faulty = rows.iter().filter(|r| !r.ids.is_exact()).count();
    if faulty > 0 {
        println!("!! {faulty} cell(s) lost or duplicated updates: see the lost/dup columns");
    } else {
        println!("every subscriber in every cell got every update exactly once");
    }
    let csv_path = match &args.csv {
        Some(path) => path.clone(),
        None => args.output.file("transports.csv")?,
    };
    if csv_path.as_os_str() != "-" {
        std::fs::write(&csv_path, csv(&rows))
            .with_context(|| format!("writing {}", csv_path.display()))?;
        println!("wrote {}", csv_path.display());
    }
    let svg_path = match &args.svg {
        Some(path) => path.clone(),
        None => args.output.file("transports.svg")?,
    };
    if svg_path.as_os_str() != "-" {
        let svg = plot::svg(&rows, args.poll_ms);
        std::fs::write(&svg_path, svg)
            .with_context(|| format!("writing {}", svg_path.display()))?;
        println!("wrote {}", svg_path.display());
    }
    Ok(())
}

/// Each subscriber holds three descriptors in this process (its socket and
/// the tap's two), so 1,000 of them need more than the common soft limit of
/// 1,024: raise it to the hard limit (lesson 3's `raise_nofile`); the server
/// processes inherit it. Every report with many connections calls this.
pub(crate) fn raise_open_file_limit() {
    if let Err(e) = threads_vs_epoll::raise_nofile() {
        eprintln!("could not raise the open-file limit ({e}); thousands of connections may fail");
    }
}

async fn measure(
    technique: Technique,
    payload: usize,
    n: usize,
    updates: u64,
    args: &Args,
    net: &Net,
) -> anyhow::Result<Row> {
    let server = child::Server::start_on(technique, net).await?;
    warm_up(server.addr).await?;
    let idle = server.usage()?;
    let tap = WireTap::start(server.addr)?;
    let token = CancellationToken::new();
    let poll = Duration::from_millis(args.poll_ms);

    let mut subscribers = Vec::with_capacity(n);
    for i in 0..n {
        // Pollers start spread over one interval, as independent browsers
        // would be, rather than all asking in the same millisecond.
        let delay = match technique {
            Technique::ShortPolling => poll * i as u32 / n as u32,
            _ => Duration::ZERO,
        };
        let (addr, token) = (tap.addr(), token.clone());
        subscribers.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            follow::subscriber(technique, addr, updates, poll, token).await
        }));
        if i % 50 == 49 {
            // Let the accept queues drain between batches of connections.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_ready(technique, server.addr, &tap, n).await?;
    // Let the last bytes of connection setup be acknowledged before the
    // first update. Otherwise the first update can wait for the ACK of the
    // setup's last small write: the lessons' servers leave Nagle's algorithm
    // on, and Linux delays ACKs by up to 40 ms (chapter 11 shows it).
    tokio::time::sleep(SETTLE).await;

    let before = tap.stats();
    let requests_before = server_requests(technique, server.addr, &tap).await?;
    let usage_before = server.usage()?;
    let (published_at, publish_secs) =
        publish(technique, server.addr, updates, payload, args, net).await?;

    // Everyone should have everything soon after the last publish; past this
    // deadline, whatever is missing counts as lost.
    let deadline = Duration::from_secs(15) + poll;
    let watchdog = tokio::spawn({
        let token = token.clone();
        async move {
            tokio::time::sleep(deadline).await;
            token.cancel();
        }
    });
    let mut received = Vec::with_capacity(n);
    for s in subscribers {
        match s.await.context("a subscriber task")? {
            Ok(r) => received.push(r),
            Err(e) => {
                eprintln!("  a subscriber failed: {e:#}");
                received.push(follow::Received::default());
            }
        }
    }
    watchdog.abort();
    let timed_out = token.is_cancelled();
    let after = tap.stats();
    let requests_after = server_requests(technique, server.addr, &tap).await?;
    let usage_after = server.usage()?;
    drop(tap);
    server.stop().await?;

    let mut ids = IdCheck::default();
    let mut bad_subscribers = 0;
    let mut latencies = Vec::with_capacity(n * updates as usize);
    for r in &received {
        let seen: Vec<u64> = r.arrivals.iter().map(|(id, _)| *id).collect();
        let check = check_ids(&seen, updates);
        if !check.is_exact() {
            bad_subscribers += 1;
        }
        ids.add(check);
        for (id, at) in &r.arrivals {
            if let Some(sent) = id.checked_sub(1).and_then(|i| published_at.get(i as usize)) {
                latencies.push(at.saturating_duration_since(*sent));
            }
        }
        for t in r.trouble.iter().take(3) {
            eprintln!("  subscriber trouble: {t}");
        }
    }
    if timed_out {
        eprintln!("  !! some subscribers were still waiting {deadline:?} after the last publish");
    }
    let delivered = ids.received;
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let tick_ms = 1000.0 / tally::TICKS_PER_SECOND as f64;
    let cpu_ticks = usage_after.cpu_ticks.saturating_sub(usage_before.cpu_ticks);
    let row = Row {
        technique,
        payload,
        subscribers: n,
        published: updates,
        ids,
        bad_subscribers,
        down_per_update: per(after.to_client - before.to_client, delivered),
        up_per_update: per(after.to_server - before.to_server, delivered),
        requests_per_update: per(requests_after.saturating_sub(requests_before), delivered),
        connections: after.connections,
        setup_bytes_per_sub: per(before.to_client + before.to_server, n as u64),
        p50_ms: ms(percentile(&mut latencies, 50.0)),
        p99_ms: ms(percentile(&mut latencies, 99.0)),
        cpu_ms_per_sub: cpu_ticks as f64 * tick_ms / n as f64,
        rss_kib_per_sub: usage_after.peak_kib.saturating_sub(idle.rss_kib) as f64 / n as f64,
        publish_secs,
    };
    eprintln!(
        "   {delivered} delivered, {:.0} B down/update, p50 {:.2} ms, p99 {:.2} ms",
        row.down_per_update, row.p50_ms, row.p99_ms
    );
    Ok(row)
}

/// The pause between "everyone is following" and the first update; see
/// where it is used.
const SETTLE: Duration = Duration::from_millis(200);

/// A few requests on a few connections before the idle reading, so the
/// server's first-use costs (each worker thread's allocator arena, buffers
/// that stay allocated) are in the baseline and not charged to subscribers.
async fn warm_up(server: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..4 {
        let mut client = HttpClient::new(server);
        for _ in 0..5 {
            stats(&mut client).await?;
        }
    }
    Ok(())
}

/// Waits until the server says all `n` subscribers are following it: polls
/// connected (short polling has nothing held open, so the tap is asked),
/// long polls held, streams open, WebSocket subscriptions in place.
async fn wait_ready(
    technique: Technique,
    server: SocketAddr,
    tap: &WireTap,
    n: usize,
) -> anyhow::Result<()> {
    let mut client = HttpClient::new(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = match technique {
            Technique::ShortPolling => tap.stats().connections as usize,
            Technique::LongPolling => {
                stats(&mut client).await?["waiting"].as_u64().unwrap_or(0) as usize
            }
            Technique::Sse => {
                stats(&mut client).await?["subscribers"].as_u64().unwrap_or(0) as usize
            }
            Technique::WebSocket => stats(&mut client).await?["subscribers"][child::EVENT]
                .as_u64()
                .unwrap_or(0) as usize,
        };
        if ready >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {n} subscribers were following after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stats(client: &mut HttpClient) -> anyhow::Result<Value> {
    let reply = client.get("/stats", &[]).await?;
    Ok(reply.json()?)
}

/// HTTP requests the server has answered from subscribers so far. The feed
/// servers count them (their `/stats` leaves itself out; the publisher's
/// POSTs are taken off by the caller's difference, see [`publish`]). The
/// WebSocket server's only HTTP requests are upgrades, one per connection,
/// which the tap counts.
async fn server_requests(
    technique: Technique,
    server: SocketAddr,
    tap: &WireTap,
) -> anyhow::Result<u64> {
    Ok(match technique {
        Technique::WebSocket => tap.stats().connections,
        _ => {
            let s = stats(&mut HttpClient::new(server)).await?;
            let all = s["requests"].as_u64().unwrap_or(0);
            // Every update was one POST /update by the publisher.
            all.saturating_sub(s["published"].as_u64().unwrap_or(0))
        }
    })
}

/// Posts `updates` updates of `payload` bytes at `args.rate` a second, and
/// returns the instant before each POST (index = id - 1) and how long the
/// publishing took. Through a link, the publisher's connection is opened on
/// the server side, as a backend beside the server would be, so latency is
/// the delivery across the link and not the POST's trip as well.
async fn publish(
    technique: Technique,
    server: SocketAddr,
    updates: u64,
    payload: usize,
    args: &Args,
    net: &Net,
) -> anyhow::Result<(Vec<Instant>, f64)> {
    let mut client = match net.link() {
        None => HttpClient::new(server),
        // Were the server to close it, HttpClient would reconnect from the
        // client side; the lessons' servers keep a connection open.
        Some(_) => HttpClient::over(net.connect_beside_server(server)?).await?,
    };
    let data = tally::payload(payload);
    let (path, body) = match technique {
        Technique::WebSocket => ("/notify", json!({ "event": child::EVENT, "payload": data })),
        _ => ("/update", data),
    };
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut at = Vec::with_capacity(updates as usize);
    let started = Instant::now();
    for expected in 1..=updates {
        ticks.tick().await;
        at.push(Instant::now());
        let reply = client.post_json(path, &body).await?;
        if !reply.status.is_success() {
            bail!("publishing answered {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        }
        let id = reply.json::<Value>()?["id"].as_u64().unwrap_or(0);
        if id != expected {
            bail!("the server gave update {expected} the id {id}; ids must count from 1");
        }
    }
    Ok((at, started.elapsed().as_secs_f64()))
}

/// The table printed on stdout.
fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:>7} {:>5} {:>6} {:>5} {:>4} {:>9} {:>8} {:>7} {:>6} {:>8} {:>9} {:>9} {:>10} {:>9}",
        "technique",
        "payload",
        "subs",
        "deliv",
        "lost",
        "dup",
        "B/upd dn",
        "B/upd up",
        "req/upd",
        "conns",
        "setup B",
        "p50 ms",
        "p99 ms",
        "CPU ms/sub",
        "KiB/sub"
    );
    for r in rows {
        let flag = if r.ids.is_exact() { "" } else { "  <-- NOT EXACT" };
        let _ = writeln!(
            out,
            "{:<13} {:>7} {:>5} {:>6} {:>5} {:>4} {:>9.1} {:>8.1} {:>7.3} {:>6} {:>8.0} {:>9.2} {:>9.2} {:>10.3} {:>9.1}{flag}",
            r.technique.name(),
            r.payload,
            r.subscribers,
            r.ids.received,
            r.ids.lost,
            r.ids.duplicated,
            r.down_per_update,
            r.up_per_update,
            r.requests_per_update,
            r.connections,
            r.setup_bytes_per_sub,
            r.p50_ms,
            r.p99_ms,
            r.cpu_ms_per_sub,
            r.rss_kib_per_sub,
        );
    }
    out
}

/// The CSV: one line per cell.
fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "technique,payload_bytes,subscribers,published,delivered,lost,duplicated,unexpected,\
         bytes_down_per_update,bytes_up_per_update,requests_per_update,connections,\
         setup_bytes_per_subscriber,latency_p50_ms,latency_p99_ms,server_cpu_ms_per_subscriber,\
         server_peak_rss_kib_per_subscriber,publish_seconds\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.1},{:.1},{:.4},{},{:.0},{:.3},{:.3},{:.3},{:.1},{:.2}",
            r.technique.name(),
            r.payload,
            r.subscribers,
            r.published,
            r.ids.received,
            r.ids.lost,
            r.ids.duplicated,
            r.ids.unexpected,
            r.down_per_update,
            r.up_per_update,
            r.requests_per_update,
            r.connections,
            r.setup_bytes_per_sub,
            r.p50_ms,
            r.p99_ms,
            r.cpu_ms_per_sub,
            r.rss_kib_per_sub,
            r.publish_secs,
        );
    }
    out
}
