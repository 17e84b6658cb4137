//! The demo is part of the lesson: it must run, show what the chapter says it
//! shows, and exit 0.

use std::time::Duration;

#[test]
fn the_demo_walks_the_life_cycle_and_exits_0() {
    let stdout = harness::demo_output(env!("CARGO_BIN_EXE_rest-todo"), Duration::from_secs(60));
    for expected in [
        "< HTTP/1.1 201 Created⏎",
        "< 412 Precondition Failed",
        "< 201 Created  [location: /todos/3, etag: \"v1\"]",
        "< 415 Unsupported Media Type",
        "< 400 Bad Request",
        "< 422 Unprocessable Entity",
        "< 405 Method Not Allowed  [allow: GET,HEAD,POST]",
        "< 404 Not Found",
        "server shut down cleanly",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
}
