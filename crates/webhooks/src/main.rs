//! The command line of lesson 17. `cargo run -p webhooks` runs the demo;
//! `serve`, `receiver` and `client` are described in `--help` and in the
//! chapter.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use harness::TaskServer;
use raw_http::Response;
use serde_json::{Value, json};
use webhooks::{
    Fault, RECEIVER_ADDR, Receiver, ReceiverConfig, SENDER_ADDR, Secret, Sender, SenderConfig,
    receiver, sender,
};

#[derive(Debug, Parser)]
#[command(
    about = "Webhooks: signed, retried, durable delivery (lesson 17). No subcommand: the demo."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sender (API and delivery worker) until Ctrl-C.
    Serve {
        /// Where the API listens (loopback by default).
        #[arg(long, default_value = SENDER_ADDR)]
        addr: SocketAddr,
        /// The outbox file (created on first use; kept, so a restart on the
        /// same file resumes; give a fresh one, e.g. `"$(mktemp -d)/outbox.sqlite"`,
        /// for a session that starts from nothing).
        #[arg(long, default_value_os_t = std::env::temp_dir().join("webhooks-outbox.sqlite"))]
        db: PathBuf,
        /// Test timings: 2 s timeout, retries after at most 20 ms .. 200 ms.
        #[arg(long)]
        quick: bool,
        /// Attempts per delivery before it is given up on.
        #[arg(long, default_value_t = webhooks::sender::MAX_ATTEMPTS)]
        max_attempts: u32,
        /// Failures in a row an endpoint needs before it is disabled (and
        /// the streak must also last --disable-after-secs).
        #[arg(long, default_value_t = webhooks::sender::DISABLE_AFTER)]
        disable_after: u32,
        /// How long a failure streak must last before the endpoint is
        /// disabled (default: five days; 0.2 s with --quick).
        #[arg(long)]
        disable_after_secs: Option<f64>,
    },
    /// Run a receiver until Ctrl-C.
    Receiver {
        /// Where it listens.
        #[arg(long, default_value = RECEIVER_ADDR)]
        addr: SocketAddr,
        /// The inbox file (created on first use).
        #[arg(long, default_value_os_t = std::env::temp_dir().join("webhooks-inbox.sqlite"))]
        db: PathBuf,
        /// The endpoint's secret, as `POST /endpoints` returned it (give it
        /// twice during a rotation).
        #[arg(long, required = true)]
        secret: Vec<String>,
        /// Fail one request in N on purpose (0: never).
        #[arg(long, default_value_t = 0)]
        flaky: u64,
    },
    /// Talk to a running sender.
    Client {
        /// The sender's API.
        #[arg(long, default_value = SENDER_ADDR)]
        addr: SocketAddr,
        #[command(subcommand)]
        action: Action,
    },
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Register a receiver's URL; prints its id and secret.
    Register { url: String },
    /// Send an event to every endpoint.
    Send {
        /// The event's type, e.g. order.paid.
        kind: String,
        /// Its data, as JSON.
        #[arg(default_value = "{}")]
        data: String,
    },
    /// Show an endpoint and its delivery log.
    Show { id: i64 },
    /// Give an endpoint a new secret (the old one signs too for a day).
    Rotate { id: i64 },
    /// Enable an endpoint that was disabled after too many failures.
    Enable { id: i64 },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::init_logging_at("warn");
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve {
            addr,
            db,
            quick,
            max_attempts,
            disable_after,
            disable_after_secs,
        }) => {
            let base = if quick { SenderConfig::quick() } else { SenderConfig::default() };
            let failing_for = match disable_after_secs {
                Some(secs) => Duration::try_from_secs_f64(secs)
                    .context("--disable-after-secs must be a number of seconds")?,
                None => base.disable_after_failing_for,
            };
            let config = SenderConfig {
                max_attempts,
                disable_after,
                disable_after_failing_for: failing_for,
                ..base
            };
            run_sender(addr, db, config).await
        }
        Some(Command::Receiver { addr, db, secret, flaky }) => {
            run_receiver(addr, db, secret, flaky).await
        }
        Some(Command::Client { addr, action }) => client(addr, action).await,
    }
}

