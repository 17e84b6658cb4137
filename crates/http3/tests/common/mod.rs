//! What every test file of this lesson starts with: a server on a free
//! UDP port with a throwaway CA, and a client that trusts it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http3::client::{self, H3};
use http3::{Config, Stats};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A bound on one step of a test on loopback.
pub const STEP: Duration = Duration::from_secs(10);

/// How soon after an attack the server must answer a good client.
pub const STILL_UP: Duration = Duration::from_secs(1);

pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub roots: Arc<rustls::RootCertStore>,
    pub token: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Self {
        let ca = tls::certs::Ca::new("test CA").expect("CA");
        let cert = ca.server_cert().expect("cert");
        Self::start_with(config, &ca, &cert)
    }

    pub fn start_with(config: Config, ca: &tls::certs::Ca, cert: &tls::certs::ServerCert) -> Self {
        let endpoint = http3::endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), cert, &config)
            .expect("bind 127.0.0.1:0/udp");
        let addr = endpoint.local_addr().expect("bound");
        let stats = Arc::new(Stats::default());
        let token = CancellationToken::new();
        let task = tokio::spawn(http3::serve(endpoint, config, Arc::clone(&stats), token.clone()));
        Self { addr, stats, roots: ca.roots(), token, task }
    }

    /// A client endpoint and a connection from it to `to` (the server, or a
    /// relay in front of it).
    pub async fn connect_via(&self, to: SocketAddr) -> (quinn::Endpoint, H3) {
        let endpoint = client::endpoint(Arc::clone(&self.roots)).expect("client endpoint");
        let h3 = harness::within(STEP, "QUIC + HTTP/3 handshake", client::connect(&endpoint, to))
            .await
            .expect("connect");
        (endpoint, h3)
    }

    pub async fn connect(&self) -> (quinn::Endpoint, H3) {
        self.connect_via(self.addr).await
    }

    /// A good client, on a new connection, gets `/resource/1` within
    /// [`STILL_UP`]: the server is still serving.
    pub async fn still_answers(&self) {
        let check = async {
            let endpoint = client::endpoint(Arc::clone(&self.roots))?;
            let h3 = client::connect(&endpoint, self.addr).await?;
            h3.get("/resource/1", 1024).await
        };
        let a = harness::within(STILL_UP, "a good client's answer after the attack", check)
            .await
            .expect("a good client is served");
        assert_eq!((a.status, &a.body[..]), (200, &b"resource 1\n"[..]));
    }
}

/// `n` real Initial packets, each from a new connection attempt of a real
/// client (so each has its own connection ids), caught by a socket that
/// never answers.
pub async fn initials(roots: Arc<rustls::RootCertStore>, n: usize) -> Vec<Vec<u8>> {
    let sink = UdpSocket::bind("127.0.0.1:0").await.expect("bind sink");
    let to = sink.local_addr().expect("sink addr");
    let endpoint = client::endpoint(roots).expect("client endpoint");
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let mut attempts = Vec::new();
    while out.len() < n {
        attempts.push(endpoint.connect(to, "localhost").expect("connect"));
        // Retransmissions of earlier attempts may come first: keep the
        // first datagram of each connection id.
        loop {
            let (len, _) =
                harness::within(STEP, "an Initial", sink.recv_from(&mut buf)).await.expect("recv");
            let dcid = match http3::relay::decode(&buf[..len], 8).first() {
                Some(http3::relay::Header::Long { dcid, .. }) => dcid.clone(),
                other => panic!("not an Initial: {other:?}"),
            };
            if !seen.contains(&dcid) {
                seen.push(dcid);
                out.push(buf[..len].to_vec());
                break;
            }
        }
    }
    out
}
