//! `bench webhooks`, lesson 17: how fast the outbox empties, healthy and
//! after an outage.
//!
//! Lesson 17's sender (API, SQLite outbox, delivery worker) and its
//! receivers (verify, inbox, applier) run in this process on loopback, each
//! with its SQLite file in a scratch folder under the system's temp dir.
//! Events are posted to the sender's API by a few kept-alive clients, the
//! way a producer would.
//!
//! * **Healthy**: `--events` events with 1 endpoint, then with 10 (each
//!   event fans out to every endpoint): deliveries per second from the
//!   first event posted to the last delivery stored, and the latency from
//!   "accepted" (the sender's commit) to "stored" (the receiver's commit),
//!   read from the two SQLite files afterwards (millisecond clocks).
//! * **Drain**: one endpoint whose receiver is down (nothing listens on its
//!   port) while `--drain-events` events are accepted and every delivery
//!   has been refused at least once, for at least `--outage-secs`; then the
//!   receiver comes back on the same port. How long until the outbox holds
//!   nothing pending and every event is applied, once each, for two backoff
//!   settings: the test timings and the lesson's defaults.
//!
//! Every run checks what the lesson promises (each event applied exactly
//! once at each receiver, nothing pending, nothing given up on) and fails
//! if it does not hold. Everything is bounded: counts by the options, each
//! wait by [`STUCK`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use harness::TaskServer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use webhooks::{Outbox, Receiver, ReceiverConfig, Secret, Sender, SenderConfig, receiver, sender};

use crate::stats::{percentile_sorted, rate};

/// Options of `bench webhooks`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per healthy run (each goes to every endpoint).
    #[arg(long, default_value_t = 1000)]
    pub events: usize,
    /// Endpoints in the healthy runs, one receiver each.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    pub endpoints: Vec<usize>,
    /// Events posted one at a time first (1 endpoint), each only after the
    /// one before is stored: the latency of an idle pipeline.
    #[arg(long, default_value_t = 200)]
    pub paced: usize,
    /// Clients posting events at once, each on one kept-alive connection.
    #[arg(long, default_value_t = 4)]
    pub submitters: usize,
    /// Events accepted while the receiver is down, in the drain runs.
    #[arg(long, default_value_t = 1000)]
    pub drain_events: usize,
    /// The shortest outage, in seconds (it also lasts until every delivery
    /// has been refused once).
    #[arg(long, default_value_t = 2.0)]
    pub outage_secs: f64,
    /// Where webhooks.csv goes.
    #[command(flatten)]
    pub output: crate::Output,
}

/// A bound on every wait: a run that has not finished by then is reported
/// as an error instead of hanging the bench. The drain with the lesson's
/// defaults waits at most a few seconds of backoff after a 2 s outage.
const STUCK: Duration = Duration::from_secs(120);

/// How often the bench looks at the receivers' counters. Atomic loads, so
/// cheap; it bounds how late an end is noticed.
const POLL: Duration = Duration::from_millis(5);

/// Attempts and failures allowed in the drain runs. The defaults (12
/// attempts, disable after 50 failures in a row) are about outages of
/// hours; a 1,000-event outage on loopback fails 50 attempts in well under
/// a second and used to disable the endpoint (now the streak must also last
/// `DISABLE_AFTER_FAILING_FOR`, days, so it would not). Raised so that the
/// drain measures the backoff.
const DRAIN_MAX_ATTEMPTS: u32 = 1_000;
const DRAIN_DISABLE_AFTER: u32 = 1_000_000;

