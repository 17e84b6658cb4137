//! The unprivileged path: an ordinary user runs the `netlab` command, which
//! re-enters itself in a user namespace of its own (where it is root over
//! network namespaces it creates, and nothing else) with a private `/run`
//! for `ip netns`. Tested as the `nobody` user (uid 65534) with `setpriv`,
//! which takes root to switch users, so it is ignored like the other link
//! tests and run by `.ci/run` as root.

// User and network namespaces, setpriv and unshare are Linux's: compiled only there.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use harness::within_blocking;

#[test]
#[ignore = "needs root to switch to uid 65534 with setpriv; .ci/run runs them"]
fn the_demo_runs_as_nobody_in_a_user_namespace() {
    let out = within_blocking(Duration::from_secs(60), "the demo as nobody ends", || {
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_netlab"))
            .env_remove("NETLAB_IN_USER_NAMESPACE")
            .output()
            .expect("setpriv (util-linux) runs")
    });
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "demo as nobody failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("TCP connect took"), "{stdout}");
    assert!(stderr.contains("user namespace"), "says which path it took: {stderr}");
}
