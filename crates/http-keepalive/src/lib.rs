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
mod limits;
pub mod server;

pub use limits::{
    Config, HAND_PORT, HEADER_TIMEOUT, HYPER_PORT, IDLE_TIMEOUT, LINGER, MAX_BODY, MAX_CONNECTIONS,
    MAX_HEAD, MAX_HEADERS, MAX_REQUESTS_PER_CONNECTION, MAX_SLOW, PAGE_RESOURCES, SHUTDOWN_GRACE,
};

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
