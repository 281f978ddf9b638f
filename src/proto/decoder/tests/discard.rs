//! `Oversized::Discard`: messages over the limit are skipped as they stream in.

use super::*;

/// Runs `stream` cut into three chunks at every pair of positions and checks the events.
fn every_split(stream: &[u8], max: usize, want: &[Ev]) {
    for a in 0..=stream.len() {
        for b in a..=stream.len() {
            let mut d = Decoder::new();
            let chunks = [&stream[..a], &stream[a..b], &stream[b..]];
            let evs = run_with(&mut d, &chunks, max, Oversized::Discard);
            assert_eq!(evs, want, "split at {a},{b}");
            assert!(d.buf.is_empty(), "split at {a},{b}: buffer left");
            assert_eq!(d.mode, Mode::Idle, "split at {a},{b}");
        }
    }
}

#[test]
fn at_the_limit_passes_one_byte_over_is_discarded_and_the_next_message_is_intact() {
    let stream = cat(&[
        client(true, Opcode::Binary, &[1; 10]),
        client(true, Opcode::Text, b"0123456789a"),
        client(true, Opcode::Text, b"next"),
    ]);
    every_split(
        &stream,
        10,
        &[
            Ev::Msg(MessageKind::Binary, vec![1; 10]),
            Ev::Oversized(MessageKind::Text),
            Ev::Msg(MessageKind::Text, b"next".to_vec()),
        ],
    );
    // The same with `Fail`: an error, and nothing after it.
    let mut d = Decoder::new();
    assert_eq!(
        run(&mut d, &[&stream], 10),
        [
            Ev::Msg(MessageKind::Binary, vec![1; 10]),
            Ev::Error(ProtocolError::TooBig)
        ]
    );
}

#[test]
fn fragmented_message_crossing_the_limit_mid_way_is_dropped_with_what_was_kept() {
    // 4 + 4 bytes are kept, the third fragment crosses 10; the rest is not even UTF-8, which
    // does not matter: a discarded message is not validated.
    let stream = cat(&[
        client(false, Opcode::Text, b"aaaa"),
        client(false, Opcode::Continuation, b"bbbb"),
        client(false, Opcode::Continuation, b"\xff\xffcc"),
        client(true, Opcode::Continuation, b"\xfe"),
        client(false, Opcode::Binary, b"ok"),
        client(true, Opcode::Continuation, b"!"),
    ]);
    every_split(
        &stream,
        10,
        &[
            Ev::Oversized(MessageKind::Text),
            Ev::Msg(MessageKind::Binary, b"ok!".to_vec()),
        ],
    );
    // Crossing in the first fragment: its continuations are skipped up to FIN.
    let stream = cat(&[
        client(false, Opcode::Binary, &[9; 11]),
        client(false, Opcode::Continuation, &[9; 300]),
        client(true, Opcode::Continuation, b""),
        client(true, Opcode::Text, b"after"),
    ]);
    let mut d = Decoder::new();
    assert_eq!(
        run_with(&mut d, &[&stream], 10, Oversized::Discard),
        [
            Ev::Oversized(MessageKind::Binary),
            Ev::Msg(MessageKind::Text, b"after".to_vec())
        ]
    );
}

#[test]
fn control_frames_inside_a_discarded_message_are_reported() {
    let stream = cat(&[
        client(false, Opcode::Text, b"0123456789abc"),
        client(true, Opcode::Ping, b"still there?"),
        client(false, Opcode::Continuation, b"more"),
        client(true, Opcode::Pong, b""),
        client(true, Opcode::Continuation, b"end"),
        client(true, Opcode::Text, b"next"),
        client(true, Opcode::Close, b"\x03\xe8"),
    ]);
    every_split(
        &stream,
        10,
        &[
            Ev::Oversized(MessageKind::Text),
            Ev::Ping(b"still there?".to_vec()),
            Ev::Pong(Vec::new()),
            Ev::Msg(MessageKind::Text, b"next".to_vec()),
            Ev::Close(Some(CloseCode::NORMAL), String::new()),
        ],
    );
}

#[test]
fn a_new_message_inside_a_discarded_one_is_a_protocol_error() {
    let stream = cat(&[
        client(false, Opcode::Binary, &[0; 20]),
        client(true, Opcode::Text, b"not a continuation"),
        client(true, Opcode::Close, b""),
    ]);
    let mut d = Decoder::new();
    assert_eq!(
        run_with(&mut d, &[&stream], 10, Oversized::Discard),
        [
            Ev::Oversized(MessageKind::Binary),
            Ev::Error(ProtocolError::ExpectedContinuation),
            Ev::Close(None, String::new())
        ]
    );
}

#[test]
fn a_huge_length_claim_is_skipped_without_allocation_or_unmasking() {
    // 2^63 - 1 bytes declared: the largest length RFC 6455 allows (2^63 sets the high bit, which
    // is a protocol error whatever the policy: see `length_overflow_loses_the_stream`).
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    let mut d = Decoder::new();
    assert_eq!(
        run_with(&mut d, &[&header], 1 << 20, Oversized::Discard),
        [Ev::Oversized(MessageKind::Binary)]
    );
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..8 {
        let mut input = chunk.clone();
        let mut events = 0;
        let flow = d.feed(&mut input, 1 << 20, Oversized::Discard, |_| {
            events += 1;
            Next::Continue
        });
        assert!(flow.is_continue());
        assert_eq!(
            events, 0,
            "payload bytes of a discarded frame report nothing"
        );
        assert_eq!(input, chunk, "a discarded payload is not unmasked");
        assert_eq!(d.buffer_capacity(), 0, "nothing allocated");
    }
    assert_eq!(d.remaining, (u64::MAX >> 1) - 8 * (1 << 20));
}

#[test]
fn closing_mode_during_a_discard_skips_the_rest() {
    let stream = cat(&[
        client(false, Opcode::Binary, &[0; 20]),
        client(true, Opcode::Continuation, &[0; 5]),
        client(true, Opcode::Binary, b"dropped too"),
        client(true, Opcode::Close, b""),
    ]);
    let mut d = Decoder::new();
    let mut evs = Vec::new();
    let _ = d.feed(&mut stream.clone(), 10, Oversized::Discard, |e| {
        evs.push(format!("{e:?}"));
        match e {
            Event::Oversized(_) => Next::Closing,
            _ => Next::Continue,
        }
    });
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(evs[1].starts_with("Close"), "{evs:?}");
    assert!(d.is_closing());
}
