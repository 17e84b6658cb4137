//! What the demo claims about the wire, checked on the bytes the tap saw.

mod common;

use common::{STEP, Server};
use harness::Direction;
use http2::Config;
use http2::frames::{self, Frame, Item, Kind, code};
use http2::show::{self, REPEATS};

/// (direction, type, stream, flags) of one frame.
type Step = (Direction, Kind, u32, u8);

fn frames_of(seen: &[show::Seen], direction: Direction) -> Vec<Frame> {
    seen.iter()
        .filter(|s| s.direction == direction)
        .filter_map(|s| match &s.item {
            Item::Frame(f) => Some(f.clone()),
            Item::Preface => None,
        })
        .collect()
}

#[tokio::test]
async fn three_streams_interleave_on_one_connection_and_every_frame_kind_shows() {
    let server = Server::start(Config::default()).await;
    let stop = server.server.token();
    let ex = harness::within(
        STEP,
        "the three-stream exchange",
        show::three_streams(server.addr(), stop),
    )
    .await
    .expect("the exchange runs");
    assert_eq!(ex.streams, [1, 3, 5], "client streams are odd and rising");
    // The preface opens the client's side, then its SETTINGS.
    assert!(matches!(ex.seen[0].item, Item::Preface), "first: {:?}", ex.seen[0]);
    let up = frames_of(&ex.seen, Direction::ToServer);
    let down = frames_of(&ex.seen, Direction::ToClient);
    assert_eq!(up[0].kind, Kind::Settings);
    assert_eq!(down[0].kind, Kind::Settings);
    assert!(down[0].settings().contains(&(3, http2::limits::MAX_CONCURRENT_STREAMS)));
    assert!(down[0].settings().contains(&(5, http2::limits::MAX_FRAME_SIZE)));
    for side in [&up, &down] {
        assert!(
            side.iter().any(|f| f.kind == Kind::Settings && f.has(frames::ACK)),
            "SETTINGS ACK"
        );
        assert!(side.iter().any(|f| f.kind == Kind::Ping && !f.has(frames::ACK)), "PING");
        assert!(side.iter().any(|f| f.kind == Kind::Ping && f.has(frames::ACK)), "PING ACK");
        assert!(side.iter().any(|f| f.kind == Kind::GoAway), "GOAWAY");
    }
    // The three requests went out before any answer came back.
    let order: Vec<Step> = ex
        .seen
        .iter()
        .filter_map(|s| match &s.item {
            Item::Frame(f) => Some((s.direction, f.kind, f.stream, f.flags)),
            Item::Preface => None,
        })
        .collect();
    let pos =
        |want: &dyn Fn(&Step) -> bool| order.iter().position(want).expect("the frame is there");
    let last_request = pos(&|f| f.0 == Direction::ToServer && f.1 == Kind::Headers && f.2 == 5);
    let first_answer = pos(&|f| f.0 == Direction::ToClient && f.1 == Kind::Headers);
    assert!(last_request < first_answer, "{order:?}");
    // The slow stream, asked first, ends after both others: no head-of-line blocking.
    let end_of = |stream: u32| {
        pos(&|f| {
            f.0 == Direction::ToClient
                && f.1 == Kind::Data
                && f.2 == stream
                && f.3 & frames::END_STREAM != 0
        })
    };
    assert!(end_of(1) > end_of(3) && end_of(1) > end_of(5), "{order:?}");
    // 64 KiB needs more than the 65,535-byte stream window: a WINDOW_UPDATE for stream 3.
    assert!(up.iter().any(|f| f.kind == Kind::WindowUpdate && f.stream == 3), "{up:?}");
    let rst = up.iter().find(|f| f.kind == Kind::RstStream).expect("RST_STREAM");
    assert_eq!((rst.stream, rst.error_code()), (ex.cancelled, Some(code::CANCEL)));
    let goaway = down.iter().rfind(|f| f.kind == Kind::GoAway).expect("GOAWAY");
    assert_eq!(goaway.error_code(), Some(code::NO_ERROR));
    assert_eq!(goaway.u31(), Some(ex.cancelled), "the last stream the server saw");
}

#[tokio::test]
async fn hpack_sends_a_repeated_request_in_a_fraction_of_its_first_size() {
    let server = Server::start(Config::default()).await;
    let h = harness::within(STEP, "header counts", show::header_bytes(server.addr()))
        .await
        .expect("both runs");
    for v in [&h.h2_requests, &h.h2_responses, &h.h1_requests, &h.h1_responses] {
        assert_eq!(v.len(), REPEATS, "{h:?}");
    }
    // HTTP/1.1 sends the same text every time.
    assert!(h.h1_requests.iter().all(|&n| n == h.h1_requests[0]), "{h:?}");
    // HPACK: the first request fills the dynamic table, later ones point into it.
    let (first, second, last) = (h.h2_requests[0], h.h2_requests[1], h.h2_requests[REPEATS - 1]);
    assert!(second * 2 < first, "{first} then {second}");
    assert_eq!(second, last);
    assert!(second * 4 < h.h1_requests[0], "{second} against {}", h.h1_requests[0]);
    assert!(h.h2_responses[1] * 4 < h.h1_responses[1], "{h:?}");
}
