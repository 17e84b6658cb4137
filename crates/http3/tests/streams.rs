//! Requests on streams: each its own, none waiting for another, and a
//! server that stops politely.

mod common;

use std::time::Instant;

use common::{STEP, Server};
use http3::{Config, Stats};

#[tokio::test]
async fn requests_go_on_streams_of_one_connection() {
    let server = Server::start(Config::default()).await;
    let (_endpoint, h3) = server.connect().await;
    let (a, b, c) = harness::within(STEP, "three answers", async {
        tokio::join!(h3.get("/", 4096), h3.get("/resource/1", 1024), h3.get("/resource/2", 1024))
    })
    .await;
    let (a, b, c) = (a.expect("/"), b.expect("/resource/1"), c.expect("/resource/2"));
    assert_eq!((a.status, b.status, c.status), (200, 200, 200));
    assert_eq!(&b.body[..], b"resource 1\n");
    // Client-opened bidirectional streams are numbered 0, 4, 8, ...
    let mut ids = vec![a.stream, b.stream, c.stream];
    ids.sort_unstable();
    assert_eq!(ids, [0, 4, 8]);
    assert_eq!(Stats::get(&server.stats.connections), 1);
    assert_eq!(Stats::get(&server.stats.requests), 3);
}

#[tokio::test]
async fn a_slow_stream_does_not_hold_up_the_others() {
    let server = Server::start(Config::default()).await;
    let (_endpoint, h3) = server.connect().await;
    let start = Instant::now();
    let slow = async {
        let a = h3.get("/slow?ms=500", 1024).await;
        (a, start.elapsed())
    };
    let quick = async {
        // Asked after the slow one is on its way.
        tokio::task::yield_now().await;
        let a = h3.get("/resource/1", 1024).await;
        (a, start.elapsed())
    };
    let ((s, s_at), (q, q_at)) =
        harness::within(STEP, "both answers", async { tokio::join!(slow, quick) }).await;
    assert_eq!(s.expect("slow").status, 200);
    assert_eq!(q.expect("quick").status, 200);
    assert!(q_at < s_at, "the quick answer ({q_at:?}) came after the slow one ({s_at:?})");
    assert!(q_at.as_millis() < 400, "the quick answer waited {q_at:?}");
}

#[tokio::test]
async fn large_streams_its_size_and_unknown_paths_are_404() {
    let server = Server::start(Config::default()).await;
    let (_endpoint, h3) = server.connect().await;
    let a =
        harness::within(STEP, "a large body", h3.get("/large?kb=3", 8 * 1024)).await.expect("get");
    assert_eq!((a.status, a.body.len()), (200, 3 * 1024));
    let a = harness::within(STEP, "not found", h3.get("/nope", 1024)).await.expect("get");
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn shutdown_lets_open_requests_finish_then_closes() {
    let server = Server::start(Config::default()).await;
    let (_endpoint, h3) = server.connect().await;
    let slow = h3.clone_sender();
    let slow = tokio::spawn(async move { slow.get("/slow?ms=300", 1024).await });
    let stats = std::sync::Arc::clone(&server.stats);
    harness::eventually(STEP, "the slow request arrived", || Stats::get(&stats.requests) == 1)
        .await;
    server.token.cancel();
    let a = harness::within(STEP, "the slow answer", slow).await.expect("task").expect("answer");
    assert_eq!((a.status, &a.body[..]), (200, &b"slept 300 ms\n"[..]));
    let served = harness::within(STEP, "serve returns", server.task).await.expect("task");
    served.expect("serve returns Ok");
    assert!(
        harness::within(STEP, "a request after shutdown", h3.get("/resource/1", 1024))
            .await
            .is_err(),
        "a new request after the server stopped"
    );
    assert_eq!(Stats::get(&stats.requests), 1);
}
