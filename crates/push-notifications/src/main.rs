//! The command line of lesson 9. No arguments runs the demo; see `--help`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use harness::ws::{Frame, WsClient};
use harness::{Direction, WireTap, hexdump};
use push_notifications::client::{self, Event};
use push_notifications::{Config, DEFAULT_ADDR, Push};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use websocket_chat::origin::AllowOrigins;

#[derive(Parser)]
#[command(about = "Lesson 9: push notifications over WebSocket, with ids and replay")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until Ctrl-C: ws://ADDR/ws (or ws://ADDR/), POST http://ADDR/notify,
    /// GET http://ADDR/stats, and a page at http://ADDR/.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Publish a `tick` event this often, in milliseconds (0: never).
        #[arg(long, default_value_t = 5000)]
        tick_ms: u64,
        // Pages from allowed origins may subscribe, and publish (CORS on
        // POST /notify).
        #[command(flatten)]
        allowed: AllowOrigins,
    },
    /// Subscribe and print notifications; reconnects and resumes by itself.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// An event to subscribe to (repeat for several).
        #[arg(long = "event", default_values_t = ["newMessage".to_owned()])]
        events: Vec<String>,
        /// Resume after this notification id.
        #[arg(long)]
        since: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::init_logging_at("warn");
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve { addr, tick_ms, allowed }) => {
            serve(addr, tick_ms, allowed.origins).await
        }
        Some(Command::Client { addr, events, since }) => run_client(addr, events, since).await,
    }
}

async fn serve(addr: SocketAddr, tick_ms: u64, allowed_origins: Vec<String>) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    println!(
        "push on ws://{addr}/ws (or ws://{addr}/) ; publish with POST http://{addr}/notify ; Ctrl-C to stop"
    );
    println!("a page that subscribes and publishes: http://{addr}/");
    let token = harness::ctrl_c_token();
    let push = Push::new(Config { allowed_origins, ..Config::default() });
    if tick_ms > 0 {
        push.spawn_timer("tick", Duration::from_millis(tick_ms), token.clone());
        println!("a `tick` event is published every {tick_ms} ms");
    }
    push.serve(listener, token).await?;
    Ok(())
}

async fn run_client(
    addr: SocketAddr,
    events: Vec<String>,
    since: Option<u64>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(64);
    let stop = harness::ctrl_c_token();
    let url = format!("ws://{addr}/ws");
    let task = tokio::spawn(client::follow(url, events, since, tx, stop));
    while let Some(event) = rx.recv().await {
        let line = match event {
            Event::Connected { since } => format!("* connected (resuming after {since:?})"),
            Event::Notification(n) => format!("#{} {}: {}", n.id, n.event, n.payload),
            Event::Gap { since, oldest } => {
                format!("! missed some: asked for ids after {since}, history starts at {oldest}")
            }
            Event::Disconnected { why, retry_in } => {
                format!("! {why}; reconnecting in {retry_in:?}")
            }
        };
        // A closed stdout (`| head`) ends the client quietly instead of a panic.
        if writeln!(std::io::stdout(), "{line}").is_err() {
            break;
        }
    }
    drop(rx);
    task.await?;
    Ok(())
}

const WAIT: Duration = Duration::from_secs(5);

async fn subscribe(url: &str, events: &[&str], since: Option<u64>) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect(url).await?;
    for e in events {
        let mut msg = json!({ "event": e });
        if let Some(s) = since {
            msg["since"] = json!(s);
        }
        c.send_json(&msg).await?;
        c.recv_json_where(WAIT, |v| v["type"] == "subscribed").await?;
    }
    Ok(c)
}

