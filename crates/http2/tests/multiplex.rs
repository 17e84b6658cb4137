//! Many streams on one connection: a slow one holds nobody up (HTTP/1.1
//! pipelining does), and flow control keeps a stalled reader from stalling
//! the others or filling the server's memory.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{STEP, Server};
use http2::client::{self, Windows};
use http2::show::Http1Reader;
use http2::{Config, Stats};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_slow_stream_does_not_hold_the_others_on_one_connection() {
    let server = Server::start(Config::default()).await;
    let h2 = Arc::new(server.h2().await);
    let slow = {
        let h2 = Arc::clone(&h2);
        tokio::spawn(async move { h2.get("/slow?ms=1500", 1024).await })
    };
    let start = Instant::now();
    let quick = async {
        for i in 0..10 {
            let a = h2.get(&format!("/resource/{i}"), 1024).await.expect("quick");
            assert_eq!(a.status, 200);
        }
    };
    harness::within(Duration::from_secs(1), "ten quick answers beside a slow one", quick).await;
    assert!(!slow.is_finished(), "the slow answer came first after {:?}", start.elapsed());
    let a = harness::within(STEP, "the slow answer", slow).await.expect("task").expect("slow");
    assert_eq!(a.status, 200);
    assert_eq!(Stats::get(&server.stats.h2_connections), 1, "all on one connection");
}

#[tokio::test]
async fn http1_pipelining_answers_in_order_so_the_quick_one_waits() {
    // The contrast: the same server, HTTP/1.1, both requests in one write.
    let server = Server::start(Config::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    let both =
        [client::http1_request("x", "/slow?ms=300"), client::http1_request("x", "/resource/1")];
    let start = Instant::now();
    tcp.write_all(both.concat().as_bytes()).await.expect("send");
    let mut reader = Http1Reader::default();
    harness::within(STEP, "first answer", reader.next_response(&mut tcp)).await.expect("slow");
    harness::within(STEP, "second answer", reader.next_response(&mut tcp)).await.expect("quick");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "the quick answer waited for the slow one"
    );
    assert_eq!(Stats::get(&server.stats.h1_connections), 1);
}

#[tokio::test]
async fn a_stream_nobody_reads_does_not_stop_the_others() {
    let server = Server::start(Config::default()).await;
    // The default client windows: 64 KiB a stream, 1 MiB the connection.
    let h2 = server.h2().await;
    let mut send = h2.send.clone().ready().await.expect("ready");
    // Open a 10 MB download and never read a byte of it (but keep it open).
    let (stalled, _) = send.send_request(h2.request("/large?kb=10000"), true).expect("send");
    let stalled = harness::within(STEP, "the stalled stream's head", stalled).await.expect("head");
    let answers = async {
        for _ in 0..3 {
            assert_eq!(
                h2.get("/large?kb=256", 1 << 20).await.expect("large").body.len(),
                256 * 1024
            );
            assert_eq!(h2.get("/resource/1", 1024).await.expect("quick").status, 200);
        }
    };
    harness::within(Duration::from_secs(2), "other streams beside a stalled one", answers).await;
    drop(stalled);
}

#[tokio::test]
async fn with_a_connection_window_no_larger_than_a_stream_window_one_stalled_stream_stalls_all() {
    // The failure the windows above prevent: if the connection's window is
    // only one stream's worth, one unread stream uses it up and every other
    // stream's DATA waits behind it.
    let server = Server::start(Config::default()).await;
    let h2 = client::connect(server.addr(), Windows { stream: 65_535, connection: 65_535 })
        .await
        .expect("connect");
    let mut send = h2.send.clone().ready().await.expect("ready");
    let (stalled, _) = send.send_request(h2.request("/large?kb=10000"), true).expect("send");
    let stalled = harness::within(STEP, "the stalled stream's head", stalled).await.expect("head");
    let quick = tokio::time::timeout(Duration::from_millis(500), h2.get("/resource/1", 1024)).await;
    assert!(quick.is_err(), "the body got through a used-up connection window: {quick:?}");
    drop(stalled);
}

#[tokio::test]
async fn a_reader_that_never_reads_costs_the_server_its_window_and_no_more() {
    let server = Server::start(Config::default()).await;
    const CONNECTION: u32 = 128 * 1024;
    const STREAMS: usize = 4;
    let h2 = client::connect(server.addr(), Windows { stream: 65_535, connection: CONNECTION })
        .await
        .expect("connect");
    let mut held = Vec::new();
    for _ in 0..STREAMS {
        let mut send = h2.send.clone().ready().await.expect("ready");
        // 100 MB each, 400 MB asked for in all; none of it is read.
        held.push(send.send_request(h2.request("/large?kb=100000"), true).expect("send").0);
    }
    let produced = || Stats::get(&server.stats.large_bytes_produced);
    harness::eventually(STEP, "the connection window filled", || {
        produced() >= u64::from(CONNECTION)
    })
    .await;
    // Give the server time to misbehave: a few round trips on other connections.
    for _ in 0..5 {
        server.still_answers().await;
    }
    // The window, plus at most a chunk queued per stream and one in hand.
    let bound = u64::from(CONNECTION) + (2 * STREAMS * http2::limits::LARGE_CHUNK) as u64;
    assert!(
        produced() <= bound,
        "produced {} bytes for a reader that read none (bound {bound})",
        produced()
    );
    drop(held);
}

#[tokio::test]
async fn large_takes_its_size_among_other_parameters() {
    let server = Server::start(Config::default()).await;
    let h2 = server.h2().await;
    for (path, len) in [("/large?kb=2", 2048), ("/large?kb=3&n=7", 3072), ("/large?n=7&kb=1", 1024)]
    {
        let a = harness::within(STEP, path, h2.get(path, 1 << 20)).await.expect("get");
        assert_eq!(a.body.len(), len, "{path}");
    }
}
