//! A connection accepted when the server is already full: say so at once,
//! then close without destroying what was said.
//!
//! Past its connection cap a server could stop calling `accept` and leave
//! new clients in the kernel's backlog, connected and unanswered for as long
//! as it stays full. The servers here answer instead: a fixed reply (for
//! HTTP, [`HTTP_503`]), written on a small task of its own so the accept
//! loop goes straight back to work.
//!
//! Closing right after that write is not enough. The client has usually sent
//! its request already; closing a socket with unread bytes in it makes the
//! kernel send a reset, and a reset can destroy the reply before the client
//! reads it. So the refusal sends FIN (`shutdown`) and reads and discards
//! until the client closes too, for at most [`LINGER`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// What an HTTP server answers past its connection cap.
pub const HTTP_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain\r\n\
Content-Length: 31\r\n\
Connection: close\r\n\r\n\
server full, try again shortly\n";

/// Refusals being finished at once. Past this many (a flood), the reply is
/// written without the wait: a new socket's send buffer always takes it, and
/// a loopback or LAN client usually reads it before the close. Refusing must
/// stay cheaper than serving.
pub const MAX_REFUSALS: usize = 1024;

/// How long a refusal waits for the client to read its reply and close. A
/// real client reads it and closes within a round trip; a flood of silent
/// ones is let go after this.
pub const LINGER: Duration = Duration::from_millis(250);

/// The refusals in flight, bounded by [`MAX_REFUSALS`]. One per server.
#[derive(Debug, Clone)]
pub struct Refusals {
    slots: Arc<Semaphore>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self { slots: Arc::new(Semaphore::new(MAX_REFUSALS)) }
    }
}

impl Refusals {
    /// Answers `reply` on `stream` and closes it gently, on a task in
    /// `tracker` (so shutdown waits for it too), or at once and without the
    /// wait when [`MAX_REFUSALS`] are already under way.
    pub fn turn_away(&self, stream: TcpStream, reply: &'static [u8], tracker: &TaskTracker) {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            let _ = stream.try_write(reply);
            return;
        };
        tracker.spawn(async move {
            let _ = tokio::time::timeout(LINGER, refuse(stream, reply)).await;
            drop(slot);
        });
    }
}

/// Writes `reply`, sends FIN, then reads until the client closes.
async fn refuse(mut stream: TcpStream, reply: &[u8]) -> std::io::Result<()> {
    stream.write_all(reply).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