async fn run_sender(addr: SocketAddr, db: PathBuf, config: SenderConfig) -> anyhow::Result<()> {
    let outbox =
        webhooks::Outbox::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    // One line on stdout, flushed: tests that start this binary read it to
    // learn the port.
    println!("sender listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    eprintln!("outbox: {}; Ctrl-C to stop", db.display());
    let token = harness::ctrl_c_token();
    sender::serve(listener, Sender::new(outbox, config), token).await?;
    Ok(())
}

async fn run_receiver(
    addr: SocketAddr,
    db: PathBuf,
    secrets: Vec<String>,
    flaky: u64,
) -> anyhow::Result<()> {
    let secrets = secrets
        .iter()
        .map(|s| Secret::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut config = ReceiverConfig::new(secrets[0].clone());
    config.secrets = secrets;
    config.fault = if flaky > 0 { Fault::OneIn(flaky) } else { Fault::None };
    let receiver = Receiver::open(&db, config)?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    println!("receiver listening on http://{}/ (inbox {})", listener.local_addr()?, db.display());
    std::io::stdout().flush()?;
    receiver::serve(listener, receiver, harness::ctrl_c_token()).await?;
    Ok(())
}

/// One request to the sender's API with a JSON body (or none).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Response> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Ok(raw_http::exchange(addr, req.as_bytes()).await?)
}

async fn client(addr: SocketAddr, action: Action) -> anyhow::Result<()> {
    let resp = match action {
        Action::Register { url } => {
            call(addr, "POST", "/endpoints", Some(&json!({"url": url}))).await?
        }
        Action::Send { kind, data } => {
            let data: Value = serde_json::from_str(&data).context("data must be JSON")?;
            call(addr, "POST", "/events", Some(&json!({"type": kind, "data": data}))).await?
        }
        Action::Show { id } => call(addr, "GET", &format!("/endpoints/{id}"), None).await?,
        Action::Rotate { id } => {
            call(addr, "POST", &format!("/endpoints/{id}/rotate"), None).await?
        }
        Action::Enable { id } => {
            call(addr, "POST", &format!("/endpoints/{id}/enable"), None).await?
        }
    };
    println!("{} {}", resp.status, resp.reason);
    println!("{}", resp.text());
    Ok(())
}

/// How many events the demo sends.
const DEMO_EVENTS: usize = 6;

/// How long the demo waits for everything to be delivered and applied
/// before it gives up (it takes well under a second).
const DEMO_DEADLINE: Duration = Duration::from_secs(30);

async fn demo() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("webhooks-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Retries visible to the eye: at most 100, 200, 400 ms apart.
    let config = SenderConfig {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(400),
        ..SenderConfig::quick()
    };
    let outbox = webhooks::Outbox::open(dir.join("outbox.sqlite"))?;
    let sender_srv =
        TaskServer::start(|l, t| sender::serve(l, Sender::new(outbox.clone(), config), t)).await?;
    let api = sender_srv.addr();
    println!("sender API on http://{api}");

    // The receiver's port first: its URL is registered before it knows its
    // secret, which registration hands out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let reg = call(api, "POST", "/endpoints", Some(&json!({"url": url}))).await?;
    println!("\n> POST /endpoints {{\"url\": \"{url}\"}}\n< {} {}", reg.status, reg.text());
    let reg: Value = serde_json::from_slice(&reg.body)?;
    let secret =
        Secret::parse(reg["secret"].as_str().unwrap_or_default()).map_err(anyhow::Error::msg)?;
    let id = reg["id"].as_i64().context("an endpoint id")?;

    let mut rc = ReceiverConfig::new(secret);
    rc.fault = Fault::OneIn(2);
    let receiver = Receiver::open(dir.join("inbox.sqlite"), rc)?;
    let receiver_srv = TaskServer::start_with(listener, {
        let receiver = receiver.clone();
        |l, t| receiver::serve(l, receiver, t)
    })?;
    println!(
        "receiver on {url}: fails every 2nd request, alternately 503 before storing and 500 after\n"
    );

    for i in 1..=DEMO_EVENTS {
        let event = json!({"type": "order.paid", "data": {"order": i}});
        let resp = call(api, "POST", "/events", Some(&event)).await?;
        println!("> POST /events {event}\n< {} {}", resp.status, resp.text());
    }

    println!("\nthe delivery log, as GET /endpoints/{id} shows it:");
    let started = Instant::now();
    let mut shown = HashSet::new();
    loop {
        let view: Value = serde_json::from_slice(
            &call(api, "GET", &format!("/endpoints/{id}"), None).await?.body,
        )?;
        let mut log = view["log"].as_array().cloned().unwrap_or_default();
        log.reverse();
        for a in log {
            let key = (a["msg_id"].to_string(), a["attempt"].as_u64());
            if shown.insert(key) {
                println!(
                    "  {} attempt {}: {} ({} ms)",
                    a["msg_id"].as_str().unwrap_or("?"),
                    a["attempt"],
                    a["outcome"].as_str().unwrap_or("?"),
                    a["took_ms"]
                );
            }
        }
        let applied = receiver.effects().await?.len();
        if view["delivered"].as_u64() == Some(DEMO_EVENTS as u64) && applied == DEMO_EVENTS {
            break;
        }
        if started.elapsed() > DEMO_DEADLINE {
            bail!("not all delivered within {DEMO_DEADLINE:?}: {view}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let effects = receiver.effects().await?;
    let ids: HashSet<&String> = effects.iter().map(|(id, _)| id).collect();
    let s = &receiver.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "\nreceiver: {} requests, {} failed on purpose, {} stored, {} duplicates recognised",
        load(&s.requests),
        load(&s.faults),
        load(&s.accepted),
        load(&s.duplicates)
    );
    println!(
        "applied: {} effects for {} distinct events (each exactly once):",
        effects.len(),
        ids.len()
    );
    for (id, body) in &effects {
        println!("  {id} {body}");
    }
    if effects.len() != DEMO_EVENTS || ids.len() != DEMO_EVENTS {
        bail!("expected {DEMO_EVENTS} effects, one per event");
    }
    sender_srv.shutdown().await?;
    receiver_srv.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
