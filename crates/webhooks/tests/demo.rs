//! `cargo run -p webhooks` with no arguments: the demo runs to the end and
//! says each event was applied exactly once.

use std::process::Command;

#[test]
fn the_demo_exits_zero_with_each_event_applied_once() {
    let out = harness::within_blocking(std::time::Duration::from_secs(60), "the demo", || {
        Command::new(env!("CARGO_BIN_EXE_webhooks")).output().expect("the demo runs")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("applied: 6 effects for 6 distinct events"), "{stdout}");
    assert!(stdout.contains("attempt 2:"), "the flaky receiver caused a retry: {stdout}");
}
