//! The chapter's promises about the API, checked over a real socket against
//! both stores. Each case is a generic `async fn`; the `both_stores!` macro
//! turns it into two tests, `case::memory` and `case::sqlite`, so a behaviour
//! that holds for one store and not the other fails by name.

mod common;

use std::collections::HashSet;

use common::{TempDb, assert_error, ids, json, start};
use rest_todo::{
    Client, LONGEST_TODO_JSON, MAX_BODY_BYTES, MAX_PAGE, MAX_TASK_CHARS, MemoryStore, SqliteStore,
    Store,
};
use serde_json::json;

macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$case(super::MemoryStore::new()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::TempDb::new();
                let store = super::SqliteStore::open(db.path()).expect("opening a fresh temp file");
                super::$case(store).await;
            }
        }
    )*};
}

both_stores!(
    create_answers_201_with_location_etag_and_the_todo,
    the_notes_shape_still_works,
    list_filters_and_pages_in_a_stable_order,
    unknown_ids_and_routes_are_404_in_json,
    ids_are_never_reused,
    put_replaces_and_requires_every_field,
    patch_changes_only_the_fields_given,
    delete_is_204_then_404,
    bad_bodies_get_their_own_status,
    wrong_method_is_405_with_allow,
    bad_queries_are_400,
    if_match_guards_writes,
    concurrent_creates_and_patches_lose_nothing,
    read_modify_write_with_if_match_loses_nothing,
);

async fn create(c: &mut Client, task: &str, completed: bool) -> u64 {
    let resp = c
        .json("POST", "/todos", &json!({ "task": task, "completed": completed }))
        .await
        .expect("POST /todos");
    assert_eq!(resp.status, 201, "{}", resp.text());
    json(&resp)["id"].as_u64().expect("the new todo has an id")
}

async fn create_answers_201_with_location_etag_and_the_todo<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    let resp = c.json("POST", "/todos", &json!({"task": "Learn Rust"})).await.expect("POST");
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("location"), Some("/todos/1"));
    assert_eq!(resp.header("etag"), Some("\"v1\""));
    // `completed` was left out of the request: it is false, not undefined.
    assert_eq!(json(&resp), json!({"id": 1, "task": "Learn Rust", "completed": false}));

    let again = c.get("/todos/1").await.expect("GET the Location");
    assert_eq!(again.status, 200);
    assert_eq!(again.header("etag"), Some("\"v1\""));
    assert_eq!(json(&again), json(&resp));
    server.shutdown().await.expect("clean shutdown");
}

/// A client written against the notes' server: same paths, same JSON keys,
/// same status codes, and `{"error": ...}` on a 404.
async fn the_notes_shape_still_works<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    let made = c
        .json("POST", "/todos", &json!({"task": "Read a book", "completed": true}))
        .await
        .expect("POST");
    assert_eq!(made.status, 201);
    let keys: Vec<String> = json(&made).as_object().expect("an object").keys().cloned().collect();
    assert_eq!(keys.len(), 3, "exactly id, task, completed: {keys:?}");
    for key in ["id", "task", "completed"] {
        assert!(keys.contains(&key.to_owned()), "{key} missing from {keys:?}");
    }
    let list = c.get("/todos").await.expect("GET /todos");
    assert_eq!(json(&list), json!([{"id": 1, "task": "Read a book", "completed": true}]));
    let gone = c.send("DELETE", "/todos/1", &[], b"").await.expect("DELETE");
    assert_eq!(gone.status, 204);
    let missing = c.get("/todos/1").await.expect("GET");
    assert_eq!(missing.status, 404);
    assert!(json(&missing)["error"].is_string());
    server.shutdown().await.expect("clean shutdown");
}

