//! The close handshake and every protocol error the server closes for, with hand-built frames.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode as TCode;

/// How soon TCP must close once the client has answered the server's close: well under the
/// server's 5 s close timeout, so a server that only closes on the timeout fails.
const EOF_AFTER_REPLY: Duration = Duration::from_secs(3);

/// Sends `bytes` on a fresh connection, expects a close frame with `expected`, answers it, and
/// expects TCP to close soon after.
fn expect_error_close(addr: std::net::SocketAddr, bytes: &[u8], expected: u16, ctx: &str) {
    let mut ws = RawWs::connect(addr);
    ws.send(bytes);
    let code = ws.expect_close(ctx);
    assert_eq!(code, Some(expected), "{ctx}: close code");
    ws.send(&client_frame(OP_CLOSE, &close_payload(expected, b"")));
    ws.expect_eof(EOF_AFTER_REPLY, ctx);
}

#[test]
fn valid_close_codes_are_echoed_then_tcp_closes() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let ctx = format!("[{backend}] close {code}");
            let mut ws = RawWs::connect(addr);
            ws.send(&client_frame(
                OP_CLOSE,
                &close_payload(code, b"bye \xe2\x9c\x93"),
            ));
            assert_eq!(ws.expect_close(&ctx), Some(code), "{ctx}: echoed code");
            ws.expect_eof(EOF_AFTER_REPLY, &ctx);
        }
    }
}

#[test]
fn empty_close_is_answered_with_empty_or_1000() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let ctx = format!("[{backend}] empty close");
        let mut ws = RawWs::connect(server.local_addr());
        ws.send(&client_frame(OP_CLOSE, b""));
        let code = ws.expect_close(&ctx);
        assert!(
            matches!(code, None | Some(1000)),
            "{ctx}: answered with {code:?}"
        );
        ws.expect_eof(EOF_AFTER_REPLY, &ctx);
    }
}

#[test]
fn tungstenite_close_handshake_completes() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = ws_connect(server.local_addr());
        ws.send(Message::text("before close")).unwrap();
        assert_eq!(
            ws.read().unwrap(),
            Message::text("before close"),
            "[{backend}]"
        );
        ws.close(Some(CloseFrame {
            code: TCode::Normal,
            reason: "done".into(),
        }))
        .unwrap();
        let reply = match ws.read() {
            Ok(Message::Close(frame)) => frame,
            Ok(other) => panic!("[{backend}] expected the close reply, got {other:?}"),
            Err(e) => panic!("[{backend}] close handshake failed: {e}"),
        };
        assert_eq!(
            reply.map(|f| f.code),
            Some(TCode::Normal),
            "[{backend}] close reply"
        );
        // The client's next read sees the server close TCP (within the 3 s timeout).
        ws.get_mut()
            .set_read_timeout(Some(EOF_AFTER_REPLY))
            .unwrap();
        match ws.read() {
            Err(tungstenite::Error::ConnectionClosed) => {}
            other => panic!("[{backend}] expected the server to close TCP, got {other:?}"),
        }
    }
}

#[test]
fn frames_after_a_close_are_ignored() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let ctx = format!("[{backend}] text after close");
        let mut ws = RawWs::connect(server.local_addr());
        let mut burst = client_frame(OP_CLOSE, &close_payload(1000, b""));
        burst.extend(client_frame(OP_TEXT, b"must not be echoed"));
        ws.send(&burst);
        assert_eq!(ws.expect_close(&ctx), Some(1000), "{ctx}");
        ws.expect_eof(EOF_AFTER_REPLY, &ctx);
    }
}

