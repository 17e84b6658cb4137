//! TLS for the lessons that run on [`serve`](crate::serve): the handshake's
//! deadline, and a certificate from lesson 13's throwaway CA.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a TLS client has from connecting to the end of its handshake,
/// as in lesson 13 (`tls::limits::HANDSHAKE_TIMEOUT`): one round trip and a
/// few milliseconds of signing, with room for a slow link many times over.
/// A client that connects and stalls holds a slot this long, no longer.
pub const HANDSHAKE_TIMEOUT: Duration = tls::limits::HANDSHAKE_TIMEOUT;

/// What [`ServeConfig::tls`](crate::ServeConfig::tls) holds: rustls's server
/// settings.
pub type TlsConfig = rustls::ServerConfig;

/// Makes a throwaway CA and a certificate it signs for `localhost` and
/// `127.0.0.1` (lesson 13's `Ca`), writes the CA's certificate (public) to
/// `ca_file` for `curl --cacert` or a browser, and returns the server's TLS
/// settings for [`ServeConfig::tls`](crate::ServeConfig::tls). The private
/// keys never leave this process and die with it.
pub fn throwaway_tls(
    ca_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, Box<dyn Error + Send + Sync>> {
    let ca = tls::certs::Ca::new("tls lesson throwaway CA")?;
    let config = tls::server_config(&ca.server_cert()?)?;
    std::fs::write(ca_file, ca.cert_pem())
        .map_err(|e| format!("writing {}: {e}", ca_file.display()))?;
    Ok(config)
}