async fn post_notify(addr: SocketAddr, event: &str, payload: Value) -> anyhow::Result<String> {
    let body = json!({ "event": event, "payload": payload }).to_string();
    let request = format!(
        "POST /notify HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    println!("POST /notify {body}");
    let resp = harness::http::exchange(addr, request.as_bytes()).await?;
    Ok(format!("{} {}", resp.status, resp.text()))
}

async fn demo() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await?;
    let addr = listener.local_addr()?;
    let push = Push::new(Config::default());
    let token = CancellationToken::new();
    let server = tokio::spawn(push.clone().serve(listener, token.clone()));
    let tap = WireTap::start(addr)?;
    let url = format!("ws://{}/ws", tap.addr());
    println!("server on {addr}; subscribers connect through the wire tap at {}", tap.addr());

    println!("\n== ann subscribes to newMessage, ben to tick, cat to both ==");
    let mut ann = subscribe(&url, &["newMessage"], None).await?;
    let mut ben = subscribe(&url, &["tick"], None).await?;
    let mut cat = subscribe(&url, &["newMessage", "tick"], None).await?;
    println!("subscribers per event: {:?}", push.stats().subscribers);

    println!("\n== a publisher posts; only newMessage subscribers hear it ==");
    println!("-> {}", post_notify(addr, "newMessage", json!("You have a new message!")).await?);
    let first = ann.recv_text(WAIT).await?;
    println!("ann <- {first}");
    println!("cat <- {}", cat.recv_text(WAIT).await?);
    let last_seen: u64 = serde_json::from_str::<Value>(&first)?["id"].as_u64().context("an id")?;

    println!("\n== the timer publishes tick every 200 ms ==");
    let ticker = CancellationToken::new();
    push.spawn_timer("tick", Duration::from_millis(200), ticker.clone());
    println!("ben <- {}", ben.recv_text(WAIT).await?);
    println!("cat <- {}", cat.recv_text(WAIT).await?);
    ticker.cancel();

    println!("\n== ann drops off; two notifications are published while she is away ==");
    drop(ann);
    let before = push.stats().last_id;
    push.publish("newMessage", json!("sent while ann was away (1)"));
    push.publish(
        "newMessage",
        json!({"from": "dora", "text": "long enough that the length needs two more bytes: \
            a payload of 126 bytes or more no longer fits in the 7-bit length field"}),
    );
    println!("ann comes back with {{\"event\":\"newMessage\",\"since\":{last_seen}}}");
    let mut ann = subscribe(&url, &["newMessage"], Some(last_seen)).await?;
    for _ in 0..2 {
        println!("ann <- {}", ann.recv_text(WAIT).await?);
    }
    println!("(ids {} and {}: exactly what she missed, nothing twice)", before + 1, before + 2);

    println!("\n== the notification frame, as it crossed the wire to ann ==");
    let conn = tap.stats().connections as usize - 1;
    let down = tap.bytes(conn, Direction::ToClient);
    let head = down.windows(4).position(|w| w == b"\r\n\r\n").context("a 101 head")? + 4;
    let mut rest = &down[head..];
    // Skip the "subscribed" ack; show the two notifications.
    while let Some((frame, used)) = Frame::parse(rest)? {
        if frame.text().contains("\"notification\"") {
            print!("{}", hexdump(&rest[..used]));
            print!(
                "byte 0 = {:#04x}: FIN=1, opcode 1 (text); byte 1 = {:#04x}: MASK=0, ",
                rest[0], rest[1]
            );
            match rest[1] & 0x7f {
                126 => println!(
                    "length field 126: the real length is the next 2 bytes, {:02x} {:02x} = {}\n",
                    rest[2],
                    rest[3],
                    frame.payload.len()
                ),
                n => println!("length {n} (fits in 7 bits)\n"),
            }
        }
        rest = &rest[used..];
    }

    println!("\n== everyone leaves; their subscriptions go with them ==");
    for c in [ann, ben, cat] {
        c.close().await?;
    }
    harness::eventually(WAIT, "subscriptions to be cleaned up", || {
        push.stats().subscribers.is_empty()
    })
    .await;
    let stats = push.stats();
    println!("connections {}, subscribers {:?}", stats.connections, stats.subscribers);
    token.cancel();
    server.await??;
    Ok(())
}
