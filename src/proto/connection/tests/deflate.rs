//! `permessage-deflate` through the whole connection: negotiation in the 101, compressed messages
//! inflated for the handler, replies compressed, limits and corrupt data.

use super::*;
use crate::proto::deflate::{Compression, RSV1};
use crate::proto::frame::test_frames::b0;
use crate::proto::frame::{Decoded, decode_header};

fn upgrade(extensions: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
    )
    .into_bytes()
}

fn on(max_payload: usize, oversized: Oversized) -> Limits {
    Limits {
        max_payload,
        oversized,
        compression: Some(Compression { min_size: 16 }),
        ..limits()
    }
}

/// A connection upgraded with `extensions` under `limits`, echoing; returns it with the 101.
fn open(extensions: &str, limits: &Limits) -> (Connection, Recorder, Codec, String) {
    let mut conn = Connection::new();
    let mut h = Recorder {
        echo: true,
        ..Recorder::default()
    };
    let mut codec = Codec::new();
    let mut out = Vec::new();
    let status = conn.handle_bytes(
        &mut upgrade(extensions),
        limits,
        &mut codec,
        &mut out,
        &mut h,
    );
    let head = String::from_utf8(out).unwrap();
    (conn, h, codec, format!("{status:?} {head}"))
}

/// A masked client frame with RSV1 set carrying `data` compressed.
fn compressed(codec: &mut Codec, opcode: Opcode, data: &[u8]) -> Vec<u8> {
    let payload = codec.deflate(data, Window::Wide).unwrap().to_vec();
    raw(b0(true, opcode) | RSV1, &payload)
}

/// The server frames in `out`: (first header byte, payload inflated if RSV1).
fn frames(out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut codec = Codec::new();
    let mut pos = 0;
    let mut seen = Vec::new();
    while pos < out.len() {
        let Ok(Decoded::Header(h, n)) = decode_header(&out[pos..]) else {
            panic!("bad frame at {pos}");
        };
        let payload = &out[pos + n..pos + n + h.payload_len as usize];
        let body = if out[pos] & RSV1 != 0 {
            codec.inflate(payload, 1 << 30).unwrap().to_vec()
        } else {
            payload.to_vec()
        };
        seen.push((out[pos], body));
        pos += n + h.payload_len as usize;
    }
    seen
}

#[test]
fn the_answer_has_no_context_takeover_both_ways() {
    let limits = on(1 << 20, Oversized::Fail);
    let (conn, _, _, head) = open(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        &limits,
    );
    assert!(head.starts_with("Open HTTP/1.1 101 "), "{head}");
    assert!(head.contains(
        "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
         client_no_context_takeover\r\n"
    ));
    assert_eq!(conn.deflate(), Some(Window::Wide));
    let (conn, _, _, head) = open("permessage-deflate; server_max_window_bits=9", &limits);
    assert!(
        head.contains("client_no_context_takeover; server_max_window_bits=9\r\n"),
        "{head}"
    );
    assert_eq!(conn.deflate(), Some(Window::Narrow));
    // No acceptable offer: a plain upgrade.
    let (conn, _, _, head) = open("x-webkit-deflate-frame", &limits);
    assert!(head.starts_with("Open HTTP/1.1 101 ") && !head.contains("Extensions"));
    assert_eq!(conn.deflate(), None);
}

#[test]
fn a_malformed_header_is_400_and_ignored_when_compression_is_off() {
    let (conn, _, _, head) = open("permessage-deflate;;", &on(1 << 20, Oversized::Fail));
    assert!(
        head.starts_with("Done HTTP/1.1 400 Bad Request\r\n"),
        "{head}"
    );
    assert!(
        head.ends_with(
            "malformed Sec-WebSocket-Extensions header: extension parameter name is not a token\n"
        ),
        "{head}"
    );
    assert!(!conn.is_open());
    // Off: the header is not even read, and no extension is answered.
    let (conn, _, _, head) = open("permessage-deflate;;", &limits());
    assert!(
        head.starts_with("Open HTTP/1.1 101 ") && !head.contains("Extensions"),
        "{head}"
    );
    let (conn2, _, _, head) = open("permessage-deflate", &limits());
    assert!(!head.contains("Extensions"), "{head}");
    assert_eq!((conn.deflate(), conn2.deflate()), (None, None));
}

