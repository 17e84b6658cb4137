//! A small HTTP/1.1 client over one keep-alive connection, built on hyper's
//! low-level `client::conn` API so nothing is hidden: one TCP connection, one
//! request at a time, reconnect only when the server closed it (and send a
//! GET again, once, if the server closed the connection just as it went out).
//! The lessons' pollers and the SSE client use it, and count what they send
//! with it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    /// HTTP-level failure (connection closed mid-response, bad framing).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The body was not the JSON we expected.
    #[error("decoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A header or URI we built was invalid (a bug in the caller).
    #[error("building the request: {0}")]
    Build(#[from] hyper::http::Error),
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Header fields.
    pub headers: HeaderMap,
    /// The body, collected.
    pub body: Bytes,
}

impl Reply {
    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// One keep-alive connection to `addr`, opened on first use and again after
/// the server closes it.
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// TCP connections opened so far.
    pub connections: u64,
    /// Requests sent so far.
    pub requests: u64,
}

impl HttpClient {
    /// A client for the server at `addr` (nothing is connected yet).
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None, connections: 0, requests: 0 }
    }

    /// A client over a stream the caller connected itself (tests use this
    /// to shrink the socket's receive buffer and play a slow reader).
    pub async fn over(stream: TcpStream) -> Result<Self, ClientError> {
        let mut client = Self::new(stream.peer_addr()?);
        client.adopt(stream).await?;
        Ok(client)
    }

    async fn adopt(&mut self, stream: TcpStream) -> Result<(), ClientError> {
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection does its I/O in its own task; it ends when the
        // sender is dropped or the server closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.connections += 1;
        self.sender = Some(sender);
        Ok(())
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ClientError> {
        let usable = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = TcpStream::connect(self.addr).await?;
            self.adopt(stream).await?;
        }
        // Just set above if it was missing.
        self.sender.as_mut().ok_or_else(unreachable_closed)
    }

    /// Sends `method path` with `headers` and `body`, and returns the
    /// response with its body still streaming (for SSE).
    pub async fn open(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<Response<Incoming>, ClientError> {
        let host = self.addr.to_string();
        let build = || {
            let mut req = Request::builder().method(method.clone()).uri(path);
            req = req.header(HOST, &host);
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            match &body {
                Some((content_type, bytes)) => {
                    req.header(CONTENT_TYPE, *content_type).body(Full::new(bytes.clone()))
                }
                None => req.body(Full::new(Bytes::new())),
            }
        };
        let req = build()?;
        let opened = self.connections;
        self.sender().await?;
        let reused = self.connections == opened;
        self.requests += 1;
        let sender = self.sender.as_mut().ok_or_else(unreachable_closed)?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp),
            // A kept-alive connection can be closed by the server (its idle
            // timeout) just as we send on it, and we learn only from the
            // failed request. A GET changes nothing, so it is safe to send
            // again on a fresh connection, once; a POST might have been
            // processed, so its error goes to the caller.
            Err(e) if reused && matches!(method, Method::GET | Method::HEAD) => {
                tracing::debug!("request on a kept-alive connection failed ({e}); once more");
                self.sender = None;
                let req = build()?;
                self.requests += 1;
                let sender = self.sender().await?;
                Ok(sender.send_request(req).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a request and collects the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<Reply, ClientError> {
        let resp = self.open(method, path, headers, body).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    /// `GET path` with extra headers.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, headers, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &mut self,
        path: &str,
        value: &serde_json::Value,
    ) -> Result<Reply, ClientError> {
        let body = Bytes::from(serde_json::to_vec(value)?);
        self.send(Method::POST, path, &[], Some(("application/json", body))).await
    }
}

fn unreachable_closed() -> ClientError {
    ClientError::Io(std::io::Error::other("connection vanished while being opened"))
}
