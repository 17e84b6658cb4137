//! Out of file descriptors, every `accept` fails at once with EMFILE until a
//! descriptor is freed. The server must pause between attempts, keep running,
//! and say so in one log line per interval, not one per attempt: a loop that
//! retries every 10 ms and logs each failure writes a hundred lines a second.
//!
//! The server runs as a child process under a low `ulimit -n`, holding open
//! every descriptor but one, so the listener takes the last and `accept`
//! finds none left.

// `ulimit -n` under bash: every Unix, not Windows.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use harness::{eventually_blocking, within_blocking};

/// The open-file limit the server runs under.
const LIMIT: usize = 16;
/// Descriptors 4 to 15 opened by the shell and inherited by the server: with
/// stdin, stdout and stderr that leaves only descriptor 3, for the listener.
const HOLD_ALL_BUT_ONE: &str = "for fd in {4..15}; do eval \"exec $fd</dev/null\"; done;";
/// How long the test watches the log of a server whose `accept` keeps
/// failing. Only waiting shows how often it writes: a hundred lines in a
/// second before the accept policy, one now.
const WATCH: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(30);

/// The server process; killed when dropped, so a failing test leaves nothing.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn out_of_descriptors_the_server_pauses_keeps_running_and_logs_one_line_per_interval() {
    assert!(WATCH < accept_policy::LOG_EVERY, "the watch must fit in one interval");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n {LIMIT} && {HOLD_ALL_BUT_ONE} exec \"$0\" serve --addr 127.0.0.1:0"
        ))
        .arg(env!("CARGO_BIN_EXE_tcp-echo"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server under bash");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut server = Server(child);

    // "echo server on 127.0.0.1:PORT, one client at a time; ..."
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        // Keep reading: a closed pipe would make the server's next println fail.
        for _ in lines {}
    });
    let first = within_blocking(DEADLINE, "the server's first line", move || {
        rx.recv().ok().flatten().and_then(Result::ok).unwrap_or_default()
    });
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    let log = Arc::new(Mutex::new(String::new()));
    let into = Arc::clone(&log);
    thread::spawn(move || {
        let mut text = String::new();
        let mut stderr = BufReader::new(stderr);
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            *into.lock().expect("log lock") = text.clone();
        }
    });
    let log_text = || log.lock().expect("log lock").clone();

    // A client the kernel queues and the server cannot accept.
    let _queued = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
    eventually_blocking(DEADLINE, "the first accept failure in the log", || {
        log_text().contains("accept failed")
    });
    thread::sleep(WATCH);

    let still_running = server.0.try_wait().expect("try_wait").is_none();
    let text = log_text();
    assert!(still_running, "out of descriptors is no reason to stop:\n{text}");
    assert!(text.contains("Too many open files"), "{text}");
    let lines = text.lines().filter(|l| l.contains("accept failed")).count();
    assert_eq!(lines, 1, "{lines} accept-failure lines in {WATCH:?}:\n{text}");
}
