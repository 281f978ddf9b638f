//! RFC 6455 §5.2 frame headers: decoding any header, encoding server (unmasked) and client
//! (masked) frames. What a header means for a connection (the protocol errors) is the caller's.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               | Masking-key, if MASK set to 1 |
//! +-------------------------------+-------------------------------+
//! ```

use crate::mask::apply_mask;

/// The longest possible header: 2 bytes, an 8-byte length and a 4-byte mask key.
pub const MAX_HEADER: usize = 14;

/// A frame opcode that this implementation knows; 3-7 and 11-15 are reserved.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// A later fragment of a text or binary message.
    Continuation = 0,
    /// The first frame of a text message.
    Text = 1,
    /// The first frame of a binary message.
    Binary = 2,
    /// Close.
    Close = 8,
    /// Ping.
    Ping = 9,
    /// Pong.
    Pong = 10,
}

impl Opcode {
    /// The opcode for a raw 4-bit value, or `None` if it is reserved.
    #[inline]
    pub fn from_u8(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::Continuation),
            1 => Some(Self::Text),
            2 => Some(Self::Binary),
            8 => Some(Self::Close),
            9 => Some(Self::Ping),
            10 => Some(Self::Pong),
            _ => None,
        }
    }

    /// Close, ping and pong are control frames.
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header, not yet validated against the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1-3 as the low three bits.
    pub rsv: u8,
    /// The raw 4-bit opcode; see [`Opcode::from_u8`].
    pub opcode: u8,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// The result of [`decode_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed to complete the header.
    Incomplete,
    /// A complete header and how many bytes it took.
    Header(FrameHeader, usize),
}

/// The one header that cannot be decoded at all: a 64-bit payload length with its most significant
/// bit set (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthOverflow;

impl std::fmt::Display for LengthOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payload length out of range")
    }
}

impl std::error::Error for LengthOverflow {}

/// Decodes the frame header at the start of `buf`.
///
/// Non-minimal length encodings are accepted. The only error is a 64-bit length with its top bit set,
/// reported as soon as the length bytes are there.
#[inline]
pub fn decode_header(buf: &[u8]) -> Result<Decoded, LengthOverflow> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(Decoded::Incomplete),
    };
    let rest = buf.get(2..).unwrap_or_default();
    let (payload_len, mut len) = match b1 & 0x7f {
        126 => match rest.first_chunk::<2>() {
            Some(b) => (u64::from(u16::from_be_bytes(*b)), 4),
            None => return Ok(Decoded::Incomplete),
        },
        127 => match rest.first_chunk::<8>() {
            Some(b) => {
                let v = u64::from_be_bytes(*b);
                if v >> 63 != 0 {
                    return Err(LengthOverflow);
                }
                (v, 10)
            }
            None => return Ok(Decoded::Incomplete),
        },
        short => (u64::from(short), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        match buf.get(len..).and_then(|s| s.first_chunk::<4>()) {
            Some(key) => {
                len += 4;
                Some(*key)
            }
            None => return Ok(Decoded::Incomplete),
        }
    } else {
        None
    };
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0f,
        mask,
        payload_len,
    };
    Ok(Decoded::Header(header, len))
}

