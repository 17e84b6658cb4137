//! What one idle chat connection costs the server on the heap (chapter 8,
//! "What a connection costs"). One test in its own file, because it counts
//! every allocation of the process: a test running beside it would blur the
//! figure.

mod common;

use std::time::Duration;

use common::heap::{Counting, idle_clients, in_use};
use harness::eventually;

#[global_allocator]
static HEAP: Counting = Counting;

/// Clients in the measurement: enough that what the server allocates once
/// (the listener, the hub's first buckets) is a small share of the figure.
const CLIENTS: usize = 300;

/// What one joined, idle connection may cost on the heap. Chapter 8's
/// item-by-item account comes to about 5.5 KiB. It was 136 KiB with
/// tungstenite's default read buffer, 11.5 KiB while each queue was a tokio
/// `mpsc` channel (32 slots allocated up front), and 7.7 KiB with a 4 KiB
/// read buffer: over Node's `ws`, whose idle connection grows its server by
/// 6.7 to 6.8 KiB of RSS in `bench ws-c10k`. None of those can come back
/// unnoticed; a dependency may still grow a little.
const BUDGET_BYTES: isize = 6_656;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_the_server_a_few_kib_of_heap() {
    let (server, chat) = common::start(common::quick()).await;
    let addr = server.addr();
    let before = in_use();
    let clients = tokio::task::spawn_blocking(move || {
        idle_clients(addr, CLIENTS, |i| format!(r#"{{"type":"username","data":"c{i}"}}"#))
    })
    .await
    .expect("the clients connect");
    let wait = Duration::from_secs(20);
    eventually(wait, "every client to join", || chat.stats().named == CLIENTS).await;
    // Every join notice has left the queues (for the kernel's buffers).
    eventually(wait, "the queues to drain", || chat.stats().queued == 0).await;
    let per_connection = (in_use() - before) / CLIENTS as isize;
    // What the chapter quotes (`cargo test -p websocket-chat --test memory -- --nocapture`).
    eprintln!("heap per idle chat connection: {per_connection} bytes ({CLIENTS} clients)");
    assert!(
        per_connection <= BUDGET_BYTES,
        "an idle connection holds {per_connection} bytes of heap, over {BUDGET_BYTES}"
    );
    drop(clients);
    eventually(wait, "the connections to end", || chat.stats().connections == 0).await;
    server.shutdown().await.expect("clean shutdown");
}
