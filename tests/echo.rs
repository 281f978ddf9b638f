//! The echo application: every text and binary message comes back as it was sent, on every backend.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;

#[test]
fn text_and_binary_messages_are_echoed() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = ws_connect(server.local_addr());
        let texts = ["hello", "", "héllo wörld ✓ 𝄞 — ünïcödé", "a"];
        for text in texts {
            ws.send(Message::text(text)).unwrap();
            match ws.read().unwrap() {
                Message::Text(t) => assert_eq!(t.as_str(), text, "[{backend}] text echo"),
                other => panic!("[{backend}] expected text {text:?}, got {other:?}"),
            }
        }
        let binaries: [&[u8]; 4] = [
            b"\x00\x01\x02\xff",
            b"",
            &[0xC0, 0x80, 0xED, 0xA0],
            &[7; 300],
        ];
        for bin in binaries {
            ws.send(Message::binary(bin.to_vec())).unwrap();
            match ws.read().unwrap() {
                Message::Binary(b) => assert_eq!(&b[..], bin, "[{backend}] binary echo"),
                other => panic!("[{backend}] expected binary {bin:?}, got {other:?}"),
            }
        }
        ws.close(None).unwrap();
    }
}

#[test]
fn four_mib_binary_message_is_echoed_intact() {
    for backend in backends() {
        let server = start(backend, |cfg| cfg.max_payload = 16 << 20);
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let mut ws = ws_connect_with(server.local_addr(), "/ws", Some(config));
        let data = pseudo_random(4 << 20, 0xfeed_beef);
        ws.send(Message::binary(data.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b.len(), data.len(), "[{backend}] echoed length");
                let first_diff = b.iter().zip(&data).position(|(x, y)| x != y);
                assert_eq!(first_diff, None, "[{backend}] echoed bytes differ");
            }
            other => panic!(
                "[{backend}] expected the 4 MiB binary, got {:?}",
                kind(&other)
            ),
        }
    }
}

#[test]
fn payload_length_encodings_are_echoed() {
    // 7-bit, 16-bit and 64-bit length forms and their edges.
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = RawWs::connect(server.local_addr());
        for (i, len) in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000]
            .into_iter()
            .enumerate()
        {
            let data = pseudo_random(len, i as u64 + 1);
            ws.send(&client_frame(OP_BINARY, &data));
            let f = ws.server_frame();
            assert_eq!(
                (f.opcode, f.fin),
                (OP_BINARY, true),
                "[{backend}] len {len}: {f:?}"
            );
            assert!(f.payload == data, "[{backend}] len {len}: payload differs");
        }
    }
}

#[test]
fn fragmented_text_with_ping_in_between() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = RawWs::connect(server.local_addr());
        ws.send(&frame(OP_TEXT, false, 0, true, b"Hello, "));
        ws.send(&client_frame(OP_PING, b"ping-in-the-middle"));
        ws.send(&frame(OP_CONT, false, 0, true, b"fragmented "));
        ws.send(&frame(OP_CONT, true, 0, true, b"world"));
        let pong = ws.server_frame();
        assert_eq!(pong.opcode, OP_PONG, "[{backend}] pong first: {pong:?}");
        assert_eq!(
            pong.payload, b"ping-in-the-middle",
            "[{backend}] pong payload"
        );
        let msg = ws.server_frame();
        assert_eq!(msg.opcode, OP_TEXT, "[{backend}] whole message: {msg:?}");
        assert!(msg.fin, "[{backend}] the echo is one final frame");
        assert_eq!(
            msg.payload, b"Hello, fragmented world",
            "[{backend}] reassembled text"
        );
    }
}

#[test]
fn fragmented_messages_in_one_write_and_split_code_points() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = RawWs::connect(server.local_addr());
        // A binary message in three fragments, all in one write, with a ping between fragments.
        let mut burst = frame(OP_BINARY, false, 0, true, &[1, 2, 3]);
        burst.extend(frame(OP_CONT, false, 0, true, &[]));
        burst.extend(client_frame(OP_PING, b""));
        burst.extend(frame(OP_CONT, true, 0, true, &[4, 5]));
        ws.send(&burst);
        let pong = ws.server_frame();
        assert_eq!(
            (pong.opcode, pong.payload.len()),
            (OP_PONG, 0),
            "[{backend}] {pong:?}"
        );
        let msg = ws.server_frame();
        assert_eq!(
            (msg.opcode, msg.fin),
            (OP_BINARY, true),
            "[{backend}] {msg:?}"
        );
        assert_eq!(
            msg.payload,
            [1, 2, 3, 4, 5],
            "[{backend}] reassembled binary"
        );

        // A text message whose multi-byte code points are split across fragments is valid.
        let text = "€𝄞ü".as_bytes(); // 3 + 4 + 2 bytes
        ws.send(&frame(OP_TEXT, false, 0, true, &text[..1]));
        ws.send(&frame(OP_CONT, false, 0, true, &text[1..5]));
        ws.send(&frame(OP_CONT, true, 0, true, &text[5..]));
        let msg = ws.server_frame();
        assert_eq!(
            (msg.opcode, msg.fin),
            (OP_TEXT, true),
            "[{backend}] {msg:?}"
        );
        assert_eq!(
            msg.payload, text,
            "[{backend}] text split inside code points"
        );
    }
}