/// `bench webhooks`.
pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.events > 0 && args.drain_events > 0 && args.submitters > 0,
        "--events, --drain-events and --submitters must be at least 1"
    );
    ensure!(
        args.endpoints.iter().all(|&k| (1..=sender::MAX_ENDPOINTS as usize).contains(&k)),
        "--endpoints: 1 to {} each",
        sender::MAX_ENDPOINTS
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let before = crate::load_average();
    let scratch = Scratch::new()?;
    let mut csv = String::from(
        "run,setting,endpoints,events,deliveries,seconds,deliveries_per_s,p50_ms,p99_ms,attempts\n",
    );
    runtime.block_on(async {
        let d = SenderConfig::default();
        println!(
            "webhooks: lesson 17's sender and receivers in this process, on loopback; SQLite files in {}",
            scratch.0.display()
        );
        println!(
            "events posted by {} kept-alive clients; {} cores shared by all",
            args.submitters,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "\nhealthy receivers, the lesson's default settings (timeout {:?}, {} slots per endpoint, a new connection per delivery)",
            d.request_timeout, d.per_endpoint
        );
        println!(
            "{:>9} {:>7} {:>10} {:>9} {:>9} {:>8} {:>7} {:>7} {:>7}",
            "endpoints", "events", "deliveries", "accept/s", "deliver/s", "seconds", "p50 ms", "p99 ms", "max ms"
        );
        let mut rates = Vec::new();
        let runs = std::iter::once((1, true)).chain(args.endpoints.iter().map(|&k| (k, false)));
        for (k, paced) in runs {
            let h = healthy(&scratch, k, paced, &args).await?;
            let events = if paced { args.paced } else { args.events };
            println!(
                "{:>9} {:>7} {:>10} {:>9.0} {:>9.0} {:>8.2} {:>7} {:>7} {:>7}{}",
                k,
                events,
                h.deliveries,
                rate(events as u64, h.posting),
                rate(h.deliveries, h.elapsed),
                h.elapsed.as_secs_f64(),
                h.p50_ms,
                h.p99_ms,
                h.max_ms,
                if paced { "  one event at a time" } else { "" }
            );
            csv.push_str(&format!(
                "healthy,{},{k},{events},{},{:.3},{:.0},{},{},{}\n",
                if paced { "one-at-a-time" } else { "flood" },
                h.deliveries,
                h.elapsed.as_secs_f64(),
                rate(h.deliveries, h.elapsed),
                h.p50_ms,
                h.p99_ms,
                h.attempts
            ));
            if !paced {
                rates.push((k, rate(h.deliveries, h.elapsed)));
            }
        }
        if let (Some(&(k0, r0)), Some(&(k1, r1))) = (rates.first(), rates.last())
            && k0 != k1
            && r0 > 0.0
        {
            println!("  deliveries/s with {k1} endpoints / with {k0}: {:.2}x", r1 / r0);
        }
        println!("  latency: the sender's commit of the event to the receiver's commit of the delivery (ms clocks)");
        println!("  checked: every event applied exactly once at every receiver; outbox: nothing pending or failed");

        println!(
            "\ndrain: the receiver down while {} events are accepted (at least {} s, until every delivery was refused once), then back on its port",
            args.drain_events, args.outage_secs
        );
        println!(
            "  both settings: max attempts {DRAIN_MAX_ATTEMPTS}, disable after {DRAIN_DISABLE_AFTER} failures (the default, {}, would give up during the outage)",
            sender::MAX_ATTEMPTS
        );
        println!(
            "{:<44} {:>8} {:>9} {:>9} {:>8} {:>9} {:>6}",
            "backoff (full jitter)", "outage s", "att. down", "first ms", "drain s", "att. back", "dups"
        );
        let settings = [("quick", SenderConfig::quick()), ("defaults", SenderConfig::default())];
        for (name, base) in settings {
            let words = format!(
                "base {:?}, cap {:?}, poll {:?}",
                base.backoff_base, base.backoff_cap, base.poll_interval
            );
            let config = SenderConfig {
                max_attempts: DRAIN_MAX_ATTEMPTS,
                disable_after: DRAIN_DISABLE_AFTER,
                ..base
            };
            let d = drain(&scratch, name, config, &args).await?;
            println!(
                "{:<44} {:>8.2} {:>9} {:>9} {:>8.2} {:>9} {:>6}",
                format!("{name}: {words}"),
                d.outage.as_secs_f64(),
                d.attempts_down,
                d.first.as_millis(),
                d.drain.as_secs_f64(),
                d.attempts_back,
                d.duplicates
            );
            csv.push_str(&format!(
                "drain,{name},1,{},{},{:.3},{:.0},,,{}\n",
                args.drain_events,
                args.drain_events,
                d.drain.as_secs_f64(),
                rate(args.drain_events as u64, d.drain),
                d.attempts_down + d.attempts_back
            ));
        }
        println!("  first ms: from the receiver's return to its first stored delivery; drain s: to nothing pending and all applied");
        println!("  att. down / back: attempts while it was down / after; dups: deliveries it had already stored");
        println!("  checked: every event applied exactly once; outbox: nothing pending or failed");
        anyhow::Ok(())
    })?;
    let path = args.output.file("webhooks.csv")?;
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("webhooks: wrote {}", path.display());
    println!("load average (1, 5, 15 min) before: {before}; after: {}", crate::load_average());
    Ok(())
}

/// One healthy run's figures.
struct Healthy {
    deliveries: u64,
    /// Posting all the events.
    posting: Duration,
    /// First event posted to the last delivery stored.
    elapsed: Duration,
    p50_ms: i64,
    p99_ms: i64,
    max_ms: i64,
    attempts: u64,
}

