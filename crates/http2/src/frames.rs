//! A small HTTP/2 frame decoder (and encoder), enough to read the wire.
//!
//! After the client's 24-byte connection preface, everything either side
//! sends is a frame with the same 9-byte header:
//!
//! ```text
//! +-----------------------------------------------+
//! |                 Length (24)                   |   payload length, not counting these 9 bytes
//! +---------------+---------------+---------------+
//! |   Type (8)    |   Flags (8)   |
//! +-+-------------+---------------+-------------------------------+
//! |R|                 Stream Identifier (31)                      |   0 = the connection itself
//! +=+=============================================================+
//! |                   Frame Payload (0...)                      ...
//! +---------------------------------------------------------------+
//! ```
//!
//! That header is the whole trick of multiplexing: every frame says which
//! stream it belongs to, so frames of different requests can take turns on
//! one connection. The demo and the tests run the bytes the wire tap saw
//! through [`Decoder`]; the abuse tests build frames with [`encode`].

use std::fmt::Write as _;

/// What a client sends first on an HTTP/2 connection (RFC 9113 §3.4).
/// It reads as a nonsense HTTP/1 request, so an HTTP/1-only server fails
/// on it at once instead of misreading the frames that follow.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The size of every frame header.
pub const HEADER_LEN: usize = 9;

/// The largest payload the decoder holds for one frame: the protocol's
/// ceiling (2^24 - 1). A tap transcript is trusted input, but a bound is
/// still a bound.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// DATA and HEADERS: the sender's last frame on this stream.
pub const END_STREAM: u8 = 0x1;
/// SETTINGS and PING: this is the answer, not a question.
pub const ACK: u8 = 0x1;
/// HEADERS (and CONTINUATION): the header block ends in this frame.
pub const END_HEADERS: u8 = 0x4;
/// DATA and HEADERS: a pad length byte opens the payload.
pub const PADDED: u8 = 0x8;
/// HEADERS: 5 bytes of priority follow (the pad length, if any).
pub const PRIORITY: u8 = 0x20;

/// The frame types of RFC 9113.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0x0: body bytes of a stream, flow-controlled.
    Data,
    /// 0x1: a header block (HPACK-compressed): a request or a response head.
    Headers,
    /// 0x2: deprecated stream priority.
    Priority,
    /// 0x3: "cancel this stream", with an error code.
    RstStream,
    /// 0x4: the sender's parameters (or, with ACK, "I applied yours").
    Settings,
    /// 0x5: server push (switched off by every browser; hyper never pushes).
    PushPromise,
    /// 0x6: 8 opaque bytes the peer must echo: liveness and round-trip time.
    Ping,
    /// 0x7: "no streams above this id; I am closing".
    GoAway,
    /// 0x8: "you may send this many more bytes" (a stream's or the connection's).
    WindowUpdate,
    /// 0x9: the rest of a header block too big for one HEADERS frame.
    Continuation,
    /// Any other type: a receiver must ignore it.
    Unknown(u8),
}

impl Kind {
    /// The kind for a type byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Kind::Data,
            1 => Kind::Headers,
            2 => Kind::Priority,
            3 => Kind::RstStream,
            4 => Kind::Settings,
            5 => Kind::PushPromise,
            6 => Kind::Ping,
            7 => Kind::GoAway,
            8 => Kind::WindowUpdate,
            9 => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }

    /// The type byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Headers => 1,
            Kind::Priority => 2,
            Kind::RstStream => 3,
            Kind::Settings => 4,
            Kind::PushPromise => 5,
            Kind::Ping => 6,
            Kind::GoAway => 7,
            Kind::WindowUpdate => 8,
            Kind::Continuation => 9,
            Kind::Unknown(b) => b,
        }
    }
}

/// One frame: its header, decoded, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame type.
    pub kind: Kind,
    /// The flags byte ([`END_STREAM`], [`ACK`], [`END_HEADERS`], ...).
    pub flags: u8,
    /// The stream (0 for frames about the connection).
    pub stream: u32,
    /// The payload, `length` bytes.
    pub payload: Vec<u8>,
}

/// Builds a frame's bytes: the 9-byte header, then the payload.
pub fn encode(kind: Kind, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]); // 24 bits of length
    out.push(kind.byte());
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes()); // R bit left 0
    out.extend_from_slice(payload);
    out
}

