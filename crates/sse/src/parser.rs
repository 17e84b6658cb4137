//! An event-stream parser that follows the HTML specification's rules for
//! `text/event-stream` ("Server-sent events", section 9.2.6, "Interpreting an
//! event stream"), so the lesson's client ([`follow`](crate::follow)), its
//! tests and the benchmarks read an SSE stream the way a browser's
//! `EventSource` does.
//!
//! Feed it bytes as they arrive, in chunks of any size (a chunk may end in
//! the middle of a line, of a UTF-8 character, or between the CR and LF of a
//! CRLF); it hands back every event completed so far. The rules, each with a
//! test in `crates/sse/tests/parser.rs`:
//!
//! * A UTF-8 byte order mark at the very start of the stream is dropped.
//! * Lines end with CRLF, LF or CR alone.
//! * A blank line dispatches the event being built.
//! * A line starting with `:` is a comment (servers send them to keep the
//!   connection alive) and is ignored.
//! * Otherwise the field name runs up to the first `:`, and the value is the
//!   rest with one leading space removed; a line with no `:` is a field name
//!   with an empty value.
//! * `event` sets the event type; `data` appends the value and a newline to
//!   the data buffer; `id` sets the last event id, unless the value contains
//!   NUL; `retry` sets the reconnection time if the value is all ASCII
//!   digits; any other field is ignored.
//! * On dispatch: the last event id is kept (it persists across events and
//!   reconnects); with an empty data buffer nothing is dispatched; otherwise
//!   one trailing newline is removed from the data, the type defaults to
//!   `message`, and the data and type buffers are cleared.
//! * An event not ended by a blank line when the stream ends is discarded.

use std::time::Duration;

/// One dispatched event, as `EventSource` would hand it to a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type: the last `event:` value, or `message`.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id at dispatch time (`lastEventId` in the browser).
    pub id: String,
}

/// The parser's state for one event source. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    first_line: bool,
    data: String,
    event_type: String,
    last_event_id: String,
    retry: Option<Duration>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self { first_line: true, ..Self::default() }
    }

    /// The last event id seen (what a reconnect sends as `Last-Event-ID`);
    /// empty if none was set.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the server asked for with `retry:`, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Bytes held for an event not yet dispatched: the unfinished line plus
    /// the data and type gathered so far. The specification sets no limit,
    /// so a server that never ends a line (or an event) makes this grow
    /// without bound; a client that cares checks it after each
    /// [`feed`](Self::feed) and gives up past its own cap.
    pub fn pending_bytes(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    /// Starts a new stream (after a reconnect): drops any half-read line and
    /// half-built event, but keeps the last event id and the reconnection
    /// time, as `EventSource` does.
    pub fn reconnected(&mut self) {
        *self = Self {
            last_event_id: std::mem::take(&mut self.last_event_id),
            retry: self.retry,
            ..Self::new()
        };
    }

    /// Feeds the next bytes of the stream; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for &b in bytes {
            // The LF of a CRLF whose CR ended the previous line.
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                b'\n' => self.end_line(&mut out),
                _ => self.line.push(b),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        let mut raw = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.first_line) && raw.starts_with(BOM) {
            raw.drain(..BOM.len());
        }
        // Lines are split on ASCII bytes, so each line is whole UTF-8 (or
        // broken by the sender, which the spec says to decode with U+FFFD).
        let line = String::from_utf8_lossy(&raw);
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                out.push(ev);
            }
            return;
        }
        if line.starts_with(':') {
            return; // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_event_id),
            "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                // All digits, so only an absurdly long value fails to parse.
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {} // unknown fields, an id with NUL, a bad retry: ignored
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event_type = std::mem::take(&mut self.event_type);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        if data.ends_with('\n') {
            data.pop();
        }
        let event = if event_type.is_empty() { "message".to_owned() } else { event_type };
        Some(Event { event, data, id: self.last_event_id.clone() })
    }
}
