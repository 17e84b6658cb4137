//! The client: one QUIC connection, many request streams, on h3 and quinn.
//!
//! The client owns its UDP socket through a quinn [`quinn::Endpoint`]; to
//! migrate, [`rebind`] swaps that socket for a new one (a new local port,
//! as when a phone moves from Wi-Fi to mobile data). The connection keeps
//! its connection ids, so the server recognises it at the new address.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::task::JoinHandle;

use crate::{ALPN_H3, Config, H3_NO_ERROR, limits};

/// Lesson 13's client TLS settings trusting `roots`, with ALPN `h3`, for QUIC.
pub fn client_config(roots: Arc<rustls::RootCertStore>) -> anyhow::Result<quinn::ClientConfig> {
    client_config_with(roots, &Config::default())
}

/// [`client_config`] announcing `settings`' windows: the benchmark gives the
/// client a browser's large windows, so that on a 50 ms link flow control
/// is not what it measures.
pub fn client_config_with(
    roots: Arc<rustls::RootCertStore>,
    settings: &Config,
) -> anyhow::Result<quinn::ClientConfig> {
    let mut tls = (*tls::client::client_config(roots)).clone();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // Offer 0-RTT when the session store holds a ticket from this server
    // ([`connect_0rtt`]); a plain [`connect`] never sends early data.
    tls.enable_early_data = true;
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = crate::transport(settings);
    // The client keeps an idle connection alive; the server never does.
    transport.keep_alive_interval(Some(limits::KEEP_ALIVE));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A client endpoint on an ephemeral loopback port, trusting `roots`.
pub fn endpoint(roots: Arc<rustls::RootCertStore>) -> anyhow::Result<quinn::Endpoint> {
    endpoint_at(loopback_any_port(), client_config(roots)?)
}

/// A client endpoint on `bind` (the client side's address, port 0, on a
/// netlab link, whose address is not loopback) with `config`.
pub fn endpoint_at(
    bind: SocketAddr,
    config: quinn::ClientConfig,
) -> anyhow::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Moves `endpoint` to a fresh UDP socket on another ephemeral port; its
/// connections carry on from there. Returns the new local address.
pub fn rebind(endpoint: &quinn::Endpoint) -> anyhow::Result<SocketAddr> {
    let socket = std::net::UdpSocket::bind(loopback_any_port())?;
    endpoint.rebind(socket)?;
    Ok(endpoint.local_addr()?)
}

/// An open HTTP/3 connection.
pub struct H3 {
    /// The QUIC connection (its id, its address, its statistics).
    pub conn: quinn::Connection,
    /// Where requests are sent.
    pub sender: Sender,
    /// Drives HTTP/3's control stream; ends when the connection does.
    pub driver: JoinHandle<h3::error::ConnectionError>,
}

/// Sends requests on one connection; clone it to send from several tasks.
#[derive(Clone)]
pub struct Sender {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: String,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("authority", &self.authority).finish_non_exhaustive()
    }
}

/// Connects to `addr` from `endpoint`: the QUIC handshake (TLS 1.3 inside
/// it), then HTTP/3's SETTINGS on the control streams.
pub async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> anyhow::Result<H3> {
    let conn = endpoint.connect(addr, "localhost")?.await?;
    over(conn, addr).await
}

/// Connects like [`connect`], but if an earlier connection from `endpoint`
/// left a session ticket for this server, does not wait for the handshake:
/// requests sent on the returned connection leave in the first flight, as
/// 0-RTT data. The second value then says, once the handshake is done,
/// whether the server accepted that data (if not, quinn sends it again
/// after the handshake). `None`: no ticket, an ordinary 1-RTT handshake.
///
/// 0-RTT data can be replayed: anyone who recorded the first flight can
/// send it again, and the server cannot tell. Only requests that do no
/// harm twice (GET) belong in it; see [`crate::handle`].
pub async fn connect_0rtt(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> anyhow::Result<(H3, Option<quinn::ZeroRttAccepted>)> {
    match endpoint.connect(addr, "localhost")?.into_0rtt() {
        Ok((conn, accepted)) => Ok((over(conn, addr).await?, Some(accepted))),
        Err(connecting) => Ok((over(connecting.await?, addr).await?, None)),
    }
}

/// HTTP/3 over an open (or 0-RTT) QUIC connection.
async fn over(conn: quinn::Connection, addr: SocketAddr) -> anyhow::Result<H3> {
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    let driver =
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let sender = Sender { send, authority: format!("localhost:{}", addr.port()) };
    Ok(H3 { conn, sender, driver })
}

impl std::fmt::Debug for H3 {
    // h3's SendRequest has no Debug; the connection's id says which one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3").field("conn", &self.conn.stable_id()).finish_non_exhaustive()
    }
}

/// One finished response.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
    /// The QUIC stream it came on (0, 4, 8, ...: client-opened, bidirectional).
    pub stream: u64,
}

impl H3 {
    /// A sender for another task.
    pub fn clone_sender(&self) -> Sender {
        self.sender.clone()
    }

    /// See [`Sender::get`].
    pub async fn get(&self, path: &str, max_body: usize) -> anyhow::Result<Answer> {
        self.sender.get(path, max_body).await
    }

    /// See [`Sender::get_with`].
    pub async fn get_with(
        &self,
        path: &str,
        max_body: usize,
        each: impl FnMut(usize),
    ) -> anyhow::Result<Answer> {
        self.sender.get_with(path, max_body, each).await
    }

    /// Closes the connection politely (H3_NO_ERROR).
    pub fn close(&self) {
        self.conn.close(H3_NO_ERROR, b"done");
    }
}

impl Sender {
    /// Sends GET `path` on a new stream and reads the whole answer, at most
    /// `max_body` bytes.
    pub async fn get(&self, path: &str, max_body: usize) -> anyhow::Result<Answer> {
        self.get_with(path, max_body, |_| {}).await
    }

    /// Like [`H3::get`], calling `each(bytes so far)` after every chunk: the
    /// migration test moves the socket in the middle of a download with it.
    pub async fn get_with(
        &self,
        path: &str,
        max_body: usize,
        mut each: impl FnMut(usize),
    ) -> anyhow::Result<Answer> {
        let req = http::Request::get(format!("https://{}{path}", self.authority))
            .header("user-agent", USER_AGENT)
            .body(())?;
        let mut send = self.send.clone();
        let mut stream = send.send_request(req).await?;
        // A GET has no body: end our half of the stream at once.
        stream.finish().await?;
        let id = stream.id().into_inner();
        let response = stream.recv_response().await?;
        let mut out = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            if out.len() + chunk.remaining() > max_body {
                anyhow::bail!("body of stream {id} larger than {max_body} bytes");
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                out.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
            each(out.len());
        }
        Ok(Answer { status: response.status().as_u16(), body: out.into(), stream: id })
    }
}

/// The `user-agent` the client sends.
pub const USER_AGENT: &str = "http3-lesson/0.1";
