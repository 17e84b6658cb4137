//! The demo is part of the lesson: it must run, narrate the handshake, the
//! streams and the migration chapter 15 quotes from it, and exit 0.

use std::time::Duration;

#[test]
fn the_demo_narrates_handshake_streams_and_migration_and_exits_0() {
    let stdout = harness::demo_output(env!("CARGO_BIN_EXE_http3"), Duration::from_secs(90));
    for expected in [
        "long  Initial v0x1",
        "long  Handshake v0x1",
        "GET /resource/1 answered 200 after",
        "did not wait for it",
        "download finished: 8388608 bytes, status 200",
        "new handshakes: 0",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
    // The quick stream, asked last, is done before the slow one.
    let at = |what: &str| stdout.find(what).unwrap_or_else(|| panic!("{what:?} in:\n{stdout}"));
    assert!(at("GET /resource/2") < at("GET /slow?ms=300"), "{stdout}");
}
