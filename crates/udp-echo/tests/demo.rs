//! The demo is part of the lesson: it must run, show what chapter 2 quotes
//! from it, and exit 0.

use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_retries_shows_boundaries_and_exits_0() {
    let out = harness::within_blocking(Duration::from_secs(60), "the demo to finish", || {
        Command::new(env!("CARGO_BIN_EXE_udp-echo")).output().expect("running the demo")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The drops are seeded, so the same messages need a retry on every run.
    for expected in [
        " message 1 -> echoed after 1 send",
        " message 2 -> echoed after 2 sends",
        "message 10 -> echoed after 1 send",
        "server: 14 received, 4 dropped on purpose, 10 echoed",
        r#"received one datagram of 5 bytes: "three""#,
        r#"sent 2000 bytes, server answered: "ERR datagram larger than 1472 bytes\n""#,
        "got 10 bytes, the other 90 are gone",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}
