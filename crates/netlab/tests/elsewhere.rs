//! On macOS and Windows there are no network namespaces or TUN devices. The
//! crate still compiles there (CI type-checks it for both), and everything
//! that needs the link says "needs Linux" in one line instead of failing at
//! some later step. Compiled everywhere but Linux, where tests/link.rs and
//! the others test the link itself.

#![cfg(not(target_os = "linux"))]

use std::process::Command;
use std::time::Duration;

use netlab::{Link, LinkConfig};

#[test]
fn off_linux_the_link_and_the_command_say_they_need_linux() {
    let e = netlab::check_privileges().expect_err("no namespaces here");
    assert!(e.to_string().starts_with("needs Linux"), "{e}");
    let config = LinkConfig::symmetric(Duration::from_millis(50), 0.0, None);
    let e = Link::start(config).expect_err("no link here");
    assert!(e.to_string().starts_with("needs Linux"), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_netlab")).output().expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the demo cannot succeed here: {stderr}");
    assert!(stderr.contains("needs Linux"), "{stderr}");
}
