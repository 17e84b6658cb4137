//! What the test files share: the server on a free port, plain or with its
//! log captured, and the summary lines read back from that log.

#![allow(dead_code)] // each test file uses a different part of this

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use harness::BlockingServer;
use udp_echo::{Config, Stats};

/// Starts the server on `127.0.0.1:0` with its own counters.
pub fn start(config: Config) -> (BlockingServer, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    let server = BlockingServer::start_udp("udp-echo", move |socket, stop| {
        udp_echo::serve(&socket, &config, &stop, &s)
    })
    .expect("start the server");
    (server, stats)
}

/// Log output captured in memory, shared between the server thread that
/// writes it and the test that reads it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("log buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts the server with its log, at INFO and up (what `serve` prints by
/// default), going into the returned buffer.
pub fn start_logged(config: Config) -> (BlockingServer, Arc<Stats>, Captured) {
    let log = Captured::default();
    let writer = log.clone();
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    let server = BlockingServer::start_udp("udp-echo logged", move |socket, stop| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        // Scoped to this (the server's) thread only.
        tracing::subscriber::with_default(subscriber, || {
            udp_echo::serve(&socket, &config, &stop, &s)
        })
    })
    .expect("start the server");
    (server, stats, log)
}

/// The numbers of each `summary: N datagrams echoed (B bytes)` line.
pub fn summaries(log: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("summary: ").nth(1) else { continue };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [n, "datagrams", "echoed", bytes, ..] = words[..] {
            let bytes = bytes.trim_start_matches('(');
            out.push((n.parse().expect("a count"), bytes.parse().expect("a byte count")));
        }
    }
    out
}

/// The summary lines added up.
pub fn summarised(log: &str) -> (u64, u64) {
    summaries(log).iter().fold((0, 0), |(n, b), (dn, db)| (n + dn, b + db))
}
