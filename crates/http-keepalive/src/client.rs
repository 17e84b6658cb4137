//! The client under study: fetch a "page" of resources three ways and count
//! what it cost on the wire.
//!
//! It speaks raw HTTP through [`HttpConn`] from the `raw-http` crate (exact
//! bytes out, exact responses in), because a production client would hide the
//! very thing this lesson is about: which connection each request went on.
//! Counting what each way costs on the wire is the demo's part: it runs
//! [`fetch`] through the harness's wire tap.

use std::io;
use std::net::SocketAddr;

use raw_http::{HttpConn, Response};

/// How the client fetches the resources of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.0 style: a new TCP connection per request, closed after the
    /// response. Every request pays a handshake.
    NewConnections,
    /// HTTP/1.1 keep-alive: one connection; send a request, wait for its
    /// response, send the next.
    KeepAlive,
    /// HTTP/1.1 pipelining: one connection; send every request at once, then
    /// read the responses, which come back in request order.
    Pipelined,
}

impl Mode {
    /// All three, in the order the demo runs them.
    pub const ALL: [Mode; 3] = [Mode::NewConnections, Mode::KeepAlive, Mode::Pipelined];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::NewConnections => "new connection per request (HTTP/1.0)",
            Mode::KeepAlive => "one kept connection (HTTP/1.1)",
            Mode::Pipelined => "pipelined on one connection",
        }
    }
}

/// The request bytes for `path`. HTTP/1.0 closes by default, so the
/// one-connection-per-request client simply speaks 1.0; the others speak 1.1,
/// which keeps the connection by default. `Host` is required by 1.1.
pub fn request(mode: Mode, path: &str) -> Vec<u8> {
    let version = if mode == Mode::NewConnections { "1.0" } else { "1.1" };
    format!("GET {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// The resources of a page of `n`: `/resource/0` .. `/resource/{n-1}`.
pub fn page_paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/resource/{i}")).collect()
}

/// Fetches `paths` from the server at `addr` the way `mode` says, and returns
/// the responses in request order.
pub async fn fetch(addr: SocketAddr, paths: &[String], mode: Mode) -> io::Result<Vec<Response>> {
    let mut responses = Vec::with_capacity(paths.len());
    match mode {
        Mode::NewConnections => {
            for path in paths {
                let mut conn = HttpConn::connect(addr).await?;
                conn.send(&request(mode, path)).await?;
                responses.push(conn.read_response(false).await?);
                // Dropping `conn` closes our side; the server has already
                // closed its side (it sent FIN right after the response).
            }
        }
        Mode::KeepAlive => {
            let mut conn = HttpConn::connect(addr).await?;
            for path in paths {
                conn.send(&request(mode, path)).await?;
                responses.push(conn.read_response(false).await?);
            }
        }
        Mode::Pipelined => {
            let mut conn = HttpConn::connect(addr).await?;
            // Every request in one write: they may well share one TCP segment.
            let all: Vec<u8> = paths.iter().flat_map(|p| request(mode, p)).collect();
            conn.send(&all).await?;
            for _ in paths {
                responses.push(conn.read_response(false).await?);
            }
        }
    }
    Ok(responses)
}
