//! The promises of chapter 5, over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use feed::Feed;
use harness::http::{Response, exchange, get};
use harness::{TaskServer, within};
use serde_json::{Value, json};
use short_polling::Poll;

const WAIT: Duration = Duration::from_secs(10);

async fn start(feed: &Feed) -> TaskServer<std::io::Result<()>> {
    let feed = feed.clone();
    TaskServer::start(move |listener, token| short_polling::serve(listener, feed, token))
        .await
        .expect("binding 127.0.0.1:0")
}

fn poll_of(resp: &Response) -> Poll {
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    serde_json::from_slice(&resp.body).expect("GET /data answers a Poll")
}

fn get_with(addr: SocketAddr, path: &str, if_none_match: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nIf-None-Match: {if_none_match}\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn a_poll_answers_at_once_with_what_is_newer() {
    let feed = Feed::default();
    for i in 1..=3 {
        feed.publish(json!(i));
    }
    let server = start(&feed).await;
    let resp = within(WAIT, "an answer", get(server.addr(), "/data?since=1")).await.expect("GET");
    assert_eq!(resp.header("etag"), Some("\"3\""));
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
    let poll = poll_of(&resp);
    assert_eq!(poll.updates.iter().map(|u| u.id).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!((poll.data, poll.id, poll.missed), (Some(json!(3)), 3, 0));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn nothing_new_is_answered_at_once_not_held() {
    let feed = Feed::default();
    feed.publish(json!("only"));
    let server = start(&feed).await;
    // A short deadline: a server that held the request would fail this.
    let resp =
        within(Duration::from_secs(2), "an immediate answer", get(server.addr(), "/data?since=1"))
            .await
            .expect("GET");
    assert_eq!(poll_of(&resp), Poll { data: None, id: 1, updates: vec![], missed: 0 });
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn without_since_the_answer_has_the_notes_shape() {
    let feed = Feed::default();
    let server = start(&feed).await;
    let addr = server.addr();
    let v: Value =
        serde_json::from_slice(&get(addr, "/data").await.expect("GET").body).expect("JSON");
    assert!(v.get("data").is_some_and(Value::is_null), "empty feed: data is null: {v}");
    feed.publish(json!("Initial Data"));
    feed.publish(json!("Updated Data"));
    let v: Value =
        serde_json::from_slice(&get(addr, "/data").await.expect("GET").body).expect("JSON");
    assert_eq!(v["data"], json!("Updated Data"), "the newest payload");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn if_none_match_with_the_current_tag_gets_a_bodiless_304() {
    let feed = Feed::default();
    feed.publish(json!("a"));
    let server = start(&feed).await;
    let addr = server.addr();
    for tag in ["\"1\"", "W/\"1\"", "\"0\", \"1\"", "*"] {
        let resp =
            exchange(addr, get_with(addr, "/data?since=1", tag).as_bytes()).await.expect("GET");
        assert_eq!(resp.status, 304, "If-None-Match: {tag}");
        assert_eq!(resp.header("etag"), Some("\"1\""));
        assert!(resp.header("content-length").is_none_or(|n| n == "0"));
    }
    // A stale tag gets the full answer with the new tag.
    feed.publish(json!("b"));
    let resp =
        exchange(addr, get_with(addr, "/data?since=1", "\"1\"").as_bytes()).await.expect("GET");
    assert_eq!(resp.header("etag"), Some("\"2\""));
    assert_eq!(poll_of(&resp).data, Some(json!("b")));
    assert_eq!(feed.stats().not_modified, 4);
    server.shutdown().await.expect("clean shutdown");
}

/// The poller asks several times per update; the counters show the waste,
/// and with ETag the idle answers are 304s.
#[tokio::test]
async fn the_poller_counts_requests_against_updates() {
    for use_etag in [false, true] {
        let feed = Feed::default();
        let server = start(&feed).await;
        let token = harness::CancellationToken::new();
        let poller = tokio::spawn(short_polling::follow(
            server.addr(),
            0,
            Duration::from_millis(10),
            use_etag,
            3,
            token,
            |_| {},
        ));
        for i in 0..3u64 {
            // Let the poller ask a few times between updates.
            let before = feed.stats().requests;
            harness::eventually(WAIT, "a few idle polls", || feed.stats().requests >= before + 3)
                .await;
            feed.publish(json!(i));
        }
        let report =
            within(WAIT, "the poller to get 3", poller).await.expect("task").expect("poll");
        assert_eq!(report.updates, 3);
        // 3 requests before each publish (the one that fetches the previous
        // update may be among them), plus the one that fetches the last.
        assert!(report.requests >= 10, "several polls per update: {report:?}");
        assert!(report.empty + report.not_modified >= 7, "most polls found nothing: {report:?}");
        assert_eq!(report.connections, 1, "keep-alive: one connection");
        if use_etag {
            assert!(report.not_modified >= 6, "idle polls came back 304: {report:?}");
            assert_eq!(report.not_modified, feed.stats().not_modified);
        } else {
            assert_eq!(report.not_modified, 0);
            assert!(report.empty >= 7, "idle polls came back as empty 200s: {report:?}");
        }
        server.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test]
async fn bad_input_gets_json_errors_and_the_page_is_served() {
    let feed = Feed::default();
    let server = start(&feed).await;
    let addr = server.addr();
    let status_of = |r: &Response| {
        let v: Value = serde_json::from_slice(&r.body).expect("errors are JSON");
        (r.status, v["status"].as_u64().unwrap_or(0))
    };
    assert_eq!(status_of(&get(addr, "/data?since=x").await.expect("GET")), (400, 400));
    assert_eq!(status_of(&get(addr, "/data?since=5").await.expect("GET")), (400, 400));
    assert_eq!(status_of(&get(addr, "/missing").await.expect("GET")), (404, 404));
    let post = |ct: &str, body: &[u8]| {
        let mut r = format!(
            "POST /update HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let big = vec![b'7'; feed::http::MAX_UPDATE_BYTES + 1];
    assert_eq!(
        status_of(&exchange(addr, &post("application/json", &big)).await.expect("POST")),
        (413, 413)
    );
    assert_eq!(
        status_of(&exchange(addr, &post("application/json", b"{")).await.expect("POST")),
        (400, 400)
    );
    assert_eq!(
        status_of(&exchange(addr, &post("text/html", b"1")).await.expect("POST")),
        (415, 415)
    );
    assert_eq!(feed.newest_id(), 0);
    let page = get(addr, "/").await.expect("GET /");
    assert!(page.text().contains("setInterval"), "the page polls on a timer");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections() {
    let feed = Feed::default();
    let server = start(&feed).await;
    let addr = server.addr();
    let mut conn = harness::http::HttpConn::connect(addr).await.expect("connect");
    conn.send(format!("GET /data HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    assert_eq!(conn.read_response(false).await.expect("answer").status, 200);
    // The connection is open and idle (keep-alive). Shutdown must not wait
    // for the client to close it.
    within(WAIT, "shutdown with an idle connection open", server.shutdown())
        .await
        .expect("clean shutdown");
    let rest = conn.read_until_close().await.expect("the server closes the connection");
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
}

/// The counters a benchmark reads at `GET /stats` match what crossed.
#[tokio::test]
async fn stats_count_requests_304s_and_body_bytes() {
    let feed = Feed::default();
    feed.publish(json!({"text": "x"}));
    let server = start(&feed).await;
    let addr = server.addr();
    let full = get(addr, "/data?since=0").await.expect("GET");
    let cached =
        exchange(addr, get_with(addr, "/data?since=1", "\"1\"").as_bytes()).await.expect("GET");
    assert_eq!(cached.status, 304);
    let stats: feed::Stats =
        serde_json::from_slice(&get(addr, "/stats").await.expect("GET /stats").body).expect("JSON");
    assert_eq!(stats.requests, 2, "/stats itself is not counted");
    assert_eq!(stats.not_modified, 1);
    assert_eq!(stats.body_bytes, full.body.len() as u64);
    assert_eq!(stats.delivered, 1);
    assert_eq!(stats.published, 1);
    server.shutdown().await.expect("clean shutdown");
}
