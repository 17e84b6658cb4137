//! The faults the chapter's "what goes wrong" table promises to survive,
//! each over real sockets on loopback.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::net::TcpListener;
use webhooks::{Fault, ReceiverConfig, SenderConfig};

#[tokio::test]
async fn receiver_down_then_back_gets_every_event_once() {
    let scratch = Scratch::new("down");
    let config = SenderConfig { max_attempts: 1000, disable_after: 1000, ..SenderConfig::quick() };
    let sender = start_sender(&scratch.path("outbox.sqlite"), config).await;
    // A port with nobody on it: bind, note, close.
    let addr = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let (id, secret) = register(sender.addr(), &format!("http://{addr}/hook")).await;
    let ids = send_events(sender.addr(), 5).await;
    until(DEADLINE, "every event tried and refused at least once", || async {
        let v = view(sender.addr(), id).await;
        let refused =
            v["log"].as_array().map_or(0, |l| l.iter().filter(|a| a["status"].is_null()).count());
        refused >= 5 && v["pending"] == 5
    })
    .await;
    // Back on the same port.
    let listener = TcpListener::bind(addr).await.expect("the port is still free");
    let (_srv, receiver) =
        start_receiver(listener, &scratch.path("inbox.sqlite"), ReceiverConfig::new(secret)).await;
    all_applied_once(&receiver, &ids, DEADLINE).await;
    until(DEADLINE, "the outbox to record every delivery", || async {
        view(sender.addr(), id).await["delivered"] == 5
    })
    .await;
}

#[tokio::test]
async fn receiver_failing_half_applies_each_event_exactly_once() {
    let scratch = Scratch::new("half");
    let sender = start_sender(&scratch.path("outbox.sqlite"), SenderConfig::quick()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (id, secret) = register(sender.addr(), &url).await;
    let mut config = ReceiverConfig::new(secret);
    config.fault = Fault::OneIn(2);
    let (_srv, receiver) = start_receiver(listener, &scratch.path("inbox.sqlite"), config).await;
    let ids = send_events(sender.addr(), 20).await;
    until(DEADLINE, "all 20 delivered", || async {
        view(sender.addr(), id).await["delivered"] == 20
    })
    .await;
    all_applied_once(&receiver, &ids, DEADLINE).await;
    // The half that failed after storing came back as duplicates, and the
    // inbox recognised them: without the dedupe those would be applied twice.
    assert!(receiver.stats.faults.load(Ordering::Relaxed) >= 10);
    assert!(receiver.stats.duplicates.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_does_not_delay_the_others() {
    let scratch = Scratch::new("hang");
    let timeout = Duration::from_millis(300);
    let config = SenderConfig {
        request_timeout: timeout,
        per_endpoint: 2,
        max_attempts: 2,
        disable_after: 1000,
        ..SenderConfig::quick()
    };
    let sender = start_sender(&scratch.path("outbox.sqlite"), config).await;
    let stuck = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let healthy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (stuck_id, stuck_secret) =
        register(sender.addr(), &format!("http://{}/", stuck.local_addr().expect("addr"))).await;
    let (ok_id, ok_secret) =
        register(sender.addr(), &format!("http://{}/", healthy.local_addr().expect("addr"))).await;
    let mut hang = ReceiverConfig::new(stuck_secret);
    hang.fault = Fault::Hang;
    let (_a, _) = start_receiver(stuck, &scratch.path("stuck.sqlite"), hang).await;
    let (_b, receiver) =
        start_receiver(healthy, &scratch.path("ok.sqlite"), ReceiverConfig::new(ok_secret)).await;
    let ids = send_events(sender.addr(), 10).await;
    // 10 deliveries x 2 attempts through 2 slots of 300 ms: the stuck one
    // needs 3 s. The healthy one must not wait for it.
    all_applied_once(&receiver, &ids, DEADLINE).await;
    let stuck_view = view(sender.addr(), stuck_id).await;
    assert!(stuck_view["pending"].as_u64() > Some(0), "healthy finished first: {stuck_view}");
    assert_eq!(view(sender.addr(), ok_id).await["delivered"], 10);
    // And the timeout frees the stuck endpoint's slots: every delivery gets
    // both its attempts (which only 2 slots could not do if a hung request
    // kept its slot), and all are given up on.
    until(DEADLINE, "the stuck endpoint's deliveries to time out and be given up", || async {
        view(sender.addr(), stuck_id).await["failed"] == 10
    })
    .await;
    let v = view(sender.addr(), stuck_id).await;
    let outcome = v["log"][0]["outcome"].as_str().unwrap_or_default().to_owned();
    assert!(outcome.starts_with("timed out after"), "{v}");
    assert!(v["log"][0]["took_ms"].as_i64() < Some(2000), "{v}");
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled() {
    let scratch = Scratch::new("disable");
    let config = SenderConfig { disable_after: 3, max_attempts: 1000, ..SenderConfig::quick() };
    let sender = start_sender(&scratch.path("outbox.sqlite"), config).await;
    let addr = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let (id, secret) = register(sender.addr(), &format!("http://{addr}/")).await;
    send_events(sender.addr(), 2).await;
    until(DEADLINE, "the endpoint to be disabled", || async {
        view(sender.addr(), id).await["disabled"] == true
    })
    .await;
    let v = view(sender.addr(), id).await;
    assert!(v["consecutive_failures"].as_u64() >= Some(3), "{v}");
    assert_eq!(v["pending"], 2, "its deliveries wait, they are not dropped: {v}");
    // Fixed and enabled again, it gets what waited.
    let listener = TcpListener::bind(addr).await.expect("the port is still free");
    let (_srv, receiver) =
        start_receiver(listener, &scratch.path("inbox.sqlite"), ReceiverConfig::new(secret)).await;
    let resp = call(sender.addr(), "POST", &format!("/endpoints/{id}/enable"), None).await;
    assert_eq!(resp.status, 200);
    until(DEADLINE, "both delivered after enabling", || async {
        view(sender.addr(), id).await["delivered"] == 2
    })
    .await;
    assert_eq!(receiver.effects().await.expect("inbox").len(), 2);
}

#[tokio::test]
async fn only_loopback_urls_can_be_registered() {
    let scratch = Scratch::new("ssrf");
    let sender = start_sender(&scratch.path("outbox.sqlite"), SenderConfig::quick()).await;
    for url in [
        "http://169.254.169.254:80/latest/meta-data/",
        "http://localhost:8080/",
        "file:///etc/passwd",
    ] {
        let resp =
            call(sender.addr(), "POST", "/endpoints", Some(serde_json::json!({"url": url}))).await;
        assert_eq!(resp.status, 422, "{url}: {}", resp.text());
    }
}
