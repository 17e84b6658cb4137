//! The shared test harness: what every lesson's tests and demos would
//! otherwise write again.
//!
//! * [`server`]: start a lesson's server on `127.0.0.1:0`, get its address,
//!   shut it down ([`BlockingServer`] for `std::net` servers on a thread,
//!   [`TaskServer`] for tokio servers on a task).
//! * [`wait`]: [`within`], [`within_blocking`], [`eventually`] and
//!   [`eventually_blocking`], so no test waits forever and none sleeps blindly.
//! * [`net`]: raw TCP and UDP clients with timeouts on every read.
//! * [`http`]: the raw HTTP/1.x client of the `raw-http` crate (exact bytes
//!   out, exact responses in), re-exported so every lesson's tests reach it
//!   in one place.
//! * [`tap`]: the wire tap, a loopback proxy that counts connections and
//!   bytes each way and keeps a transcript to print as a hexdump.
//! * [`narrate`]: what the tap saw, printed as text for a demo (HTTP heads
//!   with their `\r\n` shown, and the cost per update).
//! * [`ws`]: WebSocket clients, a polite one with deadlines and a raw one
//!   that writes frames by hand.
//!
//! A protocol that a lesson teaches lives in that lesson, not here: the
//! event-stream parser is `sse::parser`, the HTTP/1.x framing is lesson 4's.
//!
//! Run its own tests with `cargo test -p harness`.

pub mod narrate;
pub mod net;
pub mod process;
pub mod server;
pub mod tap;
pub mod wait;
pub mod ws;

pub use net::{IO_TIMEOUT, TcpClient, UdpClient};
pub use process::demo_output;
#[cfg(target_os = "linux")]
pub use process::resident_bytes;
pub use server::{BlockingServer, EPHEMERAL, SHUTDOWN_DEADLINE, TaskServer};
pub use tap::{Direction, TapStats, WireTap, hexdump};
pub use wait::{eventually, eventually_blocking, within, within_blocking};

/// The raw HTTP/1.x client, for tests that send exact request bytes: see the
/// `raw-http` crate (its own crate because lessons 4 and 10 build their
/// clients on it, and a lesson's client must not depend on a test harness).
pub use raw_http as http;

/// Re-exported so lessons' tests name one version of the cancellation token.
pub use tokio_util::sync::CancellationToken;

/// Installs the log output every lesson's binary uses: `info` and up (or what
/// `RUST_LOG` says), on stderr so the demo's narration on stdout stays clean,
/// without timestamps, coloured only on a terminal. Call it once at the top of
/// `main`.
pub fn init_logging() {
    init_logging_at("info");
}

/// A token that Ctrl-C cancels: how each lesson's `serve` (and any command
/// that runs until stopped) learns it should finish what it is doing and
/// return. If the signal handler cannot be installed, the token is simply
/// never cancelled and the process runs until it is killed. Call it inside a
/// tokio runtime.
pub fn ctrl_c_token() -> CancellationToken {
    let token = CancellationToken::new();
    let on_ctrl_c = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    token
}

/// Like [`init_logging`], with another default level (`"warn"` for a demo
/// whose narration already says everything the info logs would).
pub fn init_logging_at(default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}
