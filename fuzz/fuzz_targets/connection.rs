//! The protocol core against arbitrary bytes: the HTTP upgrade, then RFC 6455 frames, fed in
//! arbitrary chunks, with either payload-limit policy. It must never panic, and it must stop
//! asking for input once it says it is done.
//!
//! Input: byte 0 picks the mode (bit 0: prefix a valid upgrade request, so the fuzzer spends its
//! time on frames; bit 1: `Oversized::Discard`; bit 2: `COMPRESSION=shared`, with the prefixed
//! request offering `permessage-deflate`, so frames with RSV1 are inflated), byte 1 seeds the chunk sizes, the rest is what
//! the peer sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::proto::connection::AppClose;
use wsd::proto::deflate::{Codec, Compression};
use wsd::proto::frame::write_frame;
use wsd::proto::{Connection, Handler, HttpRequest, Limits, Message, Oversized, Status};

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

const UPGRADE_DEFLATE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// Echoes every message, as `WSD_APP=echo` does; answers other paths 404.
struct Echo;

impl Handler for Echo {
    fn message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), AppClose> {
        write_frame(out, msg.kind.opcode(), msg.data);
        Ok(())
    }

    fn http_request(&mut self, _req: &HttpRequest<'_>, out: &mut Vec<u8>) -> u16 {
        out.extend_from_slice(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        404
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_payload: 4096,
        oversized: if mode & 2 == 0 {
            Oversized::Fail
        } else {
            Oversized::Discard
        },
        ws_path: "/ws".to_owned(),
        max_header_bytes: 8192,
        compression: (mode & 4 != 0).then_some(Compression { min_size: 16 }),
    };
    let mut input = Vec::with_capacity(UPGRADE.len() + rest.len());
    if mode & 1 == 1 {
        input.extend_from_slice(if mode & 4 != 0 {
            UPGRADE_DEFLATE
        } else {
            UPGRADE
        });
    }
    input.extend_from_slice(rest);
    let mut conn = Connection::new();
    let mut codec = Codec::new();
    let mut out = Vec::new();
    let mut state = u32::from(*seed) | 1;
    let mut at = 0;
    while at < input.len() {
        // Chunk sizes from a small LCG: 1 to 64 bytes, so every split point gets exercised.
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = (1 + (state >> 16) as usize % 64).min(input.len() - at);
        let mut chunk = input[at..at + len].to_vec();
        at += len;
        if conn.handle_bytes(&mut chunk, &limits, &mut codec, &mut out, &mut Echo) == Status::Done {
            // Done: the driver closes the socket; no more input is read.
            break;
        }
        out.clear();
    }
});
