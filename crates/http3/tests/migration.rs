//! Connection migration: the client moves to a new UDP port in the middle
//! of a download, and the download finishes on the same connection.

mod common;

use common::{STEP, Server};
use http3::{Config, Stats, client};

#[tokio::test]
async fn a_download_survives_the_client_changing_its_port() {
    let server = Server::start(Config::default()).await;
    let (endpoint, h3) = server.connect().await;
    let before = endpoint.local_addr().expect("bound");
    let kb = 4 * 1024;
    let mut moved = None;
    let a = harness::within(
        STEP,
        "the download",
        h3.get_with(&format!("/large?kb={kb}"), kb * 1024, |n| {
            if moved.is_none() && n >= 512 * 1024 {
                moved = Some(client::rebind(&endpoint).expect("rebind"));
            }
        }),
    )
    .await
    .expect("the download finishes");
    let after = moved.expect("moved after 512 KiB");
    assert_ne!(before.port(), after.port());
    assert_eq!((a.status, a.body.len()), (200, kb * 1024));
    // The same connection: one handshake, one connection, and the server
    // finished that response at another address than it started it.
    assert_eq!(Stats::get(&server.stats.handshakes), 1);
    assert_eq!(Stats::get(&server.stats.connections), 1);
    assert_eq!(Stats::get(&server.stats.migrated), 1);
    // And it carries on there.
    let b = harness::within(STEP, "a request after", h3.get("/resource/1", 1024)).await;
    assert_eq!(b.expect("answer").status, 200);
    assert_eq!(Stats::get(&server.stats.handshakes), 1);
}
