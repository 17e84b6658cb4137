//! A UDP relay that forwards datagrams between one client and the server,
//! counts them, and decodes what QUIC leaves readable.
//!
//! Lesson 14's tap could print every HTTP/2 frame because it sat outside
//! TLS on h2c. Here there is no clear-text mode: everything after a few
//! header bytes is encrypted, even the packet number. What a middlebox (or
//! this relay) can read is the first byte (long or short header, packet
//! type), the version, and the connection ids. [`decode`] reads exactly that.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The largest datagram we relay: QUIC's packets fit in 1,500-byte Ethernet
/// frames, and UDP's limit is 65,535.
const MAX_DATAGRAM: usize = 65_535;

/// Datagrams the relay remembers in detail; past it only the totals grow,
/// so a long download cannot make the log grow without bound.
pub const MAX_LOGGED: usize = 4096;

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// One QUIC packet header, as far as it can be read without keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// A long header (handshake packets): type, version, both connection ids,
    /// and the length of the (encrypted) rest of this packet.
    Long {
        /// Initial, 0-RTT, Handshake or Retry.
        kind: LongKind,
        /// The QUIC version (1 is RFC 9000).
        version: u32,
        /// The destination connection id.
        dcid: Vec<u8>,
        /// The source connection id.
        scid: Vec<u8>,
        /// Bytes of this packet (several can share one datagram).
        len: usize,
    },
    /// A short header (everything after the handshake): the destination
    /// connection id, then only encrypted bytes.
    Short {
        /// The destination connection id, if the relay knows its length.
        dcid: Vec<u8>,
        /// Bytes of the packet.
        len: usize,
    },
    /// Not QUIC as far as we can tell.
    Unreadable,
}

/// The type bits of a long header (RFC 9000 17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongKind {
    /// Initial: the ClientHello or ServerHello, under keys anyone can derive.
    Initial,
    /// 0-RTT: early data under a resumed session's keys.
    ZeroRtt,
    /// Handshake: the rest of TLS, under handshake keys.
    Handshake,
    /// Retry: "come back with this token".
    Retry,
    /// Version Negotiation (version 0): the versions the server speaks.
    VersionNegotiation,
}

/// Decodes the headers of the packets in one datagram. `short_cid_len` is
/// the connection-id length for short headers (the header does not say it;
/// the receiver chose it, and quinn chooses 8 bytes).
pub fn decode(datagram: &[u8], short_cid_len: usize) -> Vec<Header> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while let Some(&first) = rest.first() {
        if first & 0x80 == 0 {
            // Short header: 0b0, then the destination id, then the encrypted
            // packet number and payload, to the datagram's end. The next bit
            // is "always 1" in RFC 9000, but peers that both allow it flip
            // it at random (RFC 9287, quinn does), so that no middlebox comes
            // to depend on it; we do not read it.
            let Some(dcid) = rest.get(1..1 + short_cid_len) else {
                out.push(Header::Unreadable);
                break;
            };
            out.push(Header::Short { dcid: dcid.to_vec(), len: rest.len() });
            break;
        }
        let Some((header, len)) = long(rest) else {
            out.push(Header::Unreadable);
            break;
        };
        out.push(header);
        rest = &rest[len.min(rest.len())..];
    }
    out
}

/// One long-header packet at the start of `p`, and its total length.
fn long(p: &[u8]) -> Option<(Header, usize)> {
    let version = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
    let mut at = 5;
    let cid = |at: &mut usize| -> Option<Vec<u8>> {
        let n = usize::from(*p.get(*at)?);
        let id = p.get(*at + 1..*at + 1 + n)?.to_vec();
        *at += 1 + n;
        Some(id)
    };
    let dcid = cid(&mut at)?;
    let scid = cid(&mut at)?;
    let kind = if version == 0 {
        LongKind::VersionNegotiation
    } else {
        match (p[0] >> 4) & 0x03 {
            0 => LongKind::Initial,
            1 => LongKind::ZeroRtt,
            2 => LongKind::Handshake,
            _ => LongKind::Retry,
        }
    };
    let len = match kind {
        // These two run to the end of the datagram.
        LongKind::Retry | LongKind::VersionNegotiation => p.len(),
        _ => {
            if kind == LongKind::Initial {
                let token = varint(p, &mut at)?;
                at += usize::try_from(token).ok()?;
            }
            let rest = varint(p, &mut at)?;
            at + usize::try_from(rest).ok()?
        }
    };
    Some((Header::Long { kind, version, dcid, scid, len }, len))
}

/// QUIC's variable-length integer: the top two bits of the first byte say
/// whether it is 1, 2, 4 or 8 bytes long.
fn varint(p: &[u8], at: &mut usize) -> Option<u64> {
    let first = *p.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = p.get(*at..*at + len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    *at += len;
    Some(v)
}

/// One datagram the relay forwarded.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Since the relay started.
    pub at: Duration,
    /// Which way.
    pub dir: Dir,
    /// The client's address (its source port changes when it migrates).
    pub client: SocketAddr,
    /// The datagram's bytes.
    pub bytes: Vec<u8>,
}

/// What the relay counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Datagrams and bytes forwarded to the server.
    pub to_server: (u64, u64),
    /// Datagrams and bytes forwarded to the client.
    pub to_client: (u64, u64),
    /// Datagrams from the client the filter dropped.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Log {
    datagrams: Vec<Datagram>,
    totals: Totals,
}

/// Decides whether the `n`th datagram from the client (counting from 0)
/// goes on to the server.
pub type Filter = Box<dyn FnMut(u64, &[u8]) -> bool + Send>;

