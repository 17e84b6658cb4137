//! Reports through a netlab link (lesson 12), and the link's own speed.
//!
//! `--link rtt=50ms,loss=0.5%` on `bench keepalive` and `bench transports`
//! puts the report's servers on the server side of a [`netlab::Link`]
//! (198.18.0.1) and its clients on the client side (198.18.0.2), so every
//! request pays the round trip a real network charges. [`Net`] is the one
//! place that knows where things run: without `--link` it is loopback, as
//! before; with it, the report's client code runs on a thread that has
//! entered the client namespace (a tokio runtime built there keeps all its
//! threads there, since a new thread starts in its creator's namespace),
//! and whatever must sit beside the server gets its socket from a thread in
//! the server namespace.
//!
//! `cargo run -p bench --release -- link` measures the link itself: one TCP
//! transfer through a 0 ms, unlimited link against the same over loopback,
//! and the round trip of a small UDP datagram both ways, so a learner can
//! see the link is not the bottleneck of the networks it pretends to be.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use netlab::{Link, LinkConfig, Side};

use crate::stats::percentile;

/// What `--link` asks for: `rtt=50ms,loss=0.5%,rate=10mbit,pcap=FILE` (any
/// of them, in any order; the units are netlab's, which are tc's).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    pub rtt: Duration,
    pub loss: f64,
    pub rate_bps: Option<u64>,
    /// Capture every packet that crosses the link to this pcap file.
    pub pcap: Option<PathBuf>,
}

/// clap's parser for `--link`.
pub fn parse_spec(s: &str) -> Result<LinkSpec, String> {
    let mut spec = LinkSpec { rtt: Duration::ZERO, loss: 0.0, rate_bps: None, pcap: None };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write key=value, e.g. rtt=50ms,loss=0.5%"))?;
        match key.trim() {
            "rtt" => spec.rtt = netlab::parse::duration(value)?,
            "loss" => spec.loss = netlab::parse::probability(value)?,
            "rate" => spec.rate_bps = Some(netlab::parse::rate(value)?),
            "pcap" => spec.pcap = Some(PathBuf::from(value.trim())),
            other => {
                return Err(format!("unknown link setting {other:?} (rtt, loss, rate or pcap)"));
            }
        }
    }
    Ok(spec)
}

impl LinkSpec {
    /// The same in both directions: half the RTT each way, the loss on each.
    pub fn config(&self) -> LinkConfig {
        LinkConfig {
            pcap: self.pcap.clone(),
            ..LinkConfig::symmetric(self.rtt, self.loss, self.rate_bps)
        }
    }
}

impl std::fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a netlab link: RTT {:?}, {}% loss each way", self.rtt, self.loss * 100.0)?;
        if let Some(r) = self.rate_bps {
            write!(f, ", {} Mbit/s", r as f64 / 1e6)?;
        }
        Ok(())
    }
}

/// Where a report's servers and clients run: both on loopback, or on the
/// two sides of a link.
#[derive(Debug)]
pub struct Net {
    link: Option<(Link, LinkSpec)>,
}

impl Net {
    /// Loopback without a spec; a link with one. Without root the link
    /// cannot be built, and the error is netlab's one-line reason.
    pub fn start(spec: Option<&LinkSpec>) -> anyhow::Result<Arc<Net>> {
        let link = match spec {
            None => None,
            Some(spec) => {
                // One line, as netlab says it, not a chain of causes.
                netlab::check_privileges().map_err(|e| anyhow::anyhow!("--link: {e}"))?;
                let link = Link::start(spec.config()).context("--link: building the link")?;
                eprintln!("bench: through {spec}");
                Some((link, spec.clone()))
            }
        };
        Ok(Arc::new(Net { link }))
    }

    /// The link, if there is one.
    pub fn link(&self) -> Option<&Link> {
        self.link.as_ref().map(|(l, _)| l)
    }

    /// Where servers listen: 127.0.0.1, or the server side's 198.18.0.1.
    pub fn server_ip(&self) -> IpAddr {
        match self.link {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(_) => IpAddr::V4(netlab::SERVER_ADDR),
        }
    }

    /// Where clients bind: 127.0.0.1, or the client side's 198.18.0.2 (a
    /// client socket on the link names its side's address rather than
    /// 0.0.0.0, like every socket in the lessons).
    pub fn client_ip(&self) -> IpAddr {
        match self.link {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(_) => IpAddr::V4(netlab::CLIENT_ADDR),
        }
    }

    /// "loopback" or the link's settings, for a report's first line.
    pub fn describe(&self) -> String {
        match &self.link {
            None => "loopback".into(),
            Some((_, spec)) => spec.to_string(),
        }
    }

