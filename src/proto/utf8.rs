//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! RFC 6455 §8.1 asks an endpoint to fail the connection as soon as a text message can no longer be
//! valid UTF-8, not only once it is complete (Autobahn's cases 6.4.x check exactly that). A
//! [`Utf8Stream`] is fed the message's bytes chunk by chunk; it keeps at most the three bytes of a
//! code point that a chunk boundary cut in two, and reports an error at the first byte that no valid
//! continuation could follow.
//!
//! The bulk of every chunk goes through `simdutf8`; only the stitch of the pending bytes with the
//! start of the next chunk (at most seven bytes) goes through `std::str::from_utf8`. Both report
//! `error_len() == None` for input that is merely cut short, and `Some(_)` for input that no further
//! bytes can make valid, which is the distinction this module relies on.

use thiserror::Error;

/// The bytes fed so far are not, and can no longer become, valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

/// Whether `b` is valid UTF-8 as a whole.
pub fn is_valid(b: &[u8]) -> bool {
    simdutf8::basic::from_utf8(b).is_ok()
}

/// The validation state of one text message: the bytes of an unfinished code point, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    pending: [u8; 3],
    len: u8,
}

impl Utf8Stream {
    /// A stream at the start of a message.
    pub const fn new() -> Self {
        Self {
            pending: [0; 3],
            len: 0,
        }
    }

