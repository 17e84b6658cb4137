//! What is still plain text in a TLS 1.3 handshake, decoded from the bytes
//! the wire tap saw.
//!
//! Every TLS byte travels in a *record*: a 5-byte header (content type,
//! a legacy version, a length) and up to 16 KiB of body. In TLS 1.3 only
//! the first message each way is readable: the client's ClientHello and the
//! server's ServerHello. From the ServerHello on, both sides share a key,
//! and every later record (the server's certificate included) is encrypted
//! and wears the same disguise: content type 23, "application data",
//! version 0x0303, so a middlebox cannot tell the handshake's end from data.
//!
//! Nothing here trusts its input: every length is checked, and a short or
//! odd message decodes to `None` rather than a panic.

/// Content type 20: ChangeCipherSpec, sent in TLS 1.3 only to calm
/// middleboxes that expect TLS 1.2's shape (RFC 8446, appendix D.4).
pub const CHANGE_CIPHER_SPEC: u8 = 20;
/// Content type 21: an alert (plain only before the keys exist).
pub const ALERT: u8 = 21;
/// Content type 22: a handshake message in the clear.
pub const HANDSHAKE: u8 = 22;
/// Content type 23: application data, and in TLS 1.3 every encrypted record.
pub const APPLICATION_DATA: u8 = 23;

/// The record header's length.
pub const RECORD_HEADER: usize = 5;

/// One record as it crossed the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Where it starts in the byte stream it came from.
    pub offset: usize,
    /// 20, 21, 22 or 23 (see the constants).
    pub content_type: u8,
    /// The legacy version field: 0x0301 or 0x0303, never 0x0304 (the real
    /// version is negotiated in an extension, because old servers broke on
    /// numbers they did not know).
    pub legacy_version: u16,
    /// The body, without the header.
    pub body: &'a [u8],
}

impl Record<'_> {
    /// Header and body: the bytes this record took on the wire.
    pub fn wire_len(&self) -> usize {
        RECORD_HEADER + self.body.len()
    }

    /// The content type's name.
    pub fn type_name(&self) -> &'static str {
        match self.content_type {
            CHANGE_CIPHER_SPEC => "change_cipher_spec",
            ALERT => "alert",
            HANDSHAKE => "handshake",
            APPLICATION_DATA => "application_data",
            _ => "unknown",
        }
    }
}

/// Splits a byte stream into records. A record cut off at the end (the tap
/// saw only part of it) is left out.
pub fn records(stream: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = stream.get(at..at + RECORD_HEADER) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(body) = stream.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else { break };
        out.push(Record {
            offset: at,
            content_type: header[0],
            legacy_version: u16::from_be_bytes([header[1], header[2]]),
            body,
        });
        at += RECORD_HEADER + len;
    }
    out
}

/// What a ClientHello says in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// Cipher suites offered, in the client's order of preference.
    pub cipher_suites: Vec<u16>,
    /// The server name (SNI), in the clear: anyone on the path sees which
    /// site you visit, even over TLS 1.3.
    pub server_name: Option<String>,
    /// Application protocols offered (ALPN), e.g. `http/1.1`.
    pub alpn: Vec<String>,
    /// Versions offered in `supported_versions` (0x0304 is TLS 1.3).
    pub versions: Vec<u16>,
    /// Key exchange groups the client supports.
    pub groups: Vec<u16>,
    /// Groups the client already sent a key share for: guessing right saves
    /// a round trip (a wrong guess costs a HelloRetryRequest).
    pub key_shares: Vec<u16>,
    /// Whether it offers a pre-shared key: a ticket from an earlier
    /// connection, i.e. it asks to resume.
    pub offers_psk: bool,
}

/// What a ServerHello says in the clear: the last readable message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// The cipher suite chosen.
    pub cipher_suite: u16,
    /// The version chosen, from `supported_versions` (0x0304 for 1.3).
    pub version: Option<u16>,
    /// The group of the server's key share.
    pub key_share: Option<u16>,
    /// Whether the server accepted the client's pre-shared key (resumed).
    pub accepted_psk: bool,
}