/// Reads a frame header: (payload length, type, flags, stream id).
pub fn parse_header(h: &[u8; HEADER_LEN]) -> (usize, Kind, u8, u32) {
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    (len, Kind::from_byte(h[3]), h[4], stream)
}

impl Frame {
    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// For HEADERS: the bytes of the HPACK-compressed header block in this
    /// frame (the payload less padding and priority fields). What HPACK saves
    /// is measured in these.
    pub fn hpack_len(&self) -> usize {
        let mut len = self.payload.len();
        if self.kind != Kind::Headers {
            return 0;
        }
        if self.has(PADDED) {
            let pad = self.payload.first().copied().unwrap_or(0) as usize;
            len = len.saturating_sub(1 + pad);
        }
        if self.has(PRIORITY) {
            len = len.saturating_sub(5);
        }
        len
    }

    /// For RST_STREAM and GOAWAY: the error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            Kind::RstStream => 0,
            Kind::GoAway => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// For SETTINGS: the (identifier, value) pairs, 6 bytes each.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
            })
            .collect()
    }

    /// For WINDOW_UPDATE: the increment; for GOAWAY: the last stream id.
    pub fn u31(&self) -> Option<u32> {
        let b = self.payload.get(0..4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
    }

    /// One line a learner can read: type, stream, flags and what matters in
    /// the payload.
    pub fn describe(&self) -> String {
        let mut s = format!("{:<13} stream {:<2}", kind_name(self.kind), self.stream);
        let flag = |s: &mut String, on: bool, name: &str| {
            if on {
                let _ = write!(s, " {name}");
            }
        };
        match self.kind {
            Kind::Settings if self.has(ACK) => s.push_str(" ACK"),
            Kind::Settings => {
                let list: Vec<String> = self
                    .settings()
                    .iter()
                    .map(|(id, v)| format!("{}={v}", setting_name(*id)))
                    .collect();
                let _ = write!(
                    s,
                    " {}",
                    if list.is_empty() { "(defaults)".into() } else { list.join(" ") }
                );
            }
            Kind::Headers => {
                let _ = write!(s, " HPACK block {} bytes", self.hpack_len());
                flag(&mut s, self.has(END_HEADERS), "END_HEADERS");
                flag(&mut s, self.has(END_STREAM), "END_STREAM");
            }
            Kind::Data => {
                let _ = write!(s, " {} bytes", self.payload.len());
                flag(&mut s, self.has(END_STREAM), "END_STREAM");
            }
            Kind::WindowUpdate => {
                let _ = write!(s, " +{}", self.u31().unwrap_or(0));
            }
            Kind::Ping => {
                flag(&mut s, self.has(ACK), "ACK");
                let _ = write!(s, " opaque {:02x?}", self.payload);
            }
            Kind::RstStream => {
                let _ = write!(s, " {}", error_name(self.error_code().unwrap_or(u32::MAX)));
            }
            Kind::GoAway => {
                let _ = write!(
                    s,
                    " last stream {} {}",
                    self.u31().unwrap_or(0),
                    error_name(self.error_code().unwrap_or(u32::MAX))
                );
            }
            _ => {
                let _ = write!(s, " {} bytes, flags {:#04x}", self.payload.len(), self.flags);
            }
        }
        s
    }
}

/// The frame type's name as the RFC writes it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Data => "DATA",
        Kind::Headers => "HEADERS",
        Kind::Priority => "PRIORITY",
        Kind::RstStream => "RST_STREAM",
        Kind::Settings => "SETTINGS",
        Kind::PushPromise => "PUSH_PROMISE",
        Kind::Ping => "PING",
        Kind::GoAway => "GOAWAY",
        Kind::WindowUpdate => "WINDOW_UPDATE",
        Kind::Continuation => "CONTINUATION",
        Kind::Unknown(_) => "UNKNOWN",
    }
}

/// A SETTINGS identifier's name.
pub fn setting_name(id: u16) -> String {
    match id {
        1 => "HEADER_TABLE_SIZE".into(),
        2 => "ENABLE_PUSH".into(),
        3 => "MAX_CONCURRENT_STREAMS".into(),
        4 => "INITIAL_WINDOW_SIZE".into(),
        5 => "MAX_FRAME_SIZE".into(),
        6 => "MAX_HEADER_LIST_SIZE".into(),
        8 => "ENABLE_CONNECT_PROTOCOL".into(),
        other => format!("0x{other:x}"),
    }
}

