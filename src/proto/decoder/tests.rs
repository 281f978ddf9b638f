//! Unit tests of the frame and message state machine.

use super::*;
use crate::proto::close::CloseCode;
use crate::proto::frame::test_frames::{client, unmasked};

/// What the decoder reported, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Msg(MessageKind, Vec<u8>),
    Compressed(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseCode>, String),
    Error(ProtocolError),
    Oversized(MessageKind),
}

/// Feeds `chunks` one by one, answering errors with `Closing` and closes with `Stop`.
fn run(d: &mut Decoder, chunks: &[&[u8]], max: usize) -> Vec<Ev> {
    run_with(d, chunks, max, Oversized::Fail)
}

/// [`run`] with a policy for oversized messages.
fn run_with(d: &mut Decoder, chunks: &[&[u8]], max: usize, policy: Oversized) -> Vec<Ev> {
    let mut evs = Vec::new();
    for c in chunks {
        let mut c = c.to_vec();
        let flow = d.feed(&mut c, max, policy, |e| {
            let (ev, next) = match e {
                Event::Message(m) => (Ev::Msg(m.kind, m.data.to_vec()), Next::Continue),
                Event::Compressed(m) => (Ev::Compressed(m.kind, m.data.to_vec()), Next::Continue),
                Event::Oversized(kind) => (Ev::Oversized(kind), Next::Continue),
                Event::Ping(p) => (Ev::Ping(p.to_vec()), Next::Continue),
                Event::Pong(p) => (Ev::Pong(p.to_vec()), Next::Continue),
                Event::Close(c) => (Ev::Close(c.code, c.reason.into()), Next::Stop),
                Event::Error(e) => (Ev::Error(e), Next::Closing),
            };
            evs.push(ev);
            next
        });
        if flow.is_break() {
            break;
        }
    }
    evs
}

mod rsv1;

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn complete_frame_is_handed_over_in_place() {
    let mut input = client(true, Opcode::Binary, b"zero copy please");
    let range = input.as_ptr_range();
    let mut d = Decoder::new();
    let mut seen = 0;
    let _ = d.feed(&mut input, 1 << 20, Oversized::Fail, |e| {
        if let Event::Message(m) = e {
            assert_eq!(m.data, b"zero copy please");
            assert!(range.contains(&m.data.as_ptr()), "not a slice of the input");
            seen += 1;
        }
        Next::Continue
    });
    assert_eq!(seen, 1);
    assert_eq!(d.buffer_capacity(), 0, "nothing allocated");
}

#[test]
fn header_split_anywhere_is_kept() {
    for len in [0usize, 5, 125, 126, 300, 65535, 65536] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let frame = client(true, Opcode::Binary, &payload);
        let hlen = frame.len() - len;
        for split in 0..=hlen {
            let mut d = Decoder::new();
            let evs = run(&mut d, &[&frame[..split], &frame[split..]], 1 << 20);
            assert_eq!(
                evs,
                [Ev::Msg(MessageKind::Binary, payload.clone())],
                "len {len} split {split}"
            );
        }
        // Header one byte at a time, then the rest.
        let mut d = Decoder::new();
        let mut chunks: Vec<&[u8]> = frame[..hlen].chunks(1).collect();
        chunks.push(&frame[hlen..]);
        assert_eq!(
            run(&mut d, &chunks, 1 << 20),
            [Ev::Msg(MessageKind::Binary, payload)]
        );
    }
}

#[test]
fn buffer_is_freed_after_a_big_message_and_kept_small_otherwise() {
    let big = vec![7u8; 100_000];
    let frame = client(true, Opcode::Binary, &big);
    let mut d = Decoder::new();
    let chunks: Vec<&[u8]> = frame.chunks(4096).collect();
    assert_eq!(
        run(&mut d, &chunks, 1 << 20),
        [Ev::Msg(MessageKind::Binary, big)]
    );
    assert_eq!(d.buffer_capacity(), 0);

    let small = client(true, Opcode::Binary, &[1; 1000]);
    let chunks: Vec<&[u8]> = small.chunks(300).collect();
    assert_eq!(run(&mut d, &chunks, 1 << 20).len(), 1);
    assert!(d.buffer_capacity() <= RETAIN_CAPACITY);
    assert!(d.buf.is_empty());
}

#[test]
fn split_control_frame_between_fragments() {
    let stream = cat(&[
        client(false, Opcode::Text, b"Hel"),
        client(true, Opcode::Ping, b"are you there?"),
        client(true, Opcode::Continuation, b"lo"),
    ]);
    let want = [
        Ev::Ping(b"are you there?".to_vec()),
        Ev::Msg(MessageKind::Text, b"Hello".to_vec()),
    ];
    for a in 0..=stream.len() {
        for b in a..=stream.len() {
            let mut d = Decoder::new();
            let evs = run(&mut d, &[&stream[..a], &stream[a..b], &stream[b..]], 1000);
            assert_eq!(evs, want, "split at {a},{b}");
            assert!(d.buf.is_empty());
        }
    }
}

