//! What the test files share: the server on a free port with test settings,
//! and `Sub`, one open `/events` response read both as raw text and as
//! events.

#![allow(dead_code)] // each test file uses a different part of this

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use feed::Feed;
use feed::client::HttpClient;
use harness::{TaskServer, within};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use sse::Config;
use sse::parser::{Event, Parser};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn config() -> Config {
    // Long keep-alive by default, so only the keep-alive test sees comments.
    Config { keep_alive: Duration::from_secs(60), retry: Duration::from_millis(1500), queue: 64 }
}

pub async fn start(feed: &Feed, config: Config) -> TaskServer<std::io::Result<()>> {
    let feed = feed.clone();
    TaskServer::start(move |listener, token| sse::serve(listener, feed, config, token))
        .await
        .expect("binding 127.0.0.1:0")
}

/// One open `/events` response, read both as raw text and as events.
pub struct Sub {
    pub _client: HttpClient,
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Incoming,
    pub parser: Parser,
    pub raw: String,
    pub events: VecDeque<Event>,
}

impl Sub {
    pub async fn open(addr: SocketAddr, last_id: Option<&str>) -> Self {
        Self::open_on(HttpClient::new(addr), last_id).await
    }

    pub async fn open_on(mut client: HttpClient, last_id: Option<&str>) -> Self {
        let mut headers = vec![("accept", "text/event-stream")];
        if let Some(id) = last_id {
            headers.push(("last-event-id", id));
        }
        let resp = within(
            WAIT,
            "the stream's head",
            client.open(hyper::Method::GET, "/events", &headers, None),
        )
        .await
        .expect("GET /events");
        let (parts, body) = resp.into_parts();
        Self {
            _client: client,
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            parser: Parser::new(),
            raw: String::new(),
            events: VecDeque::new(),
        }
    }

    /// Reads one more piece of the body; false when the stream ended.
    pub async fn pull(&mut self) -> bool {
        match within(WAIT, "more of the stream", self.body.frame()).await {
            None => false,
            Some(f) => {
                let bytes = f.expect("a body frame").into_data().expect("data, not trailers");
                self.raw.push_str(std::str::from_utf8(&bytes).expect("the stream is UTF-8"));
                self.events.extend(self.parser.feed(&bytes));
                true
            }
        }
    }

    pub async fn raw_until(&mut self, needle: &str) {
        while !self.raw.contains(needle) {
            assert!(self.pull().await, "stream ended before {needle:?}; got {:?}", self.raw);
        }
    }

    pub async fn next_event(&mut self) -> Event {
        loop {
            if let Some(e) = self.events.pop_front() {
                return e;
            }
            assert!(self.pull().await, "stream ended; got {:?}", self.raw);
        }
    }

    pub async fn read_to_end(&mut self) {
        while self.pull().await {}
    }
}

pub fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.id.parse().expect("numeric id")).collect()
}

/// How long [`publish_until_dropped`] waits for the stream to take what was
/// published before it concludes that the server's writes have stopped. Far
/// above the time even a busy machine takes to run the server's task; once
/// the socket is full, each wait costs this once.
pub const STALL: Duration = Duration::from_millis(100);

/// Publishes 1 KB updates four at a time (half the tests' queue of 8) until
/// the feed drops its one subscriber, and returns how many it published.
/// After each four it waits until the subscriber's stream has taken them all
/// from its queue, or [`STALL`] passes: so the queue can only fill once the
/// server cannot write any more, that is once the kernel's buffers towards
/// the stalled reader are full. (A fixed 1 ms pace instead let the publisher
/// of a busy machine outrun the server and drop the subscriber while its
/// socket still had room; a stream that is written to must never overflow.)
pub async fn publish_until_dropped(feed: &Feed) -> u64 {
    let pad = "x".repeat(1000);
    let mut published = 0u64;
    while feed.stats().dropped == 0 {
        assert!(published < 4000, "4000 updates and the stalled subscriber is still queued");
        for _ in 0..4 {
            published += 1;
            feed.publish(json!({ "n": published, "pad": pad }));
        }
        let deadline = tokio::time::Instant::now() + STALL;
        while feed.stats().delivered < published
            && feed.stats().dropped == 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    published
}
