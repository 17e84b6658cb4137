//! Tests of the WebSocket helpers, against the RFC's own examples and a tiny
//! tokio-tungstenite echo server.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use harness::ws::{Frame, RawWs, WsClient, opcode};
use harness::{TaskServer, within};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn frames_encode_and_parse_like_rfc_6455_section_5_7() {
    // "A single-frame unmasked text message" containing "Hello".
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (f, used) = Frame::parse(&unmasked).expect("valid").expect("complete");
    assert_eq!((f.fin, f.opcode, f.mask, used), (true, opcode::TEXT, None, 7));
    assert_eq!(f.payload, b"Hello");
    // "A single-frame masked text message" containing "Hello".
    let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let (f, _) = Frame::parse(&masked).expect("valid").expect("complete");
    assert_eq!(f.payload, b"Hello");
    assert_eq!(Frame::client(opcode::TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]).encode(), masked);
    // 256 bytes: the 126 form, with a 16-bit length.
    let long = Frame::client(opcode::BINARY, &[7u8; 256], [1, 2, 3, 4]).encode();
    assert_eq!(&long[..4], &[0x82, 0x80 | 126, 0x01, 0x00]);
    let (f, used) = Frame::parse(&long).expect("valid").expect("complete");
    assert_eq!((f.payload.len(), used), (256, long.len()));
    // Any prefix is "not yet".
    for cut in 0..long.len() {
        assert_eq!(Frame::parse(&long[..cut]).expect("valid"), None, "prefix of {cut}");
    }
    // A close frame's code and reason.
    let close =
        Frame { fin: true, opcode: opcode::CLOSE, mask: None, payload: b"\x03\xe9bye".to_vec() };
    assert_eq!((close.close_code(), close.close_reason().as_str()), (Some(1001), "bye"));
}

/// Echoes text; on "close" answers with close 4001 "asked to".
async fn echo_server() -> TaskServer<()> {
    TaskServer::start(|listener, token| async move {
        loop {
            let stream = tokio::select! {
                () = token.cancelled() => return,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => return },
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) if t.as_str() == "close" => {
                            let frame = CloseFrame {
                                code: CloseCode::from(4001),
                                reason: "asked to".into(),
                            };
                            let _ = ws.close(Some(frame)).await;
                        }
                        Message::Text(t) => {
                            let _ = ws.send(Message::Text(t)).await;
                        }
                        _ => {}
                    }
                }
            });
        }
    })
    .await
    .expect("bind")
}

#[tokio::test]
async fn ws_client_sends_receives_and_sees_the_close_code() {
    let server = echo_server().await;
    let mut c = WsClient::connect(&format!("ws://{}/", server.addr())).await.expect("connect");
    c.send_json(&json!({"a": 1})).await.expect("send");
    assert_eq!(c.recv_json(WAIT).await.expect("echo"), json!({"a": 1}));
    let quiet = c.recv_text(Duration::from_millis(50)).await.expect_err("nothing to read");
    assert_eq!(quiet.kind(), std::io::ErrorKind::TimedOut);
    c.send_text("close").await.expect("send");
    c.expect_close(WAIT, 4001, "asked").await;
    server.shutdown().await;
}

#[tokio::test]
async fn raw_ws_does_the_handshake_and_reads_frames() {
    let server = echo_server().await;
    let mut raw = RawWs::connect(server.addr(), "/").await.expect("upgrade");
    assert!(raw.response_head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{}", raw.response_head);
    raw.send_text_frame(b"hi").await.expect("send");
    let f = within(WAIT, "the echo", raw.read_frame(WAIT)).await.expect("read").expect("a frame");
    assert_eq!((f.opcode, f.mask, f.payload.as_slice()), (opcode::TEXT, None, &b"hi"[..]));
    raw.send_text_frame(b"close").await.expect("send");
    let close = raw.read_until_close(WAIT).await.expect("read").expect("a close frame");
    assert_eq!(close.close_code(), Some(4001));
    server.shutdown().await;
}

#[test]
fn a_hostile_64_bit_length_is_an_error_not_a_panic() {
    // FIN + text, no mask, length 127 => the next 8 bytes: u64::MAX.
    let mut frame = vec![0x81, 0x7F];
    frame.extend_from_slice(&u64::MAX.to_be_bytes());
    assert!(harness::ws::Frame::parse(&frame).is_err());
    // A large but representable length is simply incomplete.
    let mut big = vec![0x81, 0x7F];
    big.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert!(matches!(harness::ws::Frame::parse(&big), Ok(None)));
}
