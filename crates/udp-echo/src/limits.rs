//! The numbers lesson 2 runs with, each with the reason for its value, and
//! the server's [`Config`].

use std::time::Duration;

/// Where `serve` listens unless told otherwise (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7002";

/// The payload an Ethernet frame carries (its MTU), the usual size of the
/// smallest link a datagram crosses.
const ETHERNET_MTU: usize = 1500;
/// An IPv4 header without options.
const IPV4_HEADER: usize = 20;
/// A UDP header: ports, length, checksum.
const UDP_HEADER: usize = 8;

/// The largest datagram the server echoes: what fits in one Ethernet frame
/// after the IPv4 and UDP headers, 1472 bytes. A bigger datagram is split
/// into IP fragments, and losing any fragment loses the whole datagram.
/// Protocols on UDP (DNS, QUIC) stay under this size.
pub const MAX_DATAGRAM: usize = ETHERNET_MTU - IPV4_HEADER - UDP_HEADER;

/// What the server sends back instead of an echo when a datagram is longer
/// than [`MAX_DATAGRAM`]: better a clear refusal than a truncated echo the
/// client might take for the real thing. (A test checks that the number in
/// it is [`MAX_DATAGRAM`].)
pub const TOO_LARGE_REPLY: &[u8] = b"ERR datagram larger than 1472 bytes\n";

/// How long the client waits for an echo before it sends again. Loopback
/// answers in microseconds; across the Internet a few hundred milliseconds is
/// usual, and real protocols measure the round trip and adapt.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(200);

/// How many times the client sends one request before giving up.
pub const MAX_ATTEMPTS: u32 = 5;

/// How often the server writes one INFO line summing up what it did since
/// the last one. A line per datagram is a gift to an attacker: anyone who can
/// send UDP can make the server write a log line per packet, as fast as they
/// can send (chapter 2 says how much that came to). One line every few
/// seconds costs nothing, still shows a human that traffic is flowing, and
/// the per-datagram lines are there at `RUST_LOG=debug`.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(5);

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The share of arriving datagrams the server drops on purpose, from 0.0
    /// to 1.0, so that the client's retries have something to do: on
    /// loopback nothing is lost otherwise. Default 0.0, a faithful echo.
    pub drop_rate: f64,
    /// Seed for the drop decisions ([`crate::Rng`]): the same seed drops the
    /// same datagrams, so a run, and a test, can be repeated exactly.
    /// Default 1, any fixed number would do.
    pub seed: u64,
    /// The server writes at most one INFO summary line per this long, and
    /// wakes this often when nothing arrives to write a summary that is due.
    /// Default [`SUMMARY_INTERVAL`], 5 s; tests shorten it.
    pub summary_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { drop_rate: 0.0, seed: 1, summary_every: SUMMARY_INTERVAL }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_real_limit() {
        let text = std::str::from_utf8(TOO_LARGE_REPLY).expect("ASCII");
        assert!(text.contains(&format!(" {MAX_DATAGRAM} ")), "{text:?} vs {MAX_DATAGRAM}");
        assert_eq!(MAX_DATAGRAM, 1472);
    }
}
