//! What an idle, completed connection costs until the idle timeout ends it:
//! the worst case of an attacker who completes handshakes and goes quiet is
//! this times [`http3::limits::MAX_CONNECTIONS`]. One test, so the process's
//! resident memory is this server's and its clients'. Linux only: it reads
//! /proc/self/status.

#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;

use common::{STEP, Server};
use http3::Config;

/// Idle connections opened, each after one request.
const IDLE: usize = 64;

/// What one idle connection may cost, client and server side together
/// (both are in this process, so this is an upper bound on the server's
/// share). Measured: 87 KiB in three runs. 256 KiB is about three times
/// that, so allocator habits do not make the test flaky, and it catches a
/// setting that makes quinn or h3 hold buffers per connection (a window or
/// datagram buffer that is allocated rather than merely allowed).
const PER_CONNECTION: u64 = 256 << 10;

async fn served(endpoint: &quinn::Endpoint, server: &Server) -> http3::client::H3 {
    let check = async {
        let h3 = http3::client::connect(endpoint, server.addr).await?;
        let a = h3.get("/resource/1", 1024).await?;
        anyhow::Ok((h3, a.status))
    };
    let (h3, status) =
        harness::within(STEP, "a connection and one answer", check).await.expect("served");
    assert_eq!(status, 200);
    h3
}

#[tokio::test]
async fn an_idle_connection_costs_less_than_a_quarter_mebibyte() {
    let server = Server::start(Config::default()).await;
    // One client endpoint for every connection: an endpoint has a receive
    // buffer of its own (quinn's 32 datagrams of up to 64 KiB), which is the
    // client's cost, not the connection's. Measured separately: 267 KiB per
    // connection when each has its own endpoint.
    let endpoint = http3::client::endpoint(Arc::clone(&server.roots)).expect("client endpoint");
    let warm = served(&endpoint, &server).await;
    let baseline = harness::resident_bytes();
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(served(&endpoint, &server).await);
    }
    let each = harness::resident_bytes().saturating_sub(baseline) / IDLE as u64;
    println!("{IDLE} idle connections: {} KiB each, client and server side", each / 1024);
    assert!(each < PER_CONNECTION, "an idle connection costs {each} bytes");
    assert_eq!(
        http3::Stats::get(&server.stats.connections),
        IDLE as u64 + 1,
        "every connection completed its handshake"
    );
    drop((warm, idle));
}
