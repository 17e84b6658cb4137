//! The demo is part of the lesson: it must run, show what the chapter quotes
//! from it, and exit 0.

use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_shows_updates_arriving_and_exits_0() {
    let stdout = harness::demo_output(env!("CARGO_BIN_EXE_short-polling"), Duration::from_secs(60));
    for expected in [
        "plain poller got #3",
        "etag  poller got #3",
        "HTTP/1.1 304 Not Modified",
        "if-none-match: \"0\"",
        "per update:",
        "server stopped cleanly",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}

/// `client --interval-ms 0` used to panic (a tokio interval cannot have a
/// zero period). It is refused up front with a usage error.
#[test]
fn a_zero_interval_is_refused_on_the_command_line() {
    let out = harness::within_blocking(Duration::from_secs(60), "the binary to exit", || {
        Command::new(env!("CARGO_BIN_EXE_short-polling"))
            .args(["client", "--addr", "127.0.0.1:1", "--interval-ms", "0"])
            .output()
            .expect("running the binary")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a zero interval was accepted: {stderr}");
    assert!(stderr.contains("--interval-ms"), "the error names the flag: {stderr}");
    assert!(!stderr.contains("panicked"), "a usage error, not a panic: {stderr}");
}
