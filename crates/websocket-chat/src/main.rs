//! The command line of lesson 8. No arguments runs the demo; see `--help`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use harness::ws::{Frame, WsClient, opcode};
use harness::{Direction, WireTap, hexdump};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use websocket_chat::client::{self, Backoff};
use websocket_chat::origin::AllowOrigins;
use websocket_chat::{Chat, Config, DEFAULT_ADDR};

#[derive(Parser)]
#[command(about = "Lesson 8: WebSocket chat with rooms, heartbeats and bounded queues")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until Ctrl-C (page at http://ADDR/, WebSocket at ws://ADDR/ws or ws://ADDR/).
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        #[command(flatten)]
        allowed: AllowOrigins,
        /// Serve wss:// (and the page over https://) with a certificate from
        /// lesson 13's throwaway CA, whose certificate goes to --ca-file.
        #[arg(long)]
        tls: bool,
        /// Where --tls writes the CA certificate (public) for curl --cacert.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("chat-tls-ca.pem"))]
        ca_file: PathBuf,
    },
    /// The terminal client: type lines to chat; /join ROOM, /leave, /who.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Your username.
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    harness::init_logging_at("warn");
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve { addr, allowed, tls: false, .. }) => {
            serve(addr, allowed.origins).await
        }
        Some(Command::Serve { addr, allowed, tls: true, ca_file }) => {
            serve_tls(addr, allowed.origins, ca_file).await
        }
        Some(Command::Client { addr, name }) => run_client(addr, name).await,
    }
}

async fn serve(addr: SocketAddr, allowed_origins: Vec<String>) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    println!("chat on ws://{addr}/ws (or ws://{addr}/), page at http://{addr}/ ; Ctrl-C to stop");
    let token = harness::ctrl_c_token();
    let said = token.clone();
    tokio::spawn(async move {
        said.cancelled().await;
        println!("\nshutting down: every open connection gets close 1001");
    });
    Chat::new(Config { allowed_origins, ..Config::default() }).serve(listener, token).await?;
    Ok(())
}

/// `serve --tls`: the same chat behind `http_serve`'s TLS (lesson 13).
#[cfg(feature = "tls")]
async fn serve_tls(
    addr: SocketAddr,
    allowed_origins: Vec<String>,
    ca_file: PathBuf,
) -> anyhow::Result<()> {
    let tls = http_serve::throwaway_tls(&ca_file).map_err(|e| anyhow::anyhow!(e))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let port = listener.local_addr()?.port();
    println!(
        "chat on wss://localhost:{port}/ws, page at https://localhost:{port}/ ; Ctrl-C to stop"
    );
    println!("CA certificate written to {}", ca_file.display());
    println!("try: curl --cacert {} https://localhost:{port}/", ca_file.display());
    let chat = Chat::new(Config { allowed_origins, ..Config::default() });
    let config = http_serve::ServeConfig { tls: Some(tls), ..websocket_chat::conn::serve_config() };
    chat.serve_with(listener, harness::ctrl_c_token(), config).await?;
    Ok(())
}

/// Built without the `tls` feature (on by default): say so.
#[cfg(not(feature = "tls"))]
async fn serve_tls(_: SocketAddr, _: Vec<String>, _: PathBuf) -> anyhow::Result<()> {
    anyhow::bail!("serve --tls needs the `tls` feature, which this build left out")
}

async fn run_client(addr: SocketAddr, name: String) -> anyhow::Result<()> {
    let (line_tx, line_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    // stdin is read on its own task; when it ends (Ctrl-D) the channel
    // closes and the client says goodbye with a normal close.
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    let stop = harness::ctrl_c_token();
    let printer = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            // A closed stdout (`| head`) ends the printing, not in a panic.
            if writeln!(std::io::stdout(), "{line}").is_err() {
                break;
            }
        }
    });
    let url = format!("ws://{addr}/ws");
    client::run(&url, &name, line_rx, out_tx, Backoff::default(), stop).await;
    let _ = printer.await;
    Ok(())
}

const WAIT: Duration = Duration::from_secs(5);