/// The error codes of RST_STREAM and GOAWAY.
pub mod code {
    /// Not an error: a graceful GOAWAY.
    pub const NO_ERROR: u32 = 0x0;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// A frame larger than SETTINGS_MAX_FRAME_SIZE (or of the wrong size).
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// The stream was refused before any work was done on it: safe to retry.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// "I no longer want this stream."
    pub const CANCEL: u32 = 0x8;
    /// "You are doing something that looks like an attack; stop."
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// An error code's name.
pub fn error_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => return format!("error 0x{code:x}"),
    };
    name.into()
}

/// What the decoder found: the preface, or a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The client's 24-byte connection preface.
    Preface,
    /// A whole frame.
    Frame(Frame),
}

/// Turns one direction's bytes, fed in the pieces they arrived in, into
/// frames. It keeps a partial frame until the rest arrives.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    expect_preface: bool,
}

/// The bytes do not read as HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotHttp2(pub String);

impl Decoder {
    /// A decoder for what the client sends (preface first).
    pub fn client_side() -> Self {
        Self { buf: Vec::new(), expect_preface: true }
    }

    /// A decoder for what the server sends (frames from the first byte).
    pub fn server_side() -> Self {
        Self { buf: Vec::new(), expect_preface: false }
    }

    /// Adds `bytes` and returns every item now complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Item>, NotHttp2> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        if self.expect_preface {
            let n = self.buf.len().min(PREFACE.len());
            if self.buf[..n] != PREFACE[..n] {
                return Err(NotHttp2(format!(
                    "not the preface: {:?}",
                    String::from_utf8_lossy(&self.buf[..n])
                )));
            }
            if n < PREFACE.len() {
                return Ok(out);
            }
            self.buf.drain(..PREFACE.len());
            self.expect_preface = false;
            out.push(Item::Preface);
        }
        while self.buf.len() >= HEADER_LEN {
            let head: [u8; HEADER_LEN] = self.buf[..HEADER_LEN].try_into().expect("9 bytes");
            let (len, kind, flags, stream) = parse_header(&head);
            if len > MAX_PAYLOAD {
                return Err(NotHttp2(format!("frame of {len} bytes")));
            }
            if self.buf.len() < HEADER_LEN + len {
                break;
            }
            let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
            self.buf.drain(..HEADER_LEN + len);
            out.push(Item::Frame(Frame { kind, flags, stream, payload }));
        }
        Ok(out)
    }

    /// Bytes held back, waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_through_encode_and_decode() {
        let bytes = encode(Kind::WindowUpdate, 0, 3, &1000u32.to_be_bytes());
        assert_eq!(&bytes[..9], &[0, 0, 4, 8, 0, 0, 0, 0, 3]);
        let mut d = Decoder::server_side();
        let items = d.push(&bytes[..5]).expect("partial");
        assert!(items.is_empty());
        let items = d.push(&bytes[5..]).expect("whole");
        let Item::Frame(f) = &items[0] else { panic!("a frame") };
        assert_eq!((f.kind, f.stream, f.u31()), (Kind::WindowUpdate, 3, Some(1000)));
        assert_eq!(f.describe(), "WINDOW_UPDATE stream 3  +1000");
    }

    #[test]
    fn the_preface_comes_first_or_it_is_not_http2() {
        let mut d = Decoder::client_side();
        let mut wire = PREFACE.to_vec();
        wire.extend(encode(Kind::Settings, 0, 0, &[0, 3, 0, 0, 0, 100]));
        let items = d.push(&wire).expect("good");
        assert_eq!(items[0], Item::Preface);
        let Item::Frame(f) = &items[1] else { panic!("a frame") };
        assert_eq!(f.settings(), vec![(3, 100)]);
        assert!(Decoder::client_side().push(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn hpack_len_leaves_out_padding_and_priority() {
        let f = Frame {
            kind: Kind::Headers,
            flags: PADDED | PRIORITY,
            stream: 1,
            payload: vec![2; 20],
        };
        assert_eq!(f.hpack_len(), 20 - 1 - 2 - 5);
    }
}
