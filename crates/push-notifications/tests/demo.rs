//! The demo is part of the lesson: it must run, show what chapter 9 quotes
//! from it, and exit 0.

mod common;

#[test]
fn the_demo_pushes_resumes_and_exits_0() {
    let stdout = common::ws::run_demo(env!("CARGO_BIN_EXE_push-notifications"));
    for expected in [
        r#"-> 200 {"id":1,"delivered":2}"#,
        r#"ann <- {"type":"notification","id":1,"event":"newMessage","payload":"You have a new message!"}"#,
        r#"ben <- {"type":"notification","id":2,"event":"tick","payload":{"tick":1}}"#,
        // (Its id depends on how many ticks the timer got in first.)
        r#","event":"newMessage","payload":"sent while ann was away (1)"}"#,
        "exactly what she missed, nothing twice",
        "byte 1 = 0x5b: MASK=0, length 91",
        "byte 1 = 0x7e: MASK=0, length field 126: the real length is the next 2 bytes, 00 d0 = 208",
        "connections 0, subscribers {}",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}
