//! The demo is part of the lesson: it must run, show what chapter 8 quotes
//! from it, and exit 0.

use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_chats_shows_the_frames_and_exits_0() {
    let out = harness::within_blocking(Duration::from_secs(60), "the demo to finish", || {
        Command::new(env!("CARGO_BIN_EXE_websocket-chat")).output().expect("running the demo")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        r#"bob   <- {"type":"message","username":"alice","message":"hi bob","room":"lobby"}"#,
        r#"carol <- {"type":"error","message":"username \"Bob\" is taken"}"#,
        r#""users":["alice","bob"],"online":["alice","bob","carol"]"#,
        "HTTP/1.1 101 Switching Protocols",
        "byte 1 = 0xa2: MASK=1 payload length=34",
        r#"payload = {"data":"alice","type":"username"}"#,
        "byte 1 = 0x2e: MASK=0 payload length=46",
        "byte 0 = 0x88: FIN=1 opcode=8 (close)",
        r#"payload = 03 e9 (code 1001) + "server shutting down""#,
        r#"carol <- close Some(1001) "server shutting down""#,
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}
