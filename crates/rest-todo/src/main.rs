//! The command line of lesson 10. `cargo run -p rest-todo` runs the demo;
//! `serve` and `client` are described in `--help` and in the chapter.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::TaskServer;
use rest_todo::{Client, DEFAULT_ADDR, HttpResponse, MemoryStore, SqliteStore, serve};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "A REST API for todos (lesson 10). No subcommand: run the demo.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API until Ctrl-C.
    Serve {
        /// Where to listen (loopback by default).
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Keep the todos in this SQLite file (created on first use) instead
        /// of in memory.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Serve https:// with a certificate from lesson 13's throwaway CA,
        /// whose certificate goes to --ca-file (in memory only).
        #[arg(long, conflicts_with = "db")]
        tls: bool,
        /// Where --tls writes the CA certificate (public) for curl --cacert.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("rest-todo-tls-ca.pem"))]
        ca_file: PathBuf,
    },
    /// Talk to a running server.
    Client {
        /// The server's address.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        #[command(subcommand)]
        action: Action,
    },
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List every todo (first page).
    List,
    /// Show one todo.
    Get { id: u64 },
    /// Add a todo.
    Add { task: String },
    /// Mark a todo as done.
    Done { id: u64 },
    /// Delete a todo.
    Rm { id: u64 },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Warnings only: the serving loop reports on stderr when accepting fails
    // or a request outlives the shutdown grace; the demo narrates the rest.
    harness::init_logging_at("warn");
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve { addr, tls: true, ca_file, .. }) => serve_tls(addr, ca_file).await,
        Some(Command::Serve { addr, db, .. }) => run_server(addr, db).await,
        Some(Command::Client { addr, action }) => client(addr, action).await,
    }
}

async fn run_server(addr: SocketAddr, db: Option<PathBuf>) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let token = harness::ctrl_c_token();
    let said = token.clone();
    tokio::spawn(async move {
        said.cancelled().await;
        eprintln!("rest-todo: Ctrl-C, finishing open requests");
    });
    match db {
        None => {
            eprintln!("rest-todo: serving on http://{addr}/todos (in memory; Ctrl-C to stop)");
            serve(listener, MemoryStore::new(), token).await?;
        }
        Some(path) => {
            let store =
                SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
            eprintln!(
                "rest-todo: serving on http://{addr}/todos (SQLite file {}; Ctrl-C to stop)",
                path.display()
            );
            serve(listener, store, token).await?;
        }
    }
    eprintln!("rest-todo: stopped");
    Ok(())
}

/// `serve --tls`: the same API (in memory) behind `http_serve`'s TLS
/// (lesson 13), with `serve`'s settings and a throwaway certificate.
async fn serve_tls(addr: SocketAddr, ca_file: PathBuf) -> anyhow::Result<()> {
    let tls = http_serve::throwaway_tls(&ca_file).map_err(|e| anyhow::anyhow!(e))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let port = listener.local_addr()?.port();
    eprintln!("rest-todo: serving on https://localhost:{port}/todos (in memory; Ctrl-C to stop)");
    eprintln!("rest-todo: CA certificate written to {}", ca_file.display());
    eprintln!("try: curl --cacert {} https://localhost:{port}/todos", ca_file.display());
    let config = http_serve::ServeConfig { tls: Some(tls), ..rest_todo::serve_config() };
    let app = rest_todo::router(MemoryStore::new());
    http_serve::serve(listener, app, harness::ctrl_c_token(), config).await?;
    eprintln!("rest-todo: stopped");
    Ok(())
}

async fn client(addr: SocketAddr, action: Action) -> anyhow::Result<()> {
    let mut c = Client::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let resp = match action {
        Action::List => c.get("/todos").await?,
        Action::Get { id } => c.get(&format!("/todos/{id}")).await?,
        Action::Add { task } => c.json("POST", "/todos", &json!({ "task": task })).await?,
        Action::Done { id } => {
            c.json("PATCH", &format!("/todos/{id}"), &json!({ "completed": true })).await?
        }
        Action::Rm { id } => c.send("DELETE", &format!("/todos/{id}"), &[], b"").await?,
    };
    println!("{} {}", resp.status, resp.reason);
    if !resp.body.is_empty() {
        println!("{}", resp.text());
    }
    Ok(())
}

/// Prints one exchange the way the chapter shows it: the request line and
/// body, then the status, the headers that matter here, and the body.
fn show(method: &str, path: &str, extra: &str, body: &str, resp: &HttpResponse) {
    let extra = if extra.is_empty() { String::new() } else { format!("  [{extra}]") };
    println!("> {method} {path}{extra}");
    if !body.is_empty() {
        println!(">   {body}");
    }
    let mut notes = Vec::new();
    for name in ["location", "etag", "allow", "x-total-count"] {
        if let Some(v) = resp.header(name) {
            notes.push(format!("{name}: {v}"));
        }
    }
    let notes = if notes.is_empty() { String::new() } else { format!("  [{}]", notes.join(", ")) };
    println!("< {} {}{notes}", resp.status, resp.reason);
    if !resp.body.is_empty() {
        println!("<   {}", resp.text());
    }
    println!();
}