#[test]
fn protocol_errors_close_with_1002() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let mut cases: Vec<(String, Vec<u8>)> = vec![
            (
                "unmasked text frame".into(),
                frame(OP_TEXT, true, 0, false, b"hi"),
            ),
            ("unmasked ping".into(), frame(OP_PING, true, 0, false, b"")),
            (
                "ping of 126 bytes".into(),
                client_frame(OP_PING, &[b'x'; 126]),
            ),
            (
                "close of 126 bytes".into(),
                client_frame(OP_CLOSE, &close_payload(1000, &[b'x'; 124])),
            ),
            (
                "pong of 126 bytes".into(),
                client_frame(OP_PONG, &[b'x'; 126]),
            ),
            (
                "fragmented ping".into(),
                frame(OP_PING, false, 0, true, b"a"),
            ),
            (
                "fragmented close".into(),
                frame(OP_CLOSE, false, 0, true, &close_payload(1000, b"")),
            ),
            (
                "continuation without a start".into(),
                client_frame(OP_CONT, b"orphan"),
            ),
            (
                "non-final continuation without a start".into(),
                frame(OP_CONT, false, 0, true, b"x"),
            ),
            (
                "close payload of 1 byte".into(),
                client_frame(OP_CLOSE, &[0x03]),
            ),
        ];
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            cases.push((format!("reserved opcode {op:#x}"), client_frame(op, b"")));
        }
        for rsv in [1u8, 2, 4, 7] {
            cases.push((
                format!("RSV bits {rsv:03b} on text"),
                frame(OP_TEXT, true, rsv, true, b"x"),
            ));
        }
        cases.push(("RSV1 on ping".into(), frame(OP_PING, true, 4, true, b"")));
        let mut text_during_fragments = frame(OP_TEXT, false, 0, true, b"start");
        text_during_fragments.extend(client_frame(OP_TEXT, b"new message"));
        cases.push((
            "text frame during a fragmented message".into(),
            text_during_fragments,
        ));
        let mut binary_during_fragments = frame(OP_BINARY, false, 0, true, b"start");
        binary_during_fragments.extend(frame(OP_BINARY, false, 0, true, b"again"));
        cases.push((
            "binary frame during a fragmented message".into(),
            binary_during_fragments,
        ));
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999] {
            cases.push((
                format!("invalid close code {code}"),
                client_frame(OP_CLOSE, &close_payload(code, b"")),
            ));
        }
        for (name, bytes) in cases {
            expect_error_close(addr, &bytes, 1002, &format!("[{backend}] {name}"));
        }
    }
}

#[test]
fn frames_after_a_protocol_error_are_not_processed() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let ctx = format!("[{backend}] echo after error");
        let mut ws = RawWs::connect(server.local_addr());
        let mut burst = client_frame(OP_CONT, b"orphan");
        burst.extend(client_frame(OP_TEXT, b"must not be echoed"));
        burst.extend(client_frame(OP_PING, b"must not be answered"));
        ws.send(&burst);
        let f = ws.server_frame();
        assert_eq!(
            f.opcode, OP_CLOSE,
            "{ctx}: first frame must be the close: {f:?}"
        );
        assert_eq!(close_code(&f.payload, &ctx), Some(1002), "{ctx}");
        ws.send(&client_frame(OP_CLOSE, &close_payload(1002, b"")));
        ws.expect_eof(EOF_AFTER_REPLY, &ctx);
    }
}

#[test]
fn invalid_utf8_closes_with_1007() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, bad) in [
            ("lone 0xff", &b"abc\xff"[..]),
            ("overlong NUL", b"\xc0\x80"),
            (
                "UTF-16 surrogate",
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            ),
            ("above U+10FFFF", b"\xf4\x90\x80\x80"),
            ("truncated sequence at the end", b"ok\xe2\x82"),
            ("stray continuation byte", b"\x80"),
        ] {
            cases.push((format!("text {name}"), client_frame(OP_TEXT, bad)));
        }
        // Across fragments: each fragment alone is a prefix of valid UTF-8 or not, the whole isn't.
        let mut split = frame(OP_TEXT, false, 0, true, b"\xce");
        split.extend(frame(OP_CONT, true, 0, true, b"\xff"));
        cases.push(("sequence broken across fragments".into(), split));
        let mut unfinished = frame(OP_TEXT, false, 0, true, b"ab\xf0\x9d");
        unfinished.extend(frame(OP_CONT, false, 0, true, b"\x84"));
        unfinished.extend(frame(OP_CONT, true, 0, true, b""));
        cases.push(("message ends inside a code point".into(), unfinished));
        let mut later = frame(OP_TEXT, false, 0, true, b"fine so far");
        later.extend(frame(OP_CONT, false, 0, true, b" still fine"));
        later.extend(frame(OP_CONT, true, 0, true, b" \xed\xbf\xbf"));
        cases.push(("surrogate in the last fragment".into(), later));
        cases.push((
            "close reason not UTF-8".into(),
            client_frame(OP_CLOSE, &close_payload(1000, b"bad \xff\xfe reason")),
        ));
        cases.push((
            "close reason truncated code point".into(),
            client_frame(OP_CLOSE, &close_payload(1000, b"\xe2\x9c")),
        ));
        for (name, bytes) in cases {
            expect_error_close(addr, &bytes, 1007, &format!("[{backend}] {name}"));
        }
    }
}

