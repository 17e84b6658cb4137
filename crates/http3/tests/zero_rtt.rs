//! 0-RTT: a client that has talked to the server before sends its first
//! request in its first flight, and has the answer one round trip later.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{STEP, Server};
use harness::within;
use http3::relay::Relay;
use http3::{Config, Stats, client};

/// Each way through the relay: a 50 ms round trip, long enough that the
/// round trips are counted by the clock, not lost in loopback's noise.
const ONE_WAY: Duration = Duration::from_millis(25);

#[tokio::test]
async fn a_resumed_client_has_its_get_answered_one_round_trip_after_it_starts() {
    let server = Server::start(Config::default()).await;
    let relay =
        Relay::start_with(server.addr, Box::new(|_, _| true), ONE_WAY).await.expect("relay");
    let endpoint = client::endpoint(Arc::clone(&server.roots)).expect("client endpoint");
    let rtt = 2 * ONE_WAY;

    // First visit: no ticket, a full 1-RTT handshake, then the request.
    let t = Instant::now();
    let (first, early) =
        within(STEP, "first handshake", client::connect_0rtt(&endpoint, relay.addr()))
            .await
            .expect("connect");
    assert!(early.is_none(), "no ticket yet, so nothing can go in 0-RTT");
    let a = within(STEP, "first GET", first.get("/resource/1", 1024)).await.expect("answer");
    let full = t.elapsed();
    assert_eq!(a.status, 200);
    first.close();

    // Second visit: the ticket the server sent after the first handshake
    // lets the GET ride in the first flight, beside the ClientHello.
    let t = Instant::now();
    let (second, early) =
        within(STEP, "second connect", client::connect_0rtt(&endpoint, relay.addr()))
            .await
            .expect("connect");
    let accepted = early.expect("a ticket from the first visit, so 0-RTT was attempted");
    let b = within(STEP, "GET in 0-RTT", second.get("/resource/1", 1024)).await.expect("answer");
    let resumed = t.elapsed();
    assert_eq!(b.status, 200);
    assert!(within(STEP, "the handshake", accepted).await, "the server accepted the 0-RTT data");
    // The server read it before the handshake was complete: early data.
    assert_eq!(Stats::get(&server.stats.early_requests), 1);
    assert_eq!(Stats::get(&server.stats.early_held), 0, "a GET is not held");
    eprintln!("first answer: fresh {full:?}, resumed with 0-RTT {resumed:?} (RTT {rtt:?})");
    assert!(full >= 2 * rtt, "a fresh connection costs two round trips: {full:?}");
    assert!(resumed < rtt + rtt / 2, "0-RTT costs one round trip: {resumed:?}");
    second.close();
}
