//! Chapter 16's promises about the backplane: Redis restarted under two
//! instances, and a slow client on one instance. The instances run in this
//! test's process (their counters are what the test reads); Redis is real.

use harness::eventually;
use harness::ws::{Frame, RawWs, opcode};
use scale_out::Instance;
use scale_out::parts::{Redis, TempDir};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod common;
use common::*;

/// One instance on free loopback ports: its handle and its chat and push
/// addresses. It stops when `token` is cancelled.
async fn instance(
    redis: &str,
    name: &str,
    chat: websocket_chat::Config,
    token: &CancellationToken,
) -> (Instance, std::net::SocketAddr, std::net::SocketAddr) {
    let push = push_notifications::Config::default();
    let inst = Instance::start(redis, name, chat, push, token.clone()).await.expect("instance");
    let c = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let p = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (ca, pa) = (c.local_addr().expect("addr"), p.local_addr().expect("addr"));
    let (serving, token) = (inst.clone(), token.clone());
    tokio::spawn(async move { serving.serve(c, p, token).await });
    (inst, ca, pa)
}

async fn start_redis() -> (Redis, TempDir) {
    let dir = TempDir::new("scale-out-test").expect("temp dir");
    let path = dir.path().to_owned();
    let redis = tokio::task::spawn_blocking(move || Redis::start(&path))
        .await
        .expect("join")
        .expect("redis-server");
    (redis, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
async fn a_redis_restart_loses_chat_said_meanwhile_and_no_notification() {
    if !parts_or_skip("a_redis_restart") {
        return;
    }
    let (mut redis, _dir) = start_redis().await;
    let token = CancellationToken::new();
    let (i1, chat1, push1) = instance(&redis.url(), "i1", Default::default(), &token).await;
    let (i2, chat2, push2) = instance(&redis.url(), "i2", Default::default(), &token).await;
    eventually(WAIT, "both subscribed", || i1.stats().subscribed && i2.stats().subscribed).await;

    // Each member's own join notice has made the round trip through Redis.
    let mut alice = chat_member(&format!("ws://{chat1}/ws"), "alice").await;
    let mut bob = chat_member(&format!("ws://{chat2}/ws"), "bob").await;
    let (ids, reconnects) =
        raw_subscriber(format!("ws://{push2}/ws"), format!("ws://{push2}/ws"), "e", token.clone());
    let first = notify_retrying(push1, "e", json!(0)).await;
    eventually(WAIT, "the first notification", || ids.lock().expect("ok").contains(&first)).await;
    say(&mut alice, "before").await;
    let v = bob.recv_json_where(WAIT, |v| v["type"] == "message").await.expect("before");
    assert_eq!(v["message"], "before");

    // Redis goes away (SHUTDOWN SAVE, as an operator restarts it).
    let mut redis = tokio::task::spawn_blocking(move || {
        redis.stop().expect("stop");
        redis
    })
    .await
    .expect("join");
    eventually(WAIT, "both subscriptions down", || {
        !i1.stats().subscribed && !i2.stats().subscribed
    })
    .await;
    // A publish now is refused (503), not lost: the publisher knows to try again.
    let refused = notify(push1, "e", json!("during")).await.expect_err("Redis is down");
    assert!(refused.contains("503"), "{refused}");
    // A chat line now has nowhere to go: lost, and counted.
    say(&mut alice, "during").await;
    eventually(WAIT, "the lost line counted", || i1.stats().relay_failed >= 1).await;

    let redis = tokio::task::spawn_blocking(move || {
        redis.start_again().expect("start again");
        redis
    })
    .await
    .expect("join");
    // Both instances subscribe again by themselves.
    eventually(WAIT, "both resubscribed", || {
        let (s1, s2) = (i1.stats(), i2.stats());
        s1.subscribed && s2.subscribed && s1.subscriptions == 2 && s2.subscriptions == 2
    })
    .await;
    // Publishes right after the restart: some may land before i2's stream
    // reader is back; it reads on from its last id and delivers them late.
    let mut published = vec![first];
    for n in 1..=5 {
        published.push(notify_retrying(push1, "e", json!(n)).await);
    }
    let expected: Vec<u64> = (first..first + 6).collect();
    assert_eq!(published, expected, "ids carry on after the restart (the stream was saved)");
    eventually(WAIT, "every notification at i2's subscriber", || {
        ids.lock().expect("ok").len() >= expected.len()
    })
    .await;
    assert_eq!(*ids.lock().expect("ok"), expected, "each once, in order");
    assert_eq!(*reconnects.lock().expect("ok"), 0, "the WebSocket never noticed");

    say(&mut alice, "after").await;
    let v = bob.recv_json_where(WAIT, |v| v["type"] == "message").await.expect("after");
    assert_eq!(v["message"], "after", "\"during\" was lost: pub/sub keeps nothing");
    let lost = i1.stats().relay_failed;
    eprintln!("pub/sub lost {lost} line(s) said during the outage; the stream lost none");
    token.cancel();
    tokio::task::spawn_blocking(move || drop(redis)).await.expect("join");
}

/// Lines of the slow-client test: 8 KiB each, as in lesson 8's test.
const LINE_BYTES: usize = 8 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
async fn a_slow_client_on_one_instance_does_not_slow_the_others() {
    if !parts_or_skip("a_slow_client") {
        return;
    }
    let (redis, _dir) = start_redis().await;
    let token = CancellationToken::new();
    // Queues of 16, so the slow client is found out quickly. The speaker
    // may send as fast as lines come back (the send rate is not what this
    // test is about); its burst stays under a tenth of the queue.
    let chat = websocket_chat::Config {
        send_rate: 1_000_000,
        send_burst: 1,
        connection: websocket_chat::conn::Limits {
            queue_capacity: 16,
            ..websocket_chat::CONNECTION_LIMITS
        },
        ..Default::default()
    };
    let (i1, chat1, _) = instance(&redis.url(), "i1", chat.clone(), &token).await;
    let (i2, chat2, _) = instance(&redis.url(), "i2", chat, &token).await;
    eventually(WAIT, "both subscribed", || i1.stats().subscribed).await;

    // On i1: a client that never reads, with a tiny receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(chat1).await.expect("connect");
    let mut slow = RawWs::handshake(stream, chat1, "/ws").await.expect("upgrade");
    let hello = Frame::client(opcode::TEXT, br#"{"type":"username","data":"slow"}"#, [1, 2, 3, 4]);
    slow.send_bytes(&hello.encode()).await.expect("name");
    let mut fast1 = chat_member(&format!("ws://{chat1}/ws"), "fast1").await;
    let mut fast2 = chat_member(&format!("ws://{chat2}/ws"), "fast2").await;
    let mut speaker = chat_member(&format!("ws://{chat2}/ws"), "speaker").await;

    // The speaker (on i2) says a line, and waits until it has come back
    // to both readers (one on each instance) and to itself, through Redis,
    // before the next: they keep up, only the non-reader on i1 falls
    // behind, until i1 closes it. Lesson 8's test, across two processes.
    let line = "x".repeat(LINE_BYTES);
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    while i1.chat.stats().kicked_slow == 0 {
        assert!(sent < 20_000, "the non-reader was never closed");
        say(&mut speaker, &line).await;
        for (name, c) in [("fast1", &mut fast1), ("fast2", &mut fast2), ("speaker", &mut speaker)] {
            let got = c.recv_json_where(WAIT, |v| v["type"] == "message").await;
            got.unwrap_or_else(|e| panic!("{name}, line {sent}: {e}\n{:?}", i1.stats()));
        }
        sent += 1;
    }
    let took = started.elapsed();
    // And the readers chat on after it.
    say(&mut speaker, "still here").await;
    for c in [&mut fast1, &mut fast2] {
        let v = c.recv_json_where(WAIT, |v| v["message"] == "still here").await;
        v.expect("the readers carry on");
    }
    assert_eq!(i1.chat.stats().kicked_slow, 1, "the slow client only");
    assert_eq!(i2.chat.stats().kicked_slow, 0);
    eprintln!(
        "the non-reader was closed after {sent} lines of 8 KiB ({took:?}); the readers kept up"
    );
    token.cancel();
    tokio::task::spawn_blocking(move || drop(redis)).await.expect("join");
}
