//! Raw TCP and UDP clients for tests: exact bytes out, exact bytes in, and a
//! timeout on every read so that a silent server fails the test instead of
//! hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// How long a raw client waits for the server before a read fails with
/// `WouldBlock`/`TimedOut`. Loopback answers in microseconds; five seconds is
/// only ever reached when something is wrong.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking TCP client with read and write timeouts set.
#[derive(Debug)]
pub struct TcpClient {
    stream: TcpStream,
}

impl TcpClient {
    /// Connects (within [`IO_TIMEOUT`]) and sets [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self { stream })
    }

    /// The underlying stream, for socket options or a second handle.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes every byte of `bytes` (looping over short writes).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads exactly `n` bytes, or fails (timeout, or the server closed early).
    pub fn recv_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Reads until the server closes its side, and returns everything read.
    pub fn recv_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.stream.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Reads up to and including the first occurrence of `delimiter`, and
    /// returns it. Bytes after the delimiter that arrived in the same read are
    /// kept for the next call. Fails if the server closes first.
    pub fn recv_until(&mut self, delimiter: &[u8]) -> io::Result<Vec<u8>> {
        // One byte at a time is slow, but simple and exact: a test helper
        // never reads past what it was asked for, so the next call sees the
        // rest of the stream untouched.
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(delimiter) {
            match self.stream.read(&mut byte)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("peer closed after {} bytes, before the delimiter", out.len()),
                    ));
                }
                _ => out.push(byte[0]),
            }
        }
        Ok(out)
    }

    /// Whether the server has closed the connection: a read returns 0 (FIN)
    /// or fails with a reset. Times out (error) if the server keeps it open.
    pub fn is_closed_by_peer(&mut self) -> io::Result<bool> {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Half-closes: sends FIN, so the server reads end-of-stream, while this
    /// side can still read what the server sends back.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}

/// A UDP client socket bound to an ephemeral loopback port, with a receive
/// timeout set.
#[derive(Debug)]
pub struct UdpClient {
    socket: UdpSocket,
    server: SocketAddr,
}

impl UdpClient {
    /// Binds `127.0.0.1:0` and `connect`s to `server`, so that `send`/`recv`
    /// talk to it alone and datagrams from anyone else are filtered out by the
    /// kernel.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(crate::EPHEMERAL)?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(Self { socket, server })
    }

    /// The underlying socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends one datagram.
    pub fn send(&self, datagram: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(datagram)?;
        // UDP sends a datagram whole or not at all; a short count would be a
        // kernel bug, not something to retry.
        assert_eq!(sent, datagram.len(), "UDP sends whole datagrams");
        Ok(())
    }

    /// Receives one datagram of up to `max` bytes (a longer one is cut).
    pub fn recv(&self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; max];
        let n = self.socket.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Receives one datagram, waiting at most `wait`; `Ok(None)` if nothing came.
    pub fn recv_within(&self, max: usize, wait: Duration) -> io::Result<Option<Vec<u8>>> {
        self.socket.set_read_timeout(Some(wait))?;
        let got = self.recv(max);
        self.socket.set_read_timeout(Some(IO_TIMEOUT))?;
        match got {
            Ok(d) => Ok(Some(d)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
