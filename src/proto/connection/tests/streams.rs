//! Byte streams split every which way: every header form, fragments, pipelining, zero copy.

use super::*;

#[test]
fn handshake_then_frames_in_one_call() {
    let (stream, recs, _) = session();
    let run = drive([&stream[..]], &limits(), false);
    assert_eq!(run.recs, recs);
    let want = [
        SWITCHING,
        b"<opened>",
        &server_frame(Opcode::Pong, b"ping!"),
        &close_frame(1000, ""),
    ]
    .concat();
    assert_eq!(run.out, want);
    assert_eq!(run.statuses, [Status::Done]);
    assert!(!run.conn.is_open() && !run.conn.is_handshaking());
}

/// Every split offset, except that inside the two large payloads (where all offsets behave alike
/// but for the mask phase and UTF-8 boundaries) only the 70 bytes at each end and every 211th offset
/// (a prime, so every mask phase and code point position is hit) are tried, to keep the debug-build
/// test fast. `split_at_every_offset_exhaustive` tries them all.
#[test]
fn split_at_every_offset_gives_the_same_result() {
    let (stream, recs, bounds) = session();
    let big_from = bounds[bounds.len() - 6];
    let near = |p: usize| bounds.iter().any(|&b| p.abs_diff(b) <= 70);
    let offsets = (0..=stream.len()).filter(|&p| p < big_from || near(p) || p % 211 == 0);
    let tried = check_splits(&stream, &recs, offsets);
    assert!(tried > 1300, "{tried}");
}

/// All 131,000-odd split offsets: run with `cargo test --release -- --ignored`.
#[test]
#[ignore = "slow in debug builds; run with --release"]
fn split_at_every_offset_exhaustive() {
    let (stream, recs, _) = session();
    check_splits(&stream, &recs, 0..=stream.len());
}

#[test]
fn one_byte_per_call() {
    let (stream, recs, _) = session();
    let whole = drive([&stream[..]], &limits(), true);
    let run = drive(stream.chunks(1), &limits(), true);
    assert_eq!(run.recs, recs);
    assert!(run.out == whole.out);
    let (last, rest) = run.statuses.split_last().unwrap();
    assert_eq!(*last, Status::Done);
    assert!(rest.iter().all(|&s| s == Status::Open));
}

#[test]
fn fragmented_text_with_a_ping_between_fragments() {
    let frames = [
        client(false, Opcode::Text, "κό".as_bytes()),
        client(false, Opcode::Continuation, &"σμε".as_bytes()[..3]),
        client(true, Opcode::Ping, b"between"),
        client(true, Opcode::Continuation, &"σμε".as_bytes()[3..]),
    ]
    .concat();
    for split in 0..=frames.len() {
        let (mut conn, mut h, mut out) = opened();
        assert_eq!(
            feed(&mut conn, &mut h, &frames[..split], &mut out),
            Status::Open
        );
        assert_eq!(
            feed(&mut conn, &mut h, &frames[split..], &mut out),
            Status::Open
        );
        assert_eq!(
            h.recs,
            [Rec::Msg(MessageKind::Text, "κόσμε".into())],
            "split {split}"
        );
        assert_eq!(out, server_frame(Opcode::Pong, b"between"), "split {split}");
    }
}

#[test]
fn message_spanning_many_2k_chunks() {
    let payload = text(300_000);
    let single = client(true, Opcode::Text, &payload);
    let fragmented = [
        client(false, Opcode::Text, &payload[..100_001]),
        client(false, Opcode::Continuation, &payload[100_001..200_003]),
        client(true, Opcode::Continuation, &payload[200_003..]),
    ]
    .concat();
    for stream in [single, fragmented] {
        let (mut conn, mut h, mut out) = opened();
        for chunk in stream.chunks(2048) {
            assert_eq!(feed(&mut conn, &mut h, chunk, &mut out), Status::Open);
        }
        assert_eq!(h.recs, [Rec::Msg(MessageKind::Text, payload.clone())]);
        assert!(out.is_empty());
        let State::Open(d) = &conn.state else {
            panic!("not open")
        };
        assert_eq!(d.buffer_capacity(), 0, "big buffer kept while idle");
    }
}

#[test]
fn zero_copy_for_a_frame_inside_one_chunk() {
    struct PtrCheck(std::ops::Range<*const u8>, usize);
    impl Handler for PtrCheck {
        fn message(&mut self, msg: Message<'_>, _: &mut Vec<u8>) -> Result<(), AppClose> {
            assert!(self.0.contains(&msg.data.as_ptr()));
            self.1 += 1;
            Ok(())
        }
        fn http_request(&mut self, _: &HttpRequest<'_>, _: &mut Vec<u8>) -> u16 {
            0
        }
    }
    let mut input = [UPGRADE, &client(true, Opcode::Text, b"in place")].concat();
    let mut h = PtrCheck(input.as_ptr_range(), 0);
    let mut conn = Connection::new();
    let mut out = Vec::new();
    assert_eq!(
        conn.handle_bytes(&mut input, &limits(), &mut Codec::new(), &mut out, &mut h),
        Status::Open
    );
    assert_eq!(h.1, 1);
}

#[test]
fn random_chunking_gives_the_same_result() {
    let (stream, recs, _) = session();
    let whole = drive([&stream[..]], &limits(), true);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..40 {
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            // xorshift64
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let max = [3, 20, 300, 5000][round % 4];
            let n = (seed % max as u64) as usize + 1;
            let (a, b) = rest.split_at(n.min(rest.len()));
            chunks.push(a);
            rest = b;
        }
        let run = drive(chunks.iter().copied(), &limits(), true);
        assert_eq!(run.recs, recs, "round {round}");
        assert!(run.out == whole.out, "round {round}");
        assert_eq!(run.statuses.last(), Some(&Status::Done));
    }
}

#[test]
fn pipelined_frames_after_the_request() {
    let bytes = [
        UPGRADE,
        &client(true, Opcode::Text, b"right away"),
        &client(true, Opcode::Ping, b"p"),
        &client(false, Opcode::Binary, b"par"),
    ]
    .concat();
    // All in one input, and with the request itself split so that the frames follow a buffered head.
    for split in [bytes.len(), 10, UPGRADE.len() - 1] {
        let run = drive([&bytes[..split], &bytes[split..]], &limits(), true);
        assert_eq!(
            run.recs,
            [
                Rec::Opened,
                Rec::Msg(MessageKind::Text, b"right away".to_vec())
            ],
            "split {split}"
        );
        let want = [
            SWITCHING,
            b"<opened>",
            &server_frame(Opcode::Text, b"right away"),
            &server_frame(Opcode::Pong, b"p"),
        ]
        .concat();
        assert_eq!(run.out, want);
        assert_eq!(run.statuses.last(), Some(&Status::Open));
        assert!(run.conn.is_open());
    }
}
