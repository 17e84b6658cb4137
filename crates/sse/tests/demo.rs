//! The demo is part of the lesson: it must run, show what the chapter quotes
//! from it, and exit 0.

use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_shows_updates_arriving_and_exits_0() {
    let stdout = harness::demo_output(env!("CARGO_BIN_EXE_sse"), Duration::from_secs(60));
    for expected in [
        "follower got event \"text\" id \"2\" data \"a text update\\nin two lines\"",
        "data: in two lines\\n",
        ": keep-alive\\n",
        "last-event-id: 3\\r\\n",
        "follower got event \"update\" id \"5\"",
        "per update:",
        "server stopped cleanly",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}

/// `serve --keep-alive-secs 0` used to start, then panic in every `/events`
/// handler (a tokio interval cannot have a zero period). It is refused up front.
#[test]
fn a_zero_keep_alive_is_refused_on_the_command_line() {
    let out = harness::within_blocking(Duration::from_secs(60), "the binary to exit", || {
        Command::new(env!("CARGO_BIN_EXE_sse"))
            .args(["serve", "--addr", "127.0.0.1:0", "--keep-alive-secs", "0"])
            .output()
            .expect("running the binary")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a zero keep-alive was accepted: {stderr}");
    assert!(stderr.contains("--keep-alive-secs"), "the error names the flag: {stderr}");
}
