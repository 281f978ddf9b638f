//! One connection's byte stream as the floor sees it: the HTTP upgrade is answered with a 101,
//! then every client frame goes back out with its mask key removed from the header and its payload
//! bytes passed through as they came (still masked: no per-byte work). The replies are as long as
//! a WebSocket server's, so the load generators accept them and every message costs one receive
//! and one send, as in wsd; nothing more is done, which is what makes it a floor.

use wsd::proto::frame::{Decoded, MAX_HEADER, Opcode, decode_header, encode_header};
use wsd::proto::handshake::accept_key;

/// The most bytes an upgrade request may take.
const MAX_REQUEST: usize = 8 * 1024;

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The upgrade request is larger than [`MAX_REQUEST`].
    RequestTooLarge,
    /// The upgrade request is not HTTP or has no `Sec-WebSocket-Key`.
    BadRequest,
    /// A frame header the protocol core rejects (reserved opcode, 64-bit length overflow).
    BadFrame,
}

/// Where a connection's stream is.
#[derive(Debug)]
enum Phase {
    /// Collecting the upgrade request.
    Upgrade(Vec<u8>),
    /// Relaying frames: the bytes of a header split across reads, and the payload bytes of the
    /// current frame still to pass through.
    Frames {
        header: [u8; MAX_HEADER],
        header_len: usize,
        remaining: u64,
        /// The current frame is a close frame.
        closing: bool,
    },
    /// A close frame was relayed whole: the connection is to be closed once it is sent, and
    /// anything after it is ignored (RFC 6455 section 5.5.1).
    Closed,
}

/// A connection's relay state.
#[derive(Debug)]
pub struct Relay {
    phase: Phase,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            phase: Phase::Upgrade(Vec::new()),
        }
    }
}

impl Relay {
    /// Feeds received bytes; appends what to send back to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        let data = match &mut self.phase {
            Phase::Upgrade(request) => {
                let before = request.len();
                request.extend_from_slice(data);
                let Some(end) = find_end(request) else {
                    return if request.len() > MAX_REQUEST {
                        Err(Refused::RequestTooLarge)
                    } else {
                        Ok(())
                    };
                };
                if end > MAX_REQUEST {
                    return Err(Refused::RequestTooLarge);
                }
                answer_upgrade(&request[..end], out)?;
                self.phase = Phase::Frames {
                    header: [0; MAX_HEADER],
                    header_len: 0,
                    remaining: 0,
                    closing: false,
                };
                // What followed the request in this read is already frames.
                &data[end.saturating_sub(before).min(data.len())..]
            }
            Phase::Frames { .. } => data,
            Phase::Closed => return Ok(()),
        };
        self.relay(data, out)
    }

    /// Whether a close frame has been relayed whole (the server then closes the connection).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    fn relay(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        let Phase::Frames {
            header,
            header_len,
            remaining,
            closing,
        } = &mut self.phase
        else {
            return Ok(());
        };
        loop {
            if *remaining > 0 {
                let n = usize::try_from(*remaining).map_or(data.len(), |r| r.min(data.len()));
                out.extend_from_slice(&data[..n]);
                *remaining -= n as u64;
                data = &data[n..];
            }
            if *remaining == 0 && *closing {
                self.phase = Phase::Closed;
                return Ok(());
            }
            if data.is_empty() {
                return Ok(());
            }
            if *remaining > 0 {
                continue;
            }
            let take = (MAX_HEADER - *header_len).min(data.len());
            header[*header_len..*header_len + take].copy_from_slice(&data[..take]);
            match decode_header(&header[..*header_len + take]) {
                Ok(Decoded::Incomplete) => {
                    *header_len += take;
                    data = &data[take..];
                }
                Ok(Decoded::Header(h, len)) => {
                    data = &data[len - *header_len..];
                    *header_len = 0;
                    let opcode = Opcode::from_u8(h.opcode).ok_or(Refused::BadFrame)?;
                    let mut reply = [0u8; MAX_HEADER];
                    let n = encode_header(&mut reply, h.fin, opcode, None, h.payload_len);
                    out.extend_from_slice(&reply[..n]);
                    *remaining = h.payload_len;
                    *closing = opcode == Opcode::Close;
                }
                Err(_) => return Err(Refused::BadFrame),
            }
        }
    }
}

