//! Where the todos live: one small trait, two implementations.
//!
//! The HTTP layer in `lib.rs` never knows which one it talks to. [`MemoryStore`]
//! is the notes' array done right (a counter for ids, a lock around every
//! change); [`SqliteStore`] keeps the same promises in a file, so state
//! survives a restart. The behaviour tests run every case against both.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Change, ListQuery, Todo};

/// Everything a store can answer besides success. The HTTP layer maps each
/// variant to one status code (see `ApiError::from(StoreError)` in `lib.rs`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No todo has this id (it never existed, or it was deleted).
    #[error("there is no todo with id {0}")]
    NotFound(u64),
    /// The caller said "only if you are still at one of these versions" (an
    /// `If-Match` header) and the todo has moved on since.
    #[error("todo {id} is at version {current}, not the one in If-Match")]
    Stale {
        /// The todo's id.
        id: u64,
        /// Its version now, so the caller can fetch it again.
        current: u64,
    },
    /// There is no room for this write: the memory store holds
    /// [`MAX_TODOS`] already, or SQLite's disk is full. Nothing was changed.
    #[error("storage is full: {0}")]
    Full(String),
    /// The storage itself failed (file removed, read-only, a bug).
    #[error("storage failed: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLITE_FULL is the disk (or a page quota) running out: the client
        // should hear "no room", not "something broke".
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return Self::Full(e.to_string());
        }
        Self::Backend(e.to_string())
    }
}

/// The most todos the in-memory store keeps. Without a bound one client
/// created 950,000 todos in 10 seconds and the server grew by 600 MB; every
/// listing then walked them all. A real service bounds this per user (a
/// quota) and pages every listing; the lesson has one user, so one bound.
/// 10,000 is far more than a person's todo list, and small enough that the
/// worst case stays modest (see [`MEMORY_WORST_CASE`]).
pub const MAX_TODOS: usize = 10_000;

/// What [`MAX_TODOS`] todos can cost at most: each task up to
/// `MAX_TASK_CHARS` characters of 4 bytes, plus the map entry and the
/// `Todo` itself (generously 128 bytes). Checked at compile time, so the
/// bound in the comment above cannot drift from the constants.
pub const MEMORY_WORST_CASE: usize = MAX_TODOS * (crate::MAX_TASK_CHARS * 4 + 128);
const _: () =
    assert!(MEMORY_WORST_CASE <= 32 * 1024 * 1024, "the memory store's bound grew past 32 MiB");

/// The condition an update or delete runs under, from the `If-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No `If-Match` (or `If-Match: *`): last writer wins, like the notes.
    Any,
    /// Only if the todo's current version is one of these.
    OneOf(Vec<u64>),
}

impl Expect {
    /// Passes if the condition holds for a todo now at `current`.
    pub fn check(&self, id: u64, current: u64) -> Result<(), StoreError> {
        match self {
            Expect::Any => Ok(()),
            Expect::OneOf(versions) if versions.contains(&current) => Ok(()),
            Expect::OneOf(_) => Err(StoreError::Stale { id, current }),
        }
    }
}

/// One page of a listing, and how many todos matched in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The todos on this page, by id, oldest first.
    pub items: Vec<Todo>,
    /// How many todos match the filter, on every page together.
    pub total: u64,
}

