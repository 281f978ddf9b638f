//! Every way to the close handshake: protocol errors, invalid UTF-8, size limits, peer, application and server closes.

use super::*;

/// Feeds `bytes` to an open connection and checks that it answers with exactly one close frame of
/// `code` and `reason` and `Closing`; then that the peer's close ends it without a second close.
fn assert_fails(bytes: &[u8], code: CloseCode, reason: &str) {
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(
        feed(&mut conn, &mut h, bytes, &mut out),
        Status::Closing,
        "{bytes:x?}"
    );
    assert_eq!(out, close_frame(code.0, reason), "{bytes:x?}");
    assert!(!conn.is_open());
    out.clear();
    // Data and pings are ignored while closing.
    let more = [
        client(true, Opcode::Text, b"ignored"),
        client(true, Opcode::Ping, b""),
    ]
    .concat();
    assert_eq!(feed(&mut conn, &mut h, &more, &mut out), Status::Closing);
    let peer_close = client(true, Opcode::Close, &code.0.to_be_bytes());
    assert_eq!(feed(&mut conn, &mut h, &peer_close, &mut out), Status::Done);
    assert!(out.is_empty(), "{out:x?}");
    assert!(h.recs.is_empty(), "{:?}", h.recs);
    assert_eq!(feed(&mut conn, &mut h, b"anything", &mut out), Status::Done);
}

/// A bad close frame from the peer: the server answers with one close frame and is done at once,
/// since the peer has already closed its side and will send no second close.
fn assert_fails_on_peer_close(bytes: &[u8], code: CloseCode, reason: &str) {
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(
        feed(&mut conn, &mut h, bytes, &mut out),
        Status::Done,
        "{bytes:x?}"
    );
    assert_eq!(out, close_frame(code.0, reason), "{bytes:x?}");
    assert!(!conn.is_open());
    out.clear();
    let more = client(true, Opcode::Text, b"ignored");
    assert_eq!(feed(&mut conn, &mut h, &more, &mut out), Status::Done);
    assert!(out.is_empty(), "{out:x?}");
    assert!(h.recs.is_empty(), "{:?}", h.recs);
}

fn assert_protocol_error(bytes: &[u8], e: ProtocolError) {
    if e.is_in_peer_close() {
        assert_fails_on_peer_close(bytes, e.close_code(), e.reason());
    } else {
        assert_fails(bytes, e.close_code(), e.reason());
    }
}

#[test]
fn protocol_errors_close_with_1002() {
    use ProtocolError as E;
    let p = CloseCode::PROTOCOL;
    let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
        (unmasked(true, Opcode::Text, b"hi"), E::Unmasked),
        (raw(0x80 | 0x40 | 1, b"rsv1"), E::ReservedBits),
        (raw(0x80 | 0x10 | 2, b"rsv3"), E::ReservedBits),
        (raw(0x83, b""), E::ReservedOpcode(3)),
        (raw(0x87, b"x"), E::ReservedOpcode(7)),
        (raw(0x8b, b""), E::ReservedOpcode(11)),
        (raw(0x8f, b"x"), E::ReservedOpcode(15)),
        (client(true, Opcode::Ping, &[b'p'; 126]), E::ControlTooLong),
        (client(false, Opcode::Ping, b"x"), E::ControlFragmented),
        (client(true, Opcode::Close, &[b'c'; 126]), E::CloseTooLong),
        (
            client(true, Opcode::Continuation, b"x"),
            E::UnexpectedContinuation,
        ),
        (
            [
                client(false, Opcode::Text, b"a"),
                client(true, Opcode::Binary, b"b"),
            ]
            .concat(),
            E::ExpectedContinuation,
        ),
        (
            [
                client(false, Opcode::Text, b"a"),
                client(false, Opcode::Text, b"b"),
            ]
            .concat(),
            E::ExpectedContinuation,
        ),
        (client(true, Opcode::Close, b"\x03"), E::CloseLength),
        (
            client(true, Opcode::Close, &1005u16.to_be_bytes()),
            E::CloseCode(1005),
        ),
        (
            client(true, Opcode::Close, &999u16.to_be_bytes()),
            E::CloseCode(999),
        ),
        (
            client(true, Opcode::Close, &5000u16.to_be_bytes()),
            E::CloseCode(5000),
        ),
        (
            [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4].to_vec(),
            E::LengthOverflow,
        ),
    ];
    for (bytes, e) in cases {
        assert_eq!(e.close_code(), p);
        if e == E::LengthOverflow {
            // The stream cannot be followed after this one: any later input ends the connection.
            let (mut conn, mut h, mut out) = opened();
            assert_eq!(feed(&mut conn, &mut h, &bytes, &mut out), Status::Closing);
            assert_eq!(out, close_frame(1002, e.reason()));
            out.clear();
            let close = client(true, Opcode::Close, b"");
            assert_eq!(feed(&mut conn, &mut h, &close, &mut out), Status::Done);
            assert!(out.is_empty());
            continue;
        }
        assert_protocol_error(&bytes, e);
    }
}

