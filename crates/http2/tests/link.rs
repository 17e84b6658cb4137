//! HTTP/2 through lesson 12's link: with a real round trip, the quick
//! streams of one connection still finish while the slow one waits. Needs
//! root (network namespaces, TUN), so `#[ignore]`d; `.ci/run` runs it.

#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use http2::client::{self, Windows};
use http2::{Config, Stats};
use netlab::{Link, LinkConfig, SERVER_ADDR, Side};

const RTT: Duration = Duration::from_millis(50);
const SLOW_MS: u64 = 600;

#[test]
#[ignore = "needs root for network namespaces and TUN; .ci/run runs it"]
fn through_a_50ms_link_quick_streams_do_not_wait_for_the_slow_one() {
    let link = Link::start(LinkConfig::symmetric(RTT, 0.0, None)).expect("link (root?)");
    let listener = link
        .on(Side::Server, || std::net::TcpListener::bind((SERVER_ADDR, 0)))
        .expect("bind on the server side");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    // The server runs on a runtime of its own, on this side; its listener
    // socket already lives in the server's namespace.
    let server = tokio::runtime::Runtime::new().expect("runtime");
    let token = harness::CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let listener =
        server.block_on(async { tokio::net::TcpListener::from_std(listener) }).expect("tokio");
    let task = server.spawn(http2::serve(
        listener,
        None,
        Config::default(),
        Arc::clone(&stats),
        token.clone(),
    ));
    let times = link
        .run_on(Side::Client, move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let start = Instant::now();
                let h2 = client::connect(addr, Windows::default())
                    .await
                    .map_err(std::io::Error::other)?;
                let slow = h2
                    .send_get(&format!("/slow?ms={SLOW_MS}"))
                    .await
                    .map_err(std::io::Error::other)?;
                let mut quick = Vec::new();
                for i in 0..5 {
                    quick.push(
                        h2.send_get(&format!("/resource/{i}"))
                            .await
                            .map_err(std::io::Error::other)?,
                    );
                }
                let mut quick_done = Vec::new();
                for q in quick {
                    client::read_answer(q, 1024).await.map_err(std::io::Error::other)?;
                    quick_done.push(start.elapsed());
                }
                client::read_answer(slow, 1024).await.map_err(std::io::Error::other)?;
                std::io::Result::Ok((quick_done, start.elapsed()))
            })
        })
        .expect("a thread on the client side")
        .join()
        .expect("the client thread");
    let (quick, slow) = times.expect("entering the client side").expect("the exchange");
    token.cancel();
    server
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
        .expect("server stops")
        .expect("task")
        .expect("serve");
    // Connect (1 RTT), then requests and answers (1 RTT): the quick ones in
    // about two round trips; the slow one after its 600 ms.
    assert!(slow >= Duration::from_millis(SLOW_MS) + RTT, "slow after {slow:?}");
    for q in &quick {
        assert!(
            *q + Duration::from_millis(SLOW_MS / 2) < slow,
            "a quick one took {q:?}, the slow {slow:?}"
        );
    }
    assert_eq!(Stats::get(&stats.h2_connections), 1, "one connection");
}