async fn list_filters_and_pages_in_a_stable_order<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    for i in 1..=7 {
        create(&mut c, &format!("task {i}"), i % 2 == 0).await;
    }
    let all = c.get("/todos").await.expect("GET");
    assert_eq!(ids(&all), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(all.header("x-total-count"), Some("7"));

    let done = c.get("/todos?completed=true").await.expect("GET");
    assert_eq!(ids(&done), vec![2, 4, 6]);
    assert_eq!(done.header("x-total-count"), Some("3"));
    let open = c.get("/todos?completed=false").await.expect("GET");
    assert_eq!(ids(&open), vec![1, 3, 5, 7]);

    // Pages tile the list: no todo twice, none skipped.
    let mut seen = Vec::new();
    for offset in (0..7).step_by(3) {
        let page = c.get(&format!("/todos?limit=3&offset={offset}")).await.expect("GET");
        assert_eq!(page.header("x-total-count"), Some("7"));
        seen.extend(ids(&page));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6, 7]);

    let filtered_page = c.get("/todos?completed=false&limit=2&offset=1").await.expect("GET");
    assert_eq!(ids(&filtered_page), vec![3, 5]);
    assert_eq!(filtered_page.header("x-total-count"), Some("4"));
    let past_the_end = c.get("/todos?offset=100").await.expect("GET");
    assert_eq!(ids(&past_the_end), Vec::<u64>::new());
    server.shutdown().await.expect("clean shutdown");
}

async fn unknown_ids_and_routes_are_404_in_json<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    assert_error(&c.get("/todos/42").await.expect("GET"), 404, "todo not found");
    assert_error(&c.get("/todos/abc").await.expect("GET"), 404, "todo not found");
    assert_error(&c.get("/todos/-1").await.expect("GET"), 404, "todo not found");
    let patch = c.json("PATCH", "/todos/42", &json!({"completed": true})).await.expect("PATCH");
    assert_error(&patch, 404, "todo not found");
    let put = c.json("PUT", "/todos/42", &json!({"task": "x", "completed": true})).await;
    assert_error(&put.expect("PUT"), 404, "todo not found");
    assert_error(
        &c.send("DELETE", "/todos/42", &[], b"").await.expect("DELETE"),
        404,
        "todo not found",
    );
    assert_error(&c.get("/nope").await.expect("GET"), 404, "no such route");
    assert_error(&c.get("/todos/1/extra").await.expect("GET"), 404, "no such route");
    server.shutdown().await.expect("clean shutdown");
}

/// The notes took `todos.length + 1` as the next id: after a delete that
/// hands out an id that is already taken (or was). Here ids only go up, also
/// when the deleted todo was the newest (where SQLite without AUTOINCREMENT
/// would reuse the id).
async fn ids_are_never_reused<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    assert_eq!(create(&mut c, "a", false).await, 1);
    assert_eq!(create(&mut c, "b", false).await, 2);
    assert_eq!(c.send("DELETE", "/todos/1", &[], b"").await.expect("DELETE").status, 204);
    // The notes: length is 1, so the new id would be 2, which todo "b" has.
    assert_eq!(create(&mut c, "c", false).await, 3);
    assert_eq!(c.send("DELETE", "/todos/3", &[], b"").await.expect("DELETE").status, 204);
    assert_eq!(create(&mut c, "d", false).await, 4);
    assert_eq!(ids(&c.get("/todos").await.expect("GET")), vec![2, 4]);
    // A client holding the old URL of a deleted todo gets 404, never
    // somebody else's todo.
    assert_eq!(c.get("/todos/3").await.expect("GET").status, 404);
    server.shutdown().await.expect("clean shutdown");
}

async fn put_replaces_and_requires_every_field<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    create(&mut c, "before", false).await;
    let half = c.json("PUT", "/todos/1", &json!({"task": "after"})).await.expect("PUT");
    assert_error(&half, 422, "invalid todo");
    assert!(json(&half)["detail"].as_str().unwrap_or("").contains("completed"), "{}", half.text());
    // The failed PUT changed nothing.
    let unchanged = c.get("/todos/1").await.expect("GET");
    assert_eq!(json(&unchanged)["task"], "before");
    assert_eq!(unchanged.header("etag"), Some("\"v1\""));

    let put = c.json("PUT", "/todos/1", &json!({"task": "after", "completed": true})).await;
    let put = put.expect("PUT");
    assert_eq!(put.status, 200);
    assert_eq!(put.header("etag"), Some("\"v2\""));
    assert_eq!(json(&put), json!({"id": 1, "task": "after", "completed": true}));
    assert_eq!(json(&c.get("/todos/1").await.expect("GET")), json(&put));
    server.shutdown().await.expect("clean shutdown");
}

