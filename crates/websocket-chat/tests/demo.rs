//! The demo is part of the lesson: it must run, show what chapter 8 quotes
//! from it, and exit 0.

mod common;

#[test]
fn the_demo_chats_shows_the_frames_and_exits_0() {
    let stdout = common::ws::run_demo(env!("CARGO_BIN_EXE_websocket-chat"));
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
