//! The hold logic on tokio's paused clock: the real 25 s `HOLD`, checked in
//! milliseconds of real time. With `start_paused`, time only moves when every
//! task is waiting, and then jumps straight to the next timer.

use std::time::Duration;

use feed::{Feed, FeedError};
use long_polling::{HOLD, wait_for_news};
use serde_json::json;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

fn spawn_waiter(
    feed: &Feed,
    token: &CancellationToken,
) -> tokio::task::JoinHandle<Result<long_polling::Poll, FeedError>> {
    let (feed, token) = (feed.clone(), token.clone());
    tokio::spawn(async move { wait_for_news(&feed, Some(0), HOLD, &token).await })
}

#[tokio::test(start_paused = true)]
async fn a_poll_is_held_for_exactly_the_hold_then_answered_empty() {
    let feed = Feed::default();
    let token = CancellationToken::new();
    let started = Instant::now();
    let waiter = spawn_waiter(&feed, &token);
    sleep(HOLD - Duration::from_millis(1)).await;
    assert!(!waiter.is_finished(), "still held 1 ms before the hold runs out");
    assert_eq!(feed.stats().waiting, 1);
    let poll = waiter.await.expect("task").expect("a timeout is not an error");
    assert_eq!(started.elapsed(), HOLD, "answered when the hold ran out, not before or after");
    assert_eq!((poll.data, poll.id, poll.updates.len()), (None, 0, 0));
    assert_eq!(feed.stats().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn a_publish_ends_the_hold_at_once() {
    let feed = Feed::default();
    let token = CancellationToken::new();
    let started = Instant::now();
    let waiter = spawn_waiter(&feed, &token);
    sleep(Duration::from_secs(10)).await;
    feed.publish(json!("news"));
    let poll = waiter.await.expect("task").expect("answered");
    assert_eq!(started.elapsed(), Duration::from_secs(10), "woken by the publish, not the timer");
    assert_eq!(poll.data, Some(json!("news")));
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_hold_with_an_error() {
    let feed = Feed::default();
    let token = CancellationToken::new();
    let waiter = spawn_waiter(&feed, &token);
    sleep(Duration::from_secs(3)).await;
    token.cancel();
    assert_eq!(waiter.await.expect("task"), Err(FeedError::ShuttingDown));
}