    /// Runs `f` where the clients live: here on loopback, or on a thread
    /// inside the client namespace (every socket it, or any thread it
    /// starts, opens is then on the client side).
    pub fn on_client<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.on(Side::Client, f)
    }

    /// Runs `f` beside the server: here on loopback, or on a thread inside
    /// the server namespace.
    pub fn on_server<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.on(Side::Server, f)
    }

    fn on<T, F>(&self, side: Side, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.link() {
            None => Ok(f()),
            Some(link) => link
                .run_on(side, f)
                .context("starting a thread on one side of the link")?
                .join()
                .map_err(|_| anyhow::anyhow!("a thread on the {side:?} side panicked"))?
                .with_context(|| format!("entering the {side:?} side's namespace")),
        }
    }

    /// A listener on the server side, port chosen by the kernel, ready for
    /// tokio. Call it inside a runtime.
    pub fn listener(&self) -> anyhow::Result<tokio::net::TcpListener> {
        let ip = self.server_ip();
        let std = self.on_server(move || TcpListener::bind((ip, 0)))??;
        std.set_nonblocking(true)?;
        Ok(tokio::net::TcpListener::from_std(std)?)
    }

    /// A TCP connection to `addr` opened from the server side (a publisher
    /// that sits beside the server, so its requests do not cross the link).
    /// Call it inside a runtime.
    pub fn connect_beside_server(&self, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
        let std = self.on_server(move || TcpStream::connect(addr))??;
        std.set_nonblocking(true)?;
        Ok(tokio::net::TcpStream::from_std(std)?)
    }

    /// The link's counters, one line per direction, for the end of a report.
    pub fn counters(&self) -> Option<String> {
        self.link().map(|l| {
            format!("link, client -> server: {}\nlink, server -> client: {}", l.up(), l.down())
        })
    }
}

/// Options of `bench link`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Megabytes in each bulk transfer.
    #[arg(long, default_value_t = 500)]
    pub megabytes: usize,
    /// Transfers each way (link and loopback); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub transfers: usize,
    /// Small round trips each way; p50 and p99 are reported.
    #[arg(long, default_value_t = 5000)]
    pub round_trips: usize,
}

/// Each write and read of the bulk transfer: large enough that system calls
/// are not what is measured.
const BULK_CHUNK: usize = 64 * 1024;
/// A read timeout on every socket of this report, so a stuck link ends the
/// report with an error instead of hanging.
const STUCK: Duration = Duration::from_secs(20);
/// The small echo's size: one small packet each way, like a keystroke.
const ECHO_BYTES: usize = 32;

/// `bench link`: the link at 0 ms and unlimited against loopback.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.transfers == 0 || args.round_trips == 0 || args.megabytes == 0 {
        bail!("transfers, round trips and megabytes must be at least 1");
    }
    let spec = LinkSpec { rtt: Duration::ZERO, loss: 0.0, rate_bps: None, pcap: None };
    let loopback = Net::start(None)?;
    let link = Net::start(Some(&spec))?;
    let bytes = args.megabytes * 1_000_000;
    println!(
        "bench link: netlab's forwarder at 0 ms, no loss, no rate limit, against loopback; \
         {} MB per transfer (median of {}), {} round trips of {ECHO_BYTES} bytes",
        args.megabytes, args.transfers, args.round_trips
    );
    println!("{:<10} {:>14} {:>12} {:>12}", "path", "TCP Mbit/s", "RTT p50 us", "RTT p99 us");
    let mut rows = Vec::new();
    for (name, net) in [("loopback", &loopback), ("link", &link)] {
        let mut rates = Vec::new();
        for _ in 0..args.transfers {
            let took = transfer(net, bytes)?;
            rates.push(bytes as f64 * 8.0 / took.as_secs_f64() / 1e6);
        }
        rates.sort_by(f64::total_cmp);
        let mbit = rates[rates.len() / 2];
        let mut rtts = echo_round_trips(net, args.round_trips)?;
        let p50 = percentile(&mut rtts, 50.0).unwrap_or_default();
        let p99 = percentile(&mut rtts, 99.0).unwrap_or_default();
        println!(
            "{name:<10} {mbit:>14.0} {:>12.1} {:>12.1}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
        rows.push((mbit, p50));
    }
    let (lo, li) = (rows[0], rows[1]);
    let added = li.1.saturating_sub(lo.1) / 2;
    println!(
        "\nthe link moves {:.0}% of loopback's throughput ({:.0} Mbit/s) and adds {:.1} us \
         each way to a small packet (half the p50 RTT difference; 0 ms configured)",
        li.0 / lo.0 * 100.0,
        li.0,
        added.as_secs_f64() * 1e6,
    );
    if let Some(c) = link.counters() {
        println!("{c}");
    }
    Ok(())
}

