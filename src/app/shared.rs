//! A message framed once for many connections: the plain frame, and with `COMPRESSION=shared` its
//! compressed frames, each made at most once per message (by whichever worker first has a
//! subscriber that negotiated it) and then shared by every such subscriber on every worker.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::proto::deflate::{Codec, Compression, Window};
use crate::proto::frame::{Decoded, Opcode, decode_header};

/// A complete WebSocket frame built once, with its compressed forms when compression is on.
/// Cloning it clones reference counts only.
#[derive(Debug, Clone)]
pub struct SharedFrame {
    plain: Bytes,
    /// `None`: compression is off or the message is shorter than `COMPRESSION_MIN_SIZE`, so
    /// every connection gets `plain` (and this costs nothing more than the plain frame).
    deflated: Option<Arc<Deflated>>,
}

/// The compressed frames of one message, one per window, made on first demand.
#[derive(Debug, Default)]
struct Deflated {
    /// For each [`Window`]: the compressed frame, or `None` if compression does not shrink it.
    wide: OnceLock<Option<Bytes>>,
    narrow: OnceLock<Option<Bytes>>,
}

impl SharedFrame {
    /// Shares `plain`, a complete unfragmented text or binary frame, never compressed.
    pub fn plain(plain: Bytes) -> Self {
        Self {
            plain,
            deflated: None,
        }
    }

    /// Shares `plain`, a complete unfragmented text or binary frame, to be compressed for the
    /// connections that negotiated it if `compression` is on and its payload is long enough.
    pub fn new(plain: Bytes, compression: Option<Compression>) -> Self {
        let worth = compression.is_some_and(|c| payload(&plain).len() >= c.min_size);
        Self {
            plain,
            deflated: worth.then(Arc::default),
        }
    }

    /// The plain frame.
    pub fn plain_frame(&self) -> &Bytes {
        &self.plain
    }

    /// Whether some connection may get another frame than [`SharedFrame::plain_frame`].
    pub fn may_compress(&self) -> bool {
        self.deflated.is_some()
    }

    /// The frame for a connection that negotiated `deflate` (`None`: it did not), compressing
    /// with `codec` the first time that form is asked for.
    pub fn for_connection(&self, deflate: Option<Window>, codec: &mut Codec) -> &Bytes {
        let (Some(deflated), Some(window)) = (&self.deflated, deflate) else {
            return &self.plain;
        };
        let cell = match window {
            Window::Wide => &deflated.wide,
            Window::Narrow => &deflated.narrow,
        };
        cell.get_or_init(|| {
            let opcode = match self.plain.first().map(|b| b & 0x0f) {
                Some(2) => Opcode::Binary,
                _ => Opcode::Text,
            };
            codec
                .deflated_frame(opcode, payload(&self.plain), window)
                .map(Bytes::from)
        })
        .as_ref()
        .unwrap_or(&self.plain)
    }
}

/// The payload of a complete server frame (empty if it is not one).
fn payload(frame: &[u8]) -> &[u8] {
    match decode_header(frame) {
        Ok(Decoded::Header(_, n)) => frame.get(n..).unwrap_or_default(),
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::write_frame;

    fn text_frame(payload: &[u8]) -> Bytes {
        let mut f = Vec::new();
        write_frame(&mut f, Opcode::Text, payload);
        Bytes::from(f)
    }

    #[test]
    fn compressed_once_and_shared() {
        let json = br#"{"type":"MESSAGE","payload":{"topic":"t","data":"#.repeat(20);
        let frame = SharedFrame::new(text_frame(&json), Some(Compression { min_size: 128 }));
        assert!(frame.may_compress());
        let mut codec = Codec::new();
        assert_eq!(frame.for_connection(None, &mut codec), &text_frame(&json));
        let wide = frame.for_connection(Some(Window::Wide), &mut codec).clone();
        assert!(wide.len() < json.len() / 3);
        assert_eq!(wide[0], 0xc1, "FIN, RSV1, text");
        // Asked again (another subscriber, another worker's codec): the same buffer.
        let again = frame
            .clone()
            .for_connection(Some(Window::Wide), &mut Codec::new())
            .clone();
        assert_eq!(again.as_ptr(), wide.as_ptr());
        let narrow = frame.for_connection(Some(Window::Narrow), &mut codec);
        assert_ne!(narrow.as_ptr(), wide.as_ptr());
        let body = &narrow[if narrow[1] == 126 { 4 } else { 2 }..];
        assert_eq!(narrow[0], 0xc1, "{narrow:?}");
        assert_eq!(codec.inflate(body, 1 << 20).unwrap(), json.as_slice());
    }

    #[test]
    fn short_or_off_stays_plain() {
        let mut codec = Codec::new();
        for frame in [
            SharedFrame::new(text_frame(b"short"), Some(Compression { min_size: 128 })),
            SharedFrame::new(text_frame(&[b'a'; 1000]), None),
            SharedFrame::plain(text_frame(&[b'a'; 1000])),
        ] {
            assert!(!frame.may_compress());
            let plain = frame.plain_frame().clone();
            assert_eq!(frame.for_connection(Some(Window::Wide), &mut codec), &plain);
        }
        // Incompressible: the plain frame, decided once.
        let mut x = 1u32;
        let noise: Vec<u8> = (0..400)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let frame = SharedFrame::new(text_frame(&noise), Some(Compression { min_size: 128 }));
        assert_eq!(
            frame.for_connection(Some(Window::Wide), &mut codec),
            frame.plain_frame()
        );
    }
}
