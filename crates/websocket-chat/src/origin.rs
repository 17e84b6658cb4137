//! Which web pages may talk to this server: the `Origin` check.
//!
//! A browser runs code from every site its user visits, and that code may
//! open a WebSocket to any address, `ws://127.0.0.1:7093` included. The
//! same-origin policy, which stops a page on one site from reading another
//! site's HTTP responses, does not apply to WebSockets: once the handshake
//! succeeds, the page reads and writes freely. And the browser sends the
//! user's cookies for the target with the handshake. So without a check, a
//! page on `evil.example` could chat, or subscribe, as the learner
//! ("cross-site WebSocket hijacking").
//!
//! What the browser does do is say who is asking: every handshake a page
//! starts carries an `Origin` header (`http://evil.example`, or `null` for a
//! sandboxed frame or a `file://` page) that the page's script cannot change.
//! Only the server can act on it, and [`Origins::check`] does:
//!
//! * no `Origin` at all: not a browser (websocat, curl, the lessons' Rust
//!   clients). Those could send any header they liked, so refusing them
//!   would protect nothing; they are allowed.
//! * the server's own origin: the page this server served itself. That is
//!   `http://` (or `https://`, behind `serve --tls`) plus the `Host` the
//!   request came in on, when that host is a loopback name (`127.0.0.1`,
//!   `localhost`, `[::1]`). Checking the name matters: with DNS rebinding,
//!   `evil.example` can resolve to 127.0.0.1, and then its page's Origin and
//!   Host agree with each other, but neither names this machine.
//! * an origin the operator added (`serve --allow-origin URL`).
//!
//! Anything else gets HTTP 403 before the upgrade.

use axum::http::{HeaderMap, header};

/// Host names that mean "this machine". A server on loopback is only
/// reachable under these (and under names that DNS rebinding points here,
/// which is exactly what this list keeps out).
const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The allow list. The default allows no browser origin but the server's own.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    extra: Vec<String>,
}

impl Origins {
    /// The server's own origin plus `extra`, each checked with
    /// [`parse_origin`].
    pub fn new<S: AsRef<str>>(extra: &[S]) -> Result<Self, String> {
        let extra = extra.iter().map(|o| parse_origin(o.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self { extra })
    }

    /// `Ok(None)`: the request has no `Origin` (not a browser). `Ok(Some)`:
    /// a browser origin that is allowed, normalized. `Err`: a sentence for
    /// the 403.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<String>, String> {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err("more than one Origin header".into());
        }
        let Ok(origin) = value.to_str() else {
            return Err("the Origin header is not ASCII".into());
        };
        let origin = origin.trim().to_ascii_lowercase();
        if self.extra.contains(&origin) || is_own(&origin, headers) {
            Ok(Some(origin))
        } else {
            Err(format!("pages from origin {origin:?} may not use this server"))
        }
    }
}

/// Is `origin` (lowercase) the page this server served, reached on the
/// loopback name and port in `Host`?
fn is_own(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    // The name is what comes before the port: `127.0.0.1:7093` -> `127.0.0.1`,
    // `[::1]:7093` -> `[::1]`. A colon with a `]` after it is inside an IPv6
    // address, not before a port.
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host.as_str(),
    };
    // The page may have come over plain HTTP or, with `serve --tls`, HTTPS.
    LOOPBACK_NAMES.contains(&name)
        && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

/// The command line's side of the allow list, for every WebSocket lesson's
/// `serve`: `--allow-origin URL`, repeatable, each checked by
/// [`parse_origin`] before the server starts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllowOrigins {
    /// Let pages from this origin (e.g. http://localhost:8000) use the
    /// server too, as the server's own pages always may; repeat for
    /// several. Only for pages you trust: they can do whatever the
    /// learner could.
    #[arg(long = "allow-origin", value_name = "URL", value_parser = parse_origin)]
    pub origins: Vec<String>,
}

/// Checks an origin for the allow list: `http://` or `https://`, a host, an
/// optional port, and nothing after (a trailing `/` is dropped). Returns it
/// in lowercase, the form browsers send.
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    if origin == "null" {
        // Sandboxed frames and file:// pages on *any* site send `null`:
        // allowing it would allow everybody.
        return Err("the origin `null` cannot be allowed: pages on any site can send it".into());
    }
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("{raw:?}: an origin starts with http:// or https://"))?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c);
    if rest.is_empty() || rest.contains(bad) {
        return Err(format!("{raw:?}: an origin is scheme://host[:port], with no path"));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).expect("ascii"));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("ascii"));
        }
        h
    }

    #[test]
    fn own_origin_on_each_loopback_name() {
        let o = Origins::default();
        for host in ["127.0.0.1:7093", "localhost:7093", "[::1]:7093", "LocalHost:7093"] {
            let origin = format!("http://{}", host.to_ascii_lowercase());
            assert!(o.check(&headers(host, Some(&origin))).is_ok(), "{host}");
        }
        // Another port is another origin, over either scheme.
        assert!(o.check(&headers("127.0.0.1:7093", Some("http://127.0.0.1:8000"))).is_err());
        assert!(o.check(&headers("127.0.0.1:7093", Some("https://127.0.0.1:8000"))).is_err());
        // https on the same host and port is this server's own page too: only
        // this server can listen there, and with `serve --tls` it serves the
        // page over https.
        assert!(o.check(&headers("127.0.0.1:7093", Some("https://127.0.0.1:7093"))).is_ok());
        // DNS rebinding: Host and Origin agree, but do not name this machine.
        let rebound = headers("evil.example:7093", Some("http://evil.example:7093"));
        assert!(o.check(&rebound).is_err());
    }

    #[test]
    fn no_origin_is_not_a_browser() {
        assert_eq!(Origins::default().check(&headers("x", None)), Ok(None));
    }

    #[test]
    fn extra_origins_are_matched_exactly() {
        let o = Origins::new(&["http://Notes.example:8080/"]).expect("valid");
        let h = headers("127.0.0.1:7093", Some("http://notes.example:8080"));
        assert_eq!(o.check(&h), Ok(Some("http://notes.example:8080".into())));
        assert!(o.check(&headers("127.0.0.1:7093", Some("http://notes.example"))).is_err());
    }

    #[test]
    fn allow_list_entries_are_checked() {
        for bad in ["null", "notes.example", "http://", "http://a/b", "ftp://a", "http://a b"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_origin("HTTP://A:1/"), Ok("http://a:1".into()));
    }
}
