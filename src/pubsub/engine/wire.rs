//! What travels through Redis: one publication as `W`, a version byte, the publishing
//! instance's id, and the ready WebSocket frame (header + MESSAGE envelope) that subscribers are
//! sent as is. Receivers check the frame's structure (one unmasked, final text frame whose length
//! is exactly what follows, with UTF-8 payload) but never parse or re-frame the envelope.
//!
//! Everything read from Redis is hostile input: [`decode`] refuses anything else without
//! panicking, so a stray or forged publication cannot break a subscriber's WebSocket stream.
#![forbid(unsafe_code)]

use crate::proto::frame::{self, Decoded, Opcode};

/// First byte of every publication.
pub const MAGIC: u8 = b'W';
/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the frame: magic, version, 8-byte instance id.
pub const HEADER_LEN: usize = 10;

/// Why a payload from Redis was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the fixed header.
    #[error("shorter than the {HEADER_LEN}-byte header")]
    Short,
    /// Not a wsd publication (first byte is not `W`).
    #[error("not a wsd publication")]
    Magic,
    /// Written by a newer (or unknown) wsd.
    #[error("unknown envelope version {0}")]
    Version(u8),
    /// The frame is incomplete, malformed, or followed by extra bytes.
    #[error("not exactly one complete frame")]
    Frame,
    /// Not a final, unmasked text frame without reserved bits.
    #[error("not a final unmasked text frame")]
    FrameKind,
    /// The text frame's payload is not UTF-8.
    #[error("text frame payload is not UTF-8")]
    Utf8,
}

/// A checked publication: who sent it and where its frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// The publishing instance's id.
    pub instance: u64,
    /// Offset of the WebSocket frame in the payload (always [`HEADER_LEN`]).
    pub frame_start: usize,
}

/// The payload to publish for `frame`, sent by `instance`.
pub fn encode(instance: u64, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + frame.len());
    out.push(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&instance.to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// Checks a payload received from Redis.
///
/// # Errors
/// A [`WireError`] naming the first problem found.
pub fn decode(payload: &[u8]) -> Result<Publication, WireError> {
    let Some((head, frame_bytes)) = payload.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Short);
    };
    if head[0] != MAGIC {
        return Err(WireError::Magic);
    }
    if head[1] != VERSION {
        return Err(WireError::Version(head[1]));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[2..]);
    let (header, header_len) = match frame::decode_header(frame_bytes) {
        Ok(Decoded::Header(header, len)) => (header, len),
        Ok(Decoded::Incomplete) | Err(_) => return Err(WireError::Frame),
    };
    if !header.fin
        || header.rsv != 0
        || header.mask.is_some()
        || header.opcode != Opcode::Text as u8
    {
        return Err(WireError::FrameKind);
    }
    let body = &frame_bytes[header_len..];
    if u64::try_from(body.len()).ok() != Some(header.payload_len) {
        return Err(WireError::Frame);
    }
    if simdutf8::basic::from_utf8(body).is_err() {
        return Err(WireError::Utf8);
    }
    Ok(Publication {
        instance: u64::from_be_bytes(id),
        frame_start: HEADER_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::frame_message;

    #[test]
    fn round_trip_keeps_the_frame_bytes() {
        let frame = frame_message("room:1", br#"{"n":1}"#);
        let payload = encode(0xfeed_beef_0123_4567, &frame);
        let p = decode(&payload).expect("valid");
        assert_eq!(p.instance, 0xfeed_beef_0123_4567);
        assert_eq!(&payload[p.frame_start..], &frame[..]);
    }

    #[test]
    fn large_frames_use_extended_lengths() {
        let data = format!("\"{}\"", "x".repeat(70_000));
        let frame = frame_message("t", data.as_bytes());
        assert!(decode(&encode(1, &frame)).is_ok());
    }

    #[test]
    fn refuses_what_is_not_one_clean_text_frame() {
        let frame = frame_message("t", b"1").to_vec();
        let ok = encode(7, &frame);
        assert_eq!(decode(&ok[..5]), Err(WireError::Short));
        let mut bad = ok.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(WireError::Magic));
        bad = ok.clone();
        bad[1] = 2;
        assert_eq!(decode(&bad), Err(WireError::Version(2)));
        assert_eq!(decode(&ok[..ok.len() - 1]), Err(WireError::Frame), "cut");
        let mut long = ok.clone();
        long.push(b' ');
        assert_eq!(decode(&long), Err(WireError::Frame), "trailing bytes");
        assert_eq!(decode(&ok[..HEADER_LEN]), Err(WireError::Frame), "no frame");
        let mut binary = Vec::new();
        frame::write_frame(&mut binary, Opcode::Binary, b"x");
        assert_eq!(decode(&encode(7, &binary)), Err(WireError::FrameKind));
        let mut ping = Vec::new();
        frame::write_frame(&mut ping, Opcode::Ping, b"");
        assert_eq!(decode(&encode(7, &ping)), Err(WireError::FrameKind));
        let masked = frame::test_frames::client(true, Opcode::Text, b"hi");
        assert_eq!(decode(&encode(7, &masked)), Err(WireError::FrameKind));
        let mut fragment = frame.clone();
        fragment[0] &= 0x7f;
        assert_eq!(decode(&encode(7, &fragment)), Err(WireError::FrameKind));
        let mut rsv = frame.clone();
        rsv[0] |= 0x40;
        assert_eq!(decode(&encode(7, &rsv)), Err(WireError::FrameKind));
        let mut text = Vec::new();
        frame::write_frame(&mut text, Opcode::Text, &[0xff, 0xfe]);
        assert_eq!(decode(&encode(7, &text)), Err(WireError::Utf8));
    }
}
