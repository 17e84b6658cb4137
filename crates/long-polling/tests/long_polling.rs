//! The promises of chapter 6, over real sockets.

use std::time::Duration;

use feed::Feed;
use harness::http::{HttpConn, Response, exchange, get};
use harness::{TaskServer, within};
use long_polling::{Config, Poll};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn start(feed: &Feed, hold: Duration) -> TaskServer<std::io::Result<()>> {
    let feed = feed.clone();
    TaskServer::start(move |listener, token| {
        long_polling::serve(listener, feed, Config { hold }, token)
    })
    .await
    .expect("binding 127.0.0.1:0")
}

fn poll_of(resp: &Response) -> Poll {
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    serde_json::from_slice(&resp.body).expect("GET /data answers a Poll")
}

fn post(addr: std::net::SocketAddr, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /update HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn json_error(resp: &Response, status: u16) -> String {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert!(
        resp.header("content-type").is_some_and(|t| t.starts_with("application/json")),
        "errors are JSON: {:?}",
        resp.headers
    );
    let v: Value = serde_json::from_slice(&resp.body).expect("error body is JSON");
    assert_eq!(v["status"], status);
    v["error"].as_str().expect("an error message").to_owned()
}

#[tokio::test]
async fn a_held_poll_is_answered_by_the_next_update() {
    let feed = Feed::default();
    let server = start(&feed, WAIT).await;
    let addr = server.addr();
    let held = tokio::spawn(async move { get(addr, "/data?since=0").await });
    harness::eventually(WAIT, "the poll to be held", || feed.stats().waiting == 1).await;
    assert!(!held.is_finished(), "nothing was published, so the poll must still be held");
    let resp = within(
        WAIT,
        "the POST",
        exchange(addr, &post(addr, "application/json", br#"{"text":"hi"}"#)),
    )
    .await
    .expect("POST /update");
    assert_eq!(resp.status, 200);
    let resp =
        within(WAIT, "the held poll to be answered", held).await.expect("task").expect("GET");
    let poll = poll_of(&resp);
    assert_eq!(poll.data, Some(json!({"text": "hi"})));
    assert_eq!(poll.id, 1);
    assert_eq!(poll.missed, 0);
    server.shutdown().await.expect("clean shutdown");
}

/// The gap between two polls: an update published while no poll is held is
/// kept in the history, and the next poll (asking from the id it had) gets it
/// at once instead of being held.
#[tokio::test]
async fn an_update_published_between_polls_is_returned_by_the_next_at_once() {
    let feed = Feed::default();
    // A hold far longer than the wait below: only an immediate answer passes.
    let server = start(&feed, Duration::from_secs(600)).await;
    let addr = server.addr();
    feed.publish(json!("first"));
    let first =
        poll_of(&within(WAIT, "the first poll", get(addr, "/data?since=0")).await.expect("GET"));
    assert_eq!(first.id, 1);
    // Published after that answer and before the next poll arrives.
    feed.publish(json!("in the gap"));
    let path = format!("/data?since={}", first.id);
    let next = poll_of(
        &within(WAIT, "the next poll, answered at once", get(addr, &path)).await.expect("GET"),
    );
    assert_eq!(next.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![2]);
    assert_eq!(next.data, Some(json!("in the gap")));
    assert_eq!(feed.stats().waiting, 0, "neither poll was held");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_hold_times_out_with_data_null() {
    let feed = Feed::default();
    feed.publish(json!("old"));
    let server = start(&feed, Duration::from_millis(100)).await;
    let resp = within(WAIT, "the hold to run out", get(server.addr(), "/data?since=1"))
        .await
        .expect("GET");
    let poll = poll_of(&resp);
    assert_eq!(poll, Poll { data: None, id: 1, updates: vec![], missed: 0 });
    // The raw body keeps the notes' shape: a `data` field that is null.
    let v: Value = serde_json::from_slice(&resp.body).expect("JSON");
    assert!(v.get("data").is_some_and(Value::is_null), "{v}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn without_since_the_poll_waits_for_the_next_update_as_in_the_notes() {
    let feed = Feed::default();
    feed.publish(json!("Initial Data"));
    let server = start(&feed, WAIT).await;
    let addr = server.addr();
    let held = tokio::spawn(async move { get(addr, "/data").await });
    harness::eventually(WAIT, "the poll to be held", || feed.stats().waiting == 1).await;
    // The notes' publisher posts with no body at all.
    let req = format!(
        "POST /update HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let resp = within(WAIT, "the POST", exchange(addr, req.as_bytes())).await.expect("POST");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let poll = poll_of(&within(WAIT, "the answer", held).await.expect("task").expect("GET"));
    assert_eq!(poll.data, Some(json!(feed::http::EMPTY_UPDATE)));
    assert_eq!(poll.id, 2);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_client_too_far_behind_is_told_how_many_it_missed() {
    let feed = Feed::new(3);
    for i in 1..=5 {
        feed.publish(json!(i));
    }
    let server = start(&feed, WAIT).await;
    let poll = poll_of(
        &within(WAIT, "an immediate answer", get(server.addr(), "/data?since=1"))
            .await
            .expect("GET"),
    );
    assert_eq!(poll.missed, 1, "id 2 fell out of a history of 3");
    assert_eq!(poll.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(poll.id, 5);
    assert_eq!(poll.data, Some(json!(5)));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_waiter_that_hangs_up_leaves_nothing_behind() {
    let feed = Feed::default();
    // A hold far longer than the wait below: only noticing the hang-up can
    // bring the gauge back to zero in time.
    let server = start(&feed, Duration::from_secs(600)).await;
    let addr = server.addr();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = HttpConn::connect(addr).await.expect("connect");
        c.send(format!("GET /data?since=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("send");
        conns.push(c);
    }
    harness::eventually(WAIT, "three held polls", || feed.stats().waiting == 3).await;
    drop(conns);
    // hyper sees each socket close, drops the handler's future, and the
    // waiter guard's Drop takes it off the gauge. No publish was needed.
    harness::eventually(WAIT, "the waiter gauge to return to zero", || feed.stats().waiting == 0)
        .await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn one_update_wakes_a_thousand_waiters() {
    const WAITERS: usize = 1000;
    // Client and server ends live in this one process: 2,000 descriptors,
    // more than the common default soft limit of 1,024. Raise the soft limit
    // as far as the hard limit allows (no privileges needed for that).
    // Windows has no such limit.
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let want = 4096.min(limit.maximum.unwrap_or(u64::MAX));
        if limit.current.is_some_and(|c| c < want) {
            setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(want), ..limit })
                .expect("raising the soft open-file limit up to the hard one");
        }
    }
    let feed = Feed::default();
    let server = start(&feed, Duration::from_secs(30)).await;
    let addr = server.addr();
    let mut conns = Vec::with_capacity(WAITERS);
    for _ in 0..WAITERS {
        let mut c = HttpConn::connect(addr).await.expect("connect");
        c.send(format!("GET /data?since=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("send");
        conns.push(c);
    }
    harness::eventually(Duration::from_secs(20), "1000 held polls", || {
        feed.stats().waiting == WAITERS as u64
    })
    .await;
    feed.publish(json!("wake up"));
    let answers = within(Duration::from_secs(20), "every waiter to be answered", async {
        let mut tasks = tokio::task::JoinSet::new();
        for mut c in conns {
            tasks.spawn(async move { c.read_response(false).await });
        }
        let mut ids = Vec::new();
        while let Some(r) = tasks.join_next().await {
            ids.push(poll_of(&r.expect("task").expect("response")).id);
        }
        ids
    })
    .await;
    assert_eq!(answers.len(), WAITERS);
    assert!(answers.iter().all(|&id| id == 1));
    assert_eq!(feed.stats().delivered, WAITERS as u64);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_answers_held_polls_and_stops() {
    let feed = Feed::default();
    let server = start(&feed, Duration::from_secs(60)).await;
    let addr = server.addr();
    let held = tokio::spawn(async move { get(addr, "/data?since=0").await });
    harness::eventually(WAIT, "the poll to be held", || feed.stats().waiting == 1).await;
    // Far sooner than the 60 s hold: the handler watches the token.
    within(WAIT, "shutdown", server.shutdown()).await.expect("clean shutdown");
    let resp = within(WAIT, "the held poll's answer", held).await.expect("task").expect("GET");
    let msg = json_error(&resp, 503);
    assert!(msg.contains("shutting down"), "{msg}");
    assert_eq!(resp.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn bad_input_gets_json_errors() {
    let feed = Feed::default();
    let server = start(&feed, WAIT).await;
    let addr = server.addr();
    for bad in ["/data?since=abc", "/data?since=", "/data?since=-3"] {
        let msg = json_error(&get(addr, bad).await.expect("GET"), 400);
        assert!(msg.contains("since"), "{bad}: {msg}");
    }
    // An id from the future (the server restarted) is refused clearly.
    let msg = json_error(&get(addr, "/data?since=99").await.expect("GET"), 400);
    assert!(msg.contains("restarted"), "{msg}");
    json_error(&get(addr, "/nope").await.expect("GET"), 404);

    let big = vec![b'1'; feed::http::MAX_UPDATE_BYTES + 1];
    json_error(&exchange(addr, &post(addr, "application/json", &big)).await.expect("POST"), 413);
    json_error(
        &exchange(addr, &post(addr, "application/json", b"{not json")).await.expect("POST"),
        400,
    );
    json_error(&exchange(addr, &post(addr, "text/plain", b"\"hi\"")).await.expect("POST"), 415);
    // A body with no content type at all is refused too (only an empty one
    // is the notes' "something changed").
    let untyped = format!(
        "POST /update HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let msg = json_error(&exchange(addr, untyped.as_bytes()).await.expect("POST"), 415);
    assert!(msg.contains("none"), "{msg}");
    // A chunked body that grows past the limit is cut off too (no length up front).
    let mut chunked = format!(
        "POST /update HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        big.len()
    )
    .into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    json_error(&exchange(addr, &chunked).await.expect("POST"), 413);
    // A chunked body that is malformed (a chunk size that is not hex) is the
    // client's syntax error, 400, not a body "too large".
    let malformed = format!(
        "POST /update HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    let msg = json_error(&exchange(addr, malformed.as_bytes()).await.expect("POST"), 400);
    assert!(!msg.contains("larger"), "{msg}");
    assert_eq!(feed.newest_id(), 0, "nothing bad was published");
    server.shutdown().await.expect("still serving, and stops cleanly");
}

#[tokio::test]
async fn the_page_and_the_follow_client() {
    let feed = Feed::default();
    let server = start(&feed, WAIT).await;
    let addr = server.addr();
    let page = get(addr, "/").await.expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("fetch('/data?since='"), "the page long-polls /data");

    let token = harness::CancellationToken::new();
    let follower = tokio::spawn(long_polling::follow(addr, 0, 3, WAIT, token, |_| {}));
    for i in 0..3u64 {
        // Answered polls so far: i, plus the page. Then the next one held.
        harness::eventually(WAIT, "the follower's next poll to be held", || {
            let s = feed.stats();
            s.requests == 1 + i && s.waiting == 1
        })
        .await;
        feed.publish(json!(i));
    }
    let report =
        within(WAIT, "the follower to get 3", follower).await.expect("task").expect("follow");
    assert_eq!(report.updates, 3);
    assert_eq!(report.requests, 3, "one request per update when each was waited for");
    assert_eq!(report.connections, 1, "keep-alive: one connection for all polls");
    server.shutdown().await.expect("clean shutdown");
}
