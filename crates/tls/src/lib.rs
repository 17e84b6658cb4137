//! Lesson 13: what TLS 1.3 adds to a TCP connection.
//!
//! Run the demo with `cargo run -p tls`: it makes a throwaway certificate
//! authority and a server certificate, starts the server on a free loopback
//! port, connects a client through the wire tap twice (a full handshake, then
//! a resumed one), and decodes what is still readable on the wire: record
//! headers, the ClientHello's server name, ALPN list and key shares, the
//! ServerHello, and then only the sizes of encrypted records.
//!
//! `cargo run -p tls -- serve` runs the server on 127.0.0.1:7443 and writes
//! the CA certificate to a file whose path it prints, so that
//! `curl --cacert PATH https://localhost:7443/` and
//! `openssl s_client -connect 127.0.0.1:7443 -CAfile PATH` can check it.
//!
//! The server speaks a tiny HTTP/1.1 over TLS: any request gets one answer
//! that says what was negotiated, then the connection closes. The chapter is
//! about the layer underneath, so the layer above stays as small as curl
//! allows. Read in this order:
//!
//! * [`serve`] and [`handle`] below: the accept loop and one connection,
//!   where the handshake is bounded by a timeout and a plain-HTTP client is
//!   told, in plain HTTP, that it dialled a TLS port.
//! * [`certs`]: the CA and the server certificate, made at start.
//! * [`client`]: the client, and what it checks (the CA, the name, the dates).
//! * [`wire`]: a decoder for what is still plain text in a TLS 1.3 handshake.
//! * [`limits`]: the limits and timeouts, each with why, and the counters.

pub mod certs;
pub mod client;
pub mod limits;
pub mod wire;

use std::io;
use std::sync::Arc;

use accept_policy::AcceptErrors;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use limits::{Config, Stats};

/// Where `serve` listens by default: loopback, and 443 (HTTPS) behind a 7.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7443";

/// The ALPN protocol the server offers. curl offers `h2` and `http/1.1`; the
/// server picks the one it speaks, and both sides know before the first
/// request byte which protocol follows.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The server's TLS settings: TLS 1.3 only, the ring crypto provider, one
/// certificate, ALPN `http/1.1`. See the chapter for why each.
pub fn server_config(cert: &certs::ServerCert) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        // 1.3 only: one round trip, forward secrecy always, no legacy suites.
        // A client that offers only 1.2 is refused with an alert.
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.clone()], cert.key_der())?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Like [`server_config`], for **mutual TLS**: the server also asks the
/// client for a certificate and refuses the connection unless one chains to
/// `client_roots`. How services inside one company often know who calls them.
pub fn mutual_tls_config(
    cert: &certs::ServerCert,
    client_roots: Arc<rustls::RootCertStore>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(client_roots, provider.clone())
            .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert.clone()], cert.key_der())?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections until `token` is cancelled, each handled by [`handle`]
