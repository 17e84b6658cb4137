//! Server-side failures are logged, not only answered. In a file of its own:
//! `tracing` caches which log sites a subscriber wants, and a test in the
//! same binary hitting the site at the same moment with no subscriber can
//! make the cache say "nobody", so the capture would see nothing.

mod common;

use common::{CapturedLog, TempDb, assert_error, start};
use rest_todo::SqliteStore;

/// A storage failure is the operator's problem as much as the client's: it
/// is logged at error level, not only answered with a 500.
#[tokio::test]
async fn a_storage_failure_is_logged() {
    let log = CapturedLog::default();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    let db = TempDb::new();
    let store = SqliteStore::open(db.path()).expect("creating the file");
    let (server, mut c) = start(store).await;
    let other = rusqlite::Connection::open(db.path()).expect("a second connection to the file");
    other.execute("DROP TABLE todos", []).expect("dropping the table behind the server's back");
    assert_error(&c.get("/todos/1").await.expect("GET"), 500, "storage failed");
    let text = log.text();
    assert!(text.contains("ERROR") && text.contains("no such table"), "nothing logged: {text:?}");
    server.shutdown().await.expect("clean shutdown");
}
