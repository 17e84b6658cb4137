//! Chapter 16's long-polling route three ways, behind one HAProxy with two
//! instances: lesson 6 with each instance's own feed (an update is lost to
//! a poll that lands on the other), the same with cookie stickiness (a
//! client keeps to its instance), and the feed in Redis (any instance will do).

use std::net::SocketAddr;

use feed::http::Poll;
use scale_out::parts::{Cluster, Launcher};

mod common;
use common::*;

/// The instances' hold in these tests: short, so a poll with nothing new
/// answers quickly (lesson 6's own tests cover the hold itself).
const HOLD_MS: &str = "300";

async fn two_instances() -> Cluster {
    let exe = exe();
    let launcher = Launcher::this_crate(exe).with(&["--hold-ms", HOLD_MS]);
    tokio::task::spawn_blocking(move || Cluster::start(&launcher, 2, None))
        .await
        .expect("join")
        .expect("Redis, 2 instances, HAProxy")
}

/// One request on its own connection (`Connection: close`), so that
/// HAProxy's round-robin picks a server for each, as it does for clients
/// that do not share a connection.
async fn request(addr: SocketAddr, head: &str, cookie: Option<&str>) -> harness::http::Response {
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let (line, body) = head.split_once('\n').unwrap_or((head, ""));
    let req = if body.is_empty() {
        format!("{line} HTTP/1.1\r\nHost: x\r\n{cookie}Connection: close\r\n\r\n")
    } else {
        format!(
            "{line} HTTP/1.1\r\nHost: x\r\n{cookie}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    harness::http::exchange(addr, req.as_bytes()).await.expect("an answer through HAProxy")
}

fn poll_of(resp: &harness::http::Response) -> Poll {
    assert_eq!(resp.status, 200, "{}", resp.text());
    serde_json::from_slice(&resp.body).expect("lesson 6's answer")
}

const POST: &str = "POST /update\n{\"text\":\"hello\"}";
const GET: &str = "GET /data?since=0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
async fn per_instance_state_without_stickiness_loses_the_update() {
    if !parts_or_skip("per_instance_state_without_stickiness") {
        return;
    }
    let cluster = two_instances().await;
    let lp = cluster.haproxy.lp_local;
    assert_eq!(request(lp, POST, None).await.status, 200);
    // Round-robin sends the next request to the other instance, whose feed
    // never heard of the update: the hold runs out with nothing.
    let first = poll_of(&request(lp, GET, None).await);
    assert!(first.updates.is_empty(), "the poll landed where the update is not: {first:?}");
    // And the one after lands on the instance that has it: what a client
    // sees depends on where it is sent.
    let second = poll_of(&request(lp, GET, None).await);
    assert_eq!(second.updates.len(), 1, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
async fn cookie_stickiness_keeps_a_client_on_its_instance() {
    if !parts_or_skip("cookie_stickiness") {
        return;
    }
    let cluster = two_instances().await;
    let lp = cluster.haproxy.lp_sticky;
    // The first answer pins the client: HAProxy adds the cookie.
    let first = request(lp, GET, None).await;
    let set = first.header("set-cookie").expect("HAProxy's cookie").to_owned();
    let cookie = set.split(';').next().expect("name=value").to_owned();
    assert!(cookie.starts_with("SERVERID=i"), "{set}");
    // Its update, and every poll after it, go to its instance.
    assert_eq!(request(lp, POST, Some(&cookie)).await.status, 200);
    for _ in 0..2 {
        let poll = poll_of(&request(lp, GET, Some(&cookie)).await);
        assert_eq!(poll.updates.len(), 1, "pinned, the client finds its update: {poll:?}");
    }
    // The limit: a client pinned to the other instance never sees it.
    let other = if cookie.ends_with("i1") { "SERVERID=i2" } else { "SERVERID=i1" };
    let poll = poll_of(&request(lp, GET, Some(other)).await);
    assert!(poll.updates.is_empty(), "stickiness shares nothing: {poll:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
async fn state_in_redis_needs_no_stickiness() {
    if !parts_or_skip("state_in_redis") {
        return;
    }
    let cluster = two_instances().await;
    let lp = cluster.haproxy.lp_shared;
    let posted = request(lp, POST, None).await;
    assert_eq!(posted.status, 200, "{}", posted.text());
    // Two polls, one on each instance: the same update, the same id.
    for _ in 0..2 {
        let poll = poll_of(&request(lp, GET, None).await);
        assert_eq!(poll.updates.len(), 1, "{poll:?}");
        assert_eq!((poll.updates[0].id, &poll.updates[0].data["text"]), (1, &"hello".into()));
    }
}