/// on a task of its own, at most `config.max_connections` at once. Then waits
/// up to `config.shutdown_grace` for open connections and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    config: Config,
    stats: Arc<Stats>,
    token: CancellationToken,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut accept_errors = AcceptErrors::new("accept failed", |line| tracing::warn!("{line}"));
    let mut broken = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => break,
            // Chapter 1, "When accept fails": the same answers in every loop.
            accepted = accept_errors.accept(&listener) => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                        broken = Some(e);
                        break;
                }
            },
        };
        // Full: close at once. A TLS client sees the connection end during
        // its handshake; there is no cheap way to say "busy" before TLS.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            stats.count(&stats.refused_full);
            continue;
        };
        let (acceptor, stats, stop) = (acceptor.clone(), Arc::clone(&stats), token.clone());
        tracker.spawn(async move {
            tokio::select! {
                outcome = handle(stream, &acceptor, &config, &stats) => {
                    if let Err(e) = outcome {
                        tracing::info!("{peer}: {e}");
                    }
                }
                // Shutdown: a connection mid-handshake or mid-request is
                // dropped; each lives for well under a second anyway.
                () = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    if timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {:?}; leaving them", config.shutdown_grace);
    }
    broken.map_or(Ok(()), Err)
}

/// One connection: spot plain HTTP, do the handshake within the deadline,
/// read one request, answer what was negotiated, close with `close_notify`.
pub async fn handle(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    config: &Config,
    stats: &Stats,
) -> Result<(), ConnError> {
    // Everything before the handshake's end shares one deadline: a client
    // that connects and says nothing, or sends half a ClientHello and
    // stalls, holds a slot for `handshake_timeout` and no longer.
    let deadline = Instant::now() + config.handshake_timeout;
    let timed_out = || {
        stats.count(&stats.handshake_timeouts);
        ConnError::HandshakeTimeout(config.handshake_timeout)
    };
    // Peek, don't read: if it is TLS, rustls must see the first byte too.
    let mut first = [0u8; 1];
    let n = timeout_at(deadline, stream.peek(&mut first)).await.map_err(|_| timed_out())??;
    if n == 1 && first[0].is_ascii_uppercase() {
        // "GET ", "POST", ...: a TLS record starts with 0x16 (handshake).
        // Say so in the client's own language instead of a binary alert.
        stats.count(&stats.plain_http);
        answer_plain_http(stream).await;
        return Err(ConnError::PlainHttp);
    }
    let mut tls = match timeout_at(deadline, acceptor.accept(stream)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => {
            stats.count(&stats.handshake_failures);
            return Err(ConnError::Handshake(e));
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, session) = tls.get_ref();
    if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        stats.count(&stats.resumed);
    }
    stats.count(&stats.handshakes);
    let summary = format!(
        "hello over {:?}, {:?}, ALPN {}, SNI {}, client certificate {}\n",
        session.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        session.negotiated_cipher_suite().map_or(rustls::CipherSuite::Unknown(0), |s| s.suite()),
        session.alpn_protocol().map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned()),
        session.server_name().unwrap_or("none (the client dialled an IP address)"),
        if session.peer_certificates().is_some() { "checked" } else { "none" },
    );
    // One request head, bounded in size and time; its content does not matter.
    let mut head = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > limits::MAX_REQUEST_HEAD {
                return Err(ConnError::RequestTooLarge);
            }
            match tls.read(&mut buf).await? {
                0 => return Err(ConnError::ClosedEarly),
                n => head.extend_from_slice(&buf[..n]),
            }
        }
        Ok(())
    };
    timeout(config.request_timeout, read).await.map_err(|_| ConnError::RequestTimeout)??;
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{summary}",
        summary.len()
    );
    let write = async {
        tls.write_all(answer.as_bytes()).await?;
        // shutdown sends close_notify: "this is the real end", so a client can
        // tell a complete answer from a connection cut by an attacker.
        tls.shutdown().await
    };
    timeout(config.request_timeout, write).await.map_err(|_| ConnError::RequestTimeout)??;
    Ok(())
}

/// What a plain-HTTP client gets from the TLS port, as nginx does: a 400 it
/// can read, instead of a TLS alert it would print as garbage.
pub const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\nContent-Length: 44\r\nConnection: close\r\n\r\n\
this port speaks TLS: use https:// instead.\n";

/// Writes [`PLAIN_HTTP_ANSWER`] and closes, bounded by
/// [`limits::PLAIN_HTTP_LINGER`]. The request is read (up to
/// [`limits::MAX_REQUEST_HEAD`]) before closing: closing a socket with unread
/// bytes sends a reset, and a reset can destroy the answer before the client
/// reads it.
pub async fn answer_plain_http(mut stream: TcpStream) {
    let exchange = async {
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < limits::MAX_REQUEST_HEAD {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = timeout(limits::PLAIN_HTTP_LINGER, exchange).await;
}

/// Why one connection ended without an answer. Logged by [`serve`], counted
/// in [`Stats`]; the server goes on with the others.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The handshake did not finish within `Config::handshake_timeout`.
    #[error("handshake not finished within {0:?}; closed")]
    HandshakeTimeout(std::time::Duration),
    /// rustls refused the handshake (garbage, a version or suite we do not
    /// speak, a client that sent an alert).
    #[error("handshake failed: {0}")]
    Handshake(io::Error),
    /// The client sent plain HTTP to the TLS port (answered with a 400).
    #[error("plain HTTP on the TLS port; answered 400 and closed")]
    PlainHttp,
    /// The request head was larger than `limits::MAX_REQUEST_HEAD`.
    #[error("request head too large")]
    RequestTooLarge,
    /// The client closed before a full request head.
    #[error("closed before a full request")]
    ClosedEarly,
    /// Reading the request or writing the answer took too long.
    #[error("request or answer timed out")]
    RequestTimeout,
    /// Any other I/O error on the connection.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}
