//! What the test files share: either server on a free port, the raw
//! requests and reads every test makes, and a fetch counted through a tap.

#![allow(dead_code)] // each test file uses a different part of this

use std::net::SocketAddr;
use std::time::Duration;

use harness::{TapStats, TaskServer, WireTap, within};
use http_keepalive::client::{self, Mode};
use http_keepalive::{Config, hyper_server, server};
use raw_http::{HttpConn, Response};

/// Long enough for any assertion on a small, busy machine, short enough to
/// fail a hung test quickly.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub type Server = TaskServer<std::io::Result<()>>;

/// The hand-written server with `config`, on 127.0.0.1:0.
pub async fn start(config: Config) -> Server {
    TaskServer::start(move |listener, token| server::serve(listener, config, token))
        .await
        .expect("binding an ephemeral loopback port")
}

/// The hyper server with `config`, on 127.0.0.1:0.
pub async fn start_hyper(config: Config) -> Server {
    TaskServer::start(move |listener, token| hyper_server::serve(listener, config, token))
        .await
        .expect("binding an ephemeral loopback port")
}

/// The bytes of `GET path` over HTTP/1.1, nothing else.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// Reads one response within [`DEADLINE`].
pub async fn read(conn: &mut HttpConn) -> Response {
    within(DEADLINE, "a response", conn.read_response(false)).await.expect("a well-formed response")
}

/// Reads until the server closes, within [`DEADLINE`].
pub async fn read_to_close(conn: &mut HttpConn) -> Vec<u8> {
    within(DEADLINE, "the server to close", conn.read_until_close())
        .await
        .expect("the server closes cleanly")
}

/// Fetches `paths` the way `mode` says through a fresh wire tap: the
/// responses, and what the tap counted for this fetch alone.
pub async fn fetch_counted(
    server: SocketAddr,
    paths: &[String],
    mode: Mode,
) -> (Vec<Response>, TapStats) {
    let tap = WireTap::start(server).expect("tap");
    let responses =
        within(DEADLINE, "the fetch", client::fetch(tap.addr(), paths, mode)).await.expect("fetch");
    (responses, tap.stats())
}