async fn patch_changes_only_the_fields_given<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    create(&mut c, "water the plants", false).await;
    let done = c.json("PATCH", "/todos/1", &json!({"completed": true})).await.expect("PATCH");
    assert_eq!(done.status, 200);
    assert_eq!(json(&done), json!({"id": 1, "task": "water the plants", "completed": true}));
    assert_eq!(done.header("etag"), Some("\"v2\""));
    let renamed = c.json("PATCH", "/todos/1", &json!({"task": "water the cactus"})).await;
    let renamed = renamed.expect("PATCH");
    assert_eq!(json(&renamed), json!({"id": 1, "task": "water the cactus", "completed": true}));
    assert_eq!(renamed.header("etag"), Some("\"v3\""));
    // PATCH validates what it is given as strictly as POST.
    let empty = c.json("PATCH", "/todos/1", &json!({"task": "   "})).await.expect("PATCH");
    assert_error(&empty, 422, "invalid todo");
    let typo = c.json("PATCH", "/todos/1", &json!({"complete": false})).await.expect("PATCH");
    assert_error(&typo, 422, "invalid todo");
    assert_eq!(json(&c.get("/todos/1").await.expect("GET"))["completed"], true);
    server.shutdown().await.expect("clean shutdown");
}

async fn delete_is_204_then_404<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    create(&mut c, "x", false).await;
    let first = c.send("DELETE", "/todos/1", &[], b"").await.expect("DELETE");
    assert_eq!(first.status, 204);
    assert!(first.body.is_empty(), "204 has no body");
    let second = c.send("DELETE", "/todos/1", &[], b"").await.expect("DELETE");
    assert_error(&second, 404, "todo not found");
    assert_eq!(c.get("/todos").await.expect("GET").header("x-total-count"), Some("0"));
    server.shutdown().await.expect("clean shutdown");
}

async fn bad_bodies_get_their_own_status<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    let ct = [("Content-Type", "application/json")];
    // Not JSON at all: 400.
    let broken = c.send("POST", "/todos", &ct, b"{\"task\": \"milk\"").await.expect("POST");
    assert_error(&broken, 400, "body is not JSON");
    // JSON, but not what this endpoint takes: 415 for the wrong type of
    // body, 422 for the wrong content.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_error(
        &c.send("POST", "/todos", &form, b"task=milk").await.expect("POST"),
        415,
        "unsupported content type",
    );
    assert_error(
        &c.send("POST", "/todos", &[], b"{\"task\": \"milk\"}").await.expect("POST"),
        415,
        "unsupported content type",
    );
    for (body, why) in [
        (json!({"completed": true}), "task missing"),
        (json!({"task": 7}), "task of the wrong type"),
        (json!({"task": "milk", "completed": "yes"}), "completed of the wrong type"),
        (json!({"task": "milk", "owner": "ann"}), "an unknown field"),
        (json!(["milk"]), "an array, not an object"),
        (json!({"task": ""}), "an empty task"),
        (json!({"task": " \t "}), "a blank task"),
        (json!({"task": "é".repeat(MAX_TASK_CHARS + 1)}), "a task one character too long"),
        (json!({"task": "milk\u{0}"}), "a NUL in the task"),
        (json!({"task": "\u{1b}[2Jmilk"}), "a terminal escape sequence in the task"),
        (json!({"task": "milk\nbread"}), "a newline in the task"),
    ] {
        let resp = c.json("POST", "/todos", &body).await.expect("POST");
        assert_eq!(resp.status, 422, "{why}: {}", resp.text());
        assert_error(&resp, 422, "invalid todo");
    }
    // The longest allowed task, counted in characters (é is two bytes).
    let longest = json!({"task": "é".repeat(MAX_TASK_CHARS)});
    assert_eq!(c.json("POST", "/todos", &longest).await.expect("POST").status, 201);
    // And the longest a valid todo can be spelled: every character outside
    // the BMP, each written as two `\uXXXX` escapes (LONGEST_TODO_JSON).
    let escaped =
        format!(r#"{{"task":"{}","completed":false}}"#, r"\ud83d\ude00".repeat(MAX_TASK_CHARS));
    assert_eq!(escaped.len(), LONGEST_TODO_JSON);
    let resp = c.send("POST", "/todos", &ct, escaped.as_bytes()).await.expect("POST");
    assert_eq!(resp.status, 201, "{}", resp.text());

    // Too large: refused with 413 once more than MAX_BODY_BYTES have arrived.
    let mut huge = b"{\"task\": \"".to_vec();
    huge.resize(MAX_BODY_BYTES + 1, b'a');
    let mut c2 = Client::connect(server.addr()).await.expect("a second connection");
    assert_error(
        &c2.send("POST", "/todos", &ct, &huge).await.expect("POST"),
        413,
        "body too large",
    );

    // Nothing invalid was stored: only the two longest valid todos.
    assert_eq!(ids(&c.get("/todos").await.expect("GET")), vec![1, 2]);
    server.shutdown().await.expect("clean shutdown");
}

