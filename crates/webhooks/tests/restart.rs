//! The sender killed (SIGKILL, no chance to tidy up) while deliveries are
//! being retried, then started again on the same outbox file: nothing lost,
//! nothing applied twice.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use tokio::net::TcpListener;
use webhooks::{Fault, ReceiverConfig};

/// The lesson's own binary, `serve --quick` on a free port, on `db`.
fn spawn_sender(db: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhooks"))
        .args(["serve", "--quick", "--addr", "127.0.0.1:0", "--max-attempts", "1000"])
        .args(["--disable-after", "1000", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the webhooks binary starts");
    let stdout = child.stdout.take().expect("piped");
    let line = harness::within_blocking(DEADLINE, "the sender's first line", move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reads stdout");
        line
    });
    let addr = line
        .trim()
        .strip_prefix("sender listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}

fn kill(mut child: Child) {
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

#[tokio::test]
async fn a_sender_killed_mid_retry_resumes_from_its_outbox() {
    let scratch = Scratch::new("restart");
    let db = scratch.path("outbox.sqlite");
    let (child, api) = spawn_sender(&db);

    // The receiver's port, closed for now: every attempt is refused.
    let addr = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let (id, secret) = register(api, &format!("http://{addr}/hook")).await;
    let ids = send_events(api, 10).await;
    until(DEADLINE, "every delivery tried and waiting for a retry", || async {
        let v = view(api, id).await;
        v["log"].as_array().map_or(0, Vec::len) >= 10 && v["pending"] == 10
    })
    .await;
    kill(child);

    // The receiver comes up, failing every second request (half of those
    // after storing, so duplicates arrive), and the sender starts again.
    let listener = TcpListener::bind(addr).await.expect("the port is still free");
    let mut config = ReceiverConfig::new(secret);
    config.fault = Fault::OneIn(2);
    let (_srv, receiver) = start_receiver(listener, &scratch.path("inbox.sqlite"), config).await;
    let (child, api) = spawn_sender(&db);
    // Kill it again as soon as something got through, mid-delivery.
    until(DEADLINE, "a first delivery after the restart", || async {
        view(api, id).await["delivered"].as_u64() >= Some(1)
    })
    .await;
    kill(child);

    let (child, api) = spawn_sender(&db);
    until(DEADLINE, "all ten delivered", || async { view(api, id).await["delivered"] == 10 }).await;
    kill(child);
    all_applied_once(&receiver, &ids, DEADLINE).await;
}
