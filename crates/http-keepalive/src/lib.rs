//! Lesson 4: HTTP/1.0's connection per request against HTTP/1.1's persistent
//! connections, pipelining, and the head-of-line blocking that comes with it.
//!
//! One set of routes, served twice: by a small HTTP/1.1 server written by hand
//! over tokio's TCP ([`server`]), so every byte of the protocol is in plain
//! sight, and by hyper ([`hyper_server`]), to see what a production server does
//! for you. A client ([`client`]) fetches a "page" of resources three ways (a
//! new connection per request, one kept connection, all requests pipelined on
//! one connection) through the harness's wire tap, which counts the TCP
//! connections and the bytes each way.
//!
//! Run it:
//!
//! ```text
//! cargo run -p http-keepalive                        # the demo: both servers, the three clients, real bytes
//! cargo run -p http-keepalive -- serve               # hand-written server on 127.0.0.1:7080, hyper on :7081
//! curl -v http://127.0.0.1:7080/ http://127.0.0.1:7080/resource/1   # "Re-using existing connection"
//! cargo run -p http-keepalive -- client --resources 20             # the three ways against `serve`
//! ```
//!
//! The routes (the same on both servers):
//!
//! * `GET /`: a small HTML page that links [`PAGE_RESOURCES`] resources;
//! * `GET /resource/N`: a short text body;
//! * `GET /slow?ms=N`: answers after N milliseconds, capped at [`Config::max_slow`],
//!   the one slow resource that shows head-of-line blocking;
//! * `POST /echo`: sends the request body back, up to [`Config::max_body`] bytes.
//!
//! `HEAD` works wherever `GET` does. The benchmark lives in the bench crate:
//! `cargo run -p bench --release -- keepalive`.

use std::time::Duration;

pub mod client;
pub mod hyper_server;
pub mod server;

/// The port `serve` gives the hand-written server (loopback only).
pub const HAND_PORT: u16 = 7080;
/// The port `serve` gives the hyper server (loopback only).
pub const HYPER_PORT: u16 = 7081;

/// How many resources the page at `/` links. Ten is about what a small page
/// with a stylesheet, a script and a few images asks for.
pub const PAGE_RESOURCES: usize = 10;

/// How long a kept connection may sit with no request before the server closes
/// it. Every idle connection costs a socket and some memory; five seconds is
/// Apache's default (`KeepAliveTimeout 5`): long enough for a browser to ask for
/// the next resource of a page, short enough not to hoard sockets.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to deliver a whole request head once it has sent its
/// first byte (and, again, its body). Without it a "slowloris" client that
/// sends one header line every few seconds holds a connection forever.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many requests one connection may carry before the server closes it
/// (politely: the last response says `Connection: close`). Apache's
/// `MaxKeepAliveRequests` default. A cap lets a server rebalance clients and
/// bounds what one client can do on one socket.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 100;

/// The largest request head (request line plus headers) accepted. Real
/// requests are a few hundred bytes to a few KiB with cookies; 8 KiB is
/// nginx's and Apache's ballpark. Past it: `431 Request Header Fields Too Large`.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields parsed in one request (httparse needs a fixed-size
/// array to parse into). More is answered with 431 too.
pub const MAX_HEADERS: usize = 64;

/// The largest request body accepted (only `/echo` takes one). Past it:
/// `413 Content Too Large`, before a byte of the body is read.
pub const MAX_BODY: usize = 64 * 1024;

/// The cap on `/slow?ms=N`, so nobody can park a connection for an hour.
pub const MAX_SLOW: Duration = Duration::from_secs(10);

/// After the server decides to close, it half-closes (sends FIN) and reads
/// and throws away what the client still sends, for at most this long.
/// Closing a socket that has unread bytes makes the kernel send RST, and an RST
/// can destroy the last response before the client has read it.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long a stopping server waits for in-flight requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How many connections the server serves at once; the next client is
/// answered 503 with `Retry-After: 1` at once and closed. Each connection is a
/// task, a buffer and a file descriptor: the cap keeps a flood from
/// exhausting them, and the 503 tells the client rather than leaving it
/// hanging in the kernel's accept backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// The limits and timeouts of one server. [`Config::default`] uses the named
/// constants above; tests shrink the timeouts so they finish in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`MAX_REQUESTS_PER_CONNECTION`].
    pub max_requests: usize,
    /// See [`MAX_HEAD`].
    pub max_head: usize,
    /// See [`MAX_BODY`].
    pub max_body: usize,
    /// See [`MAX_SLOW`].
    pub max_slow: Duration,
    /// See [`LINGER`].
    pub linger: Duration,
    /// See [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: IDLE_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            max_requests: MAX_REQUESTS_PER_CONNECTION,
            max_head: MAX_HEAD,
            max_body: MAX_BODY,
            max_slow: MAX_SLOW,
            linger: LINGER,
            shutdown_grace: SHUTDOWN_GRACE,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What a route answers, before anyone frames it as HTTP bytes. Both servers
