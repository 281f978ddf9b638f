//! RFC 6455 §5.2 frames as the server sees them: the header codec (from `wsd-wire`, shared with
//! the load generator), the protocol errors that a frame stream can contain, and messages.
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

use thiserror::Error;
pub use wsd_wire::frame::{
    Decoded, FrameHeader, LengthOverflow, MAX_HEADER, Opcode, encode_header, write_frame,
};

use super::close::CloseCode;

/// The most payload bytes a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A violation of RFC 6455 by the peer, each mapped to the close code the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A client frame arrived without a mask.
    #[error("frame not masked")]
    Unmasked,
    /// An RSV bit is set, but no extension was negotiated.
    #[error("reserved bits set")]
    ReservedBits,
    /// The opcode is one of the reserved values 3-7 or 11-15.
    #[error("reserved opcode {0}")]
    ReservedOpcode(u8),
    /// A control frame declares more than 125 payload bytes.
    #[error("control frame too long")]
    ControlTooLong,
    /// A close frame declares more than 125 payload bytes.
    #[error("close frame too long")]
    CloseTooLong,
    /// A control frame has FIN clear.
    #[error("fragmented control frame")]
    ControlFragmented,
    /// A continuation frame arrived with no fragmented message in progress.
    #[error("unexpected continuation frame")]
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was in progress.
    #[error("expected continuation frame")]
    ExpectedContinuation,
    /// A 64-bit payload length has its most significant bit set.
    #[error("payload length out of range")]
    LengthOverflow,
    /// A close frame carries exactly one payload byte.
    #[error("close payload of one byte")]
    CloseLength,
    /// A close frame carries a code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    CloseCode(u16),
    /// A close frame's reason is not UTF-8.
    #[error("close reason not UTF-8")]
    CloseReason,
    /// A text message is not UTF-8.
    #[error("text not UTF-8")]
    InvalidUtf8,
    /// A message is larger than the configured maximum payload.
    #[error("message too big")]
    TooBig,
    /// A compressed message (`permessage-deflate`) is not valid DEFLATE data.
    #[error("invalid compressed data")]
    BadDeflate,
}

impl ProtocolError {
    /// Whether the offending frame was the peer's close: the peer has then already closed its
    /// side, so no further close is coming and the server closes the TCP connection after its
    /// answer instead of waiting (Autobahn 7.3.x, 7.5.1, 7.9.x).
    pub fn is_in_peer_close(&self) -> bool {
        matches!(
            self,
            Self::CloseLength | Self::CloseCode(_) | Self::CloseReason | Self::CloseTooLong
        )
    }

    /// The close code to answer with: 1007 for invalid UTF-8 or undecodable compressed data (data
    /// not consistent with the message), 1009 for too big, 1002 otherwise (RSV1 where RFC 7692
    /// does not allow it included).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::CloseReason | Self::BadDeflate => CloseCode::INVALID_DATA,
            Self::TooBig => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL,
        }
    }

    /// A short reason for the close frame (without the numbers that `Display` adds).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unmasked => "frame not masked",
            Self::ReservedBits => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::ControlTooLong | Self::CloseTooLong => "control frame too long",
            Self::ControlFragmented => "fragmented control frame",
            Self::UnexpectedContinuation => "unexpected continuation frame",
            Self::ExpectedContinuation => "expected continuation frame",
            Self::LengthOverflow => "payload length out of range",
            Self::CloseLength => "close payload of one byte",
            Self::CloseCode(_) => "invalid close code",
            Self::CloseReason => "close reason not UTF-8",
            Self::InvalidUtf8 => "text not UTF-8",
            Self::TooBig => "message too big",
            Self::BadDeflate => "invalid compressed data",
        }
    }
}

/// Decodes the frame header at the start of `buf` ([`wsd_wire::frame::decode_header`]); the one
/// undecodable header, a 64-bit length with its top bit set, is [`ProtocolError::LengthOverflow`].
#[inline]
pub fn decode_header(buf: &[u8]) -> Result<Decoded, ProtocolError> {
    wsd_wire::frame::decode_header(buf).map_err(|LengthOverflow| ProtocolError::LengthOverflow)
}

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}

/// A complete data message. For [`MessageKind::Text`] the data is already validated as UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Text or binary.
    pub kind: MessageKind,
    /// The unmasked payload, all fragments joined.
    pub data: &'a [u8],
}

impl MessageKind {
    /// The opcode that starts a message of this kind.
    pub fn opcode(self) -> Opcode {
        match self {
            Self::Text => Opcode::Text,
            Self::Binary => Opcode::Binary,
        }
    }
}

/// Builders for client frames, shared by the tests of several modules.
#[cfg(test)]
pub(crate) mod test_frames {
    use super::{MAX_HEADER, Opcode, encode_header};

    /// The first header byte: FIN bit and opcode.
    pub fn b0(fin: bool, opcode: Opcode) -> u8 {
        (u8::from(fin) << 7) | opcode as u8
    }

    /// A masked client frame whose first header byte is `b0` as given (so RSV bits and reserved
    /// opcodes can be set), with the shortest length form and a key that depends on the length.
    pub fn raw(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, (payload.len() as u8) ^ 0x3d];
        let mut out = Vec::new();
        wsd_wire::frame::write_masked_frame(&mut out, true, Opcode::Binary, key, payload);
        out[0] = b0;
        out
    }

    /// A masked client frame.
    pub fn client(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        raw(b0(fin, opcode), payload)
    }

    /// An unmasked frame (not allowed from a client).
    pub fn unmasked(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER];
        let n = encode_header(&mut h, fin, opcode, None, payload.len() as u64);
        let mut out = h[..n].to_vec();
        out.extend_from_slice(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_bit_of_64_bit_length_is_a_protocol_error() {
        let h = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_header(&h), Err(ProtocolError::LengthOverflow));
        assert_eq!(decode_header(&h[..9]), Ok(Decoded::Incomplete));
        assert_eq!(
            ProtocolError::LengthOverflow.close_code(),
            CloseCode::PROTOCOL
        );
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            ProtocolError::InvalidUtf8.close_code(),
            CloseCode::INVALID_DATA
        );
        assert_eq!(ProtocolError::TooBig.close_code(), CloseCode::TOO_BIG);
        assert_eq!(ProtocolError::Unmasked.close_code(), CloseCode::PROTOCOL);
        assert_eq!(
            ProtocolError::ReservedOpcode(3).to_string(),
            "reserved opcode 3"
        );
        assert_eq!(ProtocolError::ReservedOpcode(3).reason(), "reserved opcode");
    }
}