#[test]
fn invalid_utf8_in_a_first_fragment_fails_fast() {
    // The first fragment is already invalid: the server must close without waiting for the rest.
    for backend in backends() {
        let server = start(backend, |_| {});
        let ctx = format!("[{backend}] invalid first fragment");
        let mut ws = RawWs::connect(server.local_addr());
        ws.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        ws.send(&frame(
            OP_TEXT,
            false,
            0,
            true,
            b"\xce\xba\xff more to come",
        ));
        assert_eq!(ws.expect_close(&ctx), Some(1007), "{ctx}");
        ws.send(&client_frame(OP_CLOSE, &close_payload(1007, b"")));
        ws.expect_eof(EOF_AFTER_REPLY, &ctx);
    }
}

#[test]
fn messages_over_max_payload_close_with_1009() {
    for backend in backends() {
        let server = start(backend, |cfg| cfg.max_payload = 1024);
        let addr = server.local_addr();

        // Exactly max_payload is fine, in one frame or in fragments.
        let mut ws = RawWs::connect(addr);
        ws.send(&client_frame(OP_BINARY, &[0x5A; 1024]));
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, f.payload.len()),
            (OP_BINARY, 1024),
            "[{backend}] 1024 bytes"
        );
        let mut frags = frame(OP_TEXT, false, 0, true, &[b'a'; 512]);
        frags.extend(frame(OP_CONT, true, 0, true, &[b'b'; 512]));
        ws.send(&frags);
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, f.payload.len()),
            (OP_TEXT, 1024),
            "[{backend}] 2 x 512 bytes"
        );

        let mut two = frame(OP_BINARY, false, 0, true, &[1; 600]);
        two.extend(frame(OP_CONT, true, 0, true, &[2; 600]));
        let mut many = Vec::new();
        for i in 0..11u8 {
            many.extend(frame(
                if i == 0 { OP_TEXT } else { OP_CONT },
                i == 10,
                0,
                true,
                &[b'z'; 100],
            ));
        }
        for (name, bytes) in [
            (
                "one frame of 1025 bytes",
                client_frame(OP_BINARY, &[0; 1025]),
            ),
            (
                "text frame of 4000 bytes",
                client_frame(OP_TEXT, &[b'a'; 4000]),
            ),
            ("two fragments of 600 bytes", two),
            ("eleven fragments of 100 bytes", many),
        ] {
            expect_error_close(addr, &bytes, 1009, &format!("[{backend}] {name}"));
        }
    }
}

#[test]
fn oversized_frame_header_alone_closes_with_1009() {
    // Only the header of a huge frame is sent: the server must refuse it from the length alone,
    // without waiting for (or buffering) the payload.
    for backend in backends() {
        let server = start(backend, |cfg| cfg.max_payload = 1024);
        for len in [1025u64, 1 << 20, 1 << 40] {
            let ctx = format!("[{backend}] header announcing {len} bytes");
            let mut ws = RawWs::connect(server.local_addr());
            ws.stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            ws.send(&client_header(OP_BINARY, true, len));
            assert_eq!(ws.expect_close(&ctx), Some(1009), "{ctx}");
            if len == 1025 {
                // A client can only answer once its frame is done: finish it, then close.
                let mut rest = vec![0u8; 1025];
                rest.extend(client_frame(OP_CLOSE, &close_payload(1009, b"")));
                ws.send(&rest);
                ws.expect_eof(EOF_AFTER_REPLY, &ctx);
            }
        }
    }
}

#[test]
fn length_with_most_significant_bit_set_is_refused() {
    // RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0.
    for backend in backends() {
        let server = start(backend, |_| {});
        let ctx = format!("[{backend}] 64-bit length with MSB set");
        let mut ws = RawWs::connect(server.local_addr());
        ws.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        ws.send(&client_header(OP_BINARY, true, 1 << 63));
        let code = ws.expect_close(&ctx);
        assert!(
            matches!(code, Some(1002 | 1009)),
            "{ctx}: closed with {code:?}"
        );
    }
}

#[test]
fn server_closes_tcp_when_the_client_never_answers_its_close() {
    // After an error close the server waits up to its close timeout for the client's close (5 s
    // in production, shortened to 1 s here through `Config::close_timeout`), then drops TCP.
    let close_timeout = Duration::from_secs(1);
    for backend in backends() {
        let server = start(backend, |c| c.close_timeout = close_timeout);
        let ctx = format!("[{backend}] unanswered error close");
        let mut ws = RawWs::connect(server.local_addr());
        ws.send(&client_frame(OP_CONT, b"orphan"));
        assert_eq!(ws.expect_close(&ctx), Some(1002), "{ctx}");
        let waited = ws.expect_eof(Duration::from_secs(5), &ctx);
        assert!(
            waited >= close_timeout - Duration::from_millis(200)
                && waited <= close_timeout + Duration::from_secs(2),
            "{ctx}: TCP closed after {waited:?}, expected about {close_timeout:?}"
        );
    }
}