/// One upload of `bytes`: the receiver on the server side reads to the end
/// and answers one byte, so the time covers every byte arriving, not just
/// leaving the sender's buffer.
fn transfer(net: &Net, bytes: usize) -> anyhow::Result<Duration> {
    let ip = net.server_ip();
    let listener = net.on_server(move || TcpListener::bind((ip, 0)))??;
    let addr = listener.local_addr()?;
    let receiver = thread::spawn(move || -> io::Result<usize> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(STUCK))?;
        let mut buf = vec![0u8; BULK_CHUNK];
        let mut total = 0;
        loop {
            match conn.read(&mut buf)? {
                0 => break,
                n => total += n,
            }
        }
        conn.write_all(b"k")?;
        Ok(total)
    });
    let took = net.on_client(move || -> io::Result<Duration> {
        let mut conn = TcpStream::connect_timeout(&addr, STUCK)?;
        conn.set_read_timeout(Some(STUCK))?;
        let chunk = vec![b'x'; BULK_CHUNK];
        let t = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            conn.write_all(&chunk[..n])?;
            left -= n;
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 1];
        conn.read_exact(&mut ack)?;
        Ok(t.elapsed())
    })??;
    let got = receiver.join().map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    if got != bytes {
        bail!("the receiver got {got} bytes of {bytes}");
    }
    Ok(took)
}

/// `count` round trips of a small UDP datagram to an echo on the server
/// side. UDP, so each sample is one packet each way and nothing else (no
/// ACKs, no Nagle, no delayed ACK).
fn echo_round_trips(net: &Net, count: usize) -> anyhow::Result<Vec<Duration>> {
    let ip = net.server_ip();
    let server = net.on_server(move || UdpSocket::bind((ip, 0)))??;
    server.set_read_timeout(Some(STUCK))?;
    let addr = server.local_addr()?;
    let echo = thread::spawn(move || -> io::Result<()> {
        let mut buf = [0u8; 64];
        for _ in 0..count {
            let (n, from) = server.recv_from(&mut buf)?;
            server.send_to(&buf[..n], from)?;
        }
        Ok(())
    });
    let rtts = net.on_client(move || -> io::Result<Vec<Duration>> {
        let client = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        client.connect(addr)?;
        client.set_read_timeout(Some(STUCK))?;
        let out = [7u8; ECHO_BYTES];
        let mut back = [0u8; 64];
        let mut rtts = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            client.send(&out)?;
            let n = client.recv(&mut back)?;
            rtts.push(t.elapsed());
            if n != ECHO_BYTES {
                return Err(io::Error::other(format!("echo of {n} bytes, not {ECHO_BYTES}")));
            }
        }
        Ok(rtts)
    })??;
    echo.join().map_err(|_| anyhow::anyhow!("the echo panicked"))??;
    Ok(rtts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_specs() {
        let s = parse_spec("rtt=50ms,loss=0.5%").expect("valid");
        assert_eq!(s.rtt, Duration::from_millis(50));
        assert!((s.loss - 0.005).abs() < 1e-12);
        assert_eq!(s.rate_bps, None);
        let s = parse_spec("rate=10mbit, rtt=100ms").expect("valid");
        assert_eq!((s.rtt, s.rate_bps), (Duration::from_millis(100), Some(10_000_000)));
        let s = parse_spec("rtt=20ms,pcap=/tmp/x.pcap").expect("valid");
        assert_eq!(s.config().pcap, Some(PathBuf::from("/tmp/x.pcap")));
        assert!(parse_spec("rtt=50").is_ok(), "a bare number is milliseconds, as in netlab");
        assert!(parse_spec("delay=50ms").is_err());
        assert!(parse_spec("rtt").is_err());
        assert!(parse_spec("loss=150%").is_err());
    }

    /// Through a 40 ms link a TCP connect from the client side takes one
    /// RTT; without root, `Net::start` refuses with netlab's reason. Either
    /// way something is checked.
    #[test]
    fn a_connect_through_the_link_costs_one_rtt_or_the_reason_is_given() {
        let spec = parse_spec("rtt=40ms").expect("valid");
        let net = match Net::start(Some(&spec)) {
            Ok(net) => net,
            Err(e) => {
                let why = format!("{e:#}");
                assert!(netlab::check_privileges().is_err(), "failed with privileges: {why}");
                assert!(why.starts_with("--link: needs"), "one-line reason: {why}");
                eprintln!("skipped the link half of this test: {why}");
                return;
            }
        };
        let ip = net.server_ip();
        let listener =
            net.on_server(move || TcpListener::bind((ip, 0))).expect("server side").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let took = net
            .on_client(move || {
                let t = Instant::now();
                TcpStream::connect_timeout(&addr, STUCK).map(|_| t.elapsed())
            })
            .expect("client side")
            .expect("connect");
        assert!(
            took >= Duration::from_millis(40) && took < Duration::from_millis(60),
            "connect took {took:?} through a 40 ms link"
        );
        // On loopback the same connect is far below a millisecond.
        let lo = Net::start(None).expect("loopback");
        assert_eq!(lo.server_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