#[test]
fn compressed_messages_are_inflated_and_replies_compressed() {
    let limits = on(1 << 20, Oversized::Fail);
    let (mut conn, mut h, mut codec, _) = open("permessage-deflate", &limits);
    let long = "all work and no play makes jack a dull boy ".repeat(20);
    let mut input = [
        compressed(&mut codec, Opcode::Text, long.as_bytes()),
        compressed(&mut codec, Opcode::Binary, b"tiny"),
        client(true, Opcode::Text, long.as_bytes()),
        client(true, Opcode::Text, b"short plain"),
    ]
    .concat();
    let mut out = Vec::new();
    let status = conn.handle_bytes(&mut input, &limits, &mut codec, &mut out, &mut h);
    assert_eq!(status, Status::Open);
    assert_eq!(
        h.recs[1..],
        [
            Rec::Msg(MessageKind::Text, long.clone().into_bytes()),
            Rec::Msg(MessageKind::Binary, b"tiny".to_vec()),
            Rec::Msg(MessageKind::Text, long.clone().into_bytes()),
            Rec::Msg(MessageKind::Text, b"short plain".to_vec()),
        ]
    );
    // Replies of at least min_size (16) go out compressed whether the message came compressed
    // or not; shorter ones go plain.
    let seen = frames(&out);
    assert_eq!(
        seen,
        [
            (0x80 | RSV1 | 1, long.clone().into_bytes()),
            (0x82, b"tiny".to_vec()),
            (0x80 | RSV1 | 1, long.clone().into_bytes()),
            (0x81, b"short plain".to_vec()),
        ]
    );
    assert!(
        out.len() < long.len(),
        "{} bytes for two {}-byte replies",
        out.len(),
        long.len()
    );
}

#[test]
fn a_bomb_is_stopped_at_the_limit() {
    let mut codec = Codec::new();
    let zeros = vec![0u8; 8 << 20];
    let bomb = compressed(&mut codec, Opcode::Binary, &zeros);
    assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
    // Fail: close 1009 (compressed it is far below the limit).
    let limits = on(1 << 20, Oversized::Fail);
    let (mut conn, mut h, mut codec, _) = open("permessage-deflate", &limits);
    let mut out = Vec::new();
    let status = conn.handle_bytes(&mut bomb.clone(), &limits, &mut codec, &mut out, &mut h);
    assert_eq!(status, Status::Closing);
    assert_eq!(out, close_frame(1009, "message too big"));
    assert_eq!(h.close_codes, [1009]);
    assert_eq!(h.recs.len(), 1, "only the open");
    // Discard (PAYLOAD_LIMIT_POLICY=send): reported as oversized, and the connection goes on.
    let limits = on(1 << 20, Oversized::Discard);
    let (mut conn, mut h, mut codec, _) = open("permessage-deflate", &limits);
    let mut out = Vec::new();
    let mut input = [bomb, compressed(&mut codec, Opcode::Text, b"still here")].concat();
    let status = conn.handle_bytes(&mut input, &limits, &mut codec, &mut out, &mut h);
    assert_eq!(status, Status::Open);
    assert_eq!(
        h.recs[1..],
        [Rec::Msg(MessageKind::Text, b"still here".to_vec())]
    );
}

#[test]
fn corrupt_data_and_bad_text_close_with_1007() {
    let limits = on(1 << 20, Oversized::Fail);
    let (mut conn, mut h, mut codec, _) = open("permessage-deflate", &limits);
    let mut out = Vec::new();
    let mut input = raw(b0(true, Opcode::Binary) | RSV1, &[0xff, 0xff, 0xff]);
    let status = conn.handle_bytes(&mut input, &limits, &mut codec, &mut out, &mut h);
    assert_eq!(status, Status::Closing);
    assert_eq!(out, close_frame(1007, "invalid compressed data"));
    // Valid DEFLATE of invalid UTF-8 in a text message.
    let (mut conn, mut h, mut codec, _) = open("permessage-deflate", &limits);
    let mut out = Vec::new();
    let mut input = compressed(&mut codec, Opcode::Text, b"ok \xc3\x28 not");
    let status = conn.handle_bytes(&mut input, &limits, &mut codec, &mut out, &mut h);
    assert_eq!(status, Status::Closing);
    assert_eq!(out, close_frame(1007, "text not UTF-8"));
    // RSV1 on a connection that did not negotiate: 1002.
    let (mut conn, mut h, mut codec, _) = open("x-other", &limits);
    let mut out = Vec::new();
    let mut input = compressed(&mut codec, Opcode::Text, b"hello hello hello");
    let status = conn.handle_bytes(&mut input, &limits, &mut codec, &mut out, &mut h);
    assert_eq!(status, Status::Closing);
    assert_eq!(out, close_frame(1002, "reserved bits set"));
}