async fn wrong_method_is_405_with_allow<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    let on_list = c.send("DELETE", "/todos", &[], b"").await.expect("DELETE");
    assert_error(&on_list, 405, "method not allowed");
    assert_eq!(on_list.header("allow"), Some("GET,HEAD,POST"));
    let on_one = c.json("POST", "/todos/1", &json!({"task": "x"})).await.expect("POST");
    assert_error(&on_one, 405, "method not allowed");
    let allow = on_one.header("allow").unwrap_or("");
    for m in ["GET", "PUT", "PATCH", "DELETE"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow}");
    }
    server.shutdown().await.expect("clean shutdown");
}

async fn bad_queries_are_400<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    let too_many = format!("/todos?limit={}", MAX_PAGE + 1);
    for path in [
        "/todos?completed=maybe",
        "/todos?limit=abc",
        "/todos?offset=-1",
        "/todos?colour=red",
        &too_many,
    ] {
        assert_error(&c.get(path).await.expect("GET"), 400, "bad query");
    }
    assert_eq!(c.get(&format!("/todos?limit={MAX_PAGE}")).await.expect("GET").status, 200);
    server.shutdown().await.expect("clean shutdown");
}

async fn if_match_guards_writes<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    create(&mut c, "shared", false).await;
    let body = json!({"completed": true}).to_string();
    let patch = |etag: &'static str| [("Content-Type", "application/json"), ("If-Match", etag)];
    // Current version: goes through, and the ETag moves on.
    let ok = c.send("PATCH", "/todos/1", &patch("\"v1\""), body.as_bytes()).await.expect("PATCH");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("etag"), Some("\"v2\""));
    // The same, stale now: 412 and nothing changes.
    let put = json!({"task": "overwritten", "completed": false}).to_string();
    let stale = c.send("PUT", "/todos/1", &patch("\"v1\""), put.as_bytes()).await.expect("PUT");
    assert_error(&stale, 412, "precondition failed");
    let now = c.get("/todos/1").await.expect("GET");
    assert_eq!(json(&now)["task"], "shared");
    assert_eq!(now.header("etag"), Some("\"v2\""));
    // A list with the current one in it, and `*`, both match.
    let list = c.send("PATCH", "/todos/1", &patch("\"v1\", \"v2\""), body.as_bytes()).await;
    assert_eq!(list.expect("PATCH").status, 200);
    let any = c.send("PATCH", "/todos/1", &patch("*"), body.as_bytes()).await.expect("PATCH");
    assert_eq!(any.status, 200);
    assert_eq!(any.header("etag"), Some("\"v4\""));
    // A weak tag never matches for If-Match (strong comparison), nor garbage.
    for tag in ["W/\"v4\"", "v4", "\"4\""] {
        let hdr = [("Content-Type", "application/json"), ("If-Match", tag)];
        let resp = c.send("PATCH", "/todos/1", &hdr, body.as_bytes()).await.expect("PATCH");
        assert_error(&resp, 412, "precondition failed");
    }
    // DELETE obeys it too.
    let del = c.send("DELETE", "/todos/1", &[("If-Match", "\"v3\"")], b"").await.expect("DELETE");
    assert_error(&del, 412, "precondition failed");
    let del = c.send("DELETE", "/todos/1", &[("If-Match", "\"v4\"")], b"").await.expect("DELETE");
    assert_eq!(del.status, 204);
    server.shutdown().await.expect("clean shutdown");
}

