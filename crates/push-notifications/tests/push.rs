//! Every promise of chapter 9, over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use harness::ws::WsClient;
use harness::{CancellationToken, eventually, within};
use push_notifications::client::{self, Event};
use push_notifications::{Config, MAX_SUBSCRIPTIONS, close_code};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use websocket_chat::conn::Limits;

mod common;
use common::ws::{assert_violations_closed_with_1002, fast_heartbeat, upgrade_from};
use common::*;

#[tokio::test]
async fn the_notes_client_gets_pushed_what_it_subscribed_to() {
    let (server, _) = start(quick()).await;
    let mut c = WsClient::connect(&url(server.addr())).await.expect("connect");
    // Byte for byte what the classic example client sends.
    c.send_text(r#"{"event":"newMessage"}"#).await.expect("send");
    c.recv_json_where(WAIT, |v| v["type"] == "subscribed").await.expect("ack");
    let resp = notify(server.addr(), "newMessage", json!("You have a new message!")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let published: Value = serde_json::from_slice(&resp.body).expect("json answer");
    assert_eq!(published, json!({"id": 1, "delivered": 1}));
    let n = next_notification(&mut c).await;
    assert_eq!(
        n,
        json!({"type":"notification","id":1,"event":"newMessage","payload":"You have a new message!"})
    );
    server.shutdown().await.expect("clean shutdown");
}

/// The notes' push client connects to `ws://host:port` (the path `/`).
/// Here `/` is also the page: a handshake there is upgraded as on `/ws`,
/// and a plain GET still gets the page.
#[tokio::test]
async fn the_notes_client_works_on_the_root_path_too() {
    let (server, _) = start(quick()).await;
    let addr = server.addr();
    let mut c = WsClient::connect(&format!("ws://{addr}")).await.expect("connect to /");
    c.send_text(r#"{"event":"newMessage"}"#).await.expect("send");
    c.recv_json_where(WAIT, |v| v["type"] == "subscribed").await.expect("ack");
    let resp = notify(addr, "newMessage", json!("You have a new message!")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(next_notification(&mut c).await["payload"], "You have a new message!");
    let page = harness::http::get(addr, "/").await.expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("new WebSocket("), "a plain GET / still gets the page");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn each_notification_goes_to_exactly_its_subscribers() {
    let (server, push) = start(quick()).await;
    let addr = server.addr();
    let mut a = subscriber(addr, &["newMessage"], None).await;
    let mut b = subscriber(addr, &["tick"], None).await;
    let mut c = subscriber(addr, &["newMessage", "tick"], None).await;
    assert_eq!(push.publish("newMessage", json!(1)).delivered, 2);
    assert_eq!(push.publish("tick", json!(2)).delivered, 2);
    assert_eq!(push.publish("nobody", json!(3)).delivered, 0);
    // b's first notification is the tick: it never saw newMessage.
    assert_eq!(next_notification(&mut a).await["id"], 1);
    assert_eq!(next_notification(&mut b).await["id"], 2);
    assert_eq!(next_notification(&mut c).await["id"], 1);
    assert_eq!(next_notification(&mut c).await["id"], 2);
    // And a gets nothing more: the next thing it sees is the one after this.
    push.publish("newMessage", json!(4));
    assert_eq!(next_notification(&mut a).await["id"], 4);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unsubscribe_stops_the_pushes() {
    let (server, push) = start(quick()).await;
    let mut c = subscriber(server.addr(), &["a", "b"], None).await;
    c.send_json(&json!({"event": "a", "action": "unsubscribe"})).await.expect("send");
    c.recv_json_where(WAIT, |v| v["type"] == "unsubscribed").await.expect("ack");
    assert_eq!(push.stats().subscribers.get("a"), None);
    push.publish("a", json!("not for you"));
    push.publish("b", json!("for you"));
    let n = next_notification(&mut c).await;
    assert_eq!((n["event"].as_str(), n["id"].as_u64()), (Some("b"), Some(2)));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_client_that_reconnects_with_its_last_id_loses_nothing_and_gets_nothing_twice() {
    let (server, push) = start(quick()).await;
    let addr = server.addr();
    let mut c = subscriber(addr, &["newMessage"], None).await;
    push.publish("newMessage", json!("one"));
    push.publish("other", json!("not subscribed"));
    push.publish("newMessage", json!("two"));
    assert_eq!(next_notification(&mut c).await["id"], 1);
    let last_seen = next_notification(&mut c).await["id"].as_u64().expect("an id");
    assert_eq!(last_seen, 3);
    drop(c); // the phone goes into a tunnel
    eventually(WAIT, "the server to notice", || push.stats().connections == 0).await;

    for p in ["four", "five", "six"] {
        push.publish("newMessage", json!(p));
    }
    let mut c = subscriber(addr, &["newMessage"], Some(last_seen)).await;
    push.publish("newMessage", json!("live"));
    let mut got = Vec::new();
    for _ in 0..4 {
        let n = next_notification(&mut c).await;
        got.push((n["id"].as_u64().expect("id"), n["payload"].as_str().expect("p").to_owned()));
    }
    let want: Vec<(u64, String)> =
        [(4, "four"), (5, "five"), (6, "six"), (7, "live")].map(|(i, s)| (i, s.into())).into();
    assert_eq!(got, want, "the missed ones in order, then live, nothing twice");
    // Nothing else is on its way.
    let extra = c.recv_text(Duration::from_millis(200)).await;
    assert!(extra.is_err(), "unexpected extra message {extra:?}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_resume_older_than_the_history_is_told_about_the_gap() {
    let connection = Limits { queue_capacity: 8, ..quick().connection };
    let config = Config { history_len: 2, connection, ..quick() };
    let (server, push) = start(config).await;
    for i in 1..=5 {
        push.publish("e", json!(i));
    }
    assert_eq!(push.stats().history, 2, "the history stays bounded");
    let mut c = WsClient::connect(&url(server.addr())).await.expect("connect");
    c.send_json(&json!({"event": "e", "since": 1})).await.expect("send");
    let gap = c.recv_json_where(WAIT, |v| v["type"] == "gap").await.expect("a gap warning");
    assert_eq!((gap["since"].as_u64(), gap["oldest"].as_u64()), (Some(1), Some(4)));
    assert_eq!(next_notification(&mut c).await["id"], 4);
    assert_eq!(next_notification(&mut c).await["id"], 5);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn subscriptions_are_cleaned_up_when_connections_close() {
    let (server, push) = start(quick()).await;
    let addr = server.addr();
    let polite = subscriber(addr, &["a", "b"], None).await;
    let rude = subscriber(addr, &["a"], None).await;
    let _stays = subscriber(addr, &["c"], None).await;
    let s = push.stats();
    assert_eq!(
        (s.connections, s.subscribers.get("a"), s.subscribers.get("b")),
        (3, Some(&2), Some(&1))
    );
    polite.close().await.expect("close handshake");
    drop(rude); // no close frame: the TCP connection just ends
    eventually(WAIT, "only c's subscription left", || {
        let s = push.stats();
        s.connections == 1 && s.subscribers.len() == 1 && s.subscribers.get("c") == Some(&1)
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
    assert!(push.stats().subscribers.is_empty(), "zero subscribers after shutdown");
}

#[tokio::test]
async fn bad_publishes_and_bad_subscriptions_get_clear_errors() {
    let (server, _) = start(quick()).await;
    let addr = server.addr();
    let empty = notify(addr, "", json!(1)).await;
    assert_eq!(empty.status, 400);
    assert!(empty.text().contains("must not be empty"), "{}", empty.text());
    let req = "POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
               Content-Length: 8\r\nConnection: close\r\n\r\nnot json";
    let garbage = harness::http::exchange(addr, req.as_bytes()).await.expect("POST");
    assert_eq!(garbage.status, 400);
    assert!(garbage.text().contains("expected"), "{}", garbage.text());
    let huge = notify(addr, "e", json!("x".repeat(64 * 1024))).await;
    assert_eq!(huge.status, 413, "body over the limit");

    let mut c = WsClient::connect(&url(addr)).await.expect("connect");
    c.send_text("subscribe me").await.expect("send");
    let e = c.recv_json_where(WAIT, |v| v["type"] == "error").await.expect("error");
    assert!(e["message"].as_str().expect("text").contains("expected"), "{e}");
    c.send_json(&json!({"event": ""})).await.expect("send");
    c.recv_json_where(WAIT, |v| v["type"] == "error").await.expect("error");
    // The connection survives both.
    c.send_json(&json!({"event": "ok"})).await.expect("send");
    c.recv_json_where(WAIT, |v| v["type"] == "subscribed").await.expect("ack");
    server.shutdown().await.expect("clean shutdown");
}

/// One connection cannot grow the server's maps without end by subscribing
/// to ever new event names: past the cap it gets an error, and stays.
#[tokio::test]
async fn subscriptions_per_connection_are_capped() {
    let (server, push) = start(quick()).await;
    let mut c = WsClient::connect(&url(server.addr())).await.expect("connect");
    for i in 0..MAX_SUBSCRIPTIONS {
        c.send_json(&json!({"event": format!("e{i}")})).await.expect("send");
        c.recv_json_where(WAIT, |v| v["type"] == "subscribed").await.expect("ack");
    }
    c.send_json(&json!({"event": "one-too-many"})).await.expect("send");
    let e = c.recv_json_where(WAIT, |v| v["type"] == "error").await.expect("error");
    assert!(e["message"].as_str().expect("text").contains("at most"), "{e}");
    assert_eq!(push.stats().subscribers.len(), MAX_SUBSCRIPTIONS);
    // Subscribing again to one it has is not a new subscription.
    c.send_json(&json!({"event": "e0"})).await.expect("send");
    c.recv_json_where(WAIT, |v| v["type"] == "subscribed").await.expect("ack");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503() {
    let (server, push) = start(Config {
        connection: Limits { max_connections: 2, ..quick().connection },
        ..quick()
    })
    .await;
    let addr = server.addr();
    let first = subscriber(addr, &["a"], None).await;
    let _second = subscriber(addr, &["a"], None).await;
    let refused = WsClient::connect(&url(addr)).await.expect_err("a third is refused");
    assert!(refused.to_string().contains("503"), "{refused}");
    first.close().await.expect("close handshake");
    eventually(WAIT, "the first slot to free up", || push.stats().connections == 1).await;
    let mut third = subscriber(addr, &["a"], None).await;
    notify(addr, "a", json!("after the refusal")).await;
    assert_eq!(next_notification(&mut third).await["payload"], "after the refusal");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_with_1008() {
    let connection = Limits { queue_capacity: 4, ..quick().connection };
    let config = Config { history_len: 2, connection, ..quick() };
    let (server, push) = start(config).await;
    let mut lazy = subscriber(server.addr(), &["big"], None).await;
    let mut keen = subscriber(server.addr(), &["big"], None).await;
    // `lazy` stops reading; kernel buffers fill, then its queue.
    let payload = json!("x".repeat(64 * 1024));
    for i in 0.. {
        assert!(i < 10_000, "the lazy subscriber was never closed");
        push.publish("big", payload.clone());
        next_notification(&mut keen).await;
        if push.stats().kicked_slow == 1 {
            break;
        }
    }
    lazy.expect_close(WAIT, close_code::POLICY, "too slow").await;
    // keen was never in trouble.
    let id = push.publish("big", json!("small")).id;
    assert_eq!(next_notification(&mut keen).await["id"], id);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_closes_subscribers_with_1001() {
    let (server, _) = start(quick()).await;
    let mut c = subscriber(server.addr(), &["e"], None).await;
    server.shutdown().await.expect("clean shutdown");
    c.expect_close(WAIT, close_code::GOING_AWAY, "shutting down").await;
}

/// RFC 6455's "fail the connection" cases, each answered with close 1002
/// (the same frames as lesson 8's test: the same connection module).
#[tokio::test]
async fn protocol_violations_are_closed_with_1002() {
    let (server, _) = start(quick()).await;
    assert_violations_closed_with_1002(server.addr()).await;
    server.shutdown().await.expect("clean shutdown");
}

/// A loopback proxy whose connections the test can cut, while it goes on
/// accepting new ones: a network drop the client has to recover from.
async fn cuttable_proxy(
    upstream: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<CancellationToken>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cut = std::sync::Arc::new(std::sync::Mutex::new(CancellationToken::new()));
    let c = cut.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let token = c.lock().expect("lock").clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    () = token.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn the_client_resumes_after_a_dropped_connection() {
    let (server, push) = start(quick()).await;
    let (proxy, cut) = cuttable_proxy(server.addr()).await;
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    // Runs until `stop`.
    tokio::spawn(client::follow(url(proxy), vec!["news".to_owned()], None, tx, stop.clone()));
    assert!(matches!(next(&mut rx).await, Event::Connected { since: None }));
    eventually(WAIT, "the subscription", || push.stats().subscribers.get("news") == Some(&1)).await;
    push.publish("news", json!("before"));
    assert!(matches!(next(&mut rx).await, Event::Notification(n) if n.id == 1));

    // Cut the connection, publish while the client is away.
    std::mem::take(&mut *cut.lock().expect("lock")).cancel();
    assert!(matches!(next(&mut rx).await, Event::Disconnected { .. }));
    push.publish("news", json!("while away"));
    push.publish("news", json!("also while away"));

    assert!(matches!(next(&mut rx).await, Event::Connected { since: Some(1) }));
    let mut ids = Vec::new();
    for _ in 0..2 {
        match next(&mut rx).await {
            Event::Notification(n) => ids.push(n.id),
            other => panic!("expected a notification, got {other:?}"),
        }
    }
    assert_eq!(ids, [2, 3]);
    stop.cancel();
    server.shutdown().await.expect("clean shutdown");
}

/// Replays come per event, so with two events the ids arrive out of order
/// (newMessage's #2 before tick's #1). The client must hand on both, not
/// take tick's #1 for a repeat because it is below #2.
#[tokio::test]
async fn the_client_resuming_two_events_gets_both_replays() {
    let (server, push) = start(quick()).await;
    push.publish("tick", json!("t1"));
    push.publish("newMessage", json!("m2"));
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let events = vec!["newMessage".to_owned(), "tick".to_owned()];
    tokio::spawn(client::follow(url(server.addr()), events, Some(0), tx, stop.clone()));
    assert!(matches!(next(&mut rx).await, Event::Connected { since: Some(0) }));
    let mut got = Vec::new();
    for _ in 0..2 {
        match next(&mut rx).await {
            Event::Notification(n) => got.push((n.id, n.event)),
            other => panic!("expected a notification, got {other:?}"),
        }
    }
    got.sort();
    assert_eq!(got, [(1, "tick".to_owned()), (2, "newMessage".to_owned())]);
    stop.cancel();
    server.shutdown().await.expect("clean shutdown");
}

async fn next(rx: &mut mpsc::Receiver<Event>) -> Event {
    within(WAIT, "a client event", rx.recv()).await.expect("the client is running")
}

#[tokio::test]
async fn a_subscriber_that_never_pongs_is_dropped_and_its_subscription_with_it() {
    use harness::ws::{Frame, RawWs, opcode};
    let config = Config { connection: fast_heartbeat(quick().connection), ..quick() };
    let (server, push) = start(config).await;
    let mut mute = RawWs::connect(server.addr(), "/ws").await.expect("upgrade");
    let sub = Frame::client(opcode::TEXT, br#"{"event":"e"}"#, [1, 2, 3, 4]);
    mute.send_bytes(&sub.encode()).await.expect("subscribe");
    let close = mute.read_until_close(WAIT).await.expect("read").expect("a close frame");
    assert_eq!(close.close_code(), Some(close_code::HEARTBEAT_TIMEOUT));
    eventually(WAIT, "the subscription to go", || push.stats().subscribers.is_empty()).await;
    server.shutdown().await.expect("clean shutdown");
}

// ---- A hostile client ----------------------------------------------------

/// The `POST /notify` request for one publish, as bytes.
fn notify_request(host: &str, body: &str, content_type: Option<&str>, last: bool) -> String {
    let ct = content_type.map(|t| format!("Content-Type: {t}\r\n")).unwrap_or_default();
    let close = if last { "Connection: close\r\n" } else { "" };
    format!(
        "POST /notify HTTP/1.1\r\nHost: {host}\r\n{ct}Content-Length: {}\r\n{close}\r\n{body}",
        body.len()
    )
}

/// Splits a stream of pipelined responses into (status, head, body).
fn split_responses(mut bytes: &[u8]) -> Vec<(u16, String, String)> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = harness::http::parse_head(&bytes[..end + 4]).expect("a response head");
        let len: usize =
            head.header("content-length").map_or(0, |v| v.trim().parse().expect("len"));
        let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + len]).into_owned();
        let raw = String::from_utf8_lossy(&head.raw_head).into_owned();
        out.push((head.status, raw, body));
        bytes = &bytes[end + 4 + len..];
    }
    out
}

/// How long the subscriber in the burst test takes over each notification,
/// as a phone that shows it would: it reads 1,000 a second, twenty times
/// [`push_notifications::PUBLISH_RATE`], so it is a subscriber that keeps
/// up with anything the server lets through.
const SHOW_EACH: Duration = Duration::from_millis(1);

/// 3,000 publishes pipelined on one connection. Before the publish limit
/// every one was fanned out as fast as hyper could parse them, far faster
/// than a subscriber that does anything with what it gets can take them;
/// it fell a whole queue behind and was closed as "too slow" for a fault
/// that was the publisher's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_burst_gets_429s_and_no_subscriber_is_kicked() {
    const BURST: usize = 3000;
    let (server, push) = start(quick()).await;
    let addr = server.addr();
    let mut sub = subscriber(addr, &["burst"], None).await;
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        loop {
            let v = sub.recv_json(WAIT).await.map_err(|e| e.to_string())?;
            if v["type"] == "notification" {
                if v["payload"] == "after" {
                    return Ok::<usize, String>(got);
                }
                got += 1;
                tokio::time::sleep(SHOW_EACH).await;
            }
        }
    });

    // 4 KiB a notification: 3,000 of them are more than the kernel's socket
    // buffers on loopback absorb (a few MB), as they would be on a real link.
    let body = json!({"event": "burst", "payload": "x".repeat(4096)}).to_string();
    let mut requests = String::new();
    for i in 0..BURST {
        requests.push_str(&notify_request("x", &body, Some("application/json"), i == BURST - 1));
    }
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // Write and read at once, so neither side waits on a full socket. The
    // writing half is handed back, not dropped: dropping it would send a FIN,
    // and hyper closes a connection whose client has half-closed.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        wr.write_all(requests.as_bytes()).await.map(|()| wr)
    });
    let mut answers = Vec::new();
    within(Duration::from_secs(30), "3,000 answers", async {
        use tokio::io::AsyncReadExt as _;
        rd.read_to_end(&mut answers).await
    })
    .await
    .expect("read the answers");
    let _wr = within(WAIT, "the writer", writer).await.expect("task").expect("write the burst");
    let answers = split_responses(&answers);
    assert_eq!(answers.len(), BURST, "one answer per publish");
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    eprintln!("burst of {BURST}: {ok} accepted, {} refused", limited.len());
    assert_eq!(ok + limited.len(), BURST, "only 200s and 429s");
    assert!(!limited.is_empty(), "all {BURST} publishes were accepted");
    let (_, head, body) = limited[0];
    assert!(head.to_ascii_lowercase().contains("retry-after: "), "{head}");
    let error: Value = serde_json::from_str(body).expect("a JSON error");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("too many")), "{body}");

    // The subscriber is still there and gets exactly what was accepted,
    // then a later notification.
    push.publish("burst", json!("after"));
    let got = within(WAIT, "the subscriber", reader).await.expect("task");
    assert_eq!(got, Ok(ok), "the subscriber got every accepted publish and stayed");
    assert_eq!(push.stats().kicked_slow, 0);
    assert_eq!(push.stats().publishes_refused, limited.len() as u64);
    server.shutdown().await.expect("clean shutdown");
}

/// A plain HTML form on any site can POST to this server (a "simple"
/// request: no preflight), but it can only send `text/plain`,
/// `application/x-www-form-urlencoded` or `multipart/form-data`. Requiring
/// JSON's type shuts that door.
#[tokio::test]
async fn notify_takes_only_json_and_a_form_cannot_publish() {
    let (server, push) = start(quick()).await;
    let addr = server.addr();
    let body = json!({"event": "e", "payload": "from a form"}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let req = notify_request("x", &body, ct, true);
        let resp = harness::http::exchange(addr, req.as_bytes()).await.expect("POST");
        assert_eq!(resp.status, 415, "Content-Type {ct:?}: {}", resp.text());
        let error: Value = serde_json::from_slice(&resp.body).expect("a JSON error");
        assert!(error["error"].as_str().is_some_and(|e| e.contains("application/json")), "{error}");
    }
    assert_eq!(push.stats().last_id, 0, "nothing was published");
    for ct in ["application/json", "application/json; charset=utf-8", "Application/JSON"] {
        let req = notify_request("x", &body, Some(ct), true);
        let resp = harness::http::exchange(addr, req.as_bytes()).await.expect("POST");
        assert_eq!(resp.status, 200, "Content-Type {ct:?}: {}", resp.text());
    }
    assert_eq!(push.stats().last_id, 3);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_handshake_from_another_origin_is_refused_with_403() {
    let (server, push) = start(quick()).await;
    let addr = server.addr();
    let own = addr.to_string();
    for (origin, want) in [
        (Some("http://evil.example".to_owned()), 403),
        (Some("null".to_owned()), 403),
        (Some(format!("http://{addr}")), 101),
        (None, 101),
    ] {
        let req = upgrade_from(&own, "/ws", origin.as_deref());
        let resp = harness::http::exchange(addr, req.as_bytes()).await.expect("an answer");
        assert_eq!(resp.status, want, "Origin {origin:?}");
    }
    eventually(WAIT, "the accepted handshakes to end", || push.stats().connections == 0).await;
    server.shutdown().await.expect("clean shutdown");
}

/// CORS, on purpose: a page on another origin may publish only if the
/// operator allowed that origin. Its browser asks first (`OPTIONS`), and
/// sends the POST only if the answer names the page's origin.
#[tokio::test]
async fn cross_origin_publishing_is_allowed_only_for_allowed_origins() {
    let notes = "http://notes.example:8080";
    let (server, push) = start(Config { allowed_origins: vec![notes.into()], ..quick() }).await;
    let addr = server.addr();
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /notify HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
        )
    };
    let ok = harness::http::exchange(addr, preflight(notes).as_bytes()).await.expect("OPTIONS");
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some(notes));
    assert_eq!(ok.header("access-control-allow-methods"), Some("POST"));
    assert!(ok.header("access-control-allow-headers").is_some_and(|h| h.contains("content-type")));
    let evil = "http://evil.example";
    let no = harness::http::exchange(addr, preflight(evil).as_bytes()).await.expect("OPTIONS");
    assert_eq!(no.status, 403);
    assert_eq!(no.header("access-control-allow-origin"), None, "the browser will not send it");

    let body = json!({"event": "e", "payload": "cross-origin"}).to_string();
    let post = |origin: &str| {
        format!(
            "POST /notify HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let allowed = harness::http::exchange(addr, post(notes).as_bytes()).await.expect("POST");
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.header("access-control-allow-origin"), Some(notes), "the page may read it");
    // A POST that skipped the preflight (not a browser that obeys CORS, or
    // one with a bug) is refused all the same.
    let refused = harness::http::exchange(addr, post(evil).as_bytes()).await.expect("POST");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("error"), "{}", refused.text());
    // The server's own page needs no allow list entry.
    let own = harness::http::exchange(addr, post(&format!("http://{addr}")).as_bytes())
        .await
        .expect("POST");
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(push.stats().last_id, 2, "the allowed and the own-page publishes only");
    server.shutdown().await.expect("clean shutdown");
}

/// Lesson 16's hook: ids given elsewhere. Repeats are ignored, a skip is
/// reported as a gap, and a client that resumes from an id this server has
/// not reached yet is not sent what it already has when the server catches up.
#[tokio::test]
async fn ids_given_elsewhere_are_taken_in_order_once() {
    let (server, push) = start(quick()).await;
    assert!(push.publish_with_id(5, "e", json!("five")).is_some());
    assert!(push.publish_with_id(5, "e", json!("again")).is_none(), "a repeat is ignored");
    assert!(push.publish_with_id(4, "e", json!("older")).is_none(), "so is an older id");
    // From before 5: the ids 1..4 never reached this server, and it says so.
    let mut early = WsClient::connect(&url(server.addr())).await.expect("connect");
    early.send_json(&json!({"event": "e", "since": 2})).await.expect("subscribe");
    let gap = early.recv_json_where(WAIT, |v| v["type"] == "gap").await.expect("a gap");
    assert_eq!((gap["since"].as_u64(), gap["oldest"].as_u64()), (Some(2), Some(5)));
    // A client that saw up to 7 on a server further ahead.
    let mut ahead = subscriber(server.addr(), &["e"], Some(7)).await;
    for id in 6..=8 {
        push.publish_with_id(id, "e", json!(id));
    }
    let n = next_notification(&mut ahead).await;
    assert_eq!(n["id"], 8, "6 and 7 were seen elsewhere already: {n}");
    server.shutdown().await.expect("clean shutdown");
}

/// Lesson 16's other hook: `POST /notify` publishes through a
/// [`Publisher`] and answers with the id it gave; a failing one is a 503.
#[tokio::test]
async fn notify_goes_through_a_publisher_when_there_is_one() {
    use push_notifications::{Publisher, Push};
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Counter(AtomicU64);
    impl Publisher for Counter {
        fn publish(
            &self,
            event: String,
            _payload: Value,
        ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
            Box::pin(async move {
                if event == "down" {
                    return Err("the backplane is down".to_owned());
                }
                Ok(100 + self.0.fetch_add(1, Ordering::Relaxed))
            })
        }
    }
    let push = Push::with_publisher(quick(), Arc::new(Counter::default()));
    let (server, push) = common::ws::start(push, Push::serve).await;
    let resp = notify(server.addr(), "e", json!(1)).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body: Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(body["id"], 100);
    assert_eq!(push.stats().last_id, 0, "published elsewhere, not here");
    let down = notify(server.addr(), "down", json!(1)).await;
    assert_eq!(down.status, 503);
    assert!(
        String::from_utf8_lossy(&down.body).contains("backplane is down"),
        "{}",
        String::from_utf8_lossy(&down.body)
    );
    server.shutdown().await.expect("clean shutdown");
}