/// Prints bytes as text lines, each CRLF shown as `⏎` so the framing shows.
fn print_raw(prefix: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split_inclusive("\r\n") {
        println!("{prefix} {}", line.replace("\r\n", "⏎"));
    }
}

/// One step of the demo: what it shows, then the request.
struct Step {
    why: &'static str,
    method: &'static str,
    path: &'static str,
    if_match: Option<&'static str>,
    content_type: Option<&'static str>,
    body: String,
}

fn step(why: &'static str, method: &'static str, path: &'static str) -> Step {
    Step { why, method, path, if_match: None, content_type: None, body: String::new() }
}

impl Step {
    fn json(mut self, body: serde_json::Value) -> Self {
        self.content_type = Some("application/json");
        self.body = body.to_string();
        self
    }

    fn raw(mut self, content_type: &'static str, body: &str) -> Self {
        self.content_type = Some(content_type);
        self.body = body.to_owned();
        self
    }

    fn if_match(mut self, etag: &'static str) -> Self {
        self.if_match = Some(etag);
        self
    }
}

/// The demo: one todo's whole life, then the mistakes the notes' server let
/// through, each answered with its own status code.
async fn demo() -> anyhow::Result<()> {
    let server =
        TaskServer::start(|listener, token| serve(listener, MemoryStore::new(), token)).await?;
    let addr = server.addr();
    println!("rest-todo demo: server on http://{addr}, in memory, one keep-alive connection.");
    println!("'>' is what the client sent, '<' what came back.\n");
    let mut c = Client::connect(addr).await?;

    let steps = [
        step("create: 201, Location and ETag", "POST", "/todos")
            .json(json!({"task": "Learn Rust"})),
        step("create another", "POST", "/todos")
            .json(json!({"task": "Read a book", "completed": true})),
        step("list, in id order", "GET", "/todos"),
        step("list only the open ones", "GET", "/todos?completed=false"),
        step("mark done, if still at v1", "PATCH", "/todos/1")
            .if_match("\"v1\"")
            .json(json!({"completed": true})),
        step("replace, holding the stale v1: 412, nothing changes", "PUT", "/todos/1")
            .if_match("\"v1\"")
            .json(json!({"task": "Learn Go", "completed": false})),
        step("replace with the current ETag", "PUT", "/todos/1")
            .if_match("\"v2\"")
            .json(json!({"task": "Learn Go", "completed": false})),
        step("delete: 204, no body", "DELETE", "/todos/2"),
        step("it is gone: 404", "GET", "/todos/2"),
        step("the notes would reuse id 2 here (length + 1); the counter gives 3", "POST", "/todos")
            .json(json!({"task": "Write the chapter"})),
        step("a form, not JSON: 415", "POST", "/todos")
            .raw("application/x-www-form-urlencoded", "task=milk"),
        step("says JSON, is not JSON: 400", "POST", "/todos")
            .raw("application/json", "{\"task\": \"milk\""),
        step("JSON without the task: 422", "POST", "/todos").json(json!({"completed": true})),
        step("an empty task: 422", "POST", "/todos").json(json!({"task": ""})),
        step("PUT replaces, so every field is required: 422", "PUT", "/todos/1")
            .json(json!({"task": "Learn Rust"})),
        step("a method this path does not have: 405 and Allow", "DELETE", "/todos"),
        step("a path that does not exist: 404", "GET", "/nope"),
    ];
    for (n, s) in steps.into_iter().enumerate() {
        let mut headers = Vec::new();
        if let Some(ct) = s.content_type {
            headers.push(("Content-Type", ct));
        }
        if let Some(tag) = s.if_match {
            headers.push(("If-Match", tag));
        }
        let resp = c.send(s.method, s.path, &headers, s.body.as_bytes()).await?;
        if n == 0 {
            // Once, the whole exchange as it crossed the wire; after that,
            // a summary of each.
            println!("# {} (byte for byte, each \\r\\n shown as ⏎)", s.why);
            let request = c.request_bytes(s.method, s.path, &headers, s.body.as_bytes());
            print_raw(">", &request);
            let mut response = resp.raw_head.clone();
            response.extend_from_slice(&resp.body);
            print_raw("<", &response);
            println!();
            continue;
        }
        println!("# {}", s.why);
        let extra = s.if_match.map(|t| format!("If-Match: {t}")).unwrap_or_default();
        show(s.method, s.path, &extra, &s.body, &resp);
    }
    drop(c);
    server.shutdown().await?;
    println!("server shut down cleanly");
    Ok(())
}
