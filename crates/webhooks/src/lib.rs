//! Lesson 17: webhooks, one server telling another. Signed, retried, kept,
//! and applied once.
//!
//! Instead of a client asking "anything new?" (lessons 5 to 7), the server
//! that has news POSTs it to a URL the other side registered. A toy sends
//! one POST and forgets it. This lesson builds what real senders and
//! receivers do around that POST:
//!
//! * **The sender** ([`sender`]): `POST /endpoints` registers a loopback URL
//!   and returns its `whsec_` secret; `POST /events` writes the event and a
//!   delivery per endpoint into a SQLite outbox ([`outbox`]) in one
//!   transaction, and answers 202 only after the commit. A worker delivers
//!   each with a timeout, retries failures with exponential backoff and full
//!   jitter, gives up after a limit, disables an endpoint that keeps
//!   failing, and gives each endpoint its own few slots, so one dead
//!   receiver does not hold up the rest. `GET /endpoints/{id}` shows the
//!   endpoint and its delivery log.
//! * **Signatures** ([`signature`]): the Standard Webhooks specification's
//!   `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64
//!   HMAC-SHA256>` headers, with rotation (two signatures in the overlap),
//!   checked against the specification's test vector.
//! * **The receiver** ([`receiver`]): verifies in constant time over the
//!   raw body, refuses timestamps outside five minutes, stores each
//!   `webhook-id` once, answers 204, and applies the event after.
//!
//! Run it:
//!
//! ```text
//! cargo run -p webhooks                      # the demo: a flaky receiver, retries, each event applied once
//! cargo run -p webhooks -- serve --db "$(mktemp -d)/outbox.sqlite"   # the sender on 127.0.0.1:7170, until Ctrl-C
//! cargo run -p webhooks -- client register http://127.0.0.1:7171/hook
//! cargo run -p webhooks -- client send order.paid '{"order": 42}'
//! cargo run -p webhooks -- client show 1
//! ```
//!
//! The chapter, docs/17-webhooks.md, walks through the code in the order
//! of a delivery: accept, sign, send, retry, verify, dedupe, apply.

pub mod outbox;
pub mod receiver;
pub mod sender;
pub mod signature;

pub use outbox::{Accepted, DisablePolicy, EndpointView, Outbox, Totals};
pub use receiver::{Fault, Receiver, ReceiverConfig};
pub use sender::{Sender, SenderConfig, check_target, check_url};
pub use signature::Secret;

/// Where `serve` puts the sender's API.
pub const SENDER_ADDR: &str = "127.0.0.1:7170";
/// Where `serve` puts the receiver.
pub const RECEIVER_ADDR: &str = "127.0.0.1:7171";