/// The relay: clients send to [`Relay::addr`], it forwards to the server
/// from a socket of its own, and answers go back to whichever address the
/// client last sent from.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
    started: Instant,
}

impl Relay {
    /// Relays everything to `server`, at once.
    pub async fn start(server: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(server, Box::new(|_, _| true), Duration::ZERO).await
    }

    /// Relays to `server` what `filter` lets through from the client, each
    /// datagram held for `one_way` first (so a round trip costs twice that:
    /// a slow link without netlab, enough to count round trips by the clock).
    ///
    /// Like a NAT, the relay forwards each client address from a socket of
    /// its own: when the client moves to a new port, the server sees the
    /// datagrams come from a new address too.
    pub async fn start_with(
        server: SocketAddr,
        mut filter: Filter,
        one_way: Duration,
    ) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
        let addr = front.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let l = Arc::clone(&log);
        let started = Instant::now();
        let up = delay_line(one_way);
        let down = delay_line(one_way);
        let task = tokio::spawn(async move {
            let (mut a, mut b) = (vec![0u8; MAX_DATAGRAM], vec![0u8; MAX_DATAGRAM]);
            // The client's current address and the socket that speaks for it.
            let mut client: Option<(SocketAddr, Arc<UdpSocket>)> = None;
            let mut from_client = 0u64;
            loop {
                let back = client.as_ref().map(|(_, s)| Arc::clone(s));
                let (dir, n, to) = tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { continue };
                        from_client += 1;
                        if client.as_ref().is_none_or(|(c, _)| *c != from) {
                            let Ok(s) = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
                            else { continue };
                            if s.connect(server).await.is_err() { continue }
                            client = Some((from, Arc::new(s)));
                        }
                        if !filter(from_client - 1, &a[..n]) {
                            l.lock().expect("relay log").totals.dropped += 1;
                            continue;
                        }
                        let Some((_, s)) = &client else { continue };
                        forward(&up, Arc::clone(s), None, &a[..n]).await;
                        (Dir::ToServer, n, from)
                    }
                    r = async { match &back { Some(s) => s.recv(&mut b).await, None => std::future::pending().await } } => {
                        let (Ok(n), Some((to, _))) = (r, &client) else { continue };
                        forward(&down, Arc::clone(&front), Some(*to), &b[..n]).await;
                        (Dir::ToClient, n, *to)
                    }
                };
                let bytes = if dir == Dir::ToServer { &a[..n] } else { &b[..n] };
                let mut log = l.lock().expect("relay log");
                let t = match dir {
                    Dir::ToServer => &mut log.totals.to_server,
                    Dir::ToClient => &mut log.totals.to_client,
                };
                t.0 += 1;
                t.1 += n as u64;
                if log.datagrams.len() < MAX_LOGGED {
                    let d =
                        Datagram { at: started.elapsed(), dir, client: to, bytes: bytes.to_vec() };
                    log.datagrams.push(d);
                }
            }
        });
        Ok(Self { addr, log, task, started })
    }

    /// How long since the relay started: the clock [`Datagram::at`] uses.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        self.log.lock().expect("relay log").totals
    }

    /// The first [`MAX_LOGGED`] datagrams.
    pub fn datagrams(&self) -> Vec<Datagram> {
        self.log.lock().expect("relay log").datagrams.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Datagrams waiting in one direction: a queue like a router's, bounded
/// (past it a datagram is dropped, as a full router queue does), with one
/// task sending each when it is due, in order (QUIC reads reordering as loss).
type DelayLine = Option<(Duration, mpsc::Sender<Delayed>)>;

/// One datagram in a delay line: when it is due, and where it goes.
type Delayed = (Instant, Arc<UdpSocket>, Option<SocketAddr>, Vec<u8>);

/// Datagrams one direction of the relay may hold while delaying them.
const DELAY_QUEUE: usize = 4096;

fn delay_line(delay: Duration) -> DelayLine {
    if delay.is_zero() {
        return None;
    }
    let (tx, mut rx) = mpsc::channel::<Delayed>(DELAY_QUEUE);
    tokio::spawn(async move {
        // Ends when the relay's task (which holds the sender) is gone.
        while let Some((due, socket, to, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            send(&socket, to, &bytes).await;
        }
    });
    Some((delay, tx))
}

/// Sends `bytes` on `socket` (to `to`, or its connected peer): at once, or
/// through `line` when the relay delays.
async fn forward(line: &DelayLine, socket: Arc<UdpSocket>, to: Option<SocketAddr>, bytes: &[u8]) {
    match line {
        None => send(&socket, to, bytes).await,
        Some((delay, tx)) => {
            let due = Instant::now() + *delay;
            let _ = tx.try_send((due, socket, to, bytes.to_vec()));
        }
    }
}

async fn send(socket: &UdpSocket, to: Option<SocketAddr>, bytes: &[u8]) {
    let _ = match to {
        Some(to) => socket.send_to(bytes, to).await,
        None => socket.send(bytes).await,
    };
}

/// A short description of one header, for the demo.
pub fn describe(h: &Header) -> String {
    let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match h {
        Header::Long { kind, version, dcid, scid, len } => format!(
            "long  {kind:?} v{version:#x} dcid={} scid={} {len} bytes",
            hex(dcid),
            hex(scid)
        ),
        Header::Short { dcid, len } => format!("short dcid={} {len} bytes", hex(dcid)),
        Header::Unreadable => "not QUIC".to_owned(),
    }
}
