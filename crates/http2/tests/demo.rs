//! The demo is part of the lesson: it must run, show the frames and counts
//! chapter 14 quotes from it, and exit 0.

use std::time::Duration;

#[test]
fn the_demo_narrates_interleaved_streams_and_hpack_and_exits_0() {
    let stdout = harness::demo_output(env!("CARGO_BIN_EXE_http2"), Duration::from_secs(60));
    for expected in [
        "preface \"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\" (24 bytes)",
        "SETTINGS      stream 0  ACK",
        // How much the client hands back at once depends on when its reader
        // ran (+49152 or +65535 seen): the frame itself is the promise.
        "WINDOW_UPDATE stream 3  +",
        "RST_STREAM    stream 7  CANCEL",
        "GOAWAY        stream 0  last stream 7 NO_ERROR",
        "Stream 1 (slow) ended last although it was asked first",
        "HTTP/1.1 request head",
        "HTTP/2 request (HPACK)",
    ] {
        assert!(stdout.contains(expected), "the demo no longer shows {expected:?}:\n{stdout}");
    }
    // The slow stream's DATA comes after the quick ones' END_STREAM.
    let at = |what: &str| stdout.find(what).unwrap_or_else(|| panic!("{what:?} in:\n{stdout}"));
    assert!(at("DATA          stream 5") < at("DATA          stream 1"), "{stdout}");
    // From the second request on, HPACK sends fewer header bytes than the first.
    let counts: Vec<u64> = stdout
        .lines()
        .find(|l| l.starts_with("HTTP/2 request (HPACK)"))
        .expect("the HPACK row")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(counts.len(), 3, "1st, 2nd, 100th: {counts:?}");
    assert!(counts[1] < counts[0] && counts[2] == counts[1], "{counts:?}");
}
