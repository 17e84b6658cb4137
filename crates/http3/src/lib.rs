//! Lesson 15: HTTP/3, HTTP on QUIC streams over UDP.
//!
//! HTTP/2 (lesson 14) took turns on one TCP connection, so a slow answer no
//! longer held up the others, but a lost TCP segment still does: TCP hands
//! bytes over in order, and every stream waits for the one retransmission.
//! QUIC moves the streams into the transport. Each UDP datagram carries
//! frames of some streams, a loss holds up only the streams whose frames it
//! carried, TLS 1.3 is part of the handshake (one round trip, not TCP's plus
//! TLS's), and a connection is named by connection ids rather than by the
//! four numbers of a TCP connection, so it survives a client changing its
//! address. This crate serves lesson 4's resources over HTTP/3 with quinn
//! (QUIC) and h3 (HTTP/3), and shows what crosses the wire.
//!
//! Run it:
//!
//! ```text
//! cargo run -p http3                          # the demo: the handshake counted, streams, a migration
//! cargo run -p http3 -- serve                 # HTTP/3 on 127.0.0.1:7445/udp
//! cargo run -p http3 -- client /slow?ms=500 /resource/1 /resource/2
//! ```
//!
//! Read in this order:
//!
//! * [`serve`] below: the accept loop, where a new client either gets a
//!   handshake, a Retry (prove you can receive at that address first) or a
//!   refusal.
//! * [`connection`] and [`handle`]: one connection, its requests, each on a
//!   stream of its own, lesson 4's [`route`] plus `/large`.
//! * [`server_config`] and [`transport`]: the limits QUIC announces.
//! * [`client`]: the client, on h3 and quinn, and the migration.
//! * [`relay`]: a UDP relay that counts datagrams and decodes the few header
//!   bytes QUIC leaves in clear.
//! * [`limits`]: every limit, with why.

pub mod client;
pub mod limits;
pub mod relay;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h3::server::{RequestResolver, RequestStream};
use http_keepalive::route;
use quinn::VarInt;
use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use limits::{ADDR, ALPN_H3, Config, Congestion, Stats};
/// quinn, for callers (the benchmark) that name its endpoint type.
pub use quinn;

/// HTTP/3's "no error" (RFC 9114 8.1): what a connection closed on purpose
/// says in its CONNECTION_CLOSE.
pub const H3_NO_ERROR: VarInt = VarInt::from_u32(0x100);

/// Accepts connections on `endpoint` until `token` is cancelled.
///
/// QUIC has no `listen`/`accept` of its own sockets: one UDP socket receives
/// every client's datagrams, and quinn sorts them by connection id. What
/// reaches us here is an Initial packet from someone new, parsed but not yet
/// answered, so we decide what it costs us before any cryptography runs.
pub async fn serve(
    endpoint: quinn::Endpoint,
    config: Config,
    stats: Arc<Stats>,
    token: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Handshakes for addresses nobody has shown they receive at. Past these,
    // a newcomer gets a Retry: it must come back with the token we put in
    // it, which only works if it really gets our packets at that address.
    let unvalidated = Arc::new(Semaphore::new(config.retry_above));
    loop {
        let incoming = tokio::select! {
            () = token.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break, // the endpoint was closed
            },
        };
        Stats::add(&stats.incoming, 1);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: a CONNECTION_CLOSE of a few dozen bytes, no handshake.
            Stats::add(&stats.refused, 1);
            incoming.refuse();
            continue;
        };
        let permit = if incoming.remote_address_validated() {
            None
        } else {
            match Arc::clone(&unvalidated).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) if incoming.may_retry() => {
                    Stats::add(&stats.retries, 1);
                    // A Retry holds no state here: the token is sealed with a
                    // key only this endpoint knows, so it checks itself.
                    if let Err(e) = incoming.retry() {
                        tracing::debug!("retry failed: {e}");
                    }
                    continue;
                }
                Err(_) => None,
            }
        };
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("handshake refused: {e}");
                continue;
            }
        };
        Stats::add(&stats.handshakes, 1);
        let (stats, token) = (Arc::clone(&stats), token.clone());
        tracker.spawn(async move {
            if let Err(e) = connection(connecting, permit, config, &stats, token).await {
                tracing::debug!("connection: {e:#}");
            }
            drop(slot);
        });
    }
    tracker.close();
    if timeout(config.shutdown_grace + Duration::from_secs(1), tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {:?}", config.shutdown_grace);
    }
    // Anything still open is closed now; wait_idle lets the CONNECTION_CLOSE
    // packets go out (and be repeated if lost) before the socket goes away.
    endpoint.close(H3_NO_ERROR, b"server stopping");
    let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    Ok(())
}