async fn healthy(scratch: &Scratch, k: usize, paced: bool, args: &Args) -> anyhow::Result<Healthy> {
    let events = if paced { args.paced } else { args.events };
    eprintln!("webhooks: healthy, {k} endpoint(s), {events} events, paced: {paced}");
    let dir = scratch.sub(&format!("healthy-{k}-{paced}"))?;
    let outbox_path = dir.join("outbox.sqlite");
    let outbox = Outbox::open(&outbox_path).context("opening the outbox")?;
    let totals_of = outbox.clone();
    let api =
        TaskServer::start(|l, t| sender::serve(l, Sender::new(outbox, SenderConfig::default()), t))
            .await?;
    let mut receivers = Vec::new();
    for i in 0..k {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let (_, secret) = register(api.addr(), listener.local_addr()?).await?;
        let inbox = dir.join(format!("inbox-{i}.sqlite"));
        receivers.push(start_receiver(listener, &inbox, ReceiverConfig::new(secret))?);
    }
    let want = (events * k) as u64;
    let stored = || -> u64 {
        receivers.iter().map(|(_, r, _)| r.stats.accepted.load(Ordering::Relaxed)).sum()
    };
    let start = Instant::now();
    let ids = if paced {
        let mut ids = Vec::with_capacity(events);
        for i in 0..events {
            ids.extend(post_events(api.addr(), 1, 1).await?);
            let goal = ((i + 1) * k) as u64;
            within("one event stored", async {
                while stored() < goal {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await?;
        }
        ids
    } else {
        post_events(api.addr(), events, args.submitters).await?
    };
    let posting = start.elapsed();
    let elapsed = within("every delivery stored", async {
        loop {
            if stored() >= want {
                return start.elapsed();
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await?;
    for (_, r, _) in &receivers {
        applied_exactly_once(r, &ids).await?;
    }
    let totals = outbox_settled(&totals_of, want).await?;
    // Latency, from the files: when the sender committed each event, and
    // when each receiver committed its delivery.
    let created = read_times(&outbox_path, "SELECT msg_id, created_ms FROM events")?;
    let mut latencies = Vec::with_capacity(want as usize);
    for (_, _, inbox) in &receivers {
        for (id, received) in read_times(inbox, "SELECT webhook_id, received_ms FROM inbox")? {
            let accepted =
                created.get(&id).with_context(|| format!("{id} is not in the outbox"))?;
            latencies.push((received - accepted).max(0));
        }
    }
    latencies.sort_unstable();
    for (srv, _, _) in receivers {
        srv.shutdown().await?;
    }
    api.shutdown().await?;
    Ok(Healthy {
        deliveries: want,
        posting,
        elapsed,
        p50_ms: percentile_sorted(&latencies, 50.0).unwrap_or_default(),
        p99_ms: percentile_sorted(&latencies, 99.0).unwrap_or_default(),
        max_ms: latencies.last().copied().unwrap_or_default(),
        attempts: totals.attempts,
    })
}

/// One drain run's figures.
struct Drained {
    outage: Duration,
    attempts_down: u64,
    /// The receiver's return to its first stored delivery.
    first: Duration,
    /// The receiver's return to nothing pending and every event applied.
    drain: Duration,
    attempts_back: u64,
    duplicates: u64,
}

async fn drain(
    scratch: &Scratch,
    name: &str,
    config: SenderConfig,
    args: &Args,
) -> anyhow::Result<Drained> {
    eprintln!("webhooks: drain with the {name} backoff, {} events", args.drain_events);
    let dir = scratch.sub(&format!("drain-{name}"))?;
    let outbox_path = dir.join("outbox.sqlite");
    let outbox = Outbox::open(&outbox_path).context("opening the outbox")?;
    let totals_of = outbox.clone();
    let api = TaskServer::start(|l, t| sender::serve(l, Sender::new(outbox, config), t)).await?;
    // A port with nobody on it: bound, noted, closed. Connects are refused
    // at once, the quickest failure there is, so the outage is all backoff.
    let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let (_, secret) = register(api.addr(), addr).await?;
    let down = Instant::now();
    let ids = post_events(api.addr(), args.drain_events, args.submitters).await?;
    let outage = Duration::from_secs_f64(args.outage_secs);
    within("every delivery refused once", async {
        loop {
            let untried =
                count(&outbox_path, "SELECT COUNT(*) FROM deliveries WHERE attempts = 0")?;
            if untried == 0 && down.elapsed() >= outage {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await??;
    let attempts_down = totals_of.totals().await?.attempts;
    let outage = down.elapsed();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} again: taken by someone else meanwhile?"))?;
    let back = Instant::now();
    let inbox = dir.join("inbox.sqlite");
    let (srv, receiver, _) = start_receiver(listener, &inbox, ReceiverConfig::new(secret))?;
    let want = args.drain_events as u64;
    let first = within("the first delivery after the return", async {
        while receiver.stats.accepted.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        back.elapsed()
    })
    .await?;
    within("every delivery stored", async {
        while receiver.stats.accepted.load(Ordering::Relaxed) < want {
            tokio::time::sleep(POLL).await;
        }
    })
    .await?;
    let totals = outbox_settled(&totals_of, want).await?;
    applied_exactly_once(&receiver, &ids).await?;
    let drain = back.elapsed();
    let duplicates = receiver.stats.duplicates.load(Ordering::Relaxed);
    srv.shutdown().await?;
    api.shutdown().await?;
    Ok(Drained {
        outage,
        attempts_down,
        first,
        drain,
        attempts_back: totals.attempts - attempts_down,
        duplicates,
    })
}

type ReceiverServer = (TaskServer<std::io::Result<()>>, Receiver, PathBuf);

fn start_receiver(
    listener: TcpListener,
    inbox: &Path,
    config: ReceiverConfig,
) -> anyhow::Result<ReceiverServer> {
    let r = Receiver::open(inbox, config).context("opening an inbox")?;
    let srv = TaskServer::start_with(listener, {
        let r = r.clone();
        |l, t| receiver::serve(l, r, t)
    })?;
    Ok((srv, r, inbox.to_owned()))
}

/// Registers `http://{addr}/hook` through the API; its id and secret.
async fn register(api: SocketAddr, addr: SocketAddr) -> anyhow::Result<(i64, Secret)> {
    let mut conn = raw_http::HttpConn::connect(api).await?;
    let v = post(&mut conn, api, "/endpoints", &json!({"url": format!("http://{addr}/hook")}), 201)
        .await?;
    let secret = v["secret"].as_str().context("no secret in the answer")?;
    let secret = Secret::parse(secret).map_err(anyhow::Error::msg)?;
    Ok((v["id"].as_i64().context("no id in the answer")?, secret))
}

/// Posts `n` events from `submitters` clients; their webhook-ids.
async fn post_events(api: SocketAddr, n: usize, submitters: usize) -> anyhow::Result<Vec<String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..submitters {
        tasks.spawn(async move {
            let mut conn = raw_http::HttpConn::connect(api).await?;
            let mut ids = Vec::new();
            for i in (s..n).step_by(submitters) {
                let event = json!({"type": "bench.tick", "data": {"n": i}});
                let v = post(&mut conn, api, "/events", &event, 202).await?;
                ids.push(v["id"].as_str().context("no id in the answer")?.to_owned());
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(n);
    for got in within("posting the events", tasks.join_all()).await? {
        ids.extend(got?);
    }
    Ok(ids)
}

/// One POST on a kept-alive connection; the JSON answer, if the status is `want`.
async fn post(
    conn: &mut raw_http::HttpConn,
    api: SocketAddr,
    path: &str,
    body: &Value,
    want: u16,
) -> anyhow::Result<Value> {
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.send(req.as_bytes()).await?;
    let resp = conn.read_response(false).await?;
    if resp.status != want {
        bail!("POST {path} answered {}: {}", resp.status, resp.text());
    }
    Ok(serde_json::from_slice(&resp.body)?)
}

/// Waits (bounded) for `r` to have applied as many effects as `ids`, then
/// checks they are exactly `ids`, each once.
async fn applied_exactly_once(r: &Receiver, ids: &[String]) -> anyhow::Result<()> {
    let effects = within("every event applied", async {
        loop {
            let effects = r.effects().await?;
            if effects.len() >= ids.len() {
                return anyhow::Ok(effects);
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await??;
    let mut got: Vec<&str> = effects.iter().map(|(id, _)| id.as_str()).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    ensure!(
        got == want,
        "applied {} effects for {} events: not exactly once each",
        got.len(),
        want.len()
    );
    Ok(())
}

/// Waits (bounded) until the outbox has nothing pending, then checks that
/// `want` deliveries were made and none given up on.
async fn outbox_settled(outbox: &Outbox, want: u64) -> anyhow::Result<webhooks::Totals> {
    let totals = within("the outbox to empty", async {
        loop {
            let t = outbox.totals().await?;
            if t.pending == 0 {
                return anyhow::Ok(t);
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await??;
    ensure!(
        totals.delivered == want && totals.failed == 0,
        "outbox: {} delivered, {} failed, expected {want} delivered",
        totals.delivered,
        totals.failed
    );
    Ok(totals)
}

/// (id, ms) pairs from one of the SQLite files, on a connection of our own.
fn read_times(path: &Path, sql: &str) -> anyhow::Result<HashMap<String, i64>> {
    let conn = rusqlite::Connection::open(path)?;
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn count(path: &Path, sql: &str) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(STUCK, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: not within {STUCK:?}"))
}

/// The run's folder under the system's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("bench-webhooks-{}", std::process::id()));
        // A leftover from a run that was killed would start us off wrong.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn sub(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
