//! Start a lesson's server on an ephemeral loopback port, get its address, and
//! shut it down again.
//!
//! Every test binds `127.0.0.1:0`, so the kernel picks a free port and tests
//! can run in parallel without fighting over a fixed one. There are two
//! flavours, because the lessons come in two kinds:
//!
//! * [`BlockingServer`]: a `std::net` server running on its own thread. It is
//!   told to stop through an `Arc<AtomicBool>` and woken from its blocking
//!   `accept`/`recv` by a throwaway connection or datagram.
//! * [`TaskServer`]: a tokio server running as a task. It is told to stop
//!   through a [`CancellationToken`], the same way the lessons' `serve`
//!   commands stop on Ctrl-C.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::wait::within_blocking;

/// How long a server may take to stop after it was told to. Generous, because
/// a loaded CI machine is slow, but finite, so a server that ignores its stop
/// signal fails the test instead of hanging it.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The address every test server binds: loopback, port chosen by the kernel.
pub const EPHEMERAL: &str = "127.0.0.1:0";

/// A `std::net` server running on a thread of its own.
///
/// Dropping it stops the server too (and waits for it), so a failing test does
/// not leave a thread behind that holds a port.
#[derive(Debug)]
pub struct BlockingServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    kind: Kind,
    thread: Option<JoinHandle<io::Result<()>>>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
}

impl BlockingServer {
    /// Binds a TCP listener on `127.0.0.1:0` and runs `serve(listener, stop)`
    /// on a thread named `name`. `serve` should return soon after `stop` turns
    /// true; the harness wakes its `accept` with a connection that it closes at
    /// once.
    pub fn start_tcp<F>(name: &str, serve: F) -> io::Result<Self>
    where
        F: FnOnce(TcpListener, Arc<AtomicBool>) -> io::Result<()> + Send + 'static,
    {
        let listener = TcpListener::bind(EPHEMERAL)?;
        Self::start_tcp_with(name, listener, serve)
    }

    /// Like [`BlockingServer::start_tcp`], for a listener the lesson built
    /// itself (with socket2 options, say). It should be bound to loopback.
    pub fn start_tcp_with<F>(name: &str, listener: TcpListener, serve: F) -> io::Result<Self>
    where
        F: FnOnce(TcpListener, Arc<AtomicBool>) -> io::Result<()> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread =
            thread::Builder::new().name(name.to_owned()).spawn(move || serve(listener, flag))?;
        Ok(Self { addr, stop, kind: Kind::Tcp, thread: Some(thread) })
    }

    /// Binds a UDP socket on `127.0.0.1:0` and runs `serve(socket, stop)` on a
    /// thread named `name`. The harness wakes a blocked `recv_from` with an
    /// empty datagram after setting `stop`.
    pub fn start_udp<F>(name: &str, serve: F) -> io::Result<Self>
    where
        F: FnOnce(UdpSocket, Arc<AtomicBool>) -> io::Result<()> + Send + 'static,
    {
        let socket = UdpSocket::bind(EPHEMERAL)?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread =
            thread::Builder::new().name(name.to_owned()).spawn(move || serve(socket, flag))?;
        Ok(Self { addr, stop, kind: Kind::Udp, thread: Some(thread) })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server's thread has ended (returned or panicked) on its own.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Tells the server to stop, wakes it, and waits up to
    /// [`SHUTDOWN_DEADLINE`] for its thread. Returns what `serve` returned;
    /// panics if the server panicked or did not stop in time.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        self.stop.store(true, Ordering::SeqCst);
        // A thread blocked in accept() or recv_from() does not look at the flag
        // until something arrives. Send it something. Errors are fine: the
        // server may have stopped already and closed its socket.
        match self.kind {
            Kind::Tcp => drop(TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))),
            Kind::Udp => {
                if let Ok(s) = UdpSocket::bind(EPHEMERAL) {
                    let _ = s.send_to(&[], self.addr);
                }
            }
        }
        let name = thread.thread().name().unwrap_or("server").to_owned();
        let joined =
            within_blocking(SHUTDOWN_DEADLINE, &format!("{name} to stop"), move || thread.join());
        match joined {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        if self.thread.is_some() && !thread::panicking() {
            let _ = self.stop_and_join();
        } else if self.thread.is_some() {
            // Already unwinding from a failed assertion: ask the server to stop
            // but do not wait, so the original failure is what gets reported.
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// A tokio server running as a task on the current runtime.
///
/// `shutdown().await` cancels the token the server was given and waits for the
/// task to finish, within [`SHUTDOWN_DEADLINE`]. Dropping it without calling
/// `shutdown` cancels the token but cannot wait (drop is not async).
#[derive(Debug)]
pub struct TaskServer<T> {
    addr: SocketAddr,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<T>>,
}

impl<T: Send + 'static> TaskServer<T> {
    /// Binds a tokio listener on `127.0.0.1:0` and spawns
    /// `serve(listener, token)`. The future should return once `token` is
    /// cancelled (after closing what it has open, if the lesson teaches
    /// graceful shutdown).
    pub async fn start<F, Fut>(serve: F) -> io::Result<Self>
    where
        F: FnOnce(tokio::net::TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(EPHEMERAL).await?;
        Self::start_with(listener, serve)
    }

    /// Like [`TaskServer::start`], for a listener the lesson bound itself.
    pub fn start_with<F, Fut>(listener: tokio::net::TcpListener, serve: F) -> io::Result<Self>
    where
        F: FnOnce(tokio::net::TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(listener, token.clone()));
        Ok(Self { addr, token, task: Some(task) })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A clone of the token the server watches, for tests that want to cancel
    /// it themselves and watch what the clients see.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Cancels the server's token and waits for its task, or panics if it does
    /// not finish within [`SHUTDOWN_DEADLINE`] or if it panicked.
    pub async fn shutdown(mut self) -> T {
        self.token.cancel();
        let task = self.task.take().expect("shutdown consumes the server, so the task is there");
        match crate::within(SHUTDOWN_DEADLINE, "the server task to finish after cancel", task).await
        {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("server task was aborted: {e}"),
        }
    }
}

impl<T> Drop for TaskServer<T> {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
