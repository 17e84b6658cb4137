//! The command line of lesson 1. With no arguments it runs the demo; see
//! `cargo run -p tcp-echo -- --help`.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::{BlockingServer, TcpClient, WireTap};
use tcp_echo::{Config, DEFAULT_ADDR};

#[derive(Parser)]
#[command(about = "Lesson 1: a blocking TCP echo server and client")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until Ctrl-C. Try it with `nc 127.0.0.1 7001`.
    Serve {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Hang up on a client silent for this many seconds.
        #[arg(long, default_value_t = tcp_echo::IDLE_TIMEOUT.as_secs())]
        idle_secs: u64,
    },
    /// Send MESSAGE and print the echo; with no MESSAGE, echo stdin line by line.
    Client {
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        message: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    harness::init_logging();
    match Cli::parse().command {
        None => demo(),
        Some(Command::Serve { addr, idle_secs }) => {
            let config =
                Config { idle_timeout: Duration::from_secs(idle_secs), ..Config::default() };
            let listener = tcp_echo::listen(addr).with_context(|| format!("binding {addr}"))?;
            // The address really bound: with `--addr 127.0.0.1:0` the kernel
            // picks the port, and the tests read it from this line.
            let local = listener.local_addr()?;
            println!("echo server on {local}, one client at a time; Ctrl-C stops it");
            println!("try: nc {} {}", local.ip(), local.port());
            // Ctrl-C ends the process; the kernel closes the sockets for us.
            tcp_echo::serve(listener, &config, &AtomicBool::new(false))?;
            Ok(())
        }
        Some(Command::Client { addr, message: Some(m) }) => {
            let echoed = tcp_echo::echo(addr, m.as_bytes(), Duration::from_secs(10))
                .with_context(|| format!("talking to {addr}"))?;
            println!("{}", String::from_utf8_lossy(&echoed));
            Ok(())
        }
        Some(Command::Client { addr, message: None }) => interactive(addr),
    }
}

/// Like `nc`: stdin to the server on this thread, the server to stdout on another.
fn interactive(addr: SocketAddr) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    let mut from_server = stream.try_clone()?;
    let printer = thread::spawn(move || io::copy(&mut from_server, &mut io::stdout()));
    let mut to_server = stream;
    for line in io::stdin().lock().lines() {
        to_server.write_all(format!("{}\n", line?).as_bytes())?;
    }
    to_server.shutdown(Shutdown::Write)?;
    printer.join().map_err(|_| anyhow::anyhow!("printer thread panicked"))??;
    Ok(())
}

fn start_server(config: Config) -> anyhow::Result<BlockingServer> {
    let listener = tcp_echo::listen("127.0.0.1:0".parse()?)?;
    Ok(BlockingServer::start_tcp_with("tcp-echo", listener, move |l, stop| {
        tcp_echo::serve(l, &config, &stop)
    })?)
}

fn demo() -> anyhow::Result<()> {
    let server = start_server(Config::default())?;
    // Clients go through the wire tap, so we can show the bytes that crossed.
    let tap = WireTap::start(server.addr())?;
    println!("== 1. one message, then a half-close");
    println!("server on {}, the wire tap in front of it on {}", server.addr(), tap.addr());
    let echoed =
        tcp_echo::echo(tap.addr(), "héllo, wörld 🦀\n".as_bytes(), Duration::from_secs(5))?;
    println!("client got back {:?}", String::from_utf8_lossy(&echoed));
    println!("what crossed the wire (>> to the server, << to the client):");
    print!("{}", tap.dump());

    println!("\n== 2. a stream has no message boundaries");
    let mut c = TcpClient::connect(server.addr())?;
    for piece in ["one ", "two ", "three\n"] {
        c.send(piece.as_bytes())?;
    }
    c.shutdown_write()?;
    let all = c.recv_to_end()?;
    println!(
        "three writes of 4, 4 and 6 bytes; the client read back {} bytes: {:?}",
        all.len(),
        String::from_utf8_lossy(&all)
    );

    println!("\n== 3. one client at a time: the second waits for the first");
    let mut first = TcpClient::connect(server.addr())?;
    first.send(b"first\n")?;
    first.recv_exact(6)?;
    let mut second = TcpClient::connect(server.addr())?;
    println!("second client connected (the kernel finished its handshake) and sent \"second\"");
    second.send(b"second\n")?;
    second.stream().set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut byte = [0u8; 1];
    match second.stream().read(&mut byte) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            println!("after 300 ms the second client has no echo: it waits in the backlog")
        }
        other => println!("unexpected: {other:?}"),
    }
    second.stream().set_read_timeout(Some(harness::IO_TIMEOUT))?;
    let started = Instant::now();
    first.shutdown_write()?;
    first.recv_to_end()?;
    println!("first client leaves...");
    let echo = second.recv_exact(7)?;
    println!(
        "...and the second gets {:?} {:?} later",
        String::from_utf8_lossy(&echo),
        started.elapsed()
    );
    second.shutdown_write()?;
    second.recv_to_end()?;

    drop(tap);
    server.shutdown()?;
    println!("\nserver stopped. Next: `cargo run -p tcp-echo -- serve` and `nc 127.0.0.1 7001`.");
    Ok(())
}
