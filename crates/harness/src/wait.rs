//! Bounded waiting.
//!
//! A network test that waits forever is worse than one that fails: it hangs CI
//! and tells nobody what it was waiting for. Every wait in this workspace goes
//! through one of these helpers, which fail with a sentence naming the thing
//! that did not happen.

use std::future::Future;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`eventually_blocking`] look at their
/// condition again. Short enough that tests stay fast, long enough that a
/// polling loop costs a test run almost no CPU (200 looks a second), even
/// with dozens of tests waiting at once on a small machine.
pub const POLL_EVERY: Duration = Duration::from_millis(5);

/// Awaits `fut`, or panics with `timed out after {deadline:?}: {what}`.
///
/// Use it around every await in a test that depends on a peer doing
/// something: a read, an accept, a server shutting down.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// let n = harness::within(Duration::from_secs(1), "an answer", async { 42 }).await;
/// assert_eq!(n, 42);
/// # });
/// ```
pub async fn within<F: Future>(deadline: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(deadline, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {deadline:?}: {what}"),
    }
}

/// The blocking twin of [`within`]: runs `f` on its own thread and panics with
/// `timed out after {deadline:?}: {what}` if it has not returned in time.
///
/// The thread that timed out is left behind (a blocked `read` cannot be
/// cancelled from outside); the panic ends the test, which is what matters.
/// A panic inside `f` is passed on to the caller with its own message.
pub fn within_blocking<T, F>(deadline: Duration, what: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let worker = thread::Builder::new()
        .name(format!("within: {what}"))
        .spawn(move || {
            // The receiver may have given up already; nothing to do then.
            let _ = tx.send(f());
        })
        .expect("spawning a thread for within_blocking");
    match rx.recv_timeout(deadline) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out after {deadline:?}: {what}"),
        // The sender vanished without sending: `f` panicked. Re-raise its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it returns"),
        },
    }
}

/// Waits until `condition()` is true, looking every [`POLL_EVERY`], or panics
/// with `condition not met after {deadline:?}: {what}`.
///
/// For state that becomes true some time after an action ("the server has
/// forgotten the client", "the waiter count is back to zero"), where there is
/// no event to await. Never replace it with a bare sleep: a sleep is either
/// too short on a loaded machine or too long everywhere else.
pub async fn eventually<F: FnMut() -> bool>(deadline: Duration, what: &str, mut condition: F) {
    let start = Instant::now();
    loop {
        if condition() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("condition not met after {deadline:?}: {what}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The blocking twin of [`eventually`], for tests of `std::net` servers.
pub fn eventually_blocking<F: FnMut() -> bool>(deadline: Duration, what: &str, mut condition: F) {
    let start = Instant::now();
    loop {
        if condition() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("condition not met after {deadline:?}: {what}");
        }
        thread::sleep(POLL_EVERY);
    }
}