/// A bounds-checked reader over a message: every read returns `None` past
/// the end instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Option<Reader<'a>> {
        let n = self.u8()?;
        self.take(usize::from(n)).map(Reader)
    }
    fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = self.u16()?;
        self.take(usize::from(n)).map(Reader)
    }
    fn u16s(mut self) -> Vec<u16> {
        let mut out = Vec::new();
        while let Some(v) = self.u16() {
            out.push(v);
        }
        out
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The handshake message in a plain handshake record: (type, body).
/// Type 1 is ClientHello, 2 ServerHello.
fn handshake_message(record: &[u8]) -> Option<(u8, &[u8])> {
    let mut r = Reader(record);
    let kind = r.u8()?;
    let len = r.u24()?;
    Some((kind, r.take(len)?))
}

/// Extension numbers this decoder reads (IANA "TLS ExtensionType Values").
const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_ALPN: u16 = 16;
const EXT_PRE_SHARED_KEY: u16 = 41;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_KEY_SHARE: u16 = 51;

/// Decodes a ClientHello from the body of the client's first record.
pub fn client_hello(record_body: &[u8]) -> Option<ClientHello> {
    let (1, body) = handshake_message(record_body)? else { return None };
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    let cipher_suites = r.vec16()?.u16s();
    r.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello { cipher_suites, ..ClientHello::default() };
    let mut exts = r.vec16()?;
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let mut data = exts.vec16()?;
        match kind {
            EXT_SERVER_NAME => {
                let mut list = data.vec16()?;
                if list.u8()? == 0 {
                    let name = list.vec16()?;
                    hello.server_name = Some(String::from_utf8_lossy(name.0).into_owned());
                }
            }
            EXT_ALPN => {
                let mut list = data.vec16()?;
                while !list.is_empty() {
                    hello.alpn.push(String::from_utf8_lossy(list.vec8()?.0).into_owned());
                }
            }
            EXT_SUPPORTED_VERSIONS => hello.versions = data.vec8()?.u16s(),
            EXT_SUPPORTED_GROUPS => hello.groups = data.vec16()?.u16s(),
            EXT_KEY_SHARE => {
                let mut shares = data.vec16()?;
                while !shares.is_empty() {
                    hello.key_shares.push(shares.u16()?);
                    shares.vec16()?;
                }
            }
            EXT_PRE_SHARED_KEY => hello.offers_psk = true,
            _ => {}
        }
    }
    Some(hello)
}

/// Decodes a ServerHello from the body of the server's first record.
pub fn server_hello(record_body: &[u8]) -> Option<ServerHello> {
    let (2, body) = handshake_message(record_body)? else { return None };
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id_echo
    let cipher_suite = r.u16()?;
    r.u8()?; // legacy_compression_method
    let mut hello = ServerHello { cipher_suite, ..ServerHello::default() };
    let mut exts = r.vec16()?;
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let mut data = exts.vec16()?;
        match kind {
            EXT_SUPPORTED_VERSIONS => hello.version = data.u16(),
            EXT_KEY_SHARE => hello.key_share = data.u16(),
            EXT_PRE_SHARED_KEY => hello.accepted_psk = true,
            _ => {}
        }
    }
    Some(hello)
}

/// A name for a cipher suite number, or its hex.
pub fn suite_name(suite: u16) -> String {
    match suite {
        0x1301 => "TLS_AES_128_GCM_SHA256".into(),
        0x1302 => "TLS_AES_256_GCM_SHA384".into(),
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256".into(),
        0xc02b => "ECDHE_ECDSA_AES_128_GCM (1.2)".into(),
        0xc02c => "ECDHE_ECDSA_AES_256_GCM (1.2)".into(),
        0xc02f => "ECDHE_RSA_AES_128_GCM (1.2)".into(),
        0xc030 => "ECDHE_RSA_AES_256_GCM (1.2)".into(),
        0xcca8 => "ECDHE_RSA_CHACHA20 (1.2)".into(),
        0xcca9 => "ECDHE_ECDSA_CHACHA20 (1.2)".into(),
        0x00ff => "renegotiation SCSV".into(),
        other => format!("0x{other:04x}"),
    }
}

/// A name for a key exchange group number, or its hex.
pub fn group_name(group: u16) -> String {
    match group {
        0x001d => "x25519".into(),
        0x0017 => "secp256r1".into(),
        0x0018 => "secp384r1".into(),
        0x11ec => "X25519MLKEM768".into(),
        other => format!("0x{other:04x}"),
    }
}

/// A name for a version number, or its hex.
pub fn version_name(version: u16) -> String {
    match version {
        0x0301 => "TLS 1.0".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("0x{other:04x}"),
    }
}