/// The storage contract. Each method is one atomic step: a check and the
/// change it guards happen under one lock (or one SQLite transaction), so two
/// requests can never interleave between them. That is the whole defence
/// against lost updates on the server side.
///
/// Methods return futures so that a store doing blocking I/O (SQLite) can move
/// the work off the async threads; the in-memory store is ready at once.
pub trait Store: Clone + Send + Sync + 'static {
    /// Todos matching `query.completed`, ordered by id, `offset` skipped,
    /// at most `limit` of them.
    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Page, StoreError>> + Send;
    /// The todo with this id, if there is one.
    fn get(&self, id: u64) -> impl Future<Output = Result<Option<Todo>, StoreError>> + Send;
    /// Stores a new todo under a fresh id (never one used before) at version 1.
    fn create(
        &self,
        task: String,
        completed: bool,
    ) -> impl Future<Output = Result<Todo, StoreError>> + Send;
    /// Applies `change` if `expect` holds, bumping the version by one.
    fn update(
        &self,
        id: u64,
        expect: Expect,
        change: Change,
    ) -> impl Future<Output = Result<Todo, StoreError>> + Send;
    /// Removes the todo if `expect` holds.
    fn delete(
        &self,
        id: u64,
        expect: Expect,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The notes' array, kept in a `BTreeMap` so a listing comes out in id order
/// (a stable order is what makes `limit`/`offset` paging mean anything).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Memory>>,
    /// Creates past this many todos are refused with [`StoreError::Full`].
    max_todos: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_max(MAX_TODOS)
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// The last id handed out. Ids come from this counter, never from the
    /// number of todos: after a delete the count goes down, the counter not.
    last_id: u64,
    todos: BTreeMap<u64, Todo>,
}

impl MemoryStore {
    /// An empty store that holds at most [`MAX_TODOS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that holds at most `max_todos` (tests use a handful).
    pub fn with_max(max_todos: usize) -> Self {
        Self { inner: Arc::default(), max_todos }
    }

    /// Runs `f` under the lock. A std `Mutex` is right here: the critical
    /// sections are a few map operations and never hold the lock across an
    /// `.await`. A poisoned lock (a panic while holding it) would be a bug in
    /// this file; the map is still consistent, because every change below is a
    /// single insert or remove, so carry on with it.
    fn with<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

impl Store for MemoryStore {
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        Ok(self.with(|m| {
            let matching =
                m.todos.values().filter(|t| query.completed.is_none_or(|c| t.completed == c));
            let total = matching.clone().count() as u64;
            let items = matching.skip(query.offset()).take(query.limit()).cloned().collect();
            Page { items, total }
        }))
    }

    async fn get(&self, id: u64) -> Result<Option<Todo>, StoreError> {
        Ok(self.with(|m| m.todos.get(&id).cloned()))
    }

    async fn create(&self, task: String, completed: bool) -> Result<Todo, StoreError> {
        self.with(|m| {
            // Checked under the same lock as the insert, so two creates
            // racing for the last slot cannot both get it.
            if m.todos.len() >= self.max_todos {
                let max = self.max_todos;
                return Err(StoreError::Full(format!("the store holds its limit of {max} todos")));
            }
            m.last_id += 1;
            let todo = Todo { id: m.last_id, task, completed, version: 1 };
            m.todos.insert(todo.id, todo.clone());
            Ok(todo)
        })
    }

    async fn update(&self, id: u64, expect: Expect, change: Change) -> Result<Todo, StoreError> {
        self.with(|m| {
            let todo = m.todos.get_mut(&id).ok_or(StoreError::NotFound(id))?;
            expect.check(id, todo.version)?;
            change.apply(todo);
            Ok(todo.clone())
        })
    }

    async fn delete(&self, id: u64, expect: Expect) -> Result<(), StoreError> {
        self.with(|m| {
            let todo = m.todos.get(&id).ok_or(StoreError::NotFound(id))?;
            expect.check(id, todo.version)?;
            m.todos.remove(&id);
            Ok(())
        })
    }
}

/// The same contract in a SQLite file.
///
/// One connection behind a `Mutex`, used only from tokio's blocking thread
/// pool (`spawn_blocking`): SQLite calls block on disk I/O, and a blocked
/// async worker thread would stall every other request it carries. One
/// connection means writes are serialised, which SQLite does anyway (one
/// writer at a time per file); a pool of readers is an exercise.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// `AUTOINCREMENT` is the line that keeps ids from being reused: without it
/// SQLite picks max(id)+1, so deleting the newest todo frees its id for the
/// next insert, which is the notes' bug again in another form. With it, SQLite
/// remembers the highest id ever used (in the `sqlite_sequence` table).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    task      TEXT    NOT NULL,
    completed INTEGER NOT NULL CHECK (completed IN (0, 1)),
    version   INTEGER NOT NULL
)";