#[test]
fn closing_mode_mid_control_frame_keeps_it() {
    let stream = cat(&[
        client(false, Opcode::Binary, b"part"),
        client(true, Opcode::Close, b"\x03\xe8bye"),
    ]);
    let split = stream.len() - 2;
    let mut d = Decoder::new();
    assert_eq!(run(&mut d, &[&stream[..split]], 1000), []);
    d.start_closing();
    assert!(d.is_closing());
    assert_eq!(
        run(&mut d, &[&stream[split..]], 1000),
        [Ev::Close(Some(CloseCode::NORMAL), "bye".into())]
    );
}

#[test]
fn closing_mode_discards_data_but_reports_control() {
    let stream = cat(&[
        client(true, Opcode::Text, b"\xff not even utf-8"),
        client(true, Opcode::Continuation, b"no message in progress"),
        client(true, Opcode::Ping, b"p"),
        client(true, Opcode::Close, b""),
        client(true, Opcode::Ping, b"after close"),
    ]);
    let mut d = Decoder::new();
    d.start_closing();
    assert_eq!(
        run(&mut d, &[&stream], 10),
        [Ev::Ping(b"p".to_vec()), Ev::Close(None, String::new())]
    );
}

#[test]
fn stays_in_step_after_errors() {
    // Each bad frame carries a payload; the close after it must still be found.
    let close = client(true, Opcode::Close, b"\x03\xe8");
    let bad: Vec<(Vec<u8>, ProtocolError)> = vec![
        (
            unmasked(true, Opcode::Text, b"hello"),
            ProtocolError::Unmasked,
        ),
        (
            client(true, Opcode::Text, b"ab\xffcd"),
            ProtocolError::InvalidUtf8,
        ),
        (
            client(true, Opcode::Binary, &[0; 40]),
            ProtocolError::TooBig,
        ),
        (
            client(true, Opcode::Continuation, b"x"),
            ProtocolError::UnexpectedContinuation,
        ),
        (
            client(false, Opcode::Ping, b"x"),
            ProtocolError::ControlFragmented,
        ),
    ];
    for (frame, err) in bad {
        let stream = cat(&[frame, client(true, Opcode::Ping, b"x"), close.clone()]);
        for split in 0..=stream.len() {
            let mut d = Decoder::new();
            let evs = run(&mut d, &[&stream[..split], &stream[split..]], 32);
            assert_eq!(
                evs,
                [
                    Ev::Error(err),
                    Ev::Ping(b"x".to_vec()),
                    Ev::Close(Some(CloseCode::NORMAL), String::new())
                ],
                "{err:?} split {split}"
            );
        }
    }
}

#[test]
fn invalid_utf8_is_reported_before_the_frame_ends() {
    let frame = client(
        true,
        Opcode::Text,
        b"valid start \xed\xa0\x80 and more text",
    );
    let bad_at = frame.len() - b"\xa0\x80 and more text".len();
    let mut d = Decoder::new();
    assert_eq!(run(&mut d, &[&frame[..bad_at]], 1000), []);
    let mut d = Decoder::new();
    assert_eq!(
        run(&mut d, &[&frame[..bad_at + 1]], 1000),
        [Ev::Error(ProtocolError::InvalidUtf8)]
    );
    // Truncated code point at the end of the message: reported at the end.
    let frame = client(true, Opcode::Text, b"abc\xe2\x82");
    let mut d = Decoder::new();
    let chunks: Vec<&[u8]> = frame.chunks(1).collect();
    assert_eq!(
        run(&mut d, &chunks, 1000),
        [Ev::Error(ProtocolError::InvalidUtf8)]
    );
}

#[test]
fn length_overflow_loses_the_stream() {
    let mut frame = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    frame.extend_from_slice(&client(true, Opcode::Close, b""));
    let mut d = Decoder::new();
    assert_eq!(
        run(&mut d, &[&frame], 1000),
        [Ev::Error(ProtocolError::LengthOverflow)]
    );
    // Any later input is an error too.
    assert_eq!(run(&mut d, &[&[]], 1000), []);
    assert_eq!(
        run(&mut d, &[&[0x88]], 1000),
        [Ev::Error(ProtocolError::LengthOverflow)]
    );
}

#[test]
fn size() {
    assert_eq!(std::mem::size_of::<Decoder>(), 56);
}

mod discard;
