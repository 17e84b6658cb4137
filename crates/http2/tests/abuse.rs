//! Bad input and abuse, each sent by a raw client that writes frames by
//! hand. Each time the server refuses it with the protocol's own error, does
//! bounded work, and still answers a good client within a second.

mod common;

use common::{Raw, STEP, Server, get_frame};
use http2::frames::{self, Kind, code};
use http2::{Config, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_wrong_preface_is_refused_and_the_server_stays_up() {
    let server = Server::start(Config::default()).await;
    // Starts like HTTP/2's preface, then is not: the HTTP/2 side refuses it.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await.expect("send");
    let frames = raw.until_closed().await;
    assert!(frames.iter().all(|f| f.kind != Kind::Headers), "{frames:?}");
    assert_eq!(Stats::get(&server.stats.requests), 0);
    // Not HTTP at all: the HTTP/1.1 side answers 400 and closes.
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    tcp.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.expect("send");
    let mut answer = Vec::new();
    harness::within(STEP, "the 400", tcp.read_to_end(&mut answer)).await.expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{:?}", String::from_utf8_lossy(&answer));
    server.still_answers().await;
}

#[tokio::test]
async fn an_oversized_frame_ends_the_connection_with_frame_size_error() {
    let server = Server::start(Config::default()).await;
    let mut raw = Raw::start(server.addr()).await;
    // One byte over SETTINGS_MAX_FRAME_SIZE: the header alone says so, and
    // the server need not buffer the payload to refuse it.
    let too_big = vec![0u8; http2::limits::MAX_FRAME_SIZE as usize + 1];
    let _ = raw.send(&frames::encode(Kind::Headers, frames::END_HEADERS, 1, &too_big)).await;
    let goaway = raw.until(|f| f.kind == Kind::GoAway).await.expect("a GOAWAY");
    assert_eq!(goaway.error_code(), Some(code::FRAME_SIZE_ERROR));
    assert_eq!(Stats::get(&server.stats.requests), 0);
    server.still_answers().await;
}

#[tokio::test]
async fn streams_past_max_concurrent_streams_are_refused() {
    const MAX: u32 = 8;
    const OPENED: u32 = 12;
    let server = Server::start(Config { max_concurrent_streams: MAX, ..Config::default() }).await;
    let mut raw = Raw::start(server.addr()).await;
    let mut burst = Vec::new();
    for i in 0..OPENED {
        burst.extend(get_frame(1 + 2 * i, "/slow?ms=300"));
    }
    raw.send(&burst).await.expect("send");
    let (mut refused, mut answered) = (0, 0);
    while refused + answered < OPENED {
        let f = raw.next().await.expect("the server answers every stream");
        if f.kind == Kind::RstStream {
            assert_eq!(f.error_code(), Some(code::REFUSED_STREAM), "{f:?}");
            refused += 1;
        }
        if f.kind == Kind::Data && f.has(frames::END_STREAM) {
            answered += 1;
        }
    }
    assert_eq!((answered, refused), (MAX, OPENED - MAX));
    assert_eq!(Stats::get(&server.stats.requests), u64::from(MAX), "refused streams cost no work");
    server.still_answers().await;
}

#[tokio::test]
async fn a_header_block_that_never_ends_is_cut_off() {
    let server = Server::start(Config::default()).await;
    // 1,000 CONTINUATION frames of 1 KiB: the server would have to buffer
    // them all to decode the block.
    let goaway = common::continuation_flood(server.addr(), 1_000).await.expect("a GOAWAY");
    assert_eq!(goaway.error_code(), Some(code::ENHANCE_YOUR_CALM), "{goaway:?}");
    assert_eq!(Stats::get(&server.stats.requests), 0);
    server.still_answers().await;
}

#[tokio::test]
async fn a_rapid_reset_flood_is_stopped_after_a_bounded_amount_of_work() {
    let server = Server::start(Config::default()).await;
    // Each pair costs the client ~30 bytes and, without a limit, costs the
    // server a task.
    const PAIRS: u32 = 10_000;
    let (goaway, sent) = common::rapid_reset_flood(server.addr(), PAIRS).await;
    let goaway = goaway.expect("a GOAWAY");
    assert_eq!(goaway.error_code(), Some(code::ENHANCE_YOUR_CALM), "{goaway:?}");
    let work = Stats::get(&server.stats.requests);
    assert!(work < u64::from(PAIRS) / 10, "{work} requests handled of {sent} sent");
    server.still_answers().await;
}
