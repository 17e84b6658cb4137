//! What happens around the requests: state that survives a restart (SQLite),
//! and a server that stops gracefully when its token is cancelled.

mod common;

use std::time::Duration;

use common::{TempDb, assert_error, ids, json, start};
use harness::http::HttpConn;
use harness::within;
use rest_todo::{Client, MemoryStore, SqliteStore};
use serde_json::json;

#[tokio::test]
async fn sqlite_state_survives_a_restart() {
    let db = TempDb::new();
    {
        let store = SqliteStore::open(db.path()).expect("creating the file on first use");
        let (server, mut c) = start(store).await;
        for task in ["keep me", "delete me", "change me"] {
            let resp = c.json("POST", "/todos", &json!({"task": task})).await.expect("POST");
            assert_eq!(resp.status, 201);
        }
        assert_eq!(c.send("DELETE", "/todos/2", &[], b"").await.expect("DELETE").status, 204);
        let patched = c.json("PATCH", "/todos/3", &json!({"completed": true})).await;
        assert_eq!(patched.expect("PATCH").status, 200);
        drop(c);
        server.shutdown().await.expect("clean shutdown");
    }
    assert!(db.path().exists(), "the SQLite file is on disk");

    // A new process would do exactly this: open the same file, serve again.
    let store = SqliteStore::open(db.path()).expect("reopening the file");
    let (server, mut c) = start(store).await;
    let list = c.get("/todos").await.expect("GET");
    assert_eq!(
        json(&list),
        json!([
            {"id": 1, "task": "keep me", "completed": false},
            {"id": 3, "task": "change me", "completed": true},
        ])
    );
    // The version survived too, so an ETag a client holds stays meaningful.
    assert_eq!(c.get("/todos/3").await.expect("GET").header("etag"), Some("\"v2\""));
    // And so did the id counter: the next id is 4, not 2 or 3 again.
    let next = c.json("POST", "/todos", &json!({"task": "new"})).await.expect("POST");
    assert_eq!(json(&next)["id"], 4);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_in_memory_store_starts_empty_every_time() {
    let (server, mut c) = start(MemoryStore::new()).await;
    c.json("POST", "/todos", &json!({"task": "gone after restart"})).await.expect("POST");
    drop(c);
    server.shutdown().await.expect("clean shutdown");
    let (server, mut c) = start(MemoryStore::new()).await;
    assert_eq!(ids(&c.get("/todos").await.expect("GET")), Vec::<u64>::new());
    server.shutdown().await.expect("clean shutdown");
}

/// Cancelling the token while a request is half sent: the server stops
/// accepting at once, the request in flight still completes with 201, idle
/// keep-alive connections are closed, and `serve` returns.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_stops() {
    let (server, idle) = start(MemoryStore::new()).await;
    let addr = server.addr();
    let token = server.token();

    // One connection with a request whose body has not fully arrived yet.
    let mut busy = HttpConn::connect(addr).await.expect("connect");
    let body = br#"{"task": "finish me"}"#;
    let head = format!(
        "POST /todos HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    busy.send(head.as_bytes()).await.expect("send the head");
    busy.send(&body[..5]).await.expect("send part of the body");
    // Make sure the server has the request in hand (the connection is
    // accepted and being read) before cancelling: a request on another
    // connection that completes proves the accept loop is past it.
    let mut probe = Client::connect(addr).await.expect("connect");
    assert_eq!(probe.get("/todos").await.expect("GET").status, 200);
    drop(probe);

    token.cancel();
    // New connections are refused once the listener is dropped.
    harness::eventually(Duration::from_secs(5), "the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;

    busy.send(&body[5..]).await.expect("send the rest of the body");
    let resp =
        within(Duration::from_secs(5), "the in-flight request's answer", busy.read_response(false))
            .await
            .expect("a response to the request in flight");
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(json_body(&resp.body)["task"], "finish me");

    // The idle keep-alive connection does not hold shutdown up, and the
    // server task ends well inside the harness's deadline.
    drop(idle);
    server.shutdown().await.expect("serve returned Ok after cancel");
}

fn json_body(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("the response body is JSON")
}

#[tokio::test]
async fn the_server_survives_garbage_and_keeps_serving() {
    let (server, mut c) = start(MemoryStore::new()).await;
    // Not HTTP at all: hyper answers 400 and closes that connection only.
    let mut junk = HttpConn::connect(server.addr()).await.expect("connect");
    junk.send(b"HELLO\r\n\r\n").await.expect("send junk");
    let answer = within(Duration::from_secs(5), "an answer to junk", junk.read_until_close()).await;
    assert!(answer.expect("the server closes").starts_with(b"HTTP/1.1 400"));
    // Binary in a JSON body: 400, and the server carries on.
    let ct = [("Content-Type", "application/json")];
    let bad = c.send("POST", "/todos", &ct, &[0xff, 0xfe, 0x00]).await.expect("POST");
    assert_error(&bad, 400, "body is not JSON");
    assert_eq!(c.get("/todos").await.expect("GET").status, 200);
    server.shutdown().await.expect("clean shutdown");
}

/// When the storage itself fails (here: the table vanishes under the server),
/// the client gets a 500 in the same JSON shape, and the server stays up.
#[tokio::test]
async fn a_storage_failure_is_a_500_in_json_and_the_server_stays_up() {
    let db = TempDb::new();
    let store = SqliteStore::open(db.path()).expect("creating the file");
    let (server, mut c) = start(store).await;
    assert_eq!(c.json("POST", "/todos", &json!({"task": "x"})).await.expect("POST").status, 201);
    let other = rusqlite::Connection::open(db.path()).expect("a second connection to the file");
    other.execute("DROP TABLE todos", []).expect("dropping the table behind the server's back");
    let resp = c.get("/todos/1").await.expect("GET");
    assert_error(&resp, 500, "storage failed");
    // The connection and the server are still good for the next request.
    assert_error(&c.get("/todos?completed=maybe").await.expect("GET"), 400, "bad query");
    server.shutdown().await.expect("clean shutdown");
}

/// A chunked body carries no length up front, so the limit cannot be checked
/// from the head: the server counts as the chunks arrive and answers 413 once
/// the count passes the limit.
#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    let (server, _c) = start(MemoryStore::new()).await;
    let addr = server.addr();
    let mut conn = HttpConn::connect(addr).await.expect("connect");
    let head = format!(
        "POST /todos HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    conn.send(head.as_bytes()).await.expect("send the head");
    // The whole chunked body in one write: it fits in the socket buffers, so
    // the write completes even though the server stops reading at the limit.
    let chunk = vec![b'a'; 4096];
    let mut body = Vec::new();
    for _ in 0..(rest_todo::MAX_BODY_BYTES / chunk.len() + 1) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    conn.send(&body).await.expect("send the chunked body");
    let resp = within(Duration::from_secs(5), "the 413", conn.read_response(false))
        .await
        .expect("a response");
    assert_error(&resp, 413, "body too large");
    server.shutdown().await.expect("clean shutdown");
}

/// The memory store is bounded: past its limit a create is refused with 507
/// and the JSON error, nothing else changes, and a delete makes room again.
#[tokio::test]
async fn the_memory_store_refuses_creates_past_its_limit() {
    let (server, mut c) = start(MemoryStore::with_max(3)).await;
    for task in ["a", "b", "c"] {
        assert_eq!(
            c.json("POST", "/todos", &json!({"task": task})).await.expect("POST").status,
            201
        );
    }
    let refused = c.json("POST", "/todos", &json!({"task": "d"})).await.expect("POST");
    assert_error(&refused, 507, "storage full");
    assert_eq!(ids(&c.get("/todos").await.expect("GET")), vec![1, 2, 3], "nothing was added");
    assert_eq!(c.send("DELETE", "/todos/2", &[], b"").await.expect("DELETE").status, 204);
    let again = c.json("POST", "/todos", &json!({"task": "d"})).await.expect("POST");
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(json(&again)["id"], 4, "ids are still never reused");
    server.shutdown().await.expect("clean shutdown");
}