    /// Validates the next `chunk` of the message.
    ///
    /// Fails as soon as the bytes seen so far cannot be the start of valid UTF-8, even if the chunk
    /// ends right after the offending byte. After an error the stream's state is unspecified until
    /// [`reset`](Self::reset).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), InvalidUtf8> {
        let mut rest = chunk;
        let pending_len = usize::from(self.len);
        if pending_len > 0 {
            // Stitch the unfinished code point with up to four following bytes. That is enough to
            // finish it (a code point is at most four bytes), so whatever is left unfinished at the
            // end of the stitch is either the same code point (the chunk was too short) or a new one.
            let take = chunk.len().min(4);
            let mut stitch = [0u8; 7];
            let (head, tail) = stitch.split_at_mut(pending_len);
            head.copy_from_slice(self.pending.get(..pending_len).ok_or(InvalidUtf8)?);
            let taken = chunk.get(..take).ok_or(InvalidUtf8)?;
            tail.get_mut(..take)
                .ok_or(InvalidUtf8)?
                .copy_from_slice(taken);
            let stitched = stitch.get(..pending_len + take).ok_or(InvalidUtf8)?;
            match std::str::from_utf8(stitched) {
                Ok(_) => {
                    self.len = 0;
                    rest = chunk.get(take..).unwrap_or_default();
                }
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(e) if e.valid_up_to() == 0 => {
                    // Still the same unfinished code point: the chunk was shorter than what it needs.
                    return self.keep(stitched);
                }
                Err(e) => {
                    // The pending code point is complete; validate the chunk from its next boundary
                    // (the unfinished tail of the stitch is validated again as part of `rest`).
                    self.len = 0;
                    let resume = e.valid_up_to().saturating_sub(pending_len);
                    rest = chunk.get(resume..).unwrap_or_default();
                }
            }
        }
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => self.keep(rest.get(e.valid_up_to()..).unwrap_or_default()),
        }
    }

    /// Ends the message: an unfinished code point at the end is an error. Resets the stream.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.len != 0;
        self.reset();
        if unfinished { Err(InvalidUtf8) } else { Ok(()) }
    }

    /// Forgets any pending bytes, ready for a new message.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Whether bytes of an unfinished code point are pending.
    pub fn is_pending(&self) -> bool {
        self.len != 0
    }

    /// Remembers `tail`, a valid but unfinished code point prefix (so at most three bytes).
    fn keep(&mut self, tail: &[u8]) -> Result<(), InvalidUtf8> {
        let dst = self.pending.get_mut(..tail.len()).ok_or(InvalidUtf8)?;
        dst.copy_from_slice(tail);
        self.len = u8::try_from(tail.len()).map_err(|_| InvalidUtf8)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Utf8Stream, is_valid};

    /// Valid strings with every boundary code point and every sequence length.
    const VALID: &[&str] = &[
        "",
        "hello",
        "\u{7f}",
        "\u{80}",
        "\u{7ff}",
        "\u{800}",
        "\u{d7ff}",
        "\u{e000}",
        "\u{fffd}",
        "\u{ffff}",
        "\u{10000}",
        "\u{10ffff}",
        "κόσμε",
        "a\u{80}b\u{800}c\u{10000}d\u{10ffff}",
        "Hello-µ@ßöäüàá-UTF-8!!",
        "\u{10ffff}\u{10ffff}\u{800}\u{7ff}\u{10000}x",
    ];

    /// Invalid byte sequences and the index of the first byte at which they can no longer be valid
    /// (`len()` for a sequence that is only truncated, so it fails at `finish`).
    const INVALID: &[(&[u8], usize)] = &[
        (&[0x80], 0),
        (&[0xbf], 0),
        (&[0xc0, 0x80], 0),                         // overlong, C0/C1 never valid
        (&[0xc1, 0xbf], 0),                         // overlong
        (&[0xe0, 0x80, 0x80], 1),                   // overlong 3-byte
        (&[0xe0, 0x9f, 0xbf], 1),                   // overlong U+07FF
        (&[0xf0, 0x80, 0x80, 0x80], 1),             // overlong 4-byte
        (&[0xf0, 0x8f, 0xbf, 0xbf], 1),             // overlong U+FFFF
        (&[0xed, 0xa0, 0x80], 1),                   // U+D800
        (&[0xed, 0xbf, 0xbf], 1),                   // U+DFFF
        (&[0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], 1), // surrogate pair
        (&[0xf4, 0x90, 0x80, 0x80], 1),             // U+110000
        (&[0xf5, 0x80, 0x80, 0x80], 0),
        (&[0xf7, 0xbf, 0xbf, 0xbf], 0),
        (&[0xf8, 0x88, 0x80, 0x80, 0x80], 0),
        (&[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80], 0),
        (&[0xfe], 0),
        (&[0xff], 0),
        (&[0xc2], 1),             // truncated 2-byte
        (&[0xe2, 0x82], 2),       // truncated 3-byte
        (&[0xf0, 0x9f, 0x98], 3), // truncated 4-byte
        (&[0xc2, 0x41], 1),       // continuation missing
        (&[0xe2, 0x41, 0x41], 1),
        (&[0xe2, 0x82, 0x41], 2),
        (&[0xf0, 0x9f, 0x98, 0x41], 3),
        (
            b"hello\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            17,
        ),
        (b"abc\xff", 3),
        (b"abc\xe0\x80", 4),
        (
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
            12,
        ),
    ];

    fn feed_all(chunks: &[&[u8]]) -> Result<(), usize> {
        let mut s = Utf8Stream::new();
        for (i, c) in chunks.iter().enumerate() {
            s.feed(c).map_err(|_| i)?;
        }
        s.finish().map_err(|_| chunks.len())
    }

    #[test]
    fn valid_in_one_piece() {
        for v in VALID {
            assert!(is_valid(v.as_bytes()), "{v:?}");
            assert_eq!(feed_all(&[v.as_bytes()]), Ok(()), "{v:?}");
        }
    }

    #[test]
    fn valid_split_at_every_offset() {
        for v in VALID {
            let b = v.as_bytes();
            for i in 0..=b.len() {
                let (x, y) = b.split_at(i);
                assert_eq!(feed_all(&[x, y]), Ok(()), "{v:?} split at {i}");
                // Also with an empty chunk in the middle.
                assert_eq!(feed_all(&[x, &[], y]), Ok(()), "{v:?} split at {i}");
            }
            for i in 0..=b.len() {
                for j in i..=b.len() {
                    let parts = [&b[..i], &b[i..j], &b[j..]];
                    assert_eq!(feed_all(&parts), Ok(()), "{v:?} split at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn valid_byte_by_byte() {
        for v in VALID {
            let chunks: Vec<&[u8]> = v.as_bytes().chunks(1).collect();
            assert_eq!(feed_all(&chunks), Ok(()), "{v:?}");
        }
    }

    #[test]
    fn long_valid_text_in_odd_chunks() {
        let text: String = VALID.concat().repeat(40);
        let b = text.as_bytes();
        for size in 1..=17 {
            let chunks: Vec<&[u8]> = b.chunks(size).collect();
            assert_eq!(feed_all(&chunks), Ok(()), "chunk size {size}");
        }
    }

    #[test]
    fn invalid_in_one_piece() {
        for (b, _) in INVALID {
            assert!(!is_valid(b), "{b:x?}");
            assert!(feed_all(&[b]).is_err(), "{b:x?}");
        }
    }

    #[test]
    fn invalid_byte_by_byte_fails_at_first_impossible_byte() {
        for &(b, at) in INVALID {
            let chunks: Vec<&[u8]> = b.chunks(1).collect();
            assert_eq!(feed_all(&chunks), Err(at), "{b:x?}");
        }
    }

    #[test]
    fn invalid_split_anywhere_fails_in_the_chunk_holding_the_bad_byte() {
        for &(b, at) in INVALID {
            for i in 0..=b.len() {
                let (x, y) = b.split_at(i);
                let expect = if at == b.len() {
                    2
                } else if at < i {
                    0
                } else {
                    1
                };
                assert_eq!(feed_all(&[x, y]), Err(expect), "{b:x?} split at {i}");
            }
        }
    }

    #[test]
    fn invalid_after_long_valid_prefix_in_chunks() {
        let mut text = "κόσμε\u{10000}".repeat(50).into_bytes();
        let bad = text.len();
        text.extend_from_slice(&[0xed, 0xa0, 0x80]);
        text.extend_from_slice("tail".as_bytes());
        for size in 1..=9 {
            let chunks: Vec<&[u8]> = text.chunks(size).collect();
            // The first impossible byte is the 0xa0 after 0xed.
            assert_eq!(
                feed_all(&chunks),
                Err((bad + 1) / size),
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn reset_forgets_pending_bytes() {
        let mut s = Utf8Stream::new();
        assert!(s.feed(&[0xe2, 0x82]).is_ok());
        assert!(s.is_pending());
        s.reset();
        assert!(!s.is_pending());
        assert!(s.feed(b"ok").is_ok());
        assert!(s.finish().is_ok());
        assert!(s.feed(&[0xf0]).is_ok());
        assert!(s.finish().is_err());
        // finish resets
        assert!(s.finish().is_ok());
    }

    #[test]
    fn stays_tiny() {
        assert!(std::mem::size_of::<Utf8Stream>() <= 4);
    }
}
