//! A flood must not become a flood of log lines (an attack once wrote 145 MB of log in
//! 15 s). Each test captures the server thread's log with a subscriber of its
//! own, so tests running in parallel do not see each other's lines.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{BlockingServer, UdpClient, within_blocking};
use udp_echo::{Config, Stats};

const DEADLINE: Duration = Duration::from_secs(30);

/// How many datagrams the flood sends, and how big each is: bounded, and sent
/// in lockstep batches so loopback never drops one and the counts are exact.
const FLOOD: usize = 2_000;
const BATCH: usize = 50;
const PAYLOAD: usize = 100;

/// Log output captured in memory, shared between the server thread that
/// writes it and the test that reads it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
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
fn start_logged(config: Config) -> (BlockingServer, Arc<Stats>, Captured) {
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

/// Sends `FLOOD` datagrams of `PAYLOAD` bytes and checks every echo.
fn flood(server: &BlockingServer) {
    let addr = server.addr();
    within_blocking(DEADLINE, "the flood to be echoed", move || {
        let c = UdpClient::connect(addr).expect("client");
        let payload = [b'f'; PAYLOAD];
        for _ in 0..FLOOD / BATCH {
            for _ in 0..BATCH {
                c.send(&payload).expect("send");
            }
            for _ in 0..BATCH {
                assert_eq!(c.recv(PAYLOAD + 1).expect("echo"), payload);
            }
        }
    });
}

/// The numbers of each `summary: N datagrams echoed (B bytes)` line.
fn summaries(log: &str) -> Vec<(u64, u64)> {
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
fn summarised(log: &str) -> (u64, u64) {
    summaries(log).iter().fold((0, 0), |(n, b), (dn, db)| (n + dn, b + db))
}

#[test]
fn a_flood_is_summarised_not_logged_line_by_line() {
    let (server, stats, log) = start_logged(Config::default());
    flood(&server);
    server.shutdown().expect("the server stops cleanly");
    assert_eq!(stats.echoed.load(Ordering::SeqCst), FLOOD as u64);
    let text = log.text();
    let info_lines = text.lines().filter(|l| l.contains("INFO")).count();
    assert!(
        info_lines <= 5,
        "{FLOOD} datagrams made {info_lines} INFO lines; a handful expected. First lines:\n{}",
        text.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        summarised(&text),
        (FLOOD as u64, (FLOOD * PAYLOAD) as u64),
        "the summary lines should account for every datagram and byte:\n{text}"
    );
}

#[test]
fn the_summary_comes_while_the_server_runs_and_only_after_traffic() {
    let every = Duration::from_millis(20);
    let (server, _, log) = start_logged(Config { summary_every: every, ..Config::default() });
    let c = UdpClient::connect(server.addr()).expect("client");
    for _ in 0..10 {
        c.send(b"tick").expect("send");
        assert_eq!(c.recv(16).expect("echo"), b"tick");
    }
    // No stop needed: the read timeout wakes the server to write the line.
    harness::eventually_blocking(DEADLINE, "a summary of the ten datagrams", || {
        summarised(&log.text()) == (10, 40)
    });
    // Silence can only be seen by waiting: fifteen intervals with no traffic,
    // in which the server wakes up fifteen times and must write nothing.
    std::thread::sleep(every * 15);
    c.send(b"tock").expect("send");
    assert_eq!(c.recv(16).expect("echo"), b"tock");
    harness::eventually_blocking(DEADLINE, "a summary of the last datagram", || {
        summarised(&log.text()) == (11, 44)
    });
    // The first burst may straddle an interval and take two lines, but no
    // line may stand for an interval in which nothing happened.
    let text = log.text();
    let lines = summaries(&text);
    assert!(
        (2..=3).contains(&lines.len()) && lines.iter().all(|&(n, _)| n > 0),
        "one line per burst (or two), none for the quiet intervals:\n{text}"
    );
}