/// Start a server, put the wire tap in front, and let three people chat.
async fn demo() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await?;
    let server_addr = listener.local_addr()?;
    let chat = Chat::new(Config::default());
    let token = CancellationToken::new();
    let server = tokio::spawn(chat.clone().serve(listener, token.clone()));
    let tap = WireTap::start(server_addr)?;
    let url = format!("ws://{}/ws", tap.addr());
    println!("server on {server_addr}; clients connect through the wire tap at {}", tap.addr());

    println!("\n== alice connects and says her name ==");
    let mut alice = WsClient::connect(&url).await?;
    alice.send_json(&json!({"type": "username", "data": "alice"})).await?;
    println!("alice <- {}", alice.recv_text(WAIT).await?);

    println!("\n== bob joins; both see each other's messages ==");
    let mut bob = WsClient::connect(&url).await?;
    bob.send_json(&json!({"type": "username", "data": "bob"})).await?;
    println!("bob   <- {}", bob.recv_text(WAIT).await?);
    println!("alice <- {}", alice.recv_text(WAIT).await?);
    alice.send_json(&json!({"type": "message", "data": "hi bob"})).await?;
    println!("alice <- {}", alice.recv_text(WAIT).await?);
    println!("bob   <- {}", bob.recv_text(WAIT).await?);

    println!("\n== carol tries a taken name, then a free one, then moves to room rust ==");
    let mut carol = WsClient::connect(&url).await?;
    carol.send_json(&json!({"type": "username", "data": "Bob"})).await?;
    println!("carol <- {}", carol.recv_text(WAIT).await?);
    carol.send_json(&json!({"type": "username", "data": "carol"})).await?;
    println!("carol <- {}", carol.recv_text(WAIT).await?);
    carol.send_json(&json!({"type": "join", "data": "rust"})).await?;
    println!("carol <- {}", carol.recv_text(WAIT).await?);
    bob.send_json(&json!({"type": "who"})).await?;
    // bob sees carol join and leave the lobby first, then the answer.
    for _ in 0..3 {
        println!("bob   <- {}", bob.recv_text(WAIT).await?);
    }
    carol.send_json(&json!({"type": "message", "data": "anyone here?"})).await?;
    println!(
        "carol <- {}   (alice and bob are in the lobby: they get nothing)",
        carol.recv_text(WAIT).await?
    );
    carol.send_text("{\"type\":\"dance\"}").await?;
    println!("carol <- {}", carol.recv_text(WAIT).await?);

    print_frames(&tap)?;

    println!("\n== the server shuts down: every open connection gets close 1001 ==");
    token.cancel();
    for (who, c) in [("alice", &mut alice), ("bob", &mut bob), ("carol", &mut carol)] {
        // recv_close also answers the close frame, which completes the
        // closing handshake and lets the server finish at once.
        let closed = c.recv_close(WAIT).await?;
        println!("{who:5} <- close {:?} {:?}", closed.code, closed.reason);
    }
    server.await??;
    // The tap forwards the close frame before the connection ends; look for
    // it at the end of what went to alice.
    let down = tap.bytes(0, Direction::ToClient);
    let mut rest = &down[down.windows(4).position(|w| w == b"\r\n\r\n").context("head")? + 4..];
    while let Some((frame, used)) = Frame::parse(rest)? {
        if frame.opcode == opcode::CLOSE {
            println!("\n== the close frame alice got: 2-byte code, then the reason ==");
            explain(rest)?;
        }
        rest = &rest[used..];
    }
    let stats = tap.stats();
    println!(
        "\nthe tap saw {} connections, {} bytes to the server, {} bytes back",
        stats.connections, stats.to_server, stats.to_client
    );
    Ok(())
}

/// The handshake and the first frames each way on alice's connection, with
/// every header field of the frame spelled out.
fn print_frames(tap: &WireTap) -> anyhow::Result<()> {
    let up = tap.bytes(0, Direction::ToServer);
    let down = tap.bytes(0, Direction::ToClient);
    let split = |bytes: &[u8]| -> anyhow::Result<usize> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").context("an HTTP head")?;
        Ok(end + 4)
    };
    let (up_head, down_head) = (split(&up)?, split(&down)?);
    println!("\n== alice's handshake, as it crossed the wire ==");
    print!("{}", String::from_utf8_lossy(&up[..up_head]));
    print!("{}", String::from_utf8_lossy(&down[..down_head]));

    println!("== alice's first frame to the server (clients must mask) ==");
    explain(&up[up_head..])?;
    println!("\n== the server's first frame to alice (servers must not mask) ==");
    explain(&down[down_head..])?;
    Ok(())
}

fn explain(bytes: &[u8]) -> anyhow::Result<()> {
    let (frame, used) = Frame::parse(bytes)?.context("a whole frame")?;
    print!("{}", hexdump(&bytes[..used]));
    let kind = match frame.opcode {
        opcode::TEXT => "text",
        opcode::BINARY => "binary",
        opcode::CLOSE => "close",
        opcode::PING => "ping",
        opcode::PONG => "pong",
        _ => "other",
    };
    println!(
        "byte 0 = {:#04x}: FIN={} opcode={} ({kind})",
        bytes[0],
        u8::from(frame.fin),
        frame.opcode
    );
    println!(
        "byte 1 = {:#04x}: MASK={} payload length={}",
        bytes[1],
        u8::from(frame.mask.is_some()),
        frame.payload.len()
    );
    if let Some(key) = frame.mask {
        println!("masking key = {:02x?}; payload XOR key[i % 4] gives:", key);
    }
    match frame.close_code() {
        Some(code) => println!(
            "payload = {:02x} {:02x} (code {code}) + {:?}",
            frame.payload[0],
            frame.payload[1],
            frame.close_reason()
        ),
        None => println!("payload = {}", frame.text()),
    }
    Ok(())
}
