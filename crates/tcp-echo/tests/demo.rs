//! The demo is part of the lesson: it must run, show what chapter 1 quotes
//! from it, and exit 0.

use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_echoes_shows_the_bytes_and_exits_0() {
    let out = harness::within_blocking(Duration::from_secs(60), "the demo to finish", || {
        Command::new(env!("CARGO_BIN_EXE_tcp-echo")).output().expect("running the demo")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        r#"client got back "héllo, wörld 🦀\n""#,
        "#0 >> 20 bytes",
        "00000000  68 c3 a9 6c 6c 6f 2c 20  77 c3 b6 72 6c 64 20 f0  |h..llo, w..rld .|",
        "#0 << 20 bytes",
        r#"the client read back 14 bytes: "one two three\n""#,
        "after 300 ms the second client has no echo: it waits in the backlog",
        r#"...and the second gets "second\n""#,
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}