#[test]
fn frame_sent_one_byte_at_a_time_is_echoed() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = RawWs::connect(server.local_addr());
        let data = b"byte by byte, across many reads: \xc3\xa9";
        let bytes = frame(OP_TEXT, true, 0, true, data);
        for b in &bytes {
            ws.send(std::slice::from_ref(b));
            std::thread::sleep(Duration::from_millis(2));
        }
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (OP_TEXT, &data[..]),
            "[{backend}] {f:?}"
        );
    }
}

#[test]
fn ping_is_answered_with_same_payload() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = ws_connect(server.local_addr());
        for payload in [&b""[..], b"abc", &[0xAB; 125]] {
            ws.send(Message::Ping(payload.to_vec().into())).unwrap();
            match ws.read().unwrap() {
                Message::Pong(p) => assert_eq!(&p[..], payload, "[{backend}] pong payload"),
                other => panic!("[{backend}] expected pong, got {other:?}"),
            }
        }
        // An unsolicited pong is ignored: the next reply is the echo of the next message.
        ws.send(Message::Pong(b"unsolicited".to_vec().into()))
            .unwrap();
        ws.send(Message::text("after pong")).unwrap();
        match ws.read().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), "after pong", "[{backend}]"),
            other => panic!("[{backend}] expected text after an unsolicited pong, got {other:?}"),
        }
    }
}

#[test]
fn many_messages_come_back_in_order() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = ws_connect(server.local_addr());
        const N: usize = 2000;
        for i in 0..N {
            // Queue without flushing, so many messages share each write.
            ws.write(Message::text(format!("message {i}"))).unwrap();
            if i % 100 == 99 {
                ws.flush().unwrap();
            }
        }
        ws.flush().unwrap();
        for i in 0..N {
            match ws.read().unwrap() {
                Message::Text(t) => assert_eq!(t.as_str(), format!("message {i}"), "[{backend}]"),
                other => panic!("[{backend}] message {i}: got {other:?}"),
            }
        }
    }
}

#[test]
fn bytes_pipelined_after_the_upgrade_request_are_answered() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut pipelined = client_frame(OP_TEXT, b"sent with the upgrade");
        pipelined.extend(client_frame(OP_PING, b"p"));
        pipelined.extend(client_frame(OP_BINARY, &[9, 8, 7]));
        let mut ws = RawWs::connect_with(server.local_addr(), &pipelined);
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (OP_TEXT, &b"sent with the upgrade"[..]),
            "[{backend}]"
        );
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (OP_PONG, &b"p"[..]),
            "[{backend}]"
        );
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (OP_BINARY, &[9u8, 8, 7][..]),
            "[{backend}]"
        );
    }
}

#[test]
fn upgrade_request_split_across_writes_then_echo() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut stream = tcp(server.local_addr());
        let request = upgrade_request("/ws");
        let (a, b) = request.as_bytes().split_at(request.len() / 2);
        stream.write_all(a).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut tail = b.to_vec();
        tail.extend(client_frame(OP_TEXT, b"after a split request"));
        stream.write_all(&tail).unwrap();
        let (head, rest) = read_head(&mut stream).expect("upgrade response");
        assert_eq!(head.status, 101, "[{backend}] {head:?}");
        let mut ws = RawWs::new(stream, rest);
        let f = ws.server_frame();
        assert_eq!(f.payload, b"after a split request", "[{backend}] {f:?}");
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "frame",
    }
}

#[test]
fn control_frames_are_never_spliced_into_a_big_echo() {
    for backend in backends() {
        let server = start(backend, |cfg| cfg.max_payload = 16 << 20);
        let mut ws = RawWs::connect(server.local_addr());
        let data = pseudo_random(3 << 20, 0xabcdef);
        let mut burst = client_frame(OP_BINARY, &data);
        burst.extend(client_frame(OP_PING, b"during"));
        burst.extend(client_frame(OP_TEXT, b"after the big one"));
        ws.send(&burst);
        let mut frames: Vec<Frame> = (0..3).map(|_| ws.server_frame()).collect();
        let pong = frames
            .iter()
            .position(|f| f.opcode == OP_PONG)
            .unwrap_or_else(|| panic!("[{backend}] no pong among the replies"));
        let pong = frames.remove(pong);
        assert_eq!(pong.payload, b"during", "[{backend}] pong payload");
        assert_eq!(
            frames[0].opcode, OP_BINARY,
            "[{backend}] messages keep their order"
        );
        assert!(frames[0].fin, "[{backend}] big echo is one frame");
        assert!(
            frames[0].payload == data,
            "[{backend}] big echo corrupted ({} bytes)",
            frames[0].payload.len()
        );
        assert_eq!(
            (frames[1].opcode, &frames[1].payload[..]),
            (OP_TEXT, &b"after the big one"[..]),
            "[{backend}]"
        );
    }
}

#[test]
fn echo_is_delivered_after_the_client_half_closes() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = RawWs::connect(server.local_addr());
        ws.send(&client_frame(OP_TEXT, b"then half-close"));
        ws.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let f = ws.server_frame();
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (OP_TEXT, &b"then half-close"[..]),
            "[{backend}] echo after the client's FIN"
        );
        ws.expect_eof(
            Duration::from_secs(3),
            &format!("[{backend}] server closes after the peer's FIN"),
        );
    }
}