/// One connection: finish the handshake, then accept request streams until
/// the client goes or `token` asks us to stop (GOAWAY, then the requests
/// already accepted finish, then CONNECTION_CLOSE with H3_NO_ERROR).
pub async fn connection(
    connecting: quinn::Connecting,
    unvalidated: Option<OwnedSemaphorePermit>,
    config: Config,
    stats: &Arc<Stats>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    // 0.5-RTT: a server's `into_0rtt` always succeeds, and lets us read a
    // resumed client's 0-RTT requests (and answer them) before its Finished
    // arrives, so its first answer comes one round trip after it started.
    // Until the handshake completes `confirmed` says false, and only GETs
    // are served (see `handle`).
    let Ok((conn, handshake)) = connecting.into_0rtt() else {
        anyhow::bail!("quinn refused a server 0.5-RTT connection");
    };
    let (confirm, confirmed) = tokio::sync::watch::channel(false);
    {
        let (conn, stats, wait) = (conn.clone(), Arc::clone(stats), config.handshake_timeout);
        tokio::spawn(async move {
            if timeout(wait, handshake).await.is_err() {
                Stats::add(&stats.failed_handshakes, 1);
                conn.close(VarInt::from_u32(0), b"no handshake in time");
            } else if conn.close_reason().is_some() {
                Stats::add(&stats.failed_handshakes, 1);
            } else {
                // The handshake completing proves the address: the client
                // decrypted what we sent there. It no longer counts against
                // the Retry threshold.
                drop(unvalidated);
                Stats::add(&stats.connections, 1);
                let _ = confirm.send(true);
            }
        });
    }
    let mut h3 = h3::server::builder()
        .max_field_section_size(limits::MAX_FIELD_SECTION)
        .build(h3_quinn::Connection::new(conn.clone()))
        .await?;
    let requests = TaskTracker::new();
    loop {
        tokio::select! {
            () = token.cancelled() => {
                // GOAWAY naming the last request we accepted: the client
                // knows what will still be answered and what to retry elsewhere.
                h3.shutdown(0).await?;
                break;
            }
            r = h3.accept() => match r {
                Ok(Some(resolver)) => {
                    let (conn, stats) = (conn.clone(), Arc::clone(stats));
                    let confirmed = confirmed.clone();
                    requests.spawn(async move {
                        if let Err(e) = handle(resolver, &conn, config, &stats, confirmed).await {
                            tracing::debug!("request: {e:#}");
                        }
                    });
                }
                Ok(None) => break,
                Err(e) if e.is_h3_no_error() => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    requests.close();
    if timeout(config.shutdown_grace, requests.wait()).await.is_err() {
        tracing::debug!("requests still open after {:?}", config.shutdown_grace);
    }
    conn.close(H3_NO_ERROR, b"");
    Ok(())
}

/// One request on its own stream: `/large?kb=N` streams N KiB as the
/// client's window allows; everything else is lesson 4's [`route`].
pub async fn handle(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    conn: &quinn::Connection,
    config: Config,
    stats: &Stats,
    mut confirmed: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (req, mut stream) = resolver.resolve_request().await?;
    Stats::add(&stats.requests, 1);
    if !*confirmed.borrow() {
        // Before the handshake completes, a request can only have come as
        // 0-RTT data, which an attacker who recorded it can replay. A GET
        // does no harm twice; anything else waits for the handshake, after
        // which a replay would have failed (RFC 8470 could answer 425 Too
        // Early instead).
        Stats::add(&stats.early_requests, 1);
        if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
            Stats::add(&stats.early_held, 1);
            let wait = timeout(config.handshake_timeout, confirmed.wait_for(|done| *done));
            anyhow::ensure!(
                matches!(wait.await, Ok(Ok(_))),
                "no handshake behind an early request"
            );
        }
    }
    let from = conn.remote_address();
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Some(query) = target.strip_prefix("/large") {
        let kb = query
            .trim_start_matches('?')
            .split('&')
            .find_map(|kv| kv.strip_prefix("kb="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1024)
            .min(limits::MAX_LARGE_KB);
        respond(&mut stream, 200, "application/octet-stream", None).await?;
        let mut left = kb * 1024;
        while left > 0 {
            let n = left.min(limits::LARGE_CHUNK as u64);
            left -= n;
            Stats::add(&stats.large_bytes_produced, n);
            // Waits while the stream's or the connection's window is full:
            // a client that stops reading stops the producing too.
            stream.send_data(Bytes::from(vec![b'x'; n as usize])).await?;
        }
    } else {
        let body = match timeout(limits::BODY_TIMEOUT, read_body(&mut stream)).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                respond(&mut stream, 413, "text/plain", None).await?;
                stream.send_data(Bytes::from_static(b"body too large\n")).await?;
                return Ok(stream.finish().await?);
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => anyhow::bail!("request body not finished within {:?}", limits::BODY_TIMEOUT),
        };
        let reply = route(req.method().as_str(), &target, &body, config.max_slow);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        respond(&mut stream, reply.status, reply.content_type, reply.allow).await?;
        if !reply.body.is_empty() && req.method() != http::Method::HEAD {
            stream.send_data(Bytes::from(reply.body)).await?;
        }
    }
    stream.finish().await?;
    if conn.remote_address() != from {
        // The client moved while we answered, and the answer followed it.
        Stats::add(&stats.migrated, 1);
    }
    Ok(())
}

/// Reads the request body to its end: `None` past lesson 4's limit.
async fn read_body(
    stream: &mut RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
) -> Result<Option<BytesMut>, h3::error::StreamError> {
    let mut body = BytesMut::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        if body.len() + chunk.remaining() > http_keepalive::MAX_BODY {
            return Ok(None);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Some(body))
}

async fn respond(
    stream: &mut RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    status: u16,
    content_type: &'static str,
    allow: Option<&'static str>,
) -> Result<(), h3::error::StreamError> {
    let mut resp = http::Response::builder().status(status).header("content-type", content_type);
    if let Some(allow) = allow {
        resp = resp.header("allow", allow);
    }
    let resp = resp.body(()).expect("a status from route() and static headers are valid");
    stream.send_response(resp).await
}

/// The QUIC limits both sides announce in their transport parameters.
pub fn transport(config: &Config) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(config.max_concurrent_streams.into())
        .max_concurrent_uni_streams(limits::MAX_UNI_STREAMS.into())
        .stream_receive_window(config.stream_window.into())
        .receive_window(config.connection_window.into())
        .send_window(limits::SEND_WINDOW)
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout)
                .expect("an idle timeout of a few seconds fits QUIC's varint"),
        ));
    if config.congestion == Congestion::Bbr {
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    t
}

