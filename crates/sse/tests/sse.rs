//! The promises of chapter 7, over real sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Sub, WAIT, config, ids, publish_until_dropped, start};
use feed::Feed;
use feed::client::HttpClient;
use harness::{TaskServer, within};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sse::Config;
use sse::parser::Event;

#[tokio::test]
async fn the_stream_opens_with_retry_and_sends_named_events_with_ids() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let mut sub = Sub::open(server.addr(), None).await;
    assert_eq!(sub.status, 200);
    assert_eq!(sub.headers["content-type"], "text/event-stream");
    assert_eq!(sub.headers["cache-control"], "no-cache");
    sub.raw_until("retry: 1500\n\n").await;
    assert!(sub.raw.starts_with("retry: 1500\n\n"), "{:?}", sub.raw);
    harness::eventually(WAIT, "the subscriber to register", || feed.stats().subscribers == 1).await;
    feed.publish(json!({"text": "hi"}));
    sub.raw_until("\n\n").await;
    sub.raw_until("event: update\nid: 1\ndata: {\"text\":\"hi\"}\n\n").await;
    let e = sub.next_event().await;
    assert_eq!((e.event.as_str(), e.id.as_str()), ("update", "1"));
    assert_eq!(serde_json::from_str::<Value>(&e.data).expect("JSON data"), json!({"text": "hi"}));
    assert_eq!(sub.parser.retry(), Some(Duration::from_millis(1500)));
    // The counters a benchmark reads: streamed bytes are counted as sent.
    let stats = feed.stats();
    assert_eq!((stats.delivered, stats.body_bytes), (1, sub.raw.len() as u64));
    server.shutdown().await.expect("clean shutdown");
}

