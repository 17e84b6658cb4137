//! Issue 21: started with `ulimit -n` below `--max-connections`, the servers
//! ran out of descriptors before they reached their cap. Connections past
//! that point waited in the backlog with no answer, since a server that cannot
//! `accept` cannot say "busy" either, while stderr repeated "accept failed:
//! Too many open files" a hundred times a second. These tests run the real
//! binary under a low limit and check that every connection gets an answer,
//! an echo or the busy line, promptly, and that the log stays short.

// `ulimit -n` under bash, and RLIMIT_NOFILE: every Unix, not Windows.
#![cfg(unix)]

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::LoggedServer;
use harness::{eventually_blocking, within_blocking};
use threads_vs_epoll::{BUSY, Flavour};

/// The open-file limit the server runs under: low, so a test reaches it in
/// a hundred connections.
const LIMIT: usize = 64;
/// The cap asked for on the command line, far above what `LIMIT` allows.
const ASKED: usize = 1_000;
/// Connections the test opens and holds: well past `LIMIT`.
const CONNECTIONS: usize = 100;
/// How long one connection may wait for its echo or its busy line. Loopback
/// answers in microseconds; a connection stuck in the backlog never does.
const PROMPT: Duration = Duration::from_secs(5);
/// The whole test, for one flavour.
const DEADLINE: Duration = Duration::from_secs(60);

/// What one connection got back.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Echo,
    Busy,
}

/// Sends one byte and reads what comes back: its echo (the connection is
/// served, and is kept open by the caller) or the busy line and a close.
fn knock(i: usize, stream: &mut TcpStream) -> Answer {
    stream.set_read_timeout(Some(PROMPT)).expect("set read timeout");
    stream.write_all(b"b").expect("send one byte");
    let mut got = Vec::new();
    let mut buf = [0u8; 128];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // The server closed a socket our byte had arrived on, unread: the
            // kernel answers that with a reset, which may overtake the
            // server's FIN. The busy line itself came before it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && got == BUSY => break,
            Err(e) => panic!("connection {i} got no answer within {PROMPT:?} ({e}), after {got:?}"),
        }
        if got == b"b" {
            return Answer::Echo;
        }
    }
    assert_eq!(got, BUSY, "connection {i}: neither an echo nor the busy line");
    Answer::Busy
}

/// `serve --flavour F --max-connections ASKED` under `ulimit -n LIMIT`,
/// after the shell line `prelude`. `ulimit -n` lowers both the soft and the
/// hard limit, so the server's own raise_nofile() cannot undo it.
fn spawn_limited(flavour: Flavour, prelude: &str) -> LoggedServer {
    LoggedServer::spawn(
        flavour,
        &format!("{prelude} ulimit -n {LIMIT} &&"),
        &format!("--max-connections {ASKED}"),
    )
}

fn past_the_descriptor_limit_clients_are_told_busy(flavour: Flavour) {
    let server = spawn_limited(flavour, "");
    let addr = server.addr();
    let answers = within_blocking(DEADLINE, "every connection to be answered", move || {
        let mut held = Vec::new();
        let mut answers = Vec::new();
        for i in 0..CONNECTIONS {
            let mut s = TcpStream::connect_timeout(&addr, PROMPT).expect("connect");
            let answer = knock(i, &mut s);
            if answer == Answer::Echo {
                held.push(s);
            }
            answers.push(answer);
        }
        answers
    });
    let log = server.stop();

    let served = answers.iter().take_while(|a| **a == Answer::Echo).count();
    assert!(served > 0, "{flavour:?}: no connection was served\n{log}");
    assert!(served < LIMIT, "{flavour:?}: {served} served under a limit of {LIMIT}");
    assert!(
        answers[served..].iter().all(|a| *a == Answer::Busy),
        "{flavour:?}: past the first {served} served, every connection is told busy: {answers:?}"
    );
    assert!(
        log.lines().any(|l| l.contains("open-file limit") && l.contains(&served.to_string())),
        "{flavour:?}: stderr should say the cap was lowered to {served}:\n{log}"
    );
    let failures = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(failures <= 2, "{flavour:?}: {failures} accept-failure lines:\n{log}");
}

#[test]
fn threaded_under_a_low_descriptor_limit_says_busy() {
    past_the_descriptor_limit_clients_are_told_busy(Flavour::Threaded);
}

#[test]
fn evented_under_a_low_descriptor_limit_says_busy() {
    past_the_descriptor_limit_clients_are_told_busy(Flavour::Evented);
}

#[test]
fn tokio_under_a_low_descriptor_limit_says_busy() {
    past_the_descriptor_limit_clients_are_told_busy(Flavour::Tokio);
}

/// Descriptors the server inherits already open, from bash: more than
/// `RESERVED_FDS`, the way a library that opens files of its own could use
/// them, so the server runs out before its lowered cap and `accept` fails.
const HELD: &str = "for fd in {10..39}; do eval \"exec $fd</dev/null\"; done;";
/// How long the test watches the log of a server whose `accept` keeps
/// failing. Only waiting shows how often it writes; one second was a hundred
/// lines before the fix, and must be one line now.
const WATCH: Duration = Duration::from_secs(1);

fn out_of_descriptors_anyway_it_logs_one_line_per_interval(flavour: Flavour) {
    assert!(WATCH < accept_policy::LOG_EVERY, "the watch must fit in one interval");
    let server = spawn_limited(flavour, HELD);
    // Connects succeed (the kernel completes handshakes into the backlog);
    // past about 30, accept fails for want of descriptors.
    let _held: Vec<TcpStream> = (0..LIMIT)
        .map(|_| TcpStream::connect_timeout(&server.addr(), PROMPT).expect("connect"))
        .collect();
    eventually_blocking(DEADLINE, "the first accept failure in the log", || {
        server.log().contains("accept failed")
    });
    thread::sleep(WATCH);
    let log = server.stop();
    let failures = log.lines().filter(|l| l.contains("accept failed")).count();
    assert_eq!(failures, 1, "{flavour:?}: {failures} accept-failure lines in {WATCH:?}:\n{log}");
}

#[test]
fn threaded_out_of_descriptors_logs_one_line_per_interval() {
    out_of_descriptors_anyway_it_logs_one_line_per_interval(Flavour::Threaded);
}

#[test]
fn evented_out_of_descriptors_logs_one_line_per_interval() {
    out_of_descriptors_anyway_it_logs_one_line_per_interval(Flavour::Evented);
}

#[test]
fn tokio_out_of_descriptors_logs_one_line_per_interval() {
    out_of_descriptors_anyway_it_logs_one_line_per_interval(Flavour::Tokio);
}
