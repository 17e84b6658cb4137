//! An independent verifier: the Standard Webhooks specification's Python
//! library, in a receiver of a few lines (tests/py/verify_hook.py), accepts
//! what our sender delivers. Ignored by default, since it needs
//! `pip install standardwebhooks==1.1.0`; .ci/run installs it and runs it.
//! Without the library this test fails, it does not skip.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use tokio::net::TcpListener;
use webhooks::SenderConfig;

// Two threads: the wait for Python's line blocks one, the sender runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 and `pip install standardwebhooks==1.1.0` (.ci/run installs it)"]
async fn the_spec_python_library_accepts_our_delivery() {
    let scratch = Scratch::new("python");
    // Python takes a moment to start: retry for as long as the test waits.
    let config = SenderConfig { max_attempts: 1000, ..SenderConfig::quick() };
    let sender = start_sender(&scratch.path("outbox.sqlite"), config).await;
    let port =
        TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let (id, secret) = register(sender.addr(), &format!("http://127.0.0.1:{port}/hook")).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/verify_hook.py");
    let python = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(secret.to_whsec())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let mut python = KillOnDrop(python);
    // Sent before or after Python listens: until it does, attempts are
    // refused and retried.
    let ids = send_events(sender.addr(), 1).await;
    let stdout = python.0.stdout.take().expect("piped");
    let line = harness::within_blocking(DEADLINE, "the Python receiver's verdict", move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reads stdout");
        line
    });
    let _ = python.0.wait();
    assert!(line.starts_with(&format!("verified by standardwebhooks: {}", ids[0])), "{line:?}");
    until(DEADLINE, "the sender to record the 204", || async {
        view(sender.addr(), id).await["delivered"] == 1
    })
    .await;
}

/// Ends the Python receiver if the test fails before it answered.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