impl SqliteStore {
    /// Opens the file at `path`, creating it and the table on first use.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // Write-ahead logging: a commit appends to the log instead of
        // rewriting pages, so it is faster and readers never block the
        // writer. `synchronous=NORMAL` with WAL survives the process crashing
        // (the log is in the OS's hands); only a power cut may lose the last
        // commits. A lesson's trade-off, named so you can change it.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute(SCHEMA, [])?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // Poisoned only if a closure below panicked; SQLite rolled back
            // the transaction it was in, so the connection is usable.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }
}

fn row_to_todo(row: &rusqlite::Row<'_>) -> rusqlite::Result<Todo> {
    Ok(Todo { id: row.get(0)?, task: row.get(1)?, completed: row.get(2)?, version: row.get(3)? })
}

impl Store for SqliteStore {
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.blocking(move |conn| {
            let tx = conn.transaction()?; // one snapshot for the page and the count
            let items = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, task, completed, version FROM todos
                     WHERE ?1 IS NULL OR completed = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                )?;
                let rows = stmt.query_map(
                    params![query.completed, query.limit() as u64, query.offset() as u64],
                    row_to_todo,
                )?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let total = tx.query_row(
                "SELECT COUNT(*) FROM todos WHERE ?1 IS NULL OR completed = ?1",
                params![query.completed],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(Page { items, total })
        })
        .await
    }

    async fn get(&self, id: u64) -> Result<Option<Todo>, StoreError> {
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, task, completed, version FROM todos WHERE id = ?1")?;
            Ok(stmt.query_row([id], row_to_todo).optional()?)
        })
        .await
    }

    async fn create(&self, task: String, completed: bool) -> Result<Todo, StoreError> {
        self.blocking(move |conn| {
            // An explicit transaction, for the commit's sake. Left to
            // autocommit, `INSERT ... RETURNING` commits when the statement is
            // reset, after `query_row` already has its row; on a full disk
            // that commit fails, the error is dropped with the statement, and
            // the client got a 201 and an id for a todo that was rolled back
            // (the next insert then got the same id). `commit()` returns the
            // error, and a failed commit is rolled back when `tx` drops.
            let tx = conn.transaction()?;
            let id = {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO todos (task, completed, version) VALUES (?1, ?2, 1) RETURNING id",
                )?;
                stmt.query_row(params![task, completed], |r| r.get(0))?
            };
            tx.commit()?;
            Ok(Todo { id, task, completed, version: 1 })
        })
        .await
    }

    async fn update(&self, id: u64, expect: Expect, change: Change) -> Result<Todo, StoreError> {
        self.blocking(move |conn| {
            // Read, check, write in one transaction: nothing can slip in
            // between the version check and the write.
            let tx = conn.transaction()?;
            let mut todo = tx
                .query_row(
                    "SELECT id, task, completed, version FROM todos WHERE id = ?1",
                    [id],
                    row_to_todo,
                )
                .optional()?
                .ok_or(StoreError::NotFound(id))?;
            expect.check(id, todo.version)?;
            change.apply(&mut todo);
            tx.execute(
                "UPDATE todos SET task = ?2, completed = ?3, version = ?4 WHERE id = ?1",
                params![id, todo.task, todo.completed, todo.version],
            )?;
            tx.commit()?;
            Ok(todo)
        })
        .await
    }

    async fn delete(&self, id: u64, expect: Expect) -> Result<(), StoreError> {
        self.blocking(move |conn| {
            let tx = conn.transaction()?;
            let version: u64 = tx
                .query_row("SELECT version FROM todos WHERE id = ?1", [id], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound(id))?;
            expect.check(id, version)?;
            tx.execute("DELETE FROM todos WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
