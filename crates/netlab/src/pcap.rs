//! A capture of every packet that crossed the link, in the classic pcap
//! format that Wireshark, tshark and tcpdump read. The format is small enough
//! to write by hand: a 24-byte file header, then per packet a 16-byte record
//! header and the packet's bytes.
//!
//! The link type is `LINKTYPE_RAW` (101): each record is a bare IPv4 or IPv6
//! packet with no Ethernet header, which is exactly what a TUN device hands us.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Raw IP: the first nibble of each packet says IPv4 or IPv6.
pub const LINKTYPE_RAW: u32 = 101;

/// The longest packet a record keeps. A TUN device's packets are at most its
/// MTU (1500 by default), so nothing is ever cut short.
pub const SNAPLEN: u32 = 65535;

/// Writes records in the order they are given; the link's two writer threads
/// share one through a mutex, so the file is in the order packets left.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl PcapWriter<BufWriter<File>> {
    pub fn create(path: &Path) -> io::Result<Self> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        // Magic 0xa1b2c3d4 written in our byte order tells the reader both the
        // byte order and that timestamps are in microseconds.
        out.write_all(&0xa1b2_c3d4u32.to_ne_bytes())?;
        out.write_all(&2u16.to_ne_bytes())?; // version 2.4
        out.write_all(&4u16.to_ne_bytes())?;
        out.write_all(&0i32.to_ne_bytes())?; // timestamps are UTC
        out.write_all(&0u32.to_ne_bytes())?; // accuracy: unused
        out.write_all(&SNAPLEN.to_ne_bytes())?;
        out.write_all(&LINKTYPE_RAW.to_ne_bytes())?;
        Ok(PcapWriter { out })
    }

    /// One packet, stamped with the moment it crossed.
    pub fn record(&mut self, when: SystemTime, packet: &[u8]) -> io::Result<()> {
        let since = when.duration_since(UNIX_EPOCH).unwrap_or_default();
        let kept = packet.len().min(SNAPLEN as usize);
        self.out.write_all(&(since.as_secs() as u32).to_ne_bytes())?;
        self.out.write_all(&since.subsec_micros().to_ne_bytes())?;
        self.out.write_all(&(kept as u32).to_ne_bytes())?;
        self.out.write_all(&(packet.len() as u32).to_ne_bytes())?;
        self.out.write_all(&packet[..kept])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}