/// The length of the request up to and including its blank line, once it is there.
fn find_end(request: &[u8]) -> Option<usize> {
    request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

fn answer_upgrade(request: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Refused::BadRequest),
    }
    let key = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
        .ok_or(Refused::BadRequest)?
        .value;
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept_key(key.trim_ascii()));
    out.extend_from_slice(b"\r\n\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend_from_slice(payload);
        f
    }

    /// What the floor sends for `client_frame(opcode, payload)`: the same frame unmasked in the
    /// header only (the payload bytes are passed through as received).
    fn reply(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let f = client_frame(opcode, payload);
        let hdr = f.len() - payload.len() - 4;
        let mut r = f[..hdr].to_vec();
        r[1] &= 0x7f;
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn upgrade_is_answered_with_the_rfc_accept_key() {
        let mut relay = Relay::default();
        let mut out = Vec::new();
        relay
            .feed(&REQUEST[..10], &mut out)
            .expect("partial request");
        assert!(out.is_empty());
        relay.feed(&REQUEST[10..], &mut out).expect("request");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 101 "));
        // RFC 6455 section 1.3's example key and accept value.
        assert!(
            text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
            "{text:?}"
        );
    }

    #[test]
    fn frames_come_back_in_any_split() {
        let payloads: Vec<Vec<u8>> =
            vec![b"hello".to_vec(), vec![7u8; 300], vec![9u8; 70_000], vec![]];
        let mut stream = REQUEST.to_vec();
        let mut want = Vec::new();
        for p in &payloads {
            stream.extend_from_slice(&client_frame(2, p));
            want.extend_from_slice(&reply(2, p));
        }
        for chunk in [1, 3, 13, 14, 15, 1000, stream.len()] {
            let mut relay = Relay::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                relay.feed(piece, &mut out).expect("valid stream");
            }
            let body =
                out.split_off(out.windows(4).position(|w| w == b"\r\n\r\n").expect("101") + 4);
            assert_eq!(body, want, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_close_frame_ends_the_relay() {
        for split in [1, 7, 1000] {
            let mut stream = REQUEST.to_vec();
            stream.extend_from_slice(&client_frame(2, b"hi"));
            stream.extend_from_slice(&client_frame(8, &[3, 232]));
            stream.extend_from_slice(&client_frame(2, b"after close"));
            let mut relay = Relay::default();
            let mut out = Vec::new();
            for piece in stream.chunks(split) {
                relay.feed(piece, &mut out).expect("valid stream");
            }
            assert!(relay.is_closed());
            let mut want = reply(2, b"hi");
            want.extend_from_slice(&reply(8, &[3, 232]));
            assert!(
                out.ends_with(&want),
                "split {split}: nothing after the close"
            );
        }
        let mut relay = Relay::default();
        let mut out = Vec::new();
        let mut stream = REQUEST.to_vec();
        stream.extend_from_slice(&client_frame(8, &[3, 232])[..4]);
        relay.feed(&stream, &mut out).expect("partial close");
        assert!(!relay.is_closed(), "not before the whole close frame");
    }

    #[test]
    fn hostile_input_is_refused() {
        let mut out = Vec::new();
        let mut relay = Relay::default();
        assert_eq!(
            relay.feed(&[b'a'; MAX_REQUEST + 1], &mut out),
            Err(Refused::RequestTooLarge)
        );
        let mut relay = Relay::default();
        assert_eq!(
            relay.feed(b"\x16\x03\x01\r\n\r\n", &mut out),
            Err(Refused::BadRequest)
        );
        let mut relay = Relay::default();
        assert_eq!(
            relay.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out),
            Err(Refused::BadRequest)
        );
        let mut relay = Relay::default();
        let mut stream = REQUEST.to_vec();
        stream.extend_from_slice(&[0x83, 0x80, 1, 2, 3, 4]);
        assert_eq!(
            relay.feed(&stream, &mut out),
            Err(Refused::BadFrame),
            "reserved opcode"
        );
        let mut relay = Relay::default();
        let mut stream = REQUEST.to_vec();
        stream.extend_from_slice(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            relay.feed(&stream, &mut out),
            Err(Refused::BadFrame),
            "length overflow"
        );
    }
}