/// The notes' client opens its `EventSource` on `/sse`; the same stream is
/// there, so that client works with only the port changed.
#[tokio::test]
async fn the_notes_path_sse_serves_the_same_stream() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let request = b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut conn = harness::http::HttpConn::connect(server.addr()).await.expect("connect");
    conn.send(request).await.expect("send");
    // Only the head: the body is the stream, which does not end.
    let head = within(WAIT, "the stream's head", conn.read_response(true)).await.expect("a head");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn multi_line_text_goes_out_as_several_data_lines() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let mut sub = Sub::open(server.addr(), None).await;
    harness::eventually(WAIT, "the subscriber to register", || feed.stats().subscribers == 1).await;
    feed.publish(json!("one\ntwo\r\nthree\rfour"));
    sub.raw_until("event: text\nid: 1\ndata: one\ndata: two\ndata: three\ndata: four\n\n").await;
    let e = sub.next_event().await;
    assert_eq!(e.event, "text");
    assert_eq!(e.data, "one\ntwo\nthree\nfour", "EventSource joins data lines with \\n");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_idle_stream_gets_keep_alive_comments() {
    let feed = Feed::default();
    let server = start(&feed, Config { keep_alive: Duration::from_millis(50), ..config() }).await;
    let mut sub = Sub::open(server.addr(), None).await;
    sub.raw_until(": keep-alive\n\n: keep-alive\n\n").await;
    assert!(sub.events.is_empty(), "comments are not events");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let mut first = Sub::open(server.addr(), None).await;
    harness::eventually(WAIT, "the subscriber to register", || feed.stats().subscribers == 1).await;
    for i in 1..=3 {
        feed.publish(json!(i));
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(first.next_event().await);
    }
    assert_eq!(ids(&seen), vec![1, 2, 3]);
    let last = first.parser.last_event_id().to_owned();
    drop(first);
    harness::eventually(WAIT, "the old stream to go", || feed.stats().subscribers == 0).await;
    // Published while nobody listened.
    feed.publish(json!(4));
    feed.publish(json!(5));
    let mut again = Sub::open(server.addr(), Some(&last)).await;
    let caught_up = vec![again.next_event().await, again.next_event().await];
    assert_eq!(ids(&caught_up), vec![4, 5]);
    // And then live, with nothing repeated or skipped in between.
    feed.publish(json!(6));
    assert_eq!(ids(&[again.next_event().await]), vec![6]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_resume_from_beyond_the_history_is_told_what_it_missed() {
    let feed = Feed::new(3);
    for i in 1..=6 {
        feed.publish(json!(i));
    }
    let server = start(&feed, config()).await;
    let mut sub = Sub::open(server.addr(), Some("1")).await;
    let missed = sub.next_event().await;
    assert_eq!(missed.event, "missed");
    assert_eq!(missed.data, r#"{"missed":2}"#, "ids 2 and 3 are gone");
    assert_eq!(missed.id, "1", "the cursor does not move past what the client has");
    let rest = vec![sub.next_event().await, sub.next_event().await, sub.next_event().await];
    assert_eq!(ids(&rest), vec![4, 5, 6]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn ids_from_before_a_restart_get_a_reset_event() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let mut sub = Sub::open(server.addr(), Some("99")).await;
    assert_eq!(sub.status, 200, "a 4xx would make EventSource stop for good");
    let reset = sub.next_event().await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.id, "0", "the cursor starts again from this server's first id");
    feed.publish(json!("fresh"));
    assert_eq!(sub.next_event().await.id, "1");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_dropped_and_resumes_by_id() {
    let feed = Feed::new(4096);
    let server = start(&feed, Config { queue: 8, ..config() }).await;
    let addr = server.addr();
    // A reader that stops reading: small receive buffer, body never polled.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(addr).await.expect("connect");
    let mut slow = Sub::open_on(HttpClient::over(stream).await.expect("handshake"), None).await;
    harness::eventually(WAIT, "the subscriber to register", || feed.stats().subscribers == 1).await;

    let published = publish_until_dropped(&feed).await;
    assert_eq!(feed.stats().subscribers, 0, "dropped, not kept with a growing queue");

    // The slow reader wakes up: it gets what was already in flight, then
    // the end of the stream (never a gap in the middle).
    slow.read_to_end().await;
    let got: Vec<Event> = slow.events.drain(..).collect();
    let got_ids = ids(&got);
    let k = *got_ids.last().expect("some events were in flight");
    assert_eq!(got_ids, (1..=k).collect::<Vec<_>>(), "in order, no gap");
    assert!(k < published, "it fell behind: {k} of {published}");
    eprintln!("stalled reader: received {k} of {published} before being dropped");

    // It comes back with Last-Event-ID and gets exactly the rest.
    let mut back = Sub::open(addr, Some(slow.parser.last_event_id())).await;
    let mut rest = Vec::new();
    while rest.len() < (published - k) as usize {
        rest.push(back.next_event().await);
    }
    assert_eq!(ids(&rest), ((k + 1)..=published).collect::<Vec<_>>());
    assert!(rest.iter().all(|e| e.event == "update"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_client_that_hangs_up_leaves_nothing_behind() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let subs = vec![Sub::open(server.addr(), None).await, Sub::open(server.addr(), None).await];
    harness::eventually(WAIT, "two subscribers", || feed.stats().subscribers == 2).await;
    drop(subs);
    // No publish and no keep-alive needed: hyper sees the closed socket and
    // drops the body stream, whose Subscription unregisters itself.
    harness::eventually(WAIT, "the subscriber gauge back to zero", || {
        feed.stats().subscribers == 0
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let mut sub = Sub::open(server.addr(), None).await;
    sub.raw_until("retry:").await;
    within(WAIT, "shutdown with a stream open", server.shutdown()).await.expect("clean shutdown");
    within(WAIT, "the stream to end", sub.read_to_end()).await;
}

#[tokio::test]
async fn the_client_reconnects_after_a_restart_and_resumes_by_id() {
    let feed = Feed::default();
    let cfg = Config { retry: Duration::from_millis(20), ..config() };
    let server = start(&feed, cfg.clone()).await;
    let addr = server.addr();
    let token = harness::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client_cfg = sse::ClientConfig {
        retry: Duration::from_millis(20),
        idle_timeout: WAIT,
        ..sse::ClientConfig::default()
    };
    let follower = tokio::spawn(sse::follow(addr, 4, client_cfg, token, move |e| {
        let _ = tx.send(e.clone());
    }));
    harness::eventually(WAIT, "the follower to subscribe", || feed.stats().subscribers == 1).await;
    feed.publish(json!(1));
    feed.publish(json!(2));
    let mut seen = vec![within(WAIT, "event 1", rx.recv()).await.expect("event")];
    seen.push(within(WAIT, "event 2", rx.recv()).await.expect("event"));
    server.shutdown().await.expect("clean shutdown");
    // Published while the server is down.
    feed.publish(json!(3));
    feed.publish(json!(4));
    // The same port again (SO_REUSEADDR, as servers do), the same feed.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("rebinding the same port");
    let listener = socket.listen(64).expect("listen");
    let f = feed.clone();
    let again =
        TaskServer::start_with(listener, move |l, t| sse::serve(l, f, cfg, t)).expect("start");
    let report =
        within(WAIT, "the follower to get all 4", follower).await.expect("task").expect("follow");
    while let Ok(e) = rx.try_recv() {
        seen.push(e);
    }
    assert_eq!(ids(&seen), vec![1, 2, 3, 4], "no gap, no repeat across the restart");
    assert!(report.connections >= 2, "{report:?}");
    again.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_input_and_the_page() {
    let feed = Feed::default();
    let server = start(&feed, config()).await;
    let addr = server.addr();
    let with_id = |id: &str| {
        format!(
            "GET /events HTTP/1.1\r\nHost: {addr}\r\nLast-Event-ID: {id}\r\nConnection: close\r\n\r\n"
        )
    };
    for bad in ["abc", "-1", "1.5"] {
        let resp = harness::http::exchange(addr, with_id(bad).as_bytes()).await.expect("GET");
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
        let v: Value = serde_json::from_slice(&resp.body).expect("JSON error");
        assert!(v["error"].as_str().is_some_and(|m| m.contains("Last-Event-ID")), "{v}");
    }
    let resp = harness::http::get(addr, "/nope").await.expect("GET");
    assert_eq!(resp.status, 404);
    assert!(resp.header("content-type").is_some_and(|t| t.contains("json")));
    let post = |ct: &str, body: &[u8]| {
        let mut r = format!(
            "POST /update HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let big = vec![b' '; feed::http::MAX_UPDATE_BYTES + 1];
    for (req, status) in [
        (post("application/json", &big), 413),
        (post("application/json", b"nope"), 400),
        (post("text/plain", b"1"), 415),
        (post("application/json; charset=utf-8", br#"{"ok":true}"#), 200),
    ] {
        let resp = harness::http::exchange(addr, &req).await.expect("POST");
        assert_eq!(resp.status, status, "{}", resp.text());
    }
    assert_eq!(feed.newest_id(), 1, "only the good update was published");
    let page = harness::http::get(addr, "/").await.expect("GET /");
    assert!(page.text().contains("new EventSource('/events')"));
    server.shutdown().await.expect("clean shutdown");
}

/// A stand-in server: answers every connection with `head` and then either
/// stays silent (keeping the socket open) or closes. Counts connections.
async fn fake_server(
    head: &'static str,
    then_close: bool,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await; // the request; its content is not checked here
            let _ = s.write_all(head.as_bytes()).await;
            if !then_close {
                open.push(s); // silent, but open
            }
        }
    });
    (addr, count)
}

#[tokio::test]
async fn the_client_abandons_a_silent_connection_and_reconnects() {
    // A stream that starts properly and then says nothing, not even a
    // keep-alive comment: the client cannot tell it from a dead link.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nC\r\nretry: 10\n\n\r\n";
    let (addr, connections) = fake_server(head, false).await;
    let token = harness::CancellationToken::new();
    let cfg = sse::ClientConfig {
        retry: Duration::from_millis(10),
        idle_timeout: Duration::from_millis(100),
        ..sse::ClientConfig::default()
    };
    let follower = tokio::spawn(sse::follow(addr, 1, cfg, token.clone(), |_| {}));
    harness::eventually(WAIT, "the client to give up on the silent stream and reconnect", || {
        connections.load(std::sync::atomic::Ordering::SeqCst) >= 3
    })
    .await;
    token.cancel();
    let report =
        within(WAIT, "the client to stop", follower).await.expect("task").expect("no error");
    assert!(report.connections >= 3, "{report:?}");
}

#[tokio::test]
async fn the_client_gives_up_for_good_on_a_non_stream_answer() {
    // As EventSource does: an HTTP error is not a dropped connection.
    let head =
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let (addr, connections) = fake_server(head, true).await;
    let cfg = sse::ClientConfig {
        retry: Duration::from_millis(10),
        idle_timeout: WAIT,
        ..sse::ClientConfig::default()
    };
    let result = within(
        WAIT,
        "the client to give up",
        sse::follow(addr, 1, cfg, harness::CancellationToken::new(), |_| {}),
    )
    .await;
    let err = result.expect_err("a 404 must end the client with an error");
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry after a refusal"
    );
}

/// The shapes that grow the most between the JSON a publisher posts and the
/// event `frame` writes, each as big as the feed accepts.
#[test]
fn no_accepted_update_frames_past_the_limit() {
    let max = feed::http::MAX_UPDATE_BYTES;
    let repeat = |item: &str| {
        let n = (max - 2) / (item.len() + 1);
        format!("[{}]", vec![item; n].join(","))
    };
    let shapes = [
        format!("\"{}\"", "\\r".repeat((max - 2) / 2)),
        format!("\"{}\"", "\\n".repeat((max - 2) / 2)),
        repeat("1e15"),
        repeat("-1e15"),
        repeat("1e-7"),
    ];
    for text in shapes {
        assert!(text.len() <= max, "{} bytes", text.len());
        let data: Value = serde_json::from_str(&text).expect("valid JSON");
        let event = sse::frame(&feed::Update { id: u64::MAX, data });
        assert!(
            event.len() <= sse::MAX_FRAME_BYTES,
            "{} bytes of JSON starting {:?} framed as {} bytes",
            text.len(),
            &text[..8],
            event.len()
        );
    }
}

#[test]
#[should_panic(expected = "keep_alive must be above zero")]
fn a_zero_keep_alive_is_refused_when_the_app_is_built() {
    let config = Config { keep_alive: Duration::ZERO, ..config() };
    let _ = sse::router(Feed::default(), config, harness::CancellationToken::new());
}

#[tokio::test]
async fn the_client_gives_up_on_a_line_that_never_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that streams `data: xxxx...` forever without a newline.
    let listener = tokio::net::TcpListener::bind(harness::EPHEMERAL).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: ";
        let _ = s.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 16 * 1024];
        while s.write_all(&chunk).await.is_ok() {
            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let cfg = sse::ClientConfig { max_event_bytes: 64 * 1024, ..sse::ClientConfig::default() };
    let result = within(
        WAIT,
        "the client to give up on the endless line",
        sse::follow(addr, 1, cfg, harness::CancellationToken::new(), |_| {}),
    )
    .await;
    let err = result.expect_err("an endless line must end the client with an error");
    assert!(err.to_string().contains("over 65536 bytes"), "{err}");
    assert!(sent.load(std::sync::atomic::Ordering::SeqCst) >= 64 * 1024);
}

/// A subscriber that stops reading is not only dropped from the feed: its
/// connection is closed once a write has made no progress for the write
/// timeout, so it stops holding a connection slot and kernel buffers. Here
/// the server has one slot, so nobody else is served until it is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stopped_reading_is_closed_and_frees_its_slot() {
    let feed = Feed::new(4096);
    let serve_config = http_serve::ServeConfig {
        max_connections: 1,
        write_timeout: Duration::from_millis(300),
        ..http_serve::ServeConfig::default()
    };
    let app_feed = feed.clone();
    let server = TaskServer::start(move |listener, token| {
        let app = sse::router(app_feed, Config { queue: 8, ..config() }, token.clone());
        http_serve::serve(listener, app, token, serve_config)
    })
    .await
    .expect("binding 127.0.0.1:0");
    let addr = server.addr();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(addr).await.expect("connect");
    let mut slow = Sub::open_on(HttpClient::over(stream).await.expect("handshake"), None).await;
    harness::eventually(WAIT, "the subscriber to register", || feed.stats().subscribers == 1).await;

    // Publish until the stalled subscriber is dropped from the feed, paced
    // (as in the test above) so that the server fills the socket's buffers
    // first: the write that then waits is the one the timeout is about.
    publish_until_dropped(&feed).await;
    // The slot comes back: a new client is served (503 until then).
    let started = std::time::Instant::now();
    loop {
        if let Ok(resp) = harness::http::get(addr, "/stats").await
            && resp.status == 200
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "the stalled subscriber still holds the only slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the stalled reader, waking up, reads what the buffers held and
    // then finds the connection cut mid-stream: the server gave up on it.
    let ended = within(WAIT, "the stalled stream to end", async {
        loop {
            match slow.body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    })
    .await;
    assert!(ended.is_err(), "the stream ended cleanly; it should have been cut");
    server.shutdown().await.expect("clean shutdown");
}
