//! Every promise of chapter 8, over real sockets.

use std::time::Duration;

use base64::Engine as _;
use harness::ws::{Frame, RawWs, SAMPLE_KEY, WEBSOCKET_GUID, WsClient, opcode};
use harness::{TaskServer, eventually, within};
use serde_json::{Value, json};
use websocket_chat::conn::Limits;
use websocket_chat::{Chat, Config, MAX_NAME_CHARS, close_code};

mod common;
use common::ws::{assert_violations_closed_with_1002, fast_heartbeat, handshake_status};
use common::*;

#[tokio::test]
async fn handshake_accept_is_sha1_of_key_and_guid() {
    let (server, _) = start(quick()).await;
    let raw = RawWs::connect(server.addr(), "/ws").await.expect("upgrade");
    // Compute what RFC 6455 says the answer must be: base64(SHA-1(key + GUID)).
    let digest = sha1_smol::Sha1::from(format!("{SAMPLE_KEY}{WEBSOCKET_GUID}")).digest().bytes();
    let expected = base64::engine::general_purpose::STANDARD.encode(digest);
    assert_eq!(expected, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "the RFC's own example");
    let head = raw.response_head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let accept = raw
        .response_head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-accept: "))
        .or_else(|| {
            raw.response_head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Accept: "))
        })
        .expect("an accept header");
    assert_eq!(accept.trim(), expected);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_notes_protocol_works_unchanged() {
    let (server, _) = start(quick()).await;
    let mut alice = join(server.addr(), "alice").await;
    let mut bob = join(server.addr(), "bob").await;
    let notice = next_of_type(&mut alice, "info").await;
    assert_eq!(notice, json!({"type": "info", "message": "bob joined lobby"}));
    say(&mut alice, "hello").await;
    for c in [&mut alice, &mut bob] {
        let m = next_of_type(c, "message").await;
        assert_eq!(m["username"], "alice");
        assert_eq!(m["message"], "hello");
        assert_eq!(m["room"], "lobby");
    }
    drop(bob);
    let left = next_of_type(&mut alice, "info").await;
    assert_eq!(left["message"], "bob left lobby");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn usernames_are_validated_and_the_connection_survives() {
    let (server, chat) = start(quick()).await;
    let _alice = join(server.addr(), "alice").await;
    let mut c = WsClient::connect(&url(server.addr())).await.expect("connect");
    let too_long = "x".repeat(MAX_NAME_CHARS + 1);
    for (name, complaint) in
        [("", "empty"), ("   ", "empty"), (too_long.as_str(), "at most"), ("ALICE", "taken")]
    {
        c.send_json(&json!({"type": "username", "data": name})).await.expect("send");
        let e = next_of_type(&mut c, "error").await;
        let text = e["message"].as_str().expect("error text");
        assert!(text.contains(complaint), "{name:?}: {text}");
    }
    // Nothing before a name is accepted either.
    say(&mut c, "hi").await;
    let e = next_of_type(&mut c, "error").await;
    assert!(e["message"].as_str().expect("text").contains("username"), "{e}");
    // And after all that, the same connection can still join.
    c.send_json(&json!({"type": "username", "data": "carol"})).await.expect("send");
    let ok = next_of_type(&mut c, "info").await;
    assert_eq!(ok["message"], "carol joined lobby");
    assert_eq!(chat.stats().named, 2);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_name_is_free_again_once_its_holder_leaves() {
    let (server, chat) = start(quick()).await;
    let alice = join(server.addr(), "alice").await;
    drop(alice);
    eventually(Duration::from_secs(5), "alice's connection gone", || chat.stats().connections == 0)
        .await;
    // The set of names in use forgets "alice" with her connection, so the
    // name (in any case) can be taken again.
    let mut again = WsClient::connect(&url(server.addr())).await.expect("connect");
    again.send_json(&json!({"type": "username", "data": "Alice"})).await.expect("send");
    let ok = next_of_type(&mut again, "info").await;
    assert_eq!(ok["message"], "Alice joined lobby");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_unknown_and_binary_messages_get_errors_not_disconnects() {
    let (server, _) = start(quick()).await;
    let mut c = join(server.addr(), "alice").await;
    for bad in ["not json", "{\"type\":\"dance\",\"data\":1}", "{\"data\":\"x\"}", "[1,2]"] {
        c.send_text(bad).await.expect("send");
        let e = next_of_type(&mut c, "error").await;
        assert!(e["message"].as_str().expect("text").contains("could not understand"), "{e}");
    }
    c.send(tokio_tungstenite::tungstenite::Message::binary(vec![1u8, 2, 3])).await.expect("send");
    let e = next_of_type(&mut c, "error").await;
    assert!(e["message"].as_str().expect("text").contains("binary"), "{e}");
    // Still connected and still chatting.
    say(&mut c, "still here").await;
    assert_eq!(next_of_type(&mut c, "message").await["message"], "still here");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn rooms_keep_messages_apart_and_who_lists_them() {
    let (server, _) = start(quick()).await;
    let mut alice = join(server.addr(), "alice").await;
    let mut bob = join(server.addr(), "bob").await;
    bob.send_json(&json!({"type": "join", "data": "rust"})).await.expect("join");
    let left = alice.recv_json_where(WAIT, |v| v["message"] == "bob left lobby").await;
    left.expect("alice sees bob leave the lobby");
    bob.recv_json_where(WAIT, |v| v["message"] == "bob joined rust").await.expect("bob in rust");

    say(&mut alice, "lobby only").await;
    say(&mut bob, "rust only").await;
    let a = next_of_type(&mut alice, "message").await;
    assert_eq!((a["message"].as_str(), a["room"].as_str()), (Some("lobby only"), Some("lobby")));
    let b = next_of_type(&mut bob, "message").await;
    assert_eq!((b["message"].as_str(), b["room"].as_str()), (Some("rust only"), Some("rust")));

    bob.send_json(&json!({"type": "who"})).await.expect("who");
    let who = next_of_type(&mut bob, "who").await;
    assert_eq!(who, json!({"type":"who","room":"rust","users":["bob"],"online":["alice","bob"]}));

    bob.send_json(&json!({"type": "leave"})).await.expect("leave");
    alice.recv_json_where(WAIT, |v| v["message"] == "bob joined lobby").await.expect("back");
    say(&mut bob, "back in the lobby").await;
    let a = next_of_type(&mut alice, "message").await;
    assert_eq!(a["message"], "back in the lobby");
    // Leaving the lobby is an error, not a move.
    bob.send_json(&json!({"type": "leave"})).await.expect("leave");
    assert!(
        next_of_type(&mut bob, "error").await["message"].as_str().expect("t").contains("lobby")
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_peer_that_never_pongs_is_dropped_and_one_that_does_stays() {
    let config = Config { connection: fast_heartbeat(quick().connection), ..quick() };
    let (server, chat) = start(config).await;
    // The raw client reads (so it sees the pings) but never answers.
    let mut mute = RawWs::connect(server.addr(), "/ws").await.expect("upgrade");
    let mut pings = 0;
    let close = within(WAIT, "the heartbeat close", async {
        loop {
            match mute.read_frame(WAIT).await.expect("read") {
                Some(f) if f.opcode == opcode::PING => pings += 1,
                Some(f) if f.opcode == opcode::CLOSE => return f,
                Some(f) => panic!("unexpected frame {f:?}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    })
    .await;
    assert!(pings >= 2, "pinged {pings} times before giving up");
    assert_eq!(close.close_code(), Some(close_code::HEARTBEAT_TIMEOUT));
    assert!(close.close_reason().contains("no pong"), "{}", close.close_reason());

    // A real client answers pings just by reading; it outlives many intervals.
    let mut alice = join(server.addr(), "alice").await;
    let quiet = alice.recv_text(Duration::from_millis(800)).await;
    assert!(quiet.is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut), "no messages");
    alice.send_json(&json!({"type": "who"})).await.expect("still open");
    assert_eq!(next_of_type(&mut alice, "who").await["users"], json!(["alice"]));
    assert_eq!(chat.stats().heartbeat_timeouts, 1);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_a_reason_and_memory_stays_bounded() {
    const QUEUE: usize = 8;
    // Alice sends hundreds of lines as fast as they come back: far over the
    // per-client send limit, which this test is not about, so it is lifted.
    let connection =
        Limits { queue_capacity: QUEUE, close_grace: Duration::from_secs(5), ..quick().connection };
    let config = Config { connection, send_rate: 1_000_000, send_burst: 4, ..quick() };
    let (server, chat) = start(config).await;
    let mut alice = join(server.addr(), "alice").await;
    let mut bob = join(server.addr(), "bob").await;
    let mut slow = connect_non_reader(server.addr()).await;
    alice.recv_json_where(WAIT, |v| v["message"] == "slow joined lobby").await.expect("slow in");

    // Alice chats in 8 KiB lines, each time waiting for her own line to come
    // back, so she and Bob keep up and only the non-reader falls behind.
    let line = "x".repeat(8 * 1024);
    let mut max_queued = 0;
    let mut sent = 0;
    while chat.stats().kicked_slow == 0 {
        assert!(sent < 20_000, "the non-reader was never disconnected");
        say(&mut alice, &line).await;
        next_of_type(&mut alice, "message").await;
        next_of_type(&mut bob, "message").await;
        sent += 1;
        max_queued = max_queued.max(chat.stats().queued);
    }
    // What the chapter quotes (`cargo test -p websocket-chat stops_reading -- --nocapture`).
    eprintln!("non-reader dropped after {sent} lines of 8 KiB; at most {max_queued} queued");
    // The bound: never more than one full queue per client waiting in memory.
    assert!(max_queued <= 3 * QUEUE, "queued {max_queued} messages");

    // Never silently: once it reads again, the non-reader finds, after the
    // backlog, a close frame that says why.
    let close = slow.read_until_close(WAIT).await.expect("read backlog");
    let close = close.expect("a close frame, not just a dropped connection");
    assert_eq!(close.close_code(), Some(close_code::POLICY));
    assert!(close.close_reason().contains("too slow"), "{}", close.close_reason());

    // The others chat on.
    bob.recv_json_where(WAIT, |v| v["message"] == "slow left lobby").await.expect("leave notice");
    say(&mut bob, "still here").await;
    let m = alice.recv_json_where(WAIT, |v| v["message"] == "still here").await;
    assert_eq!(m.expect("alice hears bob")["username"], "bob");
    eventually(WAIT, "the non-reader to be forgotten", || chat.stats().connections == 2).await;
    assert_eq!(chat.stats().kicked_slow, 1);
    // Polite goodbyes, so the server's long grace is not spent waiting for them.
    alice.close().await.expect("close");
    bob.close().await.expect("close");
    drop(slow);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009() {
    let config =
        Config { connection: Limits { max_message_bytes: 1024, ..quick().connection }, ..quick() };
    let (server, chat) = start(config).await;
    let mut alice = join(server.addr(), "alice").await;
    // Right at the limit is fine...
    let fits = json!({"type": "message", "data": "y".repeat(990)}).to_string();
    assert!(fits.len() <= 1024);
    alice.send_text(&fits).await.expect("send");
    next_of_type(&mut alice, "message").await;
    // ...one byte over is not.
    alice.send_text(&"z".repeat(1025)).await.expect("send");
    alice.expect_close(WAIT, close_code::TOO_BIG, "too long").await;
    eventually(WAIT, "the big sender to be forgotten", || chat.stats().connections == 0).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_closed_with_1007() {
    let (server, _) = start(quick()).await;
    let mut raw = RawWs::connect(server.addr(), "/ws").await.expect("upgrade");
    // 0xC3 starts a two-byte sequence; 0x28 cannot continue it.
    raw.send_text_frame(&[0xC3, 0x28]).await.expect("send");
    let close = raw.read_until_close(WAIT).await.expect("read").expect("a close frame");
    assert_eq!(close.close_code(), Some(close_code::INVALID_DATA));
    assert!(close.close_reason().contains("UTF-8"), "{}", close.close_reason());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503() {
    let (server, chat) = start(Config {
        connection: Limits { max_connections: 2, ..quick().connection },
        ..quick()
    })
    .await;
    let a = join(server.addr(), "a").await;
    let _b = join(server.addr(), "b").await;
    let refused = WsClient::connect(&url(server.addr())).await.expect_err("third is refused");
    assert!(refused.to_string().contains("503"), "{refused}");
    a.close().await.expect("close");
    eventually(WAIT, "a's slot to free up", || chat.stats().connections == 1).await;
    let _c = join(server.addr(), "c").await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_sends_1001_to_every_open_connection() {
    let (server, _) = start(quick()).await;
    let mut alice = join(server.addr(), "alice").await;
    let mut nameless = WsClient::connect(&url(server.addr())).await.expect("connect");
    server.shutdown().await.expect("clean shutdown");
    alice.expect_close(WAIT, close_code::GOING_AWAY, "shutting down").await;
    nameless.expect_close(WAIT, close_code::GOING_AWAY, "shutting down").await;
}

#[tokio::test]
async fn the_page_is_served_at_the_root() {
    let (server, _) = start(quick()).await;
    let resp = harness::http::get(server.addr(), "/").await.expect("GET /");
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").is_some_and(|v| v.starts_with("text/html")));
    assert!(resp.text().contains("new WebSocket("), "the page opens a WebSocket");
    server.shutdown().await.expect("clean shutdown");
}

/// The notes' chat client connects to `ws://host:port` (the path `/`), as
/// its Node server took every handshake on one path. Here `/` is also the
/// page, so a handshake there is upgraded as on `/ws`; a plain GET still
/// gets the page, and a request that asks for a WebSocket and gets the
/// handshake wrong is told so, not sent the page.
#[tokio::test]
async fn a_handshake_on_the_root_is_upgraded_and_chats() {
    let (server, chat) = start(quick()).await;
    let addr = server.addr();
    // What the notes' client sends, with only the port changed.
    let mut notes = join_at(&format!("ws://{addr}"), "notes").await;
    let mut alice = join(addr, "alice").await;
    say(&mut notes, "hello from the root").await;
    let m = next_of_type(&mut alice, "message").await;
    assert_eq!(
        (m["username"].as_str(), m["message"].as_str()),
        (Some("notes"), Some("hello from the root"))
    );
    say(&mut alice, "and back").await;
    let m = notes.recv_json_where(WAIT, |v| v["message"] == "and back").await;
    assert_eq!(m.expect("alice's answer on the root connection")["username"], "alice");
    assert_eq!(chat.stats().named, 2);

    let page = harness::http::get(addr, "/").await.expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("new WebSocket("), "a plain GET / still gets the page");
    let wrong_version = common::ws::upgrade_from(&addr.to_string(), "/", None)
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let refused = harness::http::exchange(addr, wrong_version.as_bytes()).await.expect("answer");
    assert_eq!(refused.status, 400, "{}", refused.text());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_terminal_client_reconnects_with_backoff_when_the_server_comes_back() {
    use websocket_chat::client::{self, Backoff};
    let (server, _) = start(quick()).await;
    let addr = server.addr();
    let (line_tx, line_rx) = tokio::sync::mpsc::channel(8);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(64);
    let stop = harness::CancellationToken::new();
    let backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { client::run(&url(addr), "dora", line_rx, out_tx, backoff, stop).await }
    });
    let mut wait_for = async |want: &str| -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = within(WAIT, want, out_rx.recv()).await.expect("client output");
            seen.push(line.clone());
            if line.contains(want) {
                return seen;
            }
        }
    };
    wait_for("dora joined lobby").await;
    line_tx.send("/join rust".into()).await.expect("type");
    wait_for("dora joined rust").await;

    // The server goes away; the client notices and keeps trying.
    server.shutdown().await.expect("clean shutdown");
    let seen = wait_for("reconnecting").await;
    assert!(seen.iter().any(|l| l.contains("1001")), "it saw why: {seen:?}");

    // A new server on the same port: the client comes back by itself, with
    // its name and its room.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind the same port");
    let chat = Chat::new(quick());
    let server = TaskServer::start_with(listener, {
        let chat = chat.clone();
        move |l, t| chat.serve(l, t)
    })
    .expect("start again");
    wait_for("dora joined rust").await;
    line_tx.send("back again".into()).await.expect("type");
    wait_for("[rust] dora: back again").await;
    stop.cancel();
    within(WAIT, "the client to stop", task).await.expect("client task");
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn backoff_doubles_up_to_its_cap_and_resets() {
    use websocket_chat::client::Backoff;
    let ms = Duration::from_millis;
    let mut b = Backoff::new(ms(100), ms(500));
    let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
    b.reset();
    assert_eq!(b.next_delay(), ms(100));
}

#[test]
fn typed_lines_become_protocol_messages() {
    use websocket_chat::ClientMsg;
    use websocket_chat::client::parse_line;
    assert_eq!(parse_line("/join rust"), Some(ClientMsg::Join("rust".into())));
    assert_eq!(parse_line("/leave"), Some(ClientMsg::Leave));
    assert_eq!(parse_line("/who"), Some(ClientMsg::Who));
    assert_eq!(parse_line("  hello there "), Some(ClientMsg::Message("hello there".into())));
    assert_eq!(parse_line("   "), None);
    let json = serde_json::to_string(&ClientMsg::Leave).expect("serialize");
    assert_eq!(json, r#"{"type":"leave"}"#);
    let json = serde_json::to_string(&ClientMsg::Username("a".into())).expect("serialize");
    assert_eq!(json, r#"{"type":"username","data":"a"}"#);
}

#[tokio::test]
async fn a_client_close_is_answered_at_once() {
    let (server, chat) = start(quick()).await;
    let mut a = join(server.addr(), "a").await;
    let bye = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    };
    a.send(tokio_tungstenite::tungstenite::Message::Close(Some(bye))).await.expect("send close");
    // The echo must come straight away, well inside the server's close grace.
    let closed = a.recv_close(Duration::from_millis(200)).await.expect("the close echo");
    assert_eq!(closed.code, Some(1000));
    eventually(WAIT, "the client to be forgotten", || chat.stats().connections == 0).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_message_over_the_limit_in_small_fragments_is_closed_with_1009_too() {
    let (server, _) = start(Config {
        connection: Limits { max_message_bytes: 1024, ..quick().connection },
        ..quick()
    })
    .await;
    let mut raw = RawWs::connect(server.addr(), "/ws").await.expect("upgrade");
    // Each fragment is under the limit; together they are over it.
    let mut first = Frame::client(opcode::TEXT, &[b'a'; 600], [1, 2, 3, 4]);
    first.fin = false;
    let last = Frame::client(opcode::CONTINUATION, &[b'b'; 600], [5, 6, 7, 8]);
    raw.send_bytes(&first.encode()).await.expect("send first fragment");
    raw.send_bytes(&last.encode()).await.expect("send last fragment");
    let close = raw.read_until_close(WAIT).await.expect("read").expect("a close frame");
    assert_eq!(close.close_code(), Some(close_code::TOO_BIG), "{}", close.close_reason());
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_terminal_client_answers_pings_and_stays_connected() {
    use websocket_chat::client::{self, Backoff};
    let config = Config { connection: fast_heartbeat(quick().connection), ..quick() };
    let (server, chat) = start(config).await;
    let (_line_tx, line_rx) = tokio::sync::mpsc::channel(8);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(64);
    let stop = harness::CancellationToken::new();
    let url = url(server.addr());
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { client::run(&url, "pat", line_rx, out_tx, Backoff::default(), stop).await }
    });
    within(WAIT, "pat to join", async {
        while let Some(line) = out_rx.recv().await {
            if line.contains("pat joined lobby") {
                return;
            }
        }
    })
    .await;
    // Twenty ping intervals, four times the pong timeout: a client that did
    // not answer would have been dropped (see the raw-socket test above).
    let quiet = tokio::time::timeout(Duration::from_secs(1), out_rx.recv()).await;
    assert!(quiet.is_err(), "the client printed something: {quiet:?}");
    assert_eq!(chat.stats().heartbeat_timeouts, 0);
    assert_eq!(chat.stats().named, 1);
    stop.cancel();
    within(WAIT, "the client to stop", task).await.expect("client task");
    server.shutdown().await.expect("clean shutdown");
}

// ---- A hostile client ----------------------------------------------------

/// One client writes 1,000 messages in a single burst, as fast as its socket
/// takes them, into a room of 20 clients that read everything they are sent.
/// Before the per-connection send limit, the server broadcast every one and
/// the readers' queues filled: well-behaved readers were closed as "too slow"
/// for a fault that was the sender's. Now the sender is refused (told once)
/// and every reader stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chatty_client_is_limited_and_no_reader_is_kicked() {
    const READERS: usize = 20;
    const BURST: usize = 1000;
    let (server, chat) = start(quick()).await;
    let addr = server.addr();

    // Twenty readers, each on its own task, reading everything until the
    // message "done" arrives (or their connection is closed under them).
    let mut readers = Vec::new();
    for i in 0..READERS {
        let mut c = join(addr, &format!("reader{i}")).await;
        readers.push(tokio::spawn(async move {
            let mut messages = 0usize;
            loop {
                let v = c.recv_json(WAIT).await.map_err(|e| format!("reader{i}: {e}"))?;
                if v["type"] == "message" {
                    if v["message"] == "done" {
                        return Ok::<usize, String>(messages);
                    }
                    if v["username"] == "chatty" {
                        messages += 1;
                    }
                }
            }
        }));
    }

    // The chatty client speaks the protocol by hand so that the whole burst
    // goes out in one write, followed by a ping. The server reads frames in
    // order, so its pong means the whole burst has been dealt with.
    let mut chatty = RawWs::connect(addr, "/ws").await.expect("upgrade");
    let hello = Frame::client(opcode::TEXT, br#"{"type":"username","data":"chatty"}"#, [1; 4]);
    chatty.send_bytes(&hello.encode()).await.expect("send name");
    let mut burst = Vec::new();
    for n in 0..BURST {
        let line = json!({"type": "message", "data": format!("spam {n}")}).to_string();
        burst.extend(Frame::client(opcode::TEXT, line.as_bytes(), [2, 3, 4, 5]).encode());
    }
    burst.extend(Frame::client(opcode::PING, b"end", [6; 4]).encode());
    chatty.send_bytes(&burst).await.expect("send the burst");
    let mut told = None;
    let mut echoed = 0usize;
    let mut read_chatty_until = async |until: &dyn Fn(&Frame) -> bool| loop {
        let f = chatty.read_frame(WAIT).await.expect("read").expect("chatty is still connected");
        if f.opcode == opcode::TEXT {
            let v: Value = serde_json::from_slice(&f.payload).expect("JSON");
            if v["type"] == "error" && told.is_none() {
                told = Some(v["message"].as_str().unwrap_or_default().to_owned());
            } else if v["type"] == "message" && v["username"] == "chatty" {
                echoed += 1;
            }
        }
        if until(&f) {
            return;
        }
    };
    read_chatty_until(&|f| f.opcode == opcode::PONG).await;

    // A later message, from somebody else: every reader must still be there
    // to receive it, and what each got before it must be the same.
    let mut closer = join(addr, "closer").await;
    say(&mut closer, "done").await;
    read_chatty_until(&|f| f.text().contains(r#""message":"done""#)).await;
    let mut kicked = Vec::new();
    let mut got = Vec::new();
    for r in readers {
        match within(WAIT, "a reader to finish", r).await.expect("reader task") {
            Ok(n) => got.push(n),
            Err(e) => kicked.push(e),
        }
    }
    eprintln!(
        "burst of {BURST}: {echoed} came back to the sender, readers got {:?}, kicked {}",
        got.iter().max(),
        chat.stats().kicked_slow
    );
    assert!(kicked.is_empty(), "readers lost: {kicked:?}");
    assert_eq!(chat.stats().kicked_slow, 0, "nobody is closed as too slow");
    let told = told.expect("the sender is told it is over the limit");
    assert!(told.contains("slow down"), "{told}");
    // What the readers got is what the limit let through, which is far
    // fewer than the burst and the same for everybody.
    assert!(got.iter().all(|&n| n == echoed), "readers got {got:?}, sender {echoed}");
    assert!(echoed < BURST / 2, "{echoed} of {BURST} messages were let through");
    assert_eq!(chat.stats().rate_limited, (BURST - echoed) as u64, "the rest were refused");
    server.shutdown().await.expect("clean shutdown");
}

/// Over the limit, a sender is told once (not once per refused message,
/// which would flood its own queue), and may speak again once its bucket
/// has refilled. A rate of 10 a second refills a token every 100 ms, so the
/// test waits a tenth of a second, not the default's 200 ms per token, and
/// its ten quick messages would have to take most of a second to all fit.
#[tokio::test]
async fn a_limited_sender_is_told_once_and_may_speak_again_later() {
    let config = Config { send_rate: 10, send_burst: 3, ..quick() };
    let (server, chat) = start(config).await;
    let mut alice = join(server.addr(), "alice").await; // the name took a token
    for n in 0..10 {
        say(&mut alice, &format!("quick {n}")).await;
    }
    // Keep trying, a little apart, until a message gets through again.
    let mut seen = Vec::new();
    within(WAIT, "a message to get through after the refill", async {
        for n in 0.. {
            say(&mut alice, &format!("again {n}")).await;
            while let Ok(v) = alice.recv_json(Duration::from_millis(25)).await {
                let text = v["message"].as_str().unwrap_or_default().to_owned();
                seen.push(format!("{}: {text}", v["type"].as_str().unwrap_or_default()));
                if text.starts_with("again") {
                    return;
                }
            }
        }
    })
    .await;
    let errors: Vec<_> = seen.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "told exactly once: {seen:#?}");
    assert!(errors[0].contains("slow down"), "{seen:#?}");
    let quick = seen.iter().filter(|l| l.starts_with("message: quick")).count();
    assert!((2..10).contains(&quick), "{quick} of 10 got through: {seen:#?}");
    assert!(chat.stats().rate_limited >= 10 - quick as u64);
    server.shutdown().await.expect("clean shutdown");
}

/// Cross-site WebSocket hijacking: a page on another site opens a WebSocket
/// to this server, and the browser sends it with the learner's cookies; the
/// same-origin policy does not apply to WebSockets. Only the server's check
/// of `Origin` stops it.
#[tokio::test]
async fn a_handshake_from_another_origin_is_refused_with_403() {
    let notes = "http://notes.example:8080";
    let (server, chat) = start(Config { allowed_origins: vec![notes.into()], ..quick() }).await;
    let addr = server.addr();
    let own = addr.to_string();
    let localhost = format!("localhost:{}", addr.port());
    for (host, origin, want) in [
        (own.as_str(), Some("http://evil.example"), 403),
        (own.as_str(), Some("null"), 403),
        // The same port on another loopback name is another origin.
        (own.as_str(), Some(format!("http://localhost:{}", addr.port()).as_str()), 403),
        // DNS rebinding: evil.example resolves to 127.0.0.1, so the page's
        // Origin matches the Host it sends, but neither names this machine.
        (
            format!("evil.example:{}", addr.port()).as_str(),
            Some(format!("http://evil.example:{}", addr.port()).as_str()),
            403,
        ),
        // The page this server serves itself, by either loopback name.
        (own.as_str(), Some(format!("http://{addr}").as_str()), 101),
        (localhost.as_str(), Some(format!("http://{localhost}").as_str()), 101),
        // One the operator allowed (`serve --allow-origin`).
        (own.as_str(), Some(notes), 101),
        // No Origin: not a browser (websocat, the Rust client, these tests).
        (own.as_str(), None, 101),
    ] {
        assert_eq!(
            handshake_status(addr, host, origin).await,
            want,
            "Host {host}, Origin {origin:?}"
        );
    }
    eventually(WAIT, "the accepted handshakes to end", || chat.stats().connections == 0).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn protocol_violations_are_closed_with_1002() {
    let (server, _) = start(quick()).await;
    assert_violations_closed_with_1002(server.addr()).await;
    server.shutdown().await.expect("clean shutdown");
}

/// Past `announce_up_to` named members, joins and leaves are not announced
/// (filling a room of N would cost N²/2 deliveries), but the newcomer is
/// still told its join took.
#[tokio::test]
async fn joins_past_the_announce_limit_reach_only_the_newcomer() {
    let (server, _) = start(Config { announce_up_to: 2, ..quick() }).await;
    let mut alice = join(server.addr(), "alice").await;
    let mut bob = join(server.addr(), "bob").await;
    let notice = next_of_type(&mut alice, "info").await;
    assert_eq!(notice["message"], "bob joined lobby", "a room of 2 is announced");
    // `join` waits for carol's own notice: she is told even past the limit.
    let carol = join(server.addr(), "carol").await;
    drop(carol);
    // Bob speaks after carol joined and left: if either had been announced,
    // alice would read that notice first (one queue, in order).
    say(&mut bob, "after carol").await;
    let next = alice.recv_json_where(WAIT, |_| true).await.expect("alice's next message");
    assert_eq!(next["type"], "message", "no notice about carol: {next}");
    assert_eq!(next["message"], "after carol");
    server.shutdown().await.expect("clean shutdown");
}

/// Lesson 16's hook: two chat servers whose rooms are joined by a
/// [`Relay`] (here a list in memory; there, Redis). A message said on one
/// reaches the room's members on the other, and join notices cross too.
#[tokio::test]
async fn a_relay_carries_a_room_to_another_server() {
    use std::sync::{Arc, OnceLock};
    use websocket_chat::{Relay, ServerMsg};

    #[derive(Debug, Default)]
    struct Both(OnceLock<[Chat; 2]>);
    impl Relay for Both {
        fn relay(&self, room: &str, msg: &ServerMsg) {
            for chat in self.0.get().expect("both servers made") {
                chat.deliver(room, msg);
            }
        }
    }
    let both = Arc::new(Both::default());
    let a = Chat::with_relay(quick(), both.clone());
    let b = Chat::with_relay(quick(), both.clone());
    both.0.set([a.clone(), b.clone()]).expect("set once");
    let (server_a, _) = common::ws::start(a, Chat::serve).await;
    let (server_b, b) = common::ws::start(b, Chat::serve).await;

    let mut alice = join(server_a.addr(), "alice").await;
    let mut bob = join(server_b.addr(), "bob").await;
    let notice = next_of_type(&mut alice, "info").await;
    assert_eq!(notice["message"], "bob joined lobby", "a join on B is announced on A");
    say(&mut alice, "across").await;
    let m = next_of_type(&mut bob, "message").await;
    assert_eq!((m["username"].as_str(), m["message"].as_str()), (Some("alice"), Some("across")));
    assert_eq!(b.names(), vec!["bob".to_owned()], "names() lists this server's names only");
    server_a.shutdown().await.expect("clean shutdown");
    server_b.shutdown().await.expect("clean shutdown");
}
