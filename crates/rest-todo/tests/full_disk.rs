//! A full disk: every write either answers 5xx or is still there after a
//! restart. Never a 2xx for a write that was not kept.
//!
//! The database lives on a 1 MiB tmpfs, so the disk really fills and SQLite
//! gets ENOSPC from the kernel. Mounting needs root, so the test is ignored by
//! a plain `cargo test`; `.ci/run` (root) runs it with `-- --ignored`.

// A tmpfs mounted with `mount -t tmpfs`: Linux only, compiled only there.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{TinyDisk, json, start};
use rest_todo::SqliteStore;
use serde_json::json;

/// How many creates to try at most; the disk fills long before this.
const MAX_POSTS: usize = 5000;

#[tokio::test]
#[ignore = "needs root to mount a 1 MiB tmpfs; .ci/run runs it with `cargo test -p rest-todo -- --ignored`"]
async fn on_a_full_disk_no_write_is_acknowledged_and_then_lost() {
    let disk = TinyDisk::mount(1024 * 1024).expect("mounting a tmpfs (needs root)");
    let path = disk.path("todos.sqlite");
    let (server, mut c) = start(SqliteStore::open(&path).expect("opening the database")).await;

    // Fill the disk. Each answer is either 201 with a new id, or a 5xx.
    let pad = "x".repeat(400);
    let mut kept: BTreeMap<u64, String> = BTreeMap::new();
    let mut refused = 0;
    for i in 0..MAX_POSTS {
        let task = format!("{i} {pad}");
        let resp = c.json("POST", "/todos", &json!({ "task": task })).await.expect("POST");
        match resp.status {
            201 => {
                let id = json(&resp)["id"].as_u64().expect("an id");
                assert!(kept.insert(id, task).is_none(), "id {id} was handed out twice");
            }
            507 => {
                // "No room": the request was fine, the disk is not.
                assert_eq!(json(&resp)["error"], "storage full", "{}", resp.text());
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            s => panic!("POST answered {s}, not 201 or 507: {}", resp.text()),
        }
    }
    assert!(refused > 0, "the disk never filled in {MAX_POSTS} creates; the test proves nothing");
    assert!(kept.len() > 10, "only {} creates fit; the disk is too small to test", kept.len());

    // The other write paths on the full disk: whatever they answer must be
    // true after a restart. PUT grows a todo (needs space), PATCH and DELETE
    // change or drop one.
    let ids: Vec<u64> = kept.keys().copied().take(6).collect();
    let bigger = "y".repeat(499);
    let mut deleted = HashSet::new();
    let mut answers = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let path = format!("/todos/{id}");
        let resp = match n % 3 {
            0 => c.json("PUT", &path, &json!({ "task": bigger, "completed": false })).await,
            1 => c.json("PATCH", &path, &json!({ "task": bigger })).await,
            _ => c.send("DELETE", &path, &[], b"").await,
        }
        .expect("a write");
        answers.push(resp.status);
        match resp.status {
            200 => {
                kept.insert(*id, bigger.clone());
            }
            204 => {
                deleted.insert(*id);
            }
            s if s >= 500 => {}
            s => panic!("{path} answered {s}: {}", resp.text()),
        }
    }
    println!(
        "{} creates kept, {refused} refused with 507; PUT, PATCH, DELETE, PUT, PATCH, DELETE answered {answers:?}",
        kept.len()
    );
    server.shutdown().await.expect("clean shutdown");

    // A restart: every acknowledged write is there, exactly as acknowledged.
    let (server, mut c) = start(SqliteStore::open(&path).expect("reopening")).await;
    for (id, task) in &kept {
        let resp = c.get(&format!("/todos/{id}")).await.expect("GET");
        if deleted.contains(id) {
            assert_eq!(resp.status, 404, "todo {id} was deleted with a 204");
        } else {
            assert_eq!(resp.status, 200, "todo {id} was acknowledged but is gone");
            assert_eq!(
                json(&resp)["task"],
                task.as_str(),
                "todo {id} is not what was acknowledged"
            );
        }
    }
    server.shutdown().await.expect("clean shutdown");
}
