//! A listener that cannot accept at all ends `serve` with its error, as the
//! accept policy every loop shares says (chapter 1, "When accept fails").
//! Before it, `serve` paused 100 ms and tried again, forever.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_serve::{ServeConfig, serve};

#[tokio::test]
async fn a_listener_that_cannot_accept_ends_serve_with_its_error() {
    // Bound but never `listen`ed: every `accept` fails with EINVAL, the
    // kernel's own answer for a listener that is not one.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    socket.bind(&addr.into()).expect("bind");
    socket.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(socket.into()).expect("into tokio");
    let token = harness::CancellationToken::new();
    let served = harness::within(
        Duration::from_secs(10),
        "serve to give up on a listener that cannot accept",
        serve(listener, axum::Router::new(), token, ServeConfig::default()),
    )
    .await;
    let err = served.expect_err("a listener that cannot accept is an error");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}
