//! What the test files share: a server on a free port, a throwaway SQLite
//! file, and the one assertion every error response must pass.

#![allow(dead_code)] // each test file uses a different part of this

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use harness::TaskServer;
use rest_todo::{Client, HttpResponse, Store, serve};
use serde_json::Value;

pub type Server = TaskServer<io::Result<()>>;

/// Starts the API over `store` on 127.0.0.1:0 and connects one client.
pub async fn start<S: Store>(store: S) -> (Server, Client) {
    let server = TaskServer::start(|listener, token| serve(listener, store, token))
        .await
        .expect("binding 127.0.0.1:0");
    let client = Client::connect(server.addr()).await.expect("connecting to the test server");
    (server, client)
}

/// A SQLite file in the temp folder, removed (with its WAL files) on drop.
#[derive(Debug)]
pub struct TempDb {
    path: PathBuf,
}

impl TempDb {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("rest-todo-test-{}-{nanos}-{n}.sqlite", std::process::id());
        Self { path: std::env::temp_dir().join(name) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The body as JSON, or a failure that shows the text.
pub fn json(resp: &HttpResponse) -> Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", resp.text()))
}

/// Every error, whatever its cause, is `{"error": ..., "detail": ...}` in
/// JSON with the given status and short error.
#[track_caller]
pub fn assert_error(resp: &HttpResponse, status: u16, error: &str) {
    assert_eq!(resp.status, status, "wrong status; body: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"), "errors are JSON");
    let body = json(resp);
    assert_eq!(body["error"], error, "body: {body}");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(!detail.is_empty(), "every error has a detail: {body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "exactly error and detail: {body}");
}

/// The ids in a JSON array of todos.
pub fn ids(resp: &HttpResponse) -> Vec<u64> {
    json(resp)
        .as_array()
        .unwrap_or_else(|| panic!("expected an array: {}", resp.text()))
        .iter()
        .map(|t| t["id"].as_u64().expect("every todo has a numeric id"))
        .collect()
}

/// A tmpfs of a fixed size mounted on a fresh folder, unmounted on drop: a
/// disk that really fills up, so SQLite gets ENOSPC from the kernel exactly
/// as it would on a full production disk. Mounting needs root; `mount` says
/// why if it cannot.
#[derive(Debug)]
pub struct TinyDisk {
    dir: PathBuf,
}

impl TinyDisk {
    pub fn mount(bytes: u64) -> io::Result<Self> {
        let dir = TempDb::new().path().with_extension("mnt");
        std::fs::create_dir(&dir)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir)
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(io::Error::other(format!("mount -t tmpfs failed: {why}")));
        }
        Ok(Self { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Log lines written through `tracing` while a test runs, kept in memory.
/// `tracing::subscriber::set_default(log.subscriber())` captures what this
/// thread logs (a current-thread tokio test runs the server on it too).
#[derive(Debug, Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let sink = self.clone();
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).finish()
    }

    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
