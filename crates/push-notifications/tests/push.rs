//! Every promise of chapter 9, over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use harness::ws::WsClient;
use harness::{CancellationToken, TaskServer, eventually, within};
use push_notifications::client::{self, Event};
use push_notifications::{Config, MAX_SUBSCRIPTIONS, Push, close_code};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

/// The default limits, except that the server waits only briefly for a
/// client to answer its close frame (test clients that are not reading never
/// will, and the default grace would only make the tests slow).
fn quick() -> Config {
    Config { close_grace: Duration::from_millis(300), ..Config::default() }
}

type Server = TaskServer<std::io::Result<()>>;

async fn start(config: Config) -> (Server, Push) {
    let push = Push::new(config);
    let p = push.clone();
    let server = TaskServer::start(move |l, t| p.serve(l, t)).await.expect("bind a loopback port");
    (server, push)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// Connects and subscribes to each event, waiting for every ack.
async fn subscriber(addr: SocketAddr, events: &[&str], since: Option<u64>) -> WsClient {
    let mut c = WsClient::connect(&url(addr)).await.expect("connect");
    for e in events {
        let mut msg = json!({"event": e});
        if let Some(s) = since {
            msg["since"] = json!(s);
        }
        c.send_json(&msg).await.expect("subscribe");
        c.recv_json_where(WAIT, |v| v["type"] == "subscribed" && v["event"] == *e)
            .await
            .expect("subscribed ack");
    }
    c
}

async fn notify(addr: SocketAddr, event: &str, payload: Value) -> harness::http::Response {
    let body = json!({"event": event, "payload": payload}).to_string();
    let req = format!(
        "POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    harness::http::exchange(addr, req.as_bytes()).await.expect("POST /notify")
}

async fn next_notification(c: &mut WsClient) -> Value {
    c.recv_json_where(WAIT, |v| v["type"] == "notification").await.expect("a notification")
}

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
    let config = Config { history_len: 2, queue_capacity: 8, ..quick() };
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
    let req = "POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\nnot json";
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
    let (server, push) = start(Config { max_connections: 2, ..quick() }).await;
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
    let config = Config { history_len: 2, queue_capacity: 4, ..quick() };
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
    tokio::spawn(client::run(url(proxy), vec!["news".to_owned()], None, tx, stop.clone()));
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
    tokio::spawn(client::run(url(server.addr()), events, Some(0), tx, stop.clone()));
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
    let config = Config {
        ping_interval: Duration::from_millis(50),
        pong_timeout: Duration::from_millis(200),
        ..quick()
    };
    let (server, push) = start(config).await;
    let mut mute = RawWs::connect(server.addr(), "/ws").await.expect("upgrade");
    let sub = Frame::client(opcode::TEXT, br#"{"event":"e"}"#, [1, 2, 3, 4]);
    mute.send_bytes(&sub.encode()).await.expect("subscribe");
    let close = mute.read_until_close(WAIT).await.expect("read").expect("a close frame");
    assert_eq!(close.close_code(), Some(close_code::HEARTBEAT_TIMEOUT));
    eventually(WAIT, "the subscription to go", || push.stats().subscribers.is_empty()).await;
    server.shutdown().await.expect("clean shutdown");
}