#[test]
fn invalid_utf8_closes_with_1007() {
    assert_protocol_error(
        &client(true, Opcode::Text, b"ok \xc0\xaf"),
        ProtocolError::InvalidUtf8,
    );
    assert_protocol_error(
        &[
            client(false, Opcode::Text, b"ok \xe2\x82"),
            client(true, Opcode::Continuation, b""),
        ]
        .concat(),
        ProtocolError::InvalidUtf8,
    );
    assert_protocol_error(
        &client(true, Opcode::Close, b"\x03\xe8\xff"),
        ProtocolError::CloseReason,
    );
    assert_eq!(
        ProtocolError::InvalidUtf8.close_code(),
        CloseCode::INVALID_DATA
    );
}

#[test]
fn invalid_utf8_fails_fast_mid_frame() {
    // Autobahn 6.4.x: one text frame whose payload arrives in three pieces, the middle one invalid.
    let payload = [
        &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"[..],
        b"\xf4\x90\x80\x80",
        b"edited",
    ]
    .concat();
    let frame = client(true, Opcode::Text, &payload);
    let first = frame.len() - payload.len() + 11;
    let second = first + 4;
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(
        feed(&mut conn, &mut h, &frame[..first], &mut out),
        Status::Open
    );
    assert!(out.is_empty());
    assert_eq!(
        feed(&mut conn, &mut h, &frame[first..second], &mut out),
        Status::Closing
    );
    assert_eq!(out, close_frame(1007, "text not UTF-8"));
    out.clear();
    // The rest of the frame is skipped; then the peer's close ends the connection.
    assert_eq!(
        feed(&mut conn, &mut h, &frame[second..], &mut out),
        Status::Closing
    );
    let close = client(true, Opcode::Close, &1007u16.to_be_bytes());
    assert_eq!(feed(&mut conn, &mut h, &close, &mut out), Status::Done);
    assert!(out.is_empty());
    assert!(h.recs.is_empty());
    // Already at the byte that cannot continue: 0xf4 0x90 fails on the 0x90.
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(
        feed(&mut conn, &mut h, &frame[..first + 1], &mut out),
        Status::Open
    );
    assert_eq!(
        feed(&mut conn, &mut h, &frame[first + 1..first + 2], &mut out),
        Status::Closing
    );
}

#[test]
fn invalid_utf8_fails_fast_across_fragments() {
    // Autobahn 6.4.1: the same payload as three fragments; the second one already fails.
    let frames = [
        client(
            false,
            Opcode::Text,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
        ),
        client(false, Opcode::Continuation, b"\xf4\x90\x80\x80"),
        client(true, Opcode::Continuation, b"edited"),
    ];
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(feed(&mut conn, &mut h, &frames[0], &mut out), Status::Open);
    assert_eq!(
        feed(&mut conn, &mut h, &frames[1], &mut out),
        Status::Closing
    );
    assert_eq!(out, close_frame(1007, "text not UTF-8"));
    assert_eq!(
        feed(&mut conn, &mut h, &frames[2], &mut out),
        Status::Closing
    );
    assert_eq!(out, close_frame(1007, "text not UTF-8"));
    assert!(h.recs.is_empty());
}

#[test]
fn too_big_closes_with_1009_before_the_payload() {
    let limits = Limits {
        max_payload: 1000,
        ..limits()
    };
    let exact = client(true, Opcode::Binary, &[1; 1000]);
    let run = drive([UPGRADE, &exact], &limits, false);
    assert_eq!(run.statuses, [Status::Open, Status::Open]);
    assert_eq!(run.recs.len(), 2);

    // The header alone (with the mask key) of a frame one byte too long.
    let over = client(true, Opcode::Binary, &[1; 1001]);
    let header_len = over.len() - 1001;
    let run = drive([UPGRADE, &over[..header_len]], &limits, false);
    assert_eq!(run.statuses, [Status::Open, Status::Closing]);
    assert!(run.out.ends_with(&close_frame(1009, "message too big")));

    // Fragments that add up past the limit.
    let frags = [
        client(false, Opcode::Text, &[b'a'; 400]),
        client(false, Opcode::Continuation, &[b'b'; 400]),
        client(true, Opcode::Continuation, &[b'c'; 201]),
    ]
    .concat();
    let run = drive([UPGRADE, &frags], &limits, false);
    assert_eq!(run.statuses, [Status::Open, Status::Closing]);
    assert_eq!(run.recs, [Rec::Opened]);
    assert!(run.out.ends_with(&close_frame(1009, "message too big")));
    // A control frame between fragments does not count.
    let frags = [
        client(false, Opcode::Text, &[b'a'; 500]),
        client(true, Opcode::Ping, &[b'p'; 100]),
        client(true, Opcode::Continuation, &[b'c'; 500]),
    ]
    .concat();
    let run = drive([UPGRADE, &frags], &limits, false);
    assert_eq!(run.statuses, [Status::Open, Status::Open]);
    assert_eq!(run.recs.len(), 2);
}

