//! The three servers by name: what `serve --flavour` chooses from, what the
//! tests loop over, and what the bench measures.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Config, Stats, TICK};

/// Where `serve --flavour threaded` listens by default (loopback only).
pub const THREADED_ADDR: &str = "127.0.0.1:7003";
/// Where `serve --flavour evented` listens by default.
pub const EVENTED_ADDR: &str = "127.0.0.1:7004";
/// Where `serve --flavour tokio` listens by default.
pub const TOKIO_ADDR: &str = "127.0.0.1:7005";

/// The three ways the lesson serves the same protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    /// One OS thread per connection (std::net, blocking).
    Threaded,
    /// One thread, one mio event loop (epoll), non-blocking sockets.
    Evented,
    /// tokio tasks on a single-threaded runtime (the event loop behind async/await).
    Tokio,
}

impl Flavour {
    /// All three, in the order the chapter shows them.
    pub const ALL: [Flavour; 3] = [Flavour::Threaded, Flavour::Evented, Flavour::Tokio];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Threaded => "threaded",
            Flavour::Evented => "evented",
            Flavour::Tokio => "tokio",
        }
    }

    /// The documented `serve` port of this flavour.
    pub fn default_addr(self) -> &'static str {
        match self {
            Flavour::Threaded => THREADED_ADDR,
            Flavour::Evented => EVENTED_ADDR,
            Flavour::Tokio => TOKIO_ADDR,
        }
    }

    /// Runs this flavour on `listener` on the current thread until `stop`
    /// turns true (the threaded flavour also needs a connection to wake its
    /// `accept`, which `harness::BlockingServer` sends), or until the
    /// listener breaks.
    pub fn serve(
        self,
        listener: std::net::TcpListener,
        config: &Config,
        stats: &Arc<Stats>,
        stop: &Arc<AtomicBool>,
    ) -> io::Result<()> {
        match self {
            Flavour::Threaded => crate::serve_threaded(listener, config, stats, stop),
            Flavour::Evented => crate::serve_evented(listener, config, stats, stop),
            Flavour::Tokio => {
                // One thread, like the mio loop, so the two event loops are
                // compared like for like.
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    listener.set_nonblocking(true)?;
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let token = tokio_util::sync::CancellationToken::new();
                    let watch = {
                        let (token, stop) = (token.clone(), Arc::clone(stop));
                        tokio::spawn(async move {
                            while !stop.load(Ordering::SeqCst) {
                                tokio::time::sleep(TICK).await;
                            }
                            token.cancel();
                        })
                    };
                    let served =
                        crate::serve_tokio(listener, config.clone(), Arc::clone(stats), token)
                            .await;
                    watch.abort();
                    served
                })
            }
        }
    }
}
