//! What the test files share: a server of each flavour on a free port in this
//! process, clients for it, and the real binary as a child process under a
//! lowered open-file limit, with its stderr collected.

#![allow(dead_code)] // each test file uses a different part of this

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use harness::{BlockingServer, within_blocking};
use threads_vs_epoll::{Config, Flavour, Stats};

// The bench's tools for a server in a child process (see crates/bench/src/measure.rs).
#[path = "../../../bench/src/measure.rs"]
mod measure;
pub use measure::ChildServer;

/// How long one connect, read or write may take in these tests.
pub const IO: Duration = Duration::from_secs(10);

/// Runs `flavour` on `127.0.0.1:0` in this process, on a thread of its own.
pub fn start(flavour: Flavour, config: Config) -> (BlockingServer, Arc<Stats>) {
    let listener = threads_vs_epoll::listen("127.0.0.1:0".parse().expect("literal address"))
        .expect("bind an ephemeral port");
    let stats = Stats::shared();
    let watched = Arc::clone(&stats);
    let server = BlockingServer::start_tcp_with(flavour.name(), listener, move |l, stop| {
        flavour.serve(l, &config, &watched, &stop)
    })
    .expect("start the server");
    (server, stats)
}

/// A client with read and write timeouts, so no test can hang on it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO).expect("connect");
    s.set_read_timeout(Some(IO)).expect("set read timeout");
    s.set_write_timeout(Some(IO)).expect("set write timeout");
    s
}

/// A payload whose every byte depends on its position, so a lost, doubled or
/// reordered chunk shows up as a mismatch.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub fn each_flavour(test: impl Fn(Flavour)) {
    for flavour in Flavour::ALL {
        test(flavour);
    }
}

/// The lesson's binary, `serve --flavour F --addr 127.0.0.1:0` plus `args`,
/// run by bash after the shell line `prelude` (`ulimit -n 64 &&`, say), with
/// its stderr collected as it comes.
#[derive(Debug)]
pub struct LoggedServer {
    server: ChildServer,
    log: Arc<Mutex<String>>,
    reader: thread::JoinHandle<()>,
}

impl LoggedServer {
    pub fn spawn(flavour: Flavour, prelude: &str, args: &str) -> Self {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!(
                "{prelude} exec \"$0\" serve --flavour {} --addr 127.0.0.1:0 {args}",
                flavour.name()
            ))
            .arg(env!("CARGO_BIN_EXE_threads-vs-epoll"))
            .stderr(Stdio::piped());
        let mut server = ChildServer::spawn(cmd, IO).expect("spawn the server");
        let stderr = server.take_stderr().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let into = Arc::clone(&log);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut text = into.lock().expect("stderr lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { server, log, reader }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What it has written on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("stderr lock").clone()
    }

    /// Kills the server and returns all it wrote on stderr.
    pub fn stop(self) -> String {
        drop(self.server); // kills the child, which ends its stderr
        let reader = self.reader;
        within_blocking(Duration::from_secs(60), "the server's stderr to end", move || {
            reader.join().expect("stderr reader")
        });
        self.log.lock().expect("stderr lock").clone()
    }
}
