//! The server's memory during the attacks of tests/abuse.rs, measured: this
//! file holds one test, so the process's resident memory is this server's
//! (and the attackers' sockets', which hold little). Linux only: it reads
//! /proc/self/status.

#![cfg(target_os = "linux")]

mod common;

use common::Server;
use http3::{Config, Stats};
use tokio::net::UdpSocket;

/// How much the process may grow over an attack. What the limits let an
/// attacker park is small (16 unproven handshakes of a few KiB each, quinn's
/// queue of 256 incoming connections, nothing for garbage); 16 MiB leaves
/// room for the allocator's habits and still catches a server that keeps
/// state per datagram or per source.
const BUDGET: u64 = 16 << 20;

/// Source ports the attacks send from.
const SOURCES: usize = 64;
/// Rounds of garbage from every source: 64 x 7 x 20 = 8,960 datagrams.
const GARBAGE_ROUNDS: usize = 20;
/// Real Initials in the flood, each a new connection attempt.
const INITIALS: usize = 256;

/// Resident memory now (`VmRSS`), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}

/// A long header with a version nobody speaks, padded to 1,200 bytes: the
/// server answers it with a Version Negotiation packet and keeps nothing.
fn bogus() -> Vec<u8> {
    let mut d = vec![0xc0, 0x0a, 0x1a, 0x2a, 0x3a, 8];
    d.resize(1200, 0);
    d
}

/// A good client gets `/resource/1`, then closes its connection properly
/// and waits until the close is sent, so that the server forgets it at once
/// rather than after the idle timeout (the good clients are not the attack).
async fn served_and_closed(server: &Server) {
    let check = async {
        let endpoint = http3::client::endpoint(std::sync::Arc::clone(&server.roots))?;
        let h3 = http3::client::connect(&endpoint, server.addr).await?;
        let a = h3.get("/resource/1", 1024).await?;
        h3.close();
        endpoint.wait_idle().await;
        anyhow::Ok(a.status)
    };
    let status = harness::within(common::STEP, "a good client's answer", check).await;
    assert_eq!(status.expect("served"), 200);
}

async fn sockets(n: usize) -> Vec<UdpSocket> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    }
    out
}

#[tokio::test]
async fn memory_stays_bounded_under_garbage_and_an_initial_flood() {
    let server = Server::start(Config::default()).await;
    server.still_answers().await;
    // The flood's packets are made before the baseline: making them is the
    // attacker's memory, not the server's.
    let initials = common::initials(std::sync::Arc::clone(&server.roots), INITIALS).await;
    let from = sockets(SOURCES).await;
    let baseline = rss();
    let mut report = Vec::new();
    let mut check = |what: &str| {
        let grown = rss().saturating_sub(baseline);
        report.push(format!("{what}: +{} KiB", grown / 1024));
        assert!(grown < BUDGET, "{what}: the process grew by {grown} bytes; {report:?}");
    };

    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for _ in 0..GARBAGE_ROUNDS {
        for s in &from {
            let mut short = vec![0x40];
            short.extend(noise(40));
            for d in [vec![], vec![0xc0], noise(30), noise(1200), noise(1500), bogus(), short] {
                s.send_to(&d, server.addr).await.expect("send");
            }
        }
        // Let the server read them, so what is measured is what it kept:
        // it reads its one socket in order, so once it has served a good
        // client that came after them, it has read them all.
        served_and_closed(&server).await;
    }
    server.still_answers().await;
    check(&format!("{} garbage datagrams", GARBAGE_ROUNDS * SOURCES * 7));

    for (i, d) in initials.iter().enumerate() {
        from[i % SOURCES].send_to(d, server.addr).await.expect("send");
    }
    server.still_answers().await;
    let (handshakes, retries) =
        (Stats::get(&server.stats.handshakes), Stats::get(&server.stats.retries));
    check(&format!(
        "{INITIALS} Initials ({handshakes} handshakes started in all, {retries} Retries)"
    ));
    assert!(retries > 0, "the flood was answered with Retries: {:?}", server.stats);
    println!("{}", report.join("; "));
}
