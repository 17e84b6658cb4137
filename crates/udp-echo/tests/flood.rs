//! A flood must not become a flood of log lines (chapter 2 says how much log
//! one wrote before). Each test captures the server thread's log with a
//! subscriber of its own, so tests running in parallel do not see each
//! other's lines.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{start_logged, summaries, summarised};
use harness::{BlockingServer, UdpClient, within_blocking};
use udp_echo::Config;

const DEADLINE: Duration = Duration::from_secs(30);

/// How many datagrams the flood sends, and how big each is: bounded, and sent
/// in lockstep batches so loopback never drops one and the counts are exact.
const FLOOD: usize = 2_000;
const BATCH: usize = 50;
const PAYLOAD: usize = 100;

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
