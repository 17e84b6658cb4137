//! What every test file of this lesson starts with: a CA, a server on a free
//! port with that CA's certificate, and a client that trusts it.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use harness::TaskServer;
use tls::certs::{Ca, ServerCert};
use tls::client::{self, ClientError, Exchange};
use tls::{Config, Stats};

/// A bound for each whole client exchange on loopback.
pub const LIMIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub ca: Ca,
    pub stats: Arc<Stats>,
    pub server: TaskServer<std::io::Result<()>>,
}

impl Server {
    /// A server with a good certificate from a fresh CA.
    pub async fn start(config: Config) -> Self {
        let ca = Ca::new("test CA").expect("rcgen makes a CA");
        let cert = ca.server_cert().expect("rcgen signs");
        Self::start_with(ca, &cert, config).await
    }

    /// A server with `cert`, which `ca` may or may not have signed well.
    pub async fn start_with(ca: Ca, cert: &ServerCert, config: Config) -> Self {
        let tls = tls::server_config(cert).expect("rustls takes rcgen's certificate");
        let stats = Arc::new(Stats::default());
        let s = Arc::clone(&stats);
        let server =
            TaskServer::start(move |listener, token| tls::serve(listener, tls, config, s, token))
                .await
                .expect("bind 127.0.0.1:0");
        Self { ca, stats, server }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// One exchange by a client that trusts this server's CA.
    pub async fn fetch(&self, name: &str) -> Result<Exchange, ClientError> {
        client::fetch(self.addr(), name, client::client_config(self.ca.roots()), LIMIT).await
    }

    /// A good client still gets served: the failure before it hurt no one else.
    pub async fn still_serves(&self) {
        let x = self.fetch("localhost").await.expect("a good client is still served");
        assert!(
            x.answer.starts_with(b"HTTP/1.1 200 OK"),
            "{:?}",
            String::from_utf8_lossy(&x.answer)
        );
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("serve returns Ok after cancel");
    }
}
