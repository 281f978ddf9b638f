//! Copying received bytes that the caller may not change (TLS records, which rustls lends as
//! `&[u8]`) into a buffer of its own, with the frames' payloads unmasked on the way: one pass
//! where copying, then unmasking in place ([`super::decoder::Decoder::feed`]), would take two.
//!
//! An [`UnmaskingCopy`] is made from a connection at the start of one input
//! ([`super::Connection::unmasking_copy`]) and knows where the frame stream stands: inside a
//! header cut by the previous input, or inside a payload with so many bytes and this mask key
//! left. It follows the frame boundaries through the pieces it is given, which may cut headers
//! and payloads anywhere, exactly as the decoder will (both read headers with
//! [`super::frame::decode_header`]), and the copy is then decoded without unmasking
//! ([`super::Connection::handle_copied`]). It only follows lengths; what the frames mean
//! (reserved bits, opcodes, limits, closing mode) stays the decoder's to judge, and bytes the
//! decoder skips unread may come out masked or not, as they never reach anyone.
//!
//! In the handshake phase the input is an HTTP request, possibly with frames after it: the copy
//! is then verbatim, and the decoder unmasks in place as for plain input.

use super::frame::{Decoded, MAX_HEADER, decode_header};
use super::mask::unmask_extend;

/// Where the frame stream stands (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cursor {
    /// Copy as is: the handshake phase (the decoder unmasks in place).
    Verbatim,
    /// Copy as is, and the copy is decoded without unmasking: frame boundaries are lost for good
    /// (the decoder ignores all further input).
    Lost,
    /// The first `have` bytes of a header are in `head`.
    Header {
        /// The header so far.
        head: [u8; MAX_HEADER],
        /// How many bytes of `head` are used.
        have: u8,
    },
    /// Inside a payload: `remaining` bytes to go, unmasked with `key` (rotated so that its first
    /// byte applies to the next payload byte).
    Payload {
        /// Payload bytes not yet copied.
        remaining: u64,
        /// The mask key for the next byte onwards.
        key: [u8; 4],
    },
}

/// A copy in progress of one input (see the module documentation).
#[derive(Debug, Clone)]
pub struct UnmaskingCopy {
    cursor: Cursor,
}

impl UnmaskingCopy {
    pub(super) fn new(cursor: Cursor) -> Self {
        Self { cursor }
    }

    /// Whether the copy is unmasked (to be decoded without unmasking); `false` in the handshake
    /// phase.
    pub fn unmasks(&self) -> bool {
        self.cursor != Cursor::Verbatim
    }

    /// Appends `src`, the next piece of the input, to `dst`, payloads unmasked.
    pub fn push(&mut self, mut src: &[u8], dst: &mut Vec<u8>) {
        while !src.is_empty() {
            match &mut self.cursor {
                Cursor::Verbatim | Cursor::Lost => {
                    dst.extend_from_slice(src);
                    return;
                }
                Cursor::Header { head, have } => {
                    let had = usize::from(*have);
                    let take = src.len().min(MAX_HEADER - had);
                    let (part, _) = src.split_at(take);
                    if let Some(dst) = head.get_mut(had..had + take) {
                        dst.copy_from_slice(part);
                    }
                    let stitched = head.get(..had + take).unwrap_or_default();
                    match decode_header(stitched) {
                        Ok(Decoded::Incomplete) => {
                            // Then `take` was all of `src`.
                            *have = (had + take) as u8;
                            dst.extend_from_slice(src);
                            return;
                        }
                        Ok(Decoded::Header(h, n)) => {
                            let used = n.saturating_sub(had);
                            let (header, rest) = src.split_at(used.min(src.len()));
                            dst.extend_from_slice(header);
                            src = rest;
                            self.cursor = Cursor::Payload {
                                remaining: h.payload_len,
                                key: h.mask.unwrap_or_default(),
                            };
                        }
                        Err(_) => {
                            self.cursor = Cursor::Lost;
                        }
                    }
                }
                Cursor::Payload { remaining, key } => {
                    let take = usize::try_from(*remaining).map_or(src.len(), |r| r.min(src.len()));
                    let (payload, rest) = src.split_at(take);
                    unmask_extend(dst, payload, *key, 0);
                    key.rotate_left(take % 4);
                    *remaining -= take as u64;
                    src = rest;
                    if *remaining == 0 {
                        self.cursor = Cursor::Header {
                            head: [0; MAX_HEADER],
                            have: 0,
                        };
                    }
                }
            }
        }
        // A frame with an empty payload right at the end of `src` leaves the cursor in `Payload`
        // with nothing to go: the next header starts with the next piece.
        if let Cursor::Payload { remaining: 0, .. } = self.cursor {
            self.cursor = Cursor::Header {
                head: [0; MAX_HEADER],
                have: 0,
            };
        }
    }
}

#[cfg(test)]
mod tests;