/// Encodes a header into `buf` with the shortest length form, returning its length.
#[inline]
pub fn encode_header(
    buf: &mut [u8; MAX_HEADER],
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    len: u64,
) -> usize {
    buf[0] = (u8::from(fin) << 7) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = match len {
        0..=125 => {
            buf[1] = mask_bit | len as u8;
            2
        }
        126..=0xffff => {
            buf[1] = mask_bit | 126;
            buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            buf[1] = mask_bit | 127;
            buf[2..10].copy_from_slice(&len.to_be_bytes());
            10
        }
    };
    if let (Some(key), Some(dst)) = (mask, buf.get_mut(n..n + 4)) {
        dst.copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Appends a complete, unfragmented, unmasked (server) frame. Not `#[inline]`: it stays one
/// out-of-line function in wsd (as it was before the codec moved here), so its callers' code is
/// unchanged.
pub fn write_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let mut header = [0u8; MAX_HEADER];
    let n = encode_header(&mut header, true, opcode, None, payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(header.get(..n).unwrap_or_default());
    out.extend_from_slice(payload);
}

/// Appends a complete masked (client) frame: FIN as given, the shortest length form, the payload
/// XORed with `key`.
pub fn write_masked_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    key: [u8; 4],
    payload: &[u8],
) {
    let mut header = [0u8; MAX_HEADER];
    let n = encode_header(&mut header, fin, opcode, Some(key), payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(header.get(..n).unwrap_or_default());
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(masked) = out.get_mut(start..) {
        apply_mask(masked, key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Encodes a whole frame, masking the payload when a key is given.
    fn frame(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER];
        let n = encode_header(&mut h, fin, opcode, mask, payload.len() as u64);
        let mut out = h[..n].to_vec();
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
        out
    }

    /// Decodes a whole frame, checks every proper prefix is Incomplete, and returns the header and
    /// the unmasked payload.
    fn decode(bytes: &[u8]) -> (FrameHeader, Vec<u8>) {
        let Ok(Decoded::Header(h, n)) = decode_header(bytes) else {
            panic!("no header in {bytes:x?}");
        };
        for i in 0..n {
            assert_eq!(
                decode_header(&bytes[..i]),
                Ok(Decoded::Incomplete),
                "prefix {i}"
            );
        }
        assert_eq!(bytes.len() - n, h.payload_len as usize);
        let mut payload = bytes[n..].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        (h, payload)
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_unmasked_hello() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(frame(true, Opcode::Text, None, b"Hello"), bytes);
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Text, b"Hello");
        assert_eq!(out, bytes);
        assert_eq!(
            decode(&bytes),
            (header(true, 1, None, 5), b"Hello".to_vec())
        );
    }

    #[test]
    fn rfc_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(frame(true, Opcode::Text, Some(KEY), b"Hello"), bytes);
        assert_eq!(
            decode(&bytes),
            (header(true, 1, Some(KEY), 5), b"Hello".to_vec())
        );
    }

    #[test]
    fn rfc_fragmented_hello() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(frame(false, Opcode::Text, None, b"Hel"), first);
        assert_eq!(frame(true, Opcode::Continuation, None, b"lo"), second);
        assert_eq!(decode(&first), (header(false, 1, None, 3), b"Hel".to_vec()));
        assert_eq!(decode(&second), (header(true, 0, None, 2), b"lo".to_vec()));
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(frame(true, Opcode::Ping, None, b"Hello"), ping);
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Ping, b"Hello");
        assert_eq!(out, ping);
        assert_eq!(decode(&ping), (header(true, 9, None, 5), b"Hello".to_vec()));

        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(frame(true, Opcode::Pong, Some(KEY), b"Hello"), pong);
        assert_eq!(
            decode(&pong),
            (header(true, 10, Some(KEY), 5), b"Hello".to_vec())
        );
    }

    #[test]
    fn rfc_256_bytes_binary() {
        let payload: Vec<u8> = (0..256).map(|i| i as u8).collect();
        let bytes = frame(true, Opcode::Binary, None, &payload);
        assert_eq!(bytes[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(bytes.len(), 4 + 256);
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Binary, &payload);
        assert_eq!(out, bytes);
        assert_eq!(
            decode(&bytes),
            (header(true, 2, None, 256), payload.clone())
        );
        let masked = frame(true, Opcode::Binary, Some(KEY), &payload);
        assert_eq!(
            masked[..8],
            [0x82, 0xfe, 0x01, 0x00, 0x37, 0xfa, 0x21, 0x3d]
        );
        assert_eq!(decode(&masked), (header(true, 2, Some(KEY), 256), payload));
    }

    #[test]
    fn rfc_64k_binary() {
        let payload: Vec<u8> = (0..65536).map(|i| (i * 7) as u8).collect();
        let bytes = frame(true, Opcode::Binary, None, &payload);
        assert_eq!(
            bytes[..10],
            [0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Binary, &payload);
        assert_eq!(out, bytes);
        assert_eq!(
            decode(&bytes),
            (header(true, 2, None, 65536), payload.clone())
        );
        let masked = frame(true, Opcode::Binary, Some(KEY), &payload);
        assert_eq!(masked.len(), 14 + 65536);
        assert_eq!(
            decode(&masked),
            (header(true, 2, Some(KEY), 65536), payload)
        );
    }

    #[test]
    fn length_form_boundaries() {
        for (len, hlen) in [
            (0u64, 2),
            (125, 2),
            (126, 4),
            (0xffff, 4),
            (0x1_0000, 10),
            (u64::MAX >> 1, 10),
        ] {
            for mask in [None, Some(KEY)] {
                let mut h = [0u8; MAX_HEADER];
                let n = encode_header(&mut h, true, Opcode::Binary, mask, len);
                let expect = hlen + if mask.is_some() { 4 } else { 0 };
                assert_eq!(n, expect, "len {len}");
                assert_eq!(
                    decode_header(&h[..n]),
                    Ok(Decoded::Header(header(true, 2, mask, len), n))
                );
                for i in 0..n {
                    assert_eq!(decode_header(&h[..i]), Ok(Decoded::Incomplete));
                }
            }
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let h = [0x82, 0x7e, 0x00, 0x05];
        assert_eq!(
            decode_header(&h),
            Ok(Decoded::Header(header(true, 2, None, 5), 4))
        );
        let h = [0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05];
        assert_eq!(
            decode_header(&h),
            Ok(Decoded::Header(header(true, 2, None, 5), 10))
        );
    }

    #[test]
    fn top_bit_of_64_bit_length_is_an_error() {
        let h = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_header(&h), Err(LengthOverflow));
        assert_eq!(decode_header(&h[..9]), Ok(Decoded::Incomplete));
        assert_eq!(LengthOverflow.to_string(), "payload length out of range");
    }

    #[test]
    fn raw_bits_are_reported() {
        let h = [0x73, 0x80, 1, 2, 3, 4];
        assert_eq!(
            decode_header(&h),
            Ok(Decoded::Header(
                FrameHeader {
                    fin: false,
                    rsv: 7,
                    opcode: 3,
                    mask: Some([1, 2, 3, 4]),
                    payload_len: 0
                },
                6
            ))
        );
    }

    #[test]
    fn opcodes() {
        for raw in 0..16u8 {
            let op = Opcode::from_u8(raw);
            assert_eq!(op.is_some(), matches!(raw, 0..=2 | 8..=10), "{raw}");
            if let Some(op) = op {
                assert_eq!(op as u8, raw);
                assert_eq!(op.is_control(), raw >= 8);
            }
        }
    }

    #[test]
    fn masked_frame_writer_matches_the_rfc_and_every_length_form() {
        let mut out = Vec::new();
        write_masked_frame(&mut out, true, Opcode::Text, KEY, b"Hello");
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        for len in [0usize, 125, 126, 0xffff, 0x1_0000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            for fin in [true, false] {
                let mut out = vec![0xee];
                write_masked_frame(&mut out, fin, Opcode::Binary, KEY, &payload);
                assert_eq!(out[0], 0xee, "appends");
                assert_eq!(out[1..], frame(fin, Opcode::Binary, Some(KEY), &payload));
                let (h, p) = decode(&out[1..]);
                assert_eq!((h.fin, h.mask, p), (fin, Some(KEY), payload.clone()));
            }
        }
    }
}
