//! # Lesson 2: a UDP echo server, and a client that retries
//!
//! UDP sends datagrams: each `send` is one packet that arrives whole, once,
//! or not at all, and nothing tells the sender which. There is no connection,
//! so one socket serves every client; there is no retransmission, so a client
//! that needs an answer must time out and ask again; and there is no stream,
//! so a datagram bigger than the receiver's buffer is cut short, silently.
//! This lesson shows each of those on real sockets, and its server can drop a
//! seeded share of datagrams on purpose so you can watch the retries work.
//!
//! ```text
//! cargo run -p udp-echo                                  # demo, with 30% loss, then exits
//! cargo run -p udp-echo -- serve                         # server on 127.0.0.1:7002 until Ctrl-C
//! cargo run -p udp-echo -- serve --drop-rate 0.5         # ...losing half of what arrives
//! cargo run -p udp-echo -- client "hello"                # send, wait, retry, print the echo
//! nc -u 127.0.0.1 7002                                   # or talk to `serve` by hand
//! ```
//!
//! Read it beside `docs/02-udp-echo.md`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod limits;
mod stats;

pub use limits::{
    Config, DEFAULT_ADDR, MAX_ATTEMPTS, MAX_DATAGRAM, REPLY_TIMEOUT, SUMMARY_INTERVAL,
    TOO_LARGE_REPLY,
};
pub use stats::Stats;
use stats::Tally;

/// Binds the server socket. There is no `listen` and no backlog in UDP: the
/// socket receives from anyone as soon as it is bound.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(addr)
}

/// Receives datagrams and sends each back to whoever sent it, until `stop`.
///
/// There is one socket for every client: each `recv_from` says who sent the
/// datagram, and `send_to` answers that address. No accept, no per-client
/// state, no "connection" to lose.
///
/// The buffer is one byte larger than [`MAX_DATAGRAM`]. `recv_from` never
/// says that it cut a datagram short; it fills the buffer and throws the rest
/// away. If the extra byte got filled, the datagram was too large, and the
/// server says so instead of echoing a fragment of it.
///
/// Each datagram is logged at DEBUG only; at INFO the server writes one
/// summary line at most every `config.summary_every`, and one more when it
/// stops. To write that line when the traffic has stopped too, it sets a read
/// timeout of `summary_every` on `socket`, so `recv_from` wakes up now and
/// then even when nothing arrives.
pub fn serve(
    socket: &UdpSocket,
    config: &Config,
    stop: &AtomicBool,
    stats: &Stats,
) -> io::Result<()> {
    let mut rng = Rng::new(config.seed);
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    // A zero timeout is refused by the kernel (and would mean "never" anyway).
    let every = config.summary_every.max(Duration::from_millis(1));
    socket.set_read_timeout(Some(every))?;
    let mut tally = Tally::new();
    loop {
        let got = socket.recv_from(&mut buf);
        if tally.since.elapsed() >= every {
            tally.report();
        }
        let (n, from) = match got {
            Ok(got) => got,
            // The read timeout: nothing arrived for a while. Time to look at
            // the stop flag (and, above, to write a summary that is due).
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    tally.report();
                    return Ok(());
                }
                continue;
            }
            // On Linux an earlier `send_to` to a port nobody listens on comes
            // back later as ECONNREFUSED on some systems. It concerns that
            // one client, not the server.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tally.report();
                return Err(e);
            }
        };
        if stop.load(Ordering::SeqCst) {
            tally.report();
            return Ok(());
        }
        stats.received.fetch_add(1, Ordering::SeqCst);
        if rng.next_f64() < config.drop_rate {
            stats.dropped.fetch_add(1, Ordering::SeqCst);
            tally.dropped += 1;
            tracing::debug!("{from}: {n} bytes, dropped on purpose");
            continue;
        }
        let reply = if n > MAX_DATAGRAM {
            stats.too_large.fetch_add(1, Ordering::SeqCst);
            tally.too_large += 1;
            tracing::debug!("{from}: more than {MAX_DATAGRAM} bytes, refused");
            TOO_LARGE_REPLY
        } else {
            stats.echoed.fetch_add(1, Ordering::SeqCst);
            tally.echoed += 1;
            tally.bytes += n as u64;
            tracing::debug!("{from}: {n} bytes, echoed");
            &buf[..n]
        };
        // A failed send concerns one client (its address may be unreachable):
        // count it for the summary and serve the next datagram. A WARN line
        // each would let a flood fill the log again.
        if let Err(e) = socket.send_to(reply, from) {
            tracing::debug!("{from}: send failed: {e}");
            tally.send_failed += 1;
            tally.last_send_error = Some(e);
        }
    }
}

/// The outcome of [`request`]: the echo, and how many sends it took.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The datagram that came back.
    pub bytes: Vec<u8>,
    /// 1 if the first send was answered, 2 if it took one retry, and so on.
    pub attempts: u32,
}

/// Sends `payload` to the echo server on `socket` and waits for its echo,
/// sending again after each `timeout`, up to `max_attempts` sends.
///
/// Two things UDP leaves to us:
///
/// * **loss**: no reply within `timeout` may mean the request was lost, or the
///   reply was. We cannot tell which, so we send again.
/// * **duplicates and strays**: a retry may mean two echoes arrive (the first
///   was only slow), and a late echo of an *earlier* request may arrive now. So
///   a reply counts only if it is the echo of this payload; anything else is
///   ignored and we keep waiting out the same deadline.
///
/// Matching on the payload has a hole: a late echo of an earlier request with
/// the same bytes is taken for this one's. Real protocols put an id in every
/// request and its reply (DNS has a 16-bit transaction id); adding one is an
/// exercise in the chapter.
///
/// `socket` should be bound (and may be `connect`ed to the server, which makes
/// the kernel drop datagrams from anyone else).
pub fn request(
    socket: &UdpSocket,
    server: SocketAddr,
    payload: &[u8],
    timeout: Duration,
    max_attempts: u32,
) -> io::Result<Reply> {
    // Large enough to see a too-long echo for what it is, like the server.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    for attempt in 1..=max_attempts {
        socket.send_to(payload, server)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from))
                    if from == server && (&buf[..n] == payload || &buf[..n] == TOO_LARGE_REPLY) =>
                {
                    return Ok(Reply { bytes: buf[..n].to_vec(), attempts: attempt });
                }
                // A stray: a late duplicate, or someone else. Keep waiting.
                Ok(_) => continue,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    break;
                }
                // Nobody listens on the server's port (ICMP port unreachable,
                // reported on a connected socket): retrying cannot help.
                Err(e) => return Err(e),
            }
        }
        tracing::debug!("attempt {attempt}: no echo within {timeout:?}");
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no echo after {max_attempts} attempts of {timeout:?} each"),
    ))
}

/// A tiny, seeded pseudo-random generator (SplitMix64). Deterministic on
/// purpose: the same seed drops the same datagrams, so a test can rely on it.
/// Not for anything that needs real randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
