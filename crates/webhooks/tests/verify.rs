//! The receiver's checks, with deliveries written by hand: a tampered body,
//! a wrong secret, an old timestamp and a replay are all refused, and each
//! refusal's reason is recorded (and logged).

mod common;

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use common::*;
use tokio::net::TcpListener;
use webhooks::receiver::REJECTIONS_KEPT;
use webhooks::signature::{TOLERANCE, unix_now};
use webhooks::{Receiver, ReceiverConfig, Secret};

async fn deliver(addr: SocketAddr, id: &str, ts: u64, signature: &str, body: &str) -> u16 {
    let req = format!(
        "POST /hook HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nwebhook-id: {id}\r\n\
         webhook-timestamp: {ts}\r\nwebhook-signature: {signature}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_http::exchange(addr, req.as_bytes()).await.expect("the receiver answers").status
}

async fn receiver(
    scratch: &Scratch,
    secret: &Secret,
) -> (harness::TaskServer<std::io::Result<()>>, Receiver) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    start_receiver(listener, &scratch.path("inbox.sqlite"), ReceiverConfig::new(secret.clone()))
        .await
}

fn reasons(r: &Receiver) -> Vec<String> {
    r.stats.rejections.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
}

const BODY: &str = r#"{"type":"order.paid","data":{"order":7}}"#;

#[tokio::test]
async fn tampered_body_wrong_secret_and_old_timestamp_are_refused_with_reasons() {
    let scratch = Scratch::new("verify");
    let secret = Secret::generate();
    let (srv, r) = receiver(&scratch, &secret).await;
    let now = unix_now();

    let sig = secret.sign("msg_a", now, BODY.as_bytes());
    let tampered = BODY.replace("7", "8");
    assert_eq!(deliver(srv.addr(), "msg_a", now, &sig, &tampered).await, 401);

    let wrong = Secret::generate().sign("msg_b", now, BODY.as_bytes());
    assert_eq!(deliver(srv.addr(), "msg_b", now, &wrong, BODY).await, 401);

    let old = now - TOLERANCE.as_secs() - 60;
    let sig = secret.sign("msg_c", old, BODY.as_bytes());
    assert_eq!(deliver(srv.addr(), "msg_c", old, &sig, BODY).await, 401);

    // The same body re-dated: the signature covers the timestamp too.
    assert_eq!(deliver(srv.addr(), "msg_c", now, &sig, BODY).await, 401);

    let reasons = reasons(&r);
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].starts_with("msg_a: no signature matches"), "{reasons:?}");
    assert!(reasons[1].starts_with("msg_b: no signature matches"), "{reasons:?}");
    assert!(reasons[2].contains("s old, beyond the tolerance"), "{reasons:?}");
    assert!(reasons[3].starts_with("msg_c: no signature matches"), "{reasons:?}");
    assert!(r.effects().await.expect("inbox").is_empty(), "nothing refused is applied");
}

#[tokio::test]
async fn a_replayed_delivery_is_not_applied_twice() {
    let scratch = Scratch::new("replay");
    let secret = Secret::generate();
    let (srv, r) = receiver(&scratch, &secret).await;
    let now = unix_now();
    let sig = secret.sign("msg_once", now, BODY.as_bytes());
    assert_eq!(deliver(srv.addr(), "msg_once", now, &sig, BODY).await, 204);
    // The same bytes again (a captured request replayed within the window,
    // or a sender that did not hear the 204): answered, not applied.
    assert_eq!(deliver(srv.addr(), "msg_once", now, &sig, BODY).await, 200);
    // And a genuine retry, signed afresh a second later, also not.
    let sig = secret.sign("msg_once", now + 1, BODY.as_bytes());
    assert_eq!(deliver(srv.addr(), "msg_once", now + 1, &sig, BODY).await, 200);
    until(DEADLINE, "the first copy applied", || async {
        !r.effects().await.expect("inbox").is_empty()
    })
    .await;
    let effects = r.effects().await.expect("inbox");
    assert_eq!(effects, vec![("msg_once".to_owned(), BODY.to_owned())]);
    let reasons = reasons(&r);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|l| l.contains("duplicate webhook-id")), "{reasons:?}");
}

#[tokio::test]
async fn during_a_rotation_either_secret_verifies_and_after_it_only_the_new() {
    let scratch = Scratch::new("rotate");
    let config = webhooks::SenderConfig {
        rotation_overlap: std::time::Duration::from_millis(500),
        ..webhooks::SenderConfig::quick()
    };
    let sender = start_sender(&scratch.path("outbox.sqlite"), config).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let receiver_addr = listener.local_addr().expect("addr");
    let (id, old) = register(sender.addr(), &url).await;
    // The receiver has not deployed the new secret yet: it knows only the old.
    let (srv, r) =
        start_receiver(listener, &scratch.path("inbox.sqlite"), ReceiverConfig::new(old)).await;
    let resp = call(sender.addr(), "POST", &format!("/endpoints/{id}/rotate"), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let rotated: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    let new = Secret::parse(rotated["secret"].as_str().expect("a secret")).expect("whsec_");
    let ids = send_events(sender.addr(), 1).await;
    all_applied_once(&r, &ids, DEADLINE).await;
    // After the overlap (half a second) the old secret no longer signs, and
    // an event sent then is refused. One event per poll, so at most a few
    // dozen in all.
    until(DEADLINE, "a refusal once the old secret stopped signing", || async {
        send_events(sender.addr(), 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        !reasons(&r).is_empty()
    })
    .await;
    assert!(reasons(&r)[0].contains("no signature matches"), "{:?}", reasons(&r));
    // And the new secret still verifies after the overlap: a receiver that
    // deployed it (on the same port, a fresh inbox) gets the refused events
    // on their retries and a new one, all signed with the new secret alone.
    srv.shutdown().await.expect("the old receiver stops");
    let listener = TcpListener::bind(receiver_addr).await.expect("the port is free again");
    let (_srv, r) =
        start_receiver(listener, &scratch.path("inbox2.sqlite"), ReceiverConfig::new(new)).await;
    let after = send_events(sender.addr(), 1).await;
    until(DEADLINE, "the event sent after the overlap applied with the new secret", || async {
        r.effects().await.expect("inbox").iter().any(|(id, _)| *id == after[0])
    })
    .await;
    assert!(reasons(&r).is_empty(), "the new secret was refused: {:?}", reasons(&r));
}

#[tokio::test]
async fn the_receiver_keeps_only_the_newest_refusals() {
    let scratch = Scratch::new("refusals");
    let secret = Secret::generate();
    let (srv, r) = receiver(&scratch, &secret).await;
    let extra = 10;
    // Bounded: REJECTIONS_KEPT + 10 unsigned requests, one at a time.
    for i in 0..REJECTIONS_KEPT + extra {
        assert_eq!(
            deliver(srv.addr(), &format!("msg_{i}"), unix_now(), "v1,AAAA", BODY).await,
            401
        );
    }
    let kept = reasons(&r);
    assert_eq!(kept.len(), REJECTIONS_KEPT, "the list is capped");
    assert_eq!(r.stats.rejections_forgotten.load(Ordering::Relaxed), extra as u64);
    assert!(kept[0].starts_with(&format!("msg_{extra}:")), "the oldest went first: {kept:?}");
    let newest = format!("msg_{}:", REJECTIONS_KEPT + extra - 1);
    assert!(kept[REJECTIONS_KEPT - 1].starts_with(&newest), "{kept:?}");
}
