//! The lessons' browser pages, used the way a learner uses them: each test
//! starts a lesson's real server in-process on 127.0.0.1:0, opens its page
//! at `/` in headless Chromium, posts an update through the page's own form
//! (or chats from a second tab and a Rust client), and waits for it to show
//! up in the page. Each also checks one thing that is only true of its
//! technique, from the server's own counters: the short-polling page asks
//! again and again and gets 304s, the long-polling page's request is held,
//! the SSE page reads one `EventSource` stream, the chat page's messages
//! reach other clients, the push page only gets the events it subscribed to
//! and, after a drop, is replayed what it missed.

use std::net::SocketAddr;
use std::time::Duration;

use browser_tests::Browser;
use feed::Feed;
use harness::ws::WsClient;
use harness::{TaskServer, eventually};
use serde_json::json;

/// How long a server-side condition may take to become true. The page's
/// short-polling interval is 1 s, so a few seconds covers a few polls.
const WAIT: Duration = Duration::from_secs(20);

type Server = TaskServer<std::io::Result<()>>;

fn page(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}

/// Types `text` into the feed page's form and submits it, as a user would.
/// The page posts `{"text": ...}` to `/update`.
async fn post_through_form(browser: &Browser, text: &str) {
    browser.fill("#t", text).await;
    browser.click("#f button").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn short_polling_page_shows_a_posted_update_and_revalidates_with_304s() {
    let feed = Feed::default();
    let f = feed.clone();
    let server: Server = TaskServer::start(move |l, t| short_polling::serve(l, f, t))
        .await
        .expect("binding 127.0.0.1:0");
    let browser = Browser::start().await;
    browser.goto(&page(server.addr())).await;

    post_through_form(&browser, "polled in chromium").await;
    browser.wait_for_text(r#"#1 {"text":"polled in chromium"}"#).await;

    // Short polling asks on a timer, news or not; with nothing new, the
    // browser's own HTTP cache sends If-None-Match (the server said
    // `Cache-Control: no-cache` and gave an ETag) and gets a bodiless 304.
    // The page's script never mentions ETags: this is the browser's doing.
    eventually(WAIT, "the page's idle polls to come back 304", || feed.stats().not_modified >= 2)
        .await;
    let title = browser.eval("return document.title;", json!([])).await;
    let asked: u64 = title
        .as_str()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the page's title counts its requests: {title}"));
    assert!(asked >= 3, "the page polled only {asked} times ({title})");
    // The update was shown once, although the page asked many times.
    let text = browser.text().await;
    assert_eq!(text.matches("polled in chromium").count(), 1, "shown twice:\n{text}");

    drop(browser);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn long_polling_page_is_held_then_answered_by_a_posted_update() {
    let feed = Feed::default();
    let f = feed.clone();
    // The lesson's real 25 s hold: the test never waits for it to run out.
    let config = long_polling::Config::default();
    let server: Server = TaskServer::start(move |l, t| long_polling::serve(l, f, config, t))
        .await
        .expect("binding 127.0.0.1:0");
    let browser = Browser::start().await;
    browser.goto(&page(server.addr())).await;

    // The page's first poll finds nothing new and is held open by the server.
    eventually(WAIT, "the page's poll to be held", || feed.stats().waiting == 1).await;
    let before = feed.stats().requests;

    post_through_form(&browser, "held, then answered").await;
    browser.wait_for_text(r#"#1 {"text":"held, then answered"}"#).await;

    // The held poll was answered by the publish, and the page asked again at
    // once, and is held again: one request per update, not one per second.
    eventually(WAIT, "the page's next poll to be held", || feed.stats().waiting == 1).await;
    let after = feed.stats().requests;
    // The held poll, the POST, maybe the browser's /favicon.ico (a 404).
    assert!(after - before <= 3, "{} requests for one update", after - before);
    let text = browser.text().await;
    assert!(!text.contains("hold timed out"), "the 25 s hold did not run out:\n{text}");

    drop(browser);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn sse_page_gets_posted_updates_over_one_event_source() {
    let feed = Feed::default();
    let f = feed.clone();
    let config = sse::Config::default();
    let server: Server = TaskServer::start(move |l, t| sse::serve(l, f, config, t))
        .await
        .expect("binding 127.0.0.1:0");
    let browser = Browser::start().await;
    browser.goto(&page(server.addr())).await;
    browser.wait_for_text("stream open").await;

    // The page really uses the browser's EventSource, and it is open.
    let es = browser
        .eval(
            "return typeof es !== 'undefined' && es instanceof EventSource \
             ? [es.readyState === EventSource.OPEN, new URL(es.url).pathname] : null;",
            json!([]),
        )
        .await;
    assert_eq!(es, json!([true, "/events"]), "the page has no open EventSource on /events");
    assert_eq!(feed.stats().subscribers, 1);

    post_through_form(&browser, "first").await;
    browser.wait_for_text(r#"#1 {"text":"first"}"#).await;
    post_through_form(&browser, "second").await;
    browser.wait_for_text(r#"#2 {"text":"second"}"#).await;

    // Both came down the same response: still one subscriber, no reconnect.
    assert_eq!(feed.stats().subscribers, 1);
    assert_eq!(feed.stats().delivered, 2);
    let text = browser.text().await;
    assert_eq!(text.matches("stream open").count(), 1, "the stream reconnected:\n{text}");

    drop(browser);
    server.shutdown().await.expect("clean shutdown");
}

/// Opens the chat page in the current tab and chooses `name` through the
/// page's own form.
async fn join_in_page(browser: &Browser, addr: SocketAddr, name: &str) {
    browser.goto(&page(addr)).await;
    browser.wait_for_text("connected; type your name").await;
    browser.fill("#line", name).await;
    browser.click("#form button").await;
    browser.wait_for_text(&format!("{name} joined lobby")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn websocket_chat_page_talks_to_another_tab_and_a_rust_client() {
    let chat = websocket_chat::Chat::new(websocket_chat::Config::default());
    let c = chat.clone();
    let server: Server =
        TaskServer::start(move |l, t| c.serve(l, t)).await.expect("binding 127.0.0.1:0");
    let addr = server.addr();
    let browser = Browser::start().await;
    join_in_page(&browser, addr, "alice").await;
    let alice_tab = browser.new_tab().await;
    join_in_page(&browser, addr, "bob").await;

    // A Rust client in the same room, to see what the page puts on the wire.
    let mut carol = WsClient::connect(&format!("ws://{addr}/ws")).await.expect("connect");
    carol.send_json(&json!({"type": "username", "data": "carol"})).await.expect("send name");
    carol
        .recv_json_where(WAIT, |v| v["type"] == "info" && v["message"] == "carol joined lobby")
        .await
        .expect("carol's join notice");
    assert_eq!(chat.stats().named, 3);

    // Bob types in his tab; the page's own send path reaches Rust...
    browser.fill("#line", "hello from bob's tab").await;
    browser.click("#form button").await;
    let got = carol
        .recv_json_where(WAIT, |v| v["type"] == "message")
        .await
        .expect("bob's message at carol");
    assert_eq!(
        got,
        json!({"type": "message", "username": "bob", "message": "hello from bob's tab",
               "room": "lobby"})
    );
    browser.wait_for_text("[lobby] bob: hello from bob's tab").await;
    // ...and the other tab, over its own WebSocket.
    browser.switch_to(&alice_tab).await;
    browser.wait_for_text("[lobby] bob: hello from bob's tab").await;

    // Rust speaks; the page shows it.
    carol.send_json(&json!({"type": "message", "data": "hi from rust"})).await.expect("send");
    browser.wait_for_text("[lobby] carol: hi from rust").await;

    drop(browser);
    // The tabs' sockets went with the browser; the server notices.
    eventually(WAIT, "the tabs' connections to close", || chat.stats().connections == 1).await;
    carol.close().await.expect("close carol");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn push_page_gets_only_its_events_and_catches_up_after_a_drop() {
    let push = push_notifications::Push::new(push_notifications::Config::default());
    let p = push.clone();
    let server: Server =
        TaskServer::start(move |l, t| p.serve(l, t)).await.expect("binding 127.0.0.1:0");
    let browser = Browser::start().await;
    browser.goto(&page(server.addr())).await;
    browser.wait_for_text("subscribed to newMessage").await;
    assert_eq!(push.stats().subscribers.get("newMessage"), Some(&1));

    // Published through the page's own form (POST /notify)...
    browser.fill("#payload", "from the form").await;
    browser.click("#pub button").await;
    browser.wait_for_text(r#"#1 newMessage: "from the form""#).await;

    // ...and from Rust. An event the page did not subscribe to is not
    // pushed to it: #2 never shows, #3 does.
    push.publish("tick", json!({"tick": 1}));
    push.publish("newMessage", json!({"from": "rust"}));
    browser.wait_for_text(r#"#3 newMessage: {"from":"rust"}"#).await;
    let text = browser.text().await;
    assert!(!text.contains("#2"), "the page got an event it never asked for:\n{text}");

    // The page's subscribe form adds an event on the same connection.
    browser.fill("#event", "tick").await;
    browser.click("#sub button").await;
    browser.wait_for_text("subscribed to tick").await;
    let published = push.publish("tick", json!({"tick": 2}));
    assert_eq!(published.delivered, 1, "the page is the one tick subscriber");
    browser.wait_for_text(r#"#4 tick: {"tick":2}"#).await;
    assert_eq!(push.stats().connections, 1, "one WebSocket for both events");

    // A drop: what is published while the page is away is replayed when it
    // comes back, because it resubscribes with the last id it saw.
    browser.eval("ws.close(); return true;", json!([])).await;
    eventually(WAIT, "the page's socket to close", || push.stats().connections == 0).await;
    let away = push.publish("newMessage", json!("while away"));
    assert_eq!((away.id, away.delivered), (5, 0), "nobody was subscribed to get it live");
    browser.wait_for_text(r#"#5 newMessage: "while away""#).await;
    let text = browser.text().await;
    assert_eq!(text.matches("#4 tick").count(), 1, "the replay repeated #4:\n{text}");

    drop(browser);
    eventually(WAIT, "the page's subscriptions to go with its socket", || {
        push.stats().subscribers.is_empty()
    })
    .await;
    server.shutdown().await.expect("clean shutdown");
}