/// Lesson 13's TLS settings (1.3 only, ring) with ALPN `h3`, wrapped for
/// QUIC, and the limits of [`transport`].
pub fn server_config(
    cert: &tls::certs::ServerCert,
    config: &Config,
) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = (*tls::server_config(cert)?).clone();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // Accept 0-RTT from resumed clients: QUIC requires exactly this value
    // (the amount is limited by QUIC's flow control, not by TLS).
    tls.max_early_data_size = u32::MAX;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server.transport_config(Arc::new(transport(config))).max_incoming(limits::MAX_INCOMING);
    Ok(server)
}

/// A server endpoint on `addr` (one UDP socket for every client).
pub fn endpoint(
    addr: std::net::SocketAddr,
    cert: &tls::certs::ServerCert,
    config: &Config,
) -> anyhow::Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::server(server_config(cert, config)?, addr)?)
}

/// A server endpoint on a UDP socket bound elsewhere: the benchmark binds it
/// on the server side of a netlab link and serves from the client side's
/// runtime (a socket stays in the namespace it was made in).
pub fn endpoint_on(
    socket: std::net::UdpSocket,
    cert: &tls::certs::ServerCert,
    config: &Config,
) -> anyhow::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| anyhow::anyhow!("quinn needs to run inside a tokio runtime"))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config(cert, config)?),
        socket,
        runtime,
    )?)
}
