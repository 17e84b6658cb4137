//! http-serve built without its `tls` feature: the same [`serve`](crate::serve),
//! whose [`ServeConfig::tls`](crate::ServeConfig::tls) can only be `None`. The
//! feature is on by default; it is off in CI's type-check for macOS, which
//! cannot compile ring's C without Apple's SDK. Each type here has no values,
//! so the TLS half of the loop still compiles and can never run.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::WriteTimeout;

/// Without TLS there are no settings to give: a type with no values.
#[derive(Debug)]
pub enum TlsConfig {}

/// Lesson 13's handshake deadline, kept so `ServeConfig` has the same fields
/// with and without the feature; nothing waits on it here.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Stands where tokio-rustls's acceptor does; made only from a [`TlsConfig`].
#[derive(Debug, Clone)]
pub(crate) enum TlsAcceptor {}

impl From<Arc<TlsConfig>> for TlsAcceptor {
    fn from(config: Arc<TlsConfig>) -> Self {
        match *config {}
    }
}

/// Never called: there is no acceptor to call it with.
pub(crate) async fn tls_handshake(
    _stream: TcpStream,
    acceptor: &TlsAcceptor,
    _write_timeout: Duration,
) -> io::Result<Option<WriteTimeout>> {
    match *acceptor {}
}
