//! The client: connect, handshake, one request, the answer, and what was
//! negotiated.
//!
//! Everything a TLS client checks happens inside the handshake, in rustls's
//! certificate verifier (webpki): the server's certificate chains to a CA in
//! *our* trust store, it names the host we dialled, and today is inside its
//! validity dates. Any of those fails and the handshake fails: no request
//! byte is ever sent, which is the point.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;

/// The largest answer read; the server's is under 200 bytes.
pub const MAX_ANSWER: usize = 64 * 1024;

/// A client's TLS settings: trust exactly `roots`, offer TLS 1.3 and 1.2
/// (rustls's safe defaults), ALPN `http/1.1`. Keep the `Arc` and reuse it:
/// its session store keeps the tickets the server sends, which is what lets
/// the next connection resume.
pub fn client_config(roots: Arc<rustls::RootCertStore>) -> Arc<rustls::ClientConfig> {
    with_versions(roots, rustls::DEFAULT_VERSIONS)
}

/// Like [`client_config`], offering only `versions` (a test offers TLS 1.2
/// alone to a server that speaks only 1.3).
pub fn with_versions(
    roots: Arc<rustls::RootCertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports every version rustls has")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![crate::ALPN_HTTP1.to_vec()];
    Arc::new(config)
}

/// Like [`client_config`], presenting `cert` when a server asks for one
/// (mutual TLS).
pub fn with_client_cert(
    roots: Arc<rustls::RootCertStore>,
    cert: &crate::certs::ServerCert,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.cert.clone()], cert.key_der())?;
    config.alpn_protocols = vec![crate::ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// What one exchange negotiated and got back.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `TLSv1_3`, normally.
    pub version: rustls::ProtocolVersion,
    /// The cipher suite the server chose from our list.
    pub suite: rustls::CipherSuite,
    /// The key exchange group (x25519 unless the server asked for another).
    pub group: Option<rustls::NamedGroup>,
    /// The application protocol agreed by ALPN, if any.
    pub alpn: Option<String>,
    /// Full, or resumed from a ticket the server gave an earlier connection.
    pub kind: rustls::HandshakeKind,
    /// The DER size of each certificate the server sent, leaf first. Ours
    /// sends one: the CA's certificate is already in the client's trust store.
    pub cert_sizes: Vec<usize>,
    /// From TCP connect to the end of the handshake.
    pub handshake_time: Duration,
    /// The server's answer, whole (status line, headers, body).
    pub answer: Vec<u8>,
}

/// Why a client exchange failed. The handshake errors are the lesson.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed (nothing listening, say).
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// `name` is not a valid DNS name or IP address.
    #[error("{0:?} is not a server name")]
    BadName(String),
    /// rustls ended the handshake: the certificate was refused, or the
    /// server sent an alert. The error says which.
    #[error("TLS handshake failed: {0}")]
    Tls(rustls::Error),
    /// The connection failed some other way (closed mid-handshake, reset).
    #[error("connection failed: {0}")]
    Io(std::io::Error),
    /// The whole exchange did not finish within the deadline.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// The rustls error inside, if the handshake failed on a TLS matter.
    pub fn tls(&self) -> Option<&rustls::Error> {
        match self {
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// An I/O error from tokio-rustls, sorted: a TLS failure carries a
/// `rustls::Error` inside.
fn sort(e: std::io::Error) -> ClientError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => ClientError::Tls(tls.clone()),
        None => ClientError::Io(e),
    }
}

/// Connects to `addr`, does the handshake checking that the server is
/// `name`, sends `GET /` and reads the answer to the end, all within `limit`.
pub async fn fetch(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<Exchange, ClientError> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = |_| ClientError::Timeout(limit);
    // The name we check the certificate against, and send as SNI (rustls
    // sends no SNI for an IP address: RFC 6066 allows only host names).
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|_| ClientError::BadName(name.into()))?;
    let tcp = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(timed_out)?
        .map_err(ClientError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut tls = timeout_at(deadline, TlsConnector::from(config).connect(server_name, tcp))
        .await
        .map_err(timed_out)?
        .map_err(sort)?;
    let handshake_time = start.elapsed();
    let (_, session) = tls.get_ref();
    let mut exchange = Exchange {
        version: session.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        suite: session
            .negotiated_cipher_suite()
            .map_or(rustls::CipherSuite::Unknown(0), |s| s.suite()),
        group: session.negotiated_key_exchange_group().map(|g| g.name()),
        alpn: session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
        kind: session.handshake_kind().unwrap_or(rustls::HandshakeKind::Full),
        cert_sizes: session.peer_certificates().unwrap_or(&[]).iter().map(|c| c.len()).collect(),
        handshake_time,
        answer: Vec::new(),
    };
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    let talk = async {
        tls.write_all(request.as_bytes()).await?;
        tls.flush().await?;
        let mut answer = Vec::new();
        (&mut tls).take(MAX_ANSWER as u64).read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    exchange.answer = timeout_at(deadline, talk).await.map_err(timed_out)?.map_err(sort)?;
    Ok(exchange)
}
