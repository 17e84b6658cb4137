//! Chapter 16's promises about the whole: Redis, instances as real processes,
//! HAProxy in front, and one instance killed with SIGKILL.

use std::collections::HashMap;
use std::time::Duration;

use harness::{eventually, within};
use redis::AsyncCommands as _;
use scale_out::parts::{Cluster, Launcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;
use common::*;

/// Lines the chat burst sends: the chat's own SEND_BURST, so the sender's
/// rate limit never refuses one and every loss is the kill's.
const BURST: usize = websocket_chat::SEND_BURST as usize;

/// Notifications published around the kill.
const NOTIFICATIONS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
async fn kill_9_one_instance_push_is_exactly_once_and_chat_at_most_once() {
    if !parts_or_skip("kill_9_one_instance") {
        return;
    }
    let exe = exe();
    let mut cluster =
        tokio::task::spawn_blocking(move || Cluster::start(&Launcher::this_crate(exe), 3, None))
            .await
            .expect("join")
            .expect("Redis, 3 instances, HAProxy");
    let push_url = |addr| format!("ws://{addr}/ws");
    let via_proxy = cluster.push_url();
    let stop = CancellationToken::new();

    // Push: one subscriber straight on each instance; when one's instance
    // dies, it resumes through HAProxy.
    let subs: Vec<_> = cluster
        .instances
        .iter()
        .map(|i| raw_subscriber(push_url(i.push), via_proxy.clone(), "news", stop.clone()))
        .collect();
    // Chat: the speaker on i2; a listener on i3 (never disturbed) and one on
    // i1 (the instance that dies; it comes back through HAProxy).
    let chat = |n: usize| format!("ws://{}/ws", cluster.instances[n].chat);
    let mut speaker = chat_member(&chat(1), "speaker").await;
    let mut steady = chat_member(&chat(2), "steady").await;
    let mut victim = chat_member(&chat(0), "victim").await;
    // Everyone's join has crossed Redis once every member saw the last one.
    for c in [&mut speaker, &mut steady] {
        c.recv_json_where(WAIT, |v| v["message"] == "victim joined lobby").await.expect("join");
    }
    // Every subscriber is subscribed once a first notification reaches all.
    let first = notify_retrying(cluster.haproxy.push, "news", json!(0)).await;
    for (ids, _) in &subs {
        eventually(WAIT, "the first notification everywhere", || {
            ids.lock().expect("not poisoned").contains(&first)
        })
        .await;
    }

    // The burst, with the kill in the middle of it, and publishes all along.
    let publisher = {
        let addr = cluster.haproxy.push;
        tokio::spawn(async move {
            let mut ids = vec![first];
            for n in 1..NOTIFICATIONS {
                ids.push(notify_retrying(addr, "news", json!(n)).await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };
    for k in 0..BURST {
        if k == BURST / 2 {
            cluster.instances[0].part.kill();
        }
        say(&mut speaker, &format!("line {k}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = within(WAIT * 2, "the publisher", publisher).await.expect("publisher");

    // Chat, i3's listener: the whole burst, in order, once (pub/sub lost
    // nothing for an instance whose subscription stayed up).
    let mut heard = Vec::new();
    while heard.len() < BURST {
        let v = steady.recv_json_where(WAIT, |v| v["type"] == "message").await.expect("a line");
        heard.push(v["message"].as_str().expect("text").to_owned());
    }
    let all: Vec<String> = (0..BURST).map(|k| format!("line {k}")).collect();
    assert_eq!(heard, all);

    // Chat, i1's listener: what it heard before the kill is a prefix of
    // the burst, then its connection ends; back through HAProxy it hears
    // only what is said from then on. What was said in between is lost to
    // it, and counted: at-most-once, as pub/sub promises, no more.
    let mut before = Vec::new();
    while let Ok(v) = victim.recv_json(WAIT).await {
        if v["type"] == "message" {
            before.push(v["message"].as_str().expect("text").to_owned());
        }
    }
    assert!(before.len() < BURST, "i1 died mid-burst, yet its member heard it all");
    assert_eq!(before[..], all[..before.len()], "what it heard came in order, once");
    let mut back = chat_member(&cluster.chat_url(), "victim").await;
    say(&mut speaker, "after").await;
    let v = back.recv_json_where(WAIT, |v| v["type"] == "message").await.expect("a line");
    assert_eq!(v["message"], "after", "nothing from the burst is replayed over pub/sub");
    eprintln!(
        "chat: the member on the killed instance lost {} of {BURST} lines",
        BURST - before.len()
    );

    // Push: every subscriber has every id in the stream exactly once,
    // including the one whose instance died (it resumed with `since`).
    let redis = redis::Client::open(cluster.redis.url()).expect("url");
    let mut conn = redis.get_multiplexed_async_connection().await.expect("redis");
    let stream: Vec<(String, HashMap<String, String>)> =
        conn.xrange_all(scale_out::STREAM_KEY).await.expect("XRANGE");
    let in_stream: Vec<u64> = stream
        .iter()
        .map(|(id, _)| id.split('-').next().and_then(|n| n.parse().ok()).expect("N-0"))
        .collect();
    for id in &published {
        assert!(in_stream.contains(id), "published #{id} is in the stream");
    }
    for (n, (ids, reconnects)) in subs.iter().enumerate() {
        eventually(WAIT, "every id at every subscriber", || {
            ids.lock().expect("not poisoned").len() >= in_stream.len()
        })
        .await;
        let got = ids.lock().expect("not poisoned").clone();
        assert_eq!(got, in_stream, "subscriber {n}: every id, once, in order");
        let reconnects = *reconnects.lock().expect("not poisoned");
        assert_eq!(reconnects > 0, n == 0, "only i1's subscriber had to resume");
    }

    // Presence: i1's key expires, nobody deletes it; the others' stay.
    eventually(WAIT, "i1's presence to expire", || {
        let mut c = redis.get_connection().expect("redis");
        let alive: bool = redis::cmd("EXISTS").arg("presence:i1").query(&mut c).expect("EXISTS");
        !alive
    })
    .await;
    let mut c = redis.get_connection().expect("redis");
    let i2: String = redis::cmd("GET").arg("presence:i2").query(&mut c).expect("i2 presence");
    assert!(i2.contains("speaker"), "{i2}");

    stop.cancel();
    let pids = cluster.pids();
    drop(cluster);
    for pid in pids {
        assert!(!process_exists(pid), "process {pid} outlived its cluster");
    }
}

#[test]
#[ignore = "needs redis-server and haproxy; run `cargo test -p scale-out -- --ignored`"]
fn the_demo_exits_0_and_leaves_no_process_behind() {
    if !parts_or_skip("the_demo") {
        return;
    }
    let out = std::process::Command::new(exe()).output().expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("every id exactly once").count(), 3, "{stdout}");
    assert!(stdout.contains(">>> kill -9 i1"), "{stdout}");
    let pids = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("pids ["))
        .and_then(|l| l.split(']').next())
        .expect("the demo lists its pids");
    for pid in pids.split(", ") {
        let pid: u32 = pid.parse().expect("a pid");
        assert!(!process_exists(pid), "process {pid} outlived the demo");
    }
}

/// Without redis-server on the PATH, the demo stops at once with one line
/// that says what to install, with apt and with Homebrew.
#[test]
fn without_the_packages_it_says_what_to_install() {
    let out = std::process::Command::new(exe()).env("PATH", "").output().expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if scale_out::parts::find_program("redis-server").is_some_and(|p| p.starts_with("/usr/sbin")) {
        return eprintln!("skipped: redis-server is in an sbin folder this check cannot hide");
    }
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("redis-server"), "{stderr}");
    assert!(stderr.contains("apt-get install redis-server haproxy"), "{stderr}");
    assert!(stderr.contains("brew install redis haproxy"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing started, nothing narrated");
}