#[test]
fn peer_close_is_echoed() {
    for (payload, echo) in [
        (&b"\x03\xe8"[..], close_frame(1000, "")),
        (b"\x03\xe8goodbye", close_frame(1000, "")),
        (b"\x0f\xa0app", close_frame(4000, "")),
        (b"\x03\xf3", close_frame(1011, "")),
        (b"", vec![0x88, 0x00]),
    ] {
        let (mut conn, mut h, mut out) = opened();
        let bytes = [
            client(true, Opcode::Close, payload),
            client(true, Opcode::Text, b"late"),
        ]
        .concat();
        assert_eq!(feed(&mut conn, &mut h, &bytes, &mut out), Status::Done);
        assert_eq!(out, echo);
        assert!(h.recs.is_empty(), "data after close is ignored");
        assert_eq!(conn.close(CloseCode::NORMAL, "", &mut out), Status::Done);
        assert_eq!(out, echo);
    }
}

#[test]
fn unsolicited_pong_is_ignored_and_ping_answered() {
    let (mut conn, mut h, mut out) = opened();
    let bytes = [
        client(true, Opcode::Pong, b"whatever"),
        client(true, Opcode::Ping, b""),
        client(true, Opcode::Ping, &[7; 125]),
    ]
    .concat();
    assert_eq!(feed(&mut conn, &mut h, &bytes, &mut out), Status::Open);
    assert_eq!(
        out,
        [
            server_frame(Opcode::Pong, b""),
            server_frame(Opcode::Pong, &[7; 125])
        ]
        .concat()
    );
}

#[test]
fn application_close() {
    let (mut conn, mut h, mut out) = opened();
    let bytes = [
        client(true, Opcode::Text, b"first"),
        client(true, Opcode::Text, b"please close"),
        client(true, Opcode::Text, b"never delivered"),
        client(true, Opcode::Ping, b"not answered"),
    ]
    .concat();
    assert_eq!(feed(&mut conn, &mut h, &bytes, &mut out), Status::Closing);
    assert_eq!(h.recs, [Rec::Msg(MessageKind::Text, b"first".to_vec())]);
    assert_eq!(out, close_frame(1008, "as you wish"));
    out.clear();
    let close = client(true, Opcode::Close, b"\x03\xf0");
    assert_eq!(feed(&mut conn, &mut h, &close, &mut out), Status::Done);
    assert!(out.is_empty());
}

#[test]
fn server_close() {
    // In the handshake phase: nothing written, done.
    let mut conn = Connection::new();
    let mut out = Vec::new();
    assert!(conn.is_handshaking());
    assert_eq!(
        conn.close(CloseCode::GOING_AWAY, "bye", &mut out),
        Status::Done
    );
    assert!(out.is_empty());

    let (mut conn, mut h, mut out) = opened();
    // Half a fragmented message, then the server closes.
    assert_eq!(
        feed(
            &mut conn,
            &mut h,
            &client(false, Opcode::Text, b"half"),
            &mut out
        ),
        Status::Open
    );
    assert_eq!(
        conn.close(CloseCode::GOING_AWAY, "shutting down", &mut out),
        Status::Closing
    );
    assert_eq!(out, close_frame(1001, "shutting down"));
    assert!(!conn.is_open());
    // A second close writes nothing.
    assert_eq!(
        conn.close(CloseCode::NORMAL, "again", &mut out),
        Status::Closing
    );
    assert_eq!(out, close_frame(1001, "shutting down"));
    out.clear();
    // The rest of the peer's message is discarded, the peer's close ends it.
    let bytes = [
        client(true, Opcode::Continuation, b" and more"),
        client(true, Opcode::Close, b"\x03\xe9"),
    ]
    .concat();
    assert_eq!(feed(&mut conn, &mut h, &bytes, &mut out), Status::Done);
    assert!(out.is_empty());
    assert!(h.recs.is_empty());
    assert_eq!(conn.close(CloseCode::NORMAL, "", &mut out), Status::Done);
}

#[test]
fn error_while_closing_is_done() {
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(conn.close(CloseCode::NORMAL, "", &mut out), Status::Closing);
    out.clear();
    assert_eq!(
        feed(
            &mut conn,
            &mut h,
            &unmasked(true, Opcode::Text, b"x"),
            &mut out
        ),
        Status::Done
    );
    assert!(out.is_empty());
    let (mut conn, mut h, mut out) = opened();
    assert_eq!(conn.close(CloseCode::NORMAL, "", &mut out), Status::Closing);
    assert_eq!(
        feed(
            &mut conn,
            &mut h,
            &client(true, Opcode::Close, b"\x03"),
            &mut out
        ),
        Status::Done
    );
}
