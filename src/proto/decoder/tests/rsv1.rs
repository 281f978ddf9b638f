//! RSV1 ("Per-Message Compressed", RFC 7692 §6): allowed on the first frame of a data message when
//! `permessage-deflate` was negotiated, a protocol error everywhere else.

use super::*;
use crate::proto::frame::test_frames::{b0, raw};

/// The first header byte with RSV1 set.
fn rsv1(fin: bool, opcode: Opcode) -> u8 {
    b0(fin, opcode) | 0x40
}

fn deflating() -> Decoder {
    Decoder::with_deflate(Some(Window::Wide))
}

#[test]
fn without_negotiation_rsv1_is_a_protocol_error() {
    let mut d = Decoder::new();
    let evs = run(&mut d, &[&raw(rsv1(true, Opcode::Text), b"x")], 100);
    assert_eq!(evs, [Ev::Error(ProtocolError::ReservedBits)]);
    assert_eq!(
        ProtocolError::ReservedBits.close_code(),
        CloseCode::PROTOCOL
    );
}

#[test]
fn compressed_messages_are_reported_whole_and_unvalidated() {
    let mut d = deflating();
    // Not UTF-8 (it is compressed), whole in one chunk.
    let evs = run(&mut d, &[&raw(rsv1(true, Opcode::Text), b"\xff\xfe")], 100);
    assert_eq!(
        evs,
        [Ev::Compressed(MessageKind::Text, b"\xff\xfe".to_vec())]
    );
    // Fragmented, with a ping between fragments and the chunks cut anywhere.
    let stream = cat(&[
        raw(rsv1(false, Opcode::Binary), b"abc"),
        client(true, Opcode::Ping, b"p"),
        raw(b0(false, Opcode::Continuation), b"\xffdef"),
        raw(b0(true, Opcode::Continuation), b"g"),
        client(true, Opcode::Text, b"plain"),
    ]);
    for cut in 0..stream.len() {
        let mut d = deflating();
        let evs = run(&mut d, &[&stream[..cut], &stream[cut..]], 100);
        assert_eq!(
            evs,
            [
                Ev::Ping(b"p".to_vec()),
                Ev::Compressed(MessageKind::Binary, b"abc\xffdefg".to_vec()),
                Ev::Msg(MessageKind::Text, b"plain".to_vec()),
            ],
            "cut at {cut}"
        );
    }
}

#[test]
fn rsv1_elsewhere_is_a_protocol_error() {
    for frames in [
        // On a continuation frame.
        vec![
            raw(rsv1(false, Opcode::Text), b"a"),
            raw(rsv1(true, Opcode::Continuation), b"b"),
        ],
        vec![
            client(false, Opcode::Text, b"a"),
            raw(rsv1(true, Opcode::Continuation), b"b"),
        ],
        // On control frames.
        vec![raw(rsv1(true, Opcode::Ping), b"")],
        vec![raw(rsv1(true, Opcode::Close), &[3, 232])],
    ] {
        let mut d = deflating();
        let evs = run(&mut d, &[&cat(&frames)], 100);
        assert_eq!(
            evs.last(),
            Some(&Ev::Error(ProtocolError::ReservedBits)),
            "{frames:?}"
        );
    }
    // RSV2 and RSV3 stay reserved.
    for bits in [0x20, 0x10, 0x60] {
        let mut d = deflating();
        let evs = run(&mut d, &[&raw(b0(true, Opcode::Text) | bits, b"x")], 100);
        assert_eq!(evs, [Ev::Error(ProtocolError::ReservedBits)]);
    }
}

#[test]
fn the_compressed_size_is_judged_against_the_limit() {
    let mut d = deflating();
    let evs = run(&mut d, &[&raw(rsv1(true, Opcode::Binary), &[0; 101])], 100);
    assert_eq!(evs, [Ev::Error(ProtocolError::TooBig)]);
    let mut d = deflating();
    let frames = cat(&[
        raw(rsv1(false, Opcode::Binary), &[0; 60]),
        raw(b0(true, Opcode::Continuation), &[0; 60]),
        raw(rsv1(true, Opcode::Text), b"next"),
    ]);
    let evs = run_with(&mut d, &[&frames], 100, Oversized::Discard);
    assert_eq!(
        evs,
        [
            Ev::Oversized(MessageKind::Binary),
            Ev::Compressed(MessageKind::Text, b"next".to_vec())
        ]
    );
}

#[test]
fn size_of_decoder_is_unchanged() {
    assert_eq!(std::mem::size_of::<Decoder>(), 56);
}
