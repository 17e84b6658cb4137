//! The client: one HTTP/2 connection, many streams, on the `h2` crate.
//!
//! hyper's client would do the same requests, but it hides the machinery
//! this lesson is about: when the client hands window back to the server
//! (WINDOW_UPDATE), a PING, cancelling one stream (RST_STREAM). The `h2`
//! crate, which hyper itself runs on, shows them.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The client's receive windows: how far the server may run ahead of our
/// reading, per stream and for the whole connection.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// SETTINGS_INITIAL_WINDOW_SIZE: per stream.
    pub stream: u32,
    /// The connection's window (raised with a WINDOW_UPDATE on stream 0).
    pub connection: u32,
}

impl Default for Windows {
    /// The protocol's default per stream (65,535 bytes), and 1 MiB for the
    /// connection: 16 streams' worth, so one stream we stop reading cannot
    /// use up the whole connection's window and stall the others.
    fn default() -> Self {
        Self { stream: 65_535, connection: 1024 * 1024 }
    }
}

/// An open HTTP/2 connection: `send` makes requests; the connection itself
/// runs on a task of its own, reading and writing frames for all streams.
#[derive(Debug)]
pub struct H2 {
    /// Where requests are sent (clone it to send from several tasks).
    pub send: h2::client::SendRequest<Bytes>,
    /// For PING.
    pub ping: Option<h2::PingPong>,
    /// The task running the connection; it ends when the connection does.
    pub task: JoinHandle<Result<(), h2::Error>>,
    /// The `:authority` requests carry.
    pub authority: String,
}

/// Connects to `addr` over TCP and starts HTTP/2 with prior knowledge.
pub async fn connect(addr: SocketAddr, windows: Windows) -> anyhow::Result<H2> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    handshake(tcp, addr.to_string(), windows).await
}

/// Starts HTTP/2 over `io` (plain TCP or TLS): sends the preface and our
/// SETTINGS, and spawns the connection task.
pub async fn handshake<I>(io: I, authority: String, windows: Windows) -> anyhow::Result<H2>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(windows.stream)
        .initial_connection_window_size(windows.connection)
        .handshake::<_, Bytes>(io)
        .await?;
    let ping = conn.ping_pong();
    let task = tokio::spawn(conn);
    Ok(H2 { send, ping, task, authority })
}

/// One finished response.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
    /// The stream it came on.
    pub stream: u32,
}

impl H2 {
    /// A GET for `path`, with the two headers a browser always sends.
    pub fn request(&self, path: &str) -> Request<()> {
        Request::get(format!("http://{}{path}", self.authority))
            .header("user-agent", USER_AGENT)
            .header("accept", "*/*")
            .body(())
            .expect("a path from our own code makes a valid request")
    }

    /// Sends GET `path` and reads the whole answer, handing window back as
    /// it reads (that is what sends WINDOW_UPDATE), at most `max_body` bytes.
    pub async fn get(&self, path: &str, max_body: usize) -> anyhow::Result<Answer> {
        let response = self.send_get(path).await?;
        read_answer(response, max_body).await
    }

    /// Queues GET `path` and returns at once with the response to come.
    /// Queue many before awaiting any and h2 writes their HEADERS frames in
    /// one go, as a browser does; awaiting each in turn (or sending from many
    /// tasks) can cost one small TCP segment per request, and past the
    /// initial congestion window of 10 segments that costs a round trip.
    pub async fn send_get(&self, path: &str) -> anyhow::Result<h2::client::ResponseFuture> {
        let mut send = self.send.clone().ready().await?;
        let (response, _) = send.send_request(self.request(path), true)?;
        Ok(response)
    }

    /// Sends a PING and waits for its ACK: one round trip, measured.
    pub async fn ping(&mut self) -> anyhow::Result<Duration> {
        let pinger = self.ping.as_mut().ok_or_else(|| anyhow::anyhow!("ping taken"))?;
        let start = std::time::Instant::now();
        pinger.ping(h2::Ping::opaque()).await?;
        Ok(start.elapsed())
    }

    /// Opens a stream for `path` and cancels it at once with RST_STREAM
    /// (CANCEL): what a browser does when you navigate away mid-load.
    pub async fn open_and_cancel(&self, path: &str) -> anyhow::Result<u32> {
        let mut send = self.send.clone().ready().await?;
        let (response, mut body) = send.send_request(self.request(path), false)?;
        let id = response.stream_id().as_u32();
        body.send_reset(h2::Reason::CANCEL);
        Ok(id)
    }
}

/// Waits for the response and reads its whole body, at most `max_body`
/// bytes, handing window back as it reads (that is what sends WINDOW_UPDATE).
pub async fn read_answer(
    response: h2::client::ResponseFuture,
    max_body: usize,
) -> anyhow::Result<Answer> {
    let stream = response.stream_id().as_u32();
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        // Tell h2 we consumed these bytes: it sends WINDOW_UPDATE once
        // enough window has been handed back.
        let _ = body.flow_control().release_capacity(chunk.len());
        if out.len() + chunk.len() > max_body {
            anyhow::bail!("body of stream {stream} larger than {max_body} bytes");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body: out.into(), stream })
}

/// The `user-agent` both the HTTP/2 and the HTTP/1.1 clients send, so the
/// header byte counts compare like with like.
pub const USER_AGENT: &str = "http2-lesson/0.1";

/// The HTTP/1.1 request the header comparison sends: the same fields as
/// [`H2::request`], written out as text.
pub fn http1_request(authority: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n"
    )
}
