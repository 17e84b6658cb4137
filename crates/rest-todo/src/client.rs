//! The lesson's own client for the API: plain HTTP/1.1 over one kept-alive
//! connection, requests written by hand (the bytes are what you would type
//! into `nc`), responses read by the `raw-http` crate (lesson 4's client is
//! built on it too). The demo prints exactly what crossed the wire; the tests
//! and the benchmark drive the server with it.

use std::io;
use std::net::SocketAddr;

use raw_http::HttpConn;

/// A response as it came off the wire: status, headers, body.
pub use raw_http::Response as HttpResponse;

/// A small HTTP client for this API, over one persistent connection. It
/// writes requests by hand (the bytes are what you would type into `nc`) and
/// reads responses with the `raw-http` crate's parser, so nothing is hidden: the
/// demo prints exactly what crossed the wire.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    conn: HttpConn,
}

impl Client {
    /// Connects to the API at `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self { addr, conn: HttpConn::connect(addr).await? })
    }

    /// Sends one request with the given extra headers and body (sent as is,
    /// with a `Content-Length`) and reads the response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let bytes = self.request_bytes(method, path, headers, body);
        self.conn.send(&bytes).await?;
        self.conn.read_response(method == "HEAD").await
    }

    /// The exact bytes [`Client::send`] writes for this request: the request
    /// line, `Host`, the given headers, `Content-Length` when there is a body
    /// (or the method expects one), a blank line, the body.
    pub fn request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// A request with a JSON body (and `Content-Type: application/json`).
    pub async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> io::Result<HttpResponse> {
        let body = body.to_string();
        self.send(method, path, &[("Content-Type", "application/json")], body.as_bytes()).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> io::Result<HttpResponse> {
        self.send("GET", path, &[], b"").await
    }
}