/// call [`route`] and turn its `Reply` into a response their own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body (also its length, for `HEAD`).
    pub body: Vec<u8>,
    /// For 405: the methods the resource does allow (the `Allow` header).
    pub allow: Option<&'static str>,
    /// How long to wait before answering (only `/slow` waits).
    pub delay: Duration,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type, body: body.into(), allow: None, delay: Duration::ZERO }
    }

    fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, TEXT, body.into().into_bytes())
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Methods HTTP defines. A method in this list that a route does not take
/// gets 405 (the server knows it, the resource refuses it); any other token
/// gets 501 (the server does not implement it at all).
const KNOWN_METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

/// The application: a pure function from a request to a [`Reply`], shared by
/// both servers so that they differ only in how they speak HTTP.
///
/// `target` is the request target as sent (`/slow?ms=50`). `HEAD` is routed
/// as `GET`; the server leaves the body out when it writes the response.
pub fn route(method: &str, target: &str, body: &[u8], max_slow: Duration) -> Reply {
    if !KNOWN_METHODS.contains(&method) {
        return Reply::text(501, format!("method {method} is not implemented here\n"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let read_only = method == "GET" || method == "HEAD";
    let refuse = |allow: &'static str| Reply {
        allow: Some(allow),
        ..Reply::text(405, format!("{path} does not take {method}; it takes {allow}\n"))
    };
    if path == "/" {
        if !read_only {
            return refuse("GET, HEAD");
        }
        return Reply::new(200, "text/html; charset=utf-8", page_html());
    }
    if let Some(n) = path.strip_prefix("/resource/") {
        if !read_only {
            return refuse("GET, HEAD");
        }
        return match n.parse::<u32>() {
            Ok(n) => Reply::text(200, format!("resource {n}\n")),
            Err(_) => Reply::text(404, format!("no resource {n:?}; try /resource/1\n")),
        };
    }
    if path == "/slow" {
        if !read_only {
            return refuse("GET, HEAD");
        }
        let ms = query.split('&').find_map(|kv| kv.strip_prefix("ms=")).unwrap_or("100");
        let Ok(ms) = ms.parse::<u64>() else {
            return Reply::text(
                400,
                format!("ms must be a whole number of milliseconds: {ms:?}\n"),
            );
        };
        let delay = Duration::from_millis(ms).min(max_slow);
        return Reply { delay, ..Reply::text(200, format!("slept {} ms\n", delay.as_millis())) };
    }
    if path == "/echo" {
        if method != "POST" {
            return refuse("POST");
        }
        return Reply::new(200, "application/octet-stream", body.to_vec());
    }
    Reply::text(404, format!("nothing at {path}\n"))
}

/// The page at `/`: links to [`PAGE_RESOURCES`] resources, like a page that
/// pulls in images and scripts.
pub fn page_html() -> String {
    let mut html = String::from("<!doctype html>\n<title>keep-alive</title>\n<ul>\n");
    for i in 0..PAGE_RESOURCES {
        html.push_str(&format!("<li><a href=\"/resource/{i}\">resource {i}</a>\n"));
    }
    html.push_str("</ul>\n<p><a href=\"/slow?ms=500\">a slow one</a>\n");
    html
}

/// The reason phrase for the status codes this lesson sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_millis(300);

    #[test]
    fn routes_answer_what_the_chapter_says() {
        assert_eq!(route("GET", "/resource/7", b"", CAP).body, b"resource 7\n");
        assert_eq!(route("GET", "/", b"", CAP).status, 200);
        assert_eq!(route("HEAD", "/", b"", CAP).body, page_html().into_bytes());
        assert_eq!(route("GET", "/nope", b"", CAP).status, 404);
        assert_eq!(route("GET", "/resource/x", b"", CAP).status, 404);
        assert_eq!(route("POST", "/echo", b"abc", CAP).body, b"abc");
    }

    #[test]
    fn slow_is_capped_and_checked() {
        assert_eq!(route("GET", "/slow?ms=50", b"", CAP).delay, Duration::from_millis(50));
        assert_eq!(route("GET", "/slow?ms=999999", b"", CAP).delay, CAP);
        assert_eq!(route("GET", "/slow?ms=soon", b"", CAP).status, 400);
        assert_eq!(route("GET", "/slow", b"", CAP).delay, Duration::from_millis(100));
    }

    #[test]
    fn known_methods_get_405_and_unknown_ones_501() {
        let r = route("DELETE", "/resource/1", b"", CAP);
        assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
        assert_eq!(route("GET", "/echo", b"", CAP).allow, Some("POST"));
        assert_eq!(route("BREW", "/", b"", CAP).status, 501);
    }
}
