//! A listener that cannot accept at all ends each server with its error, as
//! the accept policy every loop shares says (chapter 1, "When accept fails").
//! Before it, both servers paused 100 ms and tried again, forever.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_keepalive::{Config, hyper_server, server};

/// Bound but never `listen`ed: every `accept` fails with EINVAL, the kernel's
/// own answer for a listener that is not one.
fn not_listening() -> tokio::net::TcpListener {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    socket.bind(&addr.into()).expect("bind");
    socket.set_nonblocking(true).expect("non-blocking");
    tokio::net::TcpListener::from_std(socket.into()).expect("into tokio")
}

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_hand_written_server_stops_on_a_listener_that_cannot_accept() {
    let token = harness::CancellationToken::new();
    let served = harness::within(
        DEADLINE,
        "the server to give up on the listener",
        server::serve(not_listening(), Config::default(), token),
    )
    .await;
    let err = served.expect_err("a listener that cannot accept is an error");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn the_hyper_server_stops_on_a_listener_that_cannot_accept() {
    let token = harness::CancellationToken::new();
    let served = harness::within(
        DEADLINE,
        "the hyper server to give up on the listener",
        hyper_server::serve(not_listening(), Config::default(), token),
    )
    .await;
    let err = served.expect_err("a listener that cannot accept is an error");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}
