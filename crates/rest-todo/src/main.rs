//! The command line of lesson 10. `cargo run -p rest-todo` runs the demo;
//! `serve` and `client` are described in `--help` and in the chapter.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::TaskServer;
use rest_todo::{Client, DEFAULT_ADDR, HttpResponse, MemoryStore, SqliteStore, serve};
use serde_json::json;
use tokio_util::sync::CancellationToken;

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
    match Cli::parse().command {
        None => demo().await,
        Some(Command::Serve { addr, db }) => run_server(addr, db).await,
        Some(Command::Client { addr, action }) => client(addr, action).await,
    }
}

async fn run_server(addr: SocketAddr, db: Option<PathBuf>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let token = CancellationToken::new();
    let on_ctrl_c = token.clone();
    tokio::spawn(async move {
        // If the signal handler cannot be installed, the server simply runs
        // until it is killed; nothing else depends on it.
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("rest-todo: Ctrl-C, finishing open requests");
            on_ctrl_c.cancel();
        }
    });
    match db {
        None => {
            eprintln!("rest-todo: serving on http://{addr}/todos (in memory; Ctrl-C to stop)");
            serve(listener, MemoryStore::new(), token).await?;
        }
        Some(path) => {
            let store = SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
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

async fn client(addr: SocketAddr, action: Action) -> anyhow::Result<()> {
    let mut c = Client::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let resp = match action {
        Action::List => c.get("/todos").await?,
        Action::Get { id } => c.get(&format!("/todos/{id}")).await?,
        Action::Add { task } => c.json("POST", "/todos", &json!({ "task": task })).await?,
        Action::Done { id } => c.json("PATCH", &format!("/todos/{id}"), &json!({ "completed": true })).await?,
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

/// The demo: one todo's whole life, then the mistakes the notes' server let
/// through, each answered with its own status code.
async fn demo() -> anyhow::Result<()> {
    let server = TaskServer::start(|listener, token| serve(listener, MemoryStore::new(), token)).await?;
    let addr = server.addr();
    println!("rest-todo demo: server on http://{addr}, in memory; one keep-alive connection\n");
    let mut c = Client::connect(addr).await?;

    // Each step: method, path, extra headers, body.
    let steps: Vec<(&str, String, Vec<(&str, &str)>, String)> = vec![
        ("POST", "/todos".into(), vec![], json!({"task": "Learn Rust"}).to_string()),
        ("POST", "/todos".into(), vec![], json!({"task": "Read a book", "completed": true}).to_string()),
        ("GET", "/todos".into(), vec![], String::new()),
        ("GET", "/todos?completed=false".into(), vec![], String::new()),
        ("PATCH", "/todos/1".into(), vec![("If-Match", "\"v1\"")], json!({"completed": true}).to_string()),
        // The same If-Match again: v1 is gone, so this is a lost update averted.
        ("PUT", "/todos/1".into(), vec![("If-Match", "\"v1\"")], json!({"task": "Learn Go", "completed": false}).to_string()),
        // With the current ETag it goes through.
        ("PUT", "/todos/1".into(), vec![("If-Match", "\"v2\"")], json!({"task": "Learn Go", "completed": false}).to_string()),
        ("DELETE", "/todos/2".into(), vec![], String::new()),
        ("GET", "/todos/2".into(), vec![], String::new()),
        // Two todos were created and one deleted: the notes would now hand out
        // id 2 again (length + 1). The counter gives 3.
        ("POST", "/todos".into(), vec![], json!({"task": "Write the chapter"}).to_string()),
        ("POST", "/todos".into(), vec![], "task=milk".into()),
        ("POST", "/todos".into(), vec![], "{\"task\": \"milk\"".into()),
        ("POST", "/todos".into(), vec![], json!({"completed": true}).to_string()),
        ("POST", "/todos".into(), vec![], json!({"task": ""}).to_string()),
        ("PUT", "/todos/1".into(), vec![], json!({"task": "Learn Rust"}).to_string()),
        ("DELETE", "/todos".into(), vec![], String::new()),
        ("GET", "/nope".into(), vec![], String::new()),
    ];
    for (method, path, mut headers, body) in steps {
        // "task=milk" is sent as a form, the way an HTML form would post it,
        // to show 415; everything else that has a body says it is JSON.
        if body.starts_with("task=") {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        } else if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let resp = c.send(method, &path, &headers, body.as_bytes()).await?;
        let extra: Vec<String> =
            headers.iter().filter(|(n, _)| *n != "Content-Type").map(|(n, v)| format!("{n}: {v}")).collect();
        show(method, &path, &extra.join(", "), &body, &resp);
    }
    drop(c);
    server.shutdown().await?;
    println!("server shut down cleanly");
    Ok(())
}
