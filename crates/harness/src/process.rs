//! The lesson's own process, seen from a test: run its demo binary, read
//! its resident memory.

use std::process::Command;
use std::time::Duration;

use crate::within_blocking;

/// Runs a lesson's demo binary (`env!("CARGO_BIN_EXE_<lesson>")`) with no
/// arguments, within `deadline`, asserts that it exited 0 (printing what it
/// said if not) and returns its standard output.
pub fn demo_output(binary: &str, deadline: Duration) -> String {
    let binary = binary.to_owned();
    let out = within_blocking(deadline, "the demo to finish", move || {
        Command::new(binary).output().expect("running the demo binary")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// This process's resident memory now (`VmRSS` in `/proc/self/status`), in
/// bytes. Linux only: other systems have no `/proc`, and a test that reads
/// it is compiled only on Linux.
#[cfg(target_os = "linux")]
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}
