//! The server's memory during each attack, measured: this file holds one
//! test, so the process's resident memory is this server's (and its raw
//! clients', which hold little). Linux only: it reads /proc/self/status.

#![cfg(target_os = "linux")]

mod common;

use common::{Server, rapid_reset_flood};
use http2::Config;
use http2::client::{self, Windows};

/// How much the process may grow over an attack. The windows and buffers
/// the limits allow are well under a megabyte per connection; 16 MiB leaves
/// room for the allocator's habits and still catches a server that buffers
/// what it is sent (or what it was asked for: 400 MB below).
const BUDGET: u64 = 16 << 20;

#[tokio::test]
async fn memory_stays_bounded_under_each_attack() {
    let server = Server::start(Config::default()).await;
    server.still_answers().await;
    let baseline = harness::resident_bytes();
    let mut report = Vec::new();
    let mut check = |what: &str| {
        let grown = harness::resident_bytes().saturating_sub(baseline);
        report.push(format!("{what}: +{} KiB", grown / 1024));
        assert!(grown < BUDGET, "{what}: the process grew by {grown} bytes; {report:?}");
    };

    let (goaway, _) = rapid_reset_flood(server.addr(), 10_000).await;
    assert!(goaway.is_some(), "rapid reset was stopped");
    server.still_answers().await;
    check("10,000 rapid resets");

    let goaway = common::continuation_flood(server.addr(), 1_000).await;
    assert!(goaway.is_some(), "the CONTINUATION flood was stopped");
    server.still_answers().await;
    check("1,000 CONTINUATION frames");

    // Four streams of 100 MB each that are never read.
    let h2 = client::connect(server.addr(), Windows::default()).await.expect("connect");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(h2.send_get("/large?kb=100000").await.expect("send"));
    }
    for _ in 0..5 {
        server.still_answers().await;
    }
    check("400 MB asked for and never read");
    drop(held);
    println!("{}", report.join("; "));
}