const CLIENTS: usize = 8;
const EACH: usize = 25;

/// Many clients on their own connections create and patch at once. Every
/// create gets its own id and is counted; every PATCH bumps the version once,
/// so the final version is exactly 1 + the number of patches.
async fn concurrent_creates_and_patches_lose_nothing<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..CLIENTS {
        tasks.spawn(async move {
            let mut c = Client::connect(addr).await.expect("connect");
            let mut got = Vec::new();
            for i in 0..EACH {
                got.push(create(&mut c, &format!("client {n} item {i}"), false).await);
            }
            got
        });
    }
    let mut all = HashSet::new();
    for got in tasks.join_all().await {
        for id in got {
            assert!(all.insert(id), "id {id} was handed out twice");
        }
    }
    assert_eq!(all.len(), CLIENTS * EACH);
    let count = c.get("/todos?limit=1").await.expect("GET");
    assert_eq!(count.header("x-total-count"), Some((CLIENTS * EACH).to_string().as_str()));

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..CLIENTS {
        tasks.spawn(async move {
            let mut c = Client::connect(addr).await.expect("connect");
            for i in 0..EACH {
                let body = json!({"completed": (n + i) % 2 == 0});
                let resp = c.json("PATCH", "/todos/1", &body).await.expect("PATCH");
                assert_eq!(resp.status, 200, "{}", resp.text());
            }
        });
    }
    tasks.join_all().await;
    let final_state = c.get("/todos/1").await.expect("GET");
    let expected = format!("\"v{}\"", 1 + CLIENTS * EACH);
    assert_eq!(final_state.header("etag"), Some(expected.as_str()));
    server.shutdown().await.expect("clean shutdown");
}

/// The classic lost update is read, change, write back: two clients read v1,
/// both write, the second overwrites the first. With If-Match the second
/// gets 412, reads again and retries, so every client's change lands.
async fn read_modify_write_with_if_match_loses_nothing<S: Store>(store: S) {
    let (server, mut c) = start(store).await;
    create(&mut c, "log:", false).await;
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    let marks: Vec<char> = ('a'..='j').collect();
    for mark in marks.clone() {
        tasks.spawn(async move {
            let mut c = Client::connect(addr).await.expect("connect");
            let mut conflicts = 0;
            loop {
                let current = c.get("/todos/1").await.expect("GET");
                let etag = current.header("etag").expect("GET one has an ETag").to_owned();
                let task = json(&current)["task"].as_str().expect("task is a string").to_owned();
                let body = json!({"task": format!("{task}{mark}")}).to_string();
                let hdr = [("Content-Type", "application/json"), ("If-Match", etag.as_str())];
                let resp = c.send("PATCH", "/todos/1", &hdr, body.as_bytes()).await.expect("PATCH");
                match resp.status {
                    200 => return conflicts,
                    412 => conflicts += 1,
                    other => panic!("unexpected {other}: {}", resp.text()),
                }
                assert!(conflicts < 1000, "client {mark} never got through");
            }
        });
    }
    tasks.join_all().await;
    let task =
        json(&c.get("/todos/1").await.expect("GET"))["task"].as_str().unwrap_or("").to_owned();
    assert_eq!(task.len(), "log:".len() + marks.len(), "one mark per client: {task}");
    for mark in marks {
        assert!(task.contains(mark), "{mark}'s change was lost: {task}");
    }
    server.shutdown().await.expect("clean shutdown");
}
