//! The demo is part of the lesson: it must run, show what the chapter quotes
//! from it, and exit 0.

use std::time::Duration;

#[test]
fn the_demo_shows_updates_arriving_and_exits_0() {
    let stdout = harness::demo_output(env!("CARGO_BIN_EXE_long-polling"), Duration::from_secs(60));
    for expected in [
        "follower got #5",
        "GET /data?since=0 HTTP/1.1",
        "{\"data\":null,\"id\":2,\"updates\":[],\"missed\":0}",
        "per update:",
        "server stopped cleanly",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}
