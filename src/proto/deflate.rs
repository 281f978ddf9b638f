//! The `permessage-deflate` codec (RFC 7692 §7.2) without per-connection state: one [`Codec`] per
//! worker inflates every compressed message and compresses every frame that goes out compressed.
//!
//! That is possible because wsd negotiates no context takeover in both directions: every message
//! is compressed and decompressed on its own, so a zlib state carries nothing from one message to
//! the next and one state can serve all the worker's connections in turn. A compressed message is
//! therefore assembled whole (compressed) before it is inflated, and the inflated size is counted
//! against the limit as it is produced: a message that inflates past `MAX_PAYLOAD` is stopped there
//! and never buffered further (a decompression bomb costs at most `MAX_PAYLOAD` bytes, once).

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{MAX_HEADER, Opcode, encode_header};

/// The four bytes a sender strips from the end of a compressed message and a receiver puts back
/// (RFC 7692 §7.2.1, §7.2.2): the end of an empty stored block.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The window of the compressor for connections that asked for `server_max_window_bits` below
/// 15: with 2^9 bytes zlib never refers back more than 512 - 262 = 250 bytes (its `MAX_DIST`),
/// which fits every window a client may ask for, 8 (256 bytes) included.
const NARROW_WINDOW_BITS: u8 = 9;

/// The compression level: zlib's default trades speed and ratio evenly, and a published message
/// is compressed once for all its subscribers.
///
/// Measured one-shot (benches/deflate.rs, BENCHMARKS.md "Compression"), a 1,858-byte feed JSON:
/// flate2 on zlib-rs level 6 16.6 µs → 490 B, level 1 6.6 µs → 719 B; libdeflater level 6 15.1 µs
/// → 449 B, level 1 7.4 µs → 486 B (14,458 B: zlib-rs 6 91 µs, libdeflater 6 66 µs, 1 30 µs).
/// libdeflater is the faster at equal ratio, but it writes a final block (BFINAL=1) that every
/// client must accept data after, and has no window setting for `server_max_window_bits`; zlib-rs
/// is kept until the clients are tested against that form.
const LEVEL: u32 = 6;

/// Inflate output buffers that grew beyond this are freed after their message.
const RETAIN_CAPACITY: usize = 64 * 1024;

/// Server-wide compression settings (`COMPRESSION=shared`, `COMPRESSION_MIN_SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Messages shorter than this go out uncompressed (RSV1 clear).
    pub min_size: usize,
}

/// Which compressed form a connection takes (fixed at the upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The default 32 KiB window.
    Wide,
    /// The client asked for a smaller window (`server_max_window_bits` < 15).
    Narrow,
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooBig,
    /// It is not valid DEFLATE data.
    Corrupt,
}

/// One worker's compression state: an inflater, the compressors, and their buffers. Allocates
/// nothing until first used.
#[derive(Default)]
pub struct Codec {
    inflate: Option<Decompress>,
    wide: Option<Compress>,
    narrow: Option<Compress>,
    /// Inflated messages (valid until the next call).
    inflated: Vec<u8>,
    /// Compressor output.
    deflated: Vec<u8>,
    /// Frames being rewritten by [`Codec::compress_frames`].
    spare: Vec<u8>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec with nothing allocated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inflates the payload of one compressed message (all its frames joined, trailer stripped as
    /// sent), stopping as soon as the output passes `limit` bytes. The result lives until the next
    /// call.
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<&[u8], InflateError> {
        let state = self.inflate.get_or_insert_with(|| Decompress::new(false));
        state.reset(false);
        if self.inflated.capacity() > RETAIN_CAPACITY {
            self.inflated = Vec::new();
        }
        self.inflated.clear();
        // A first guess at the size; the buffer doubles from there, never past the limit + 1.
        let guess = payload.len().saturating_mul(4).clamp(256, RETAIN_CAPACITY);
        self.inflated.reserve(guess.min(limit.saturating_add(1)));
        let out = &mut self.inflated;
        if !inflate_into(state, payload, out, limit)? {
            inflate_into(state, &TRAILER, out, limit)?;
        }
        Ok(&self.inflated)
    }

    /// Frees an inflate buffer that one large message made grow.
    pub fn release(&mut self) {
        if self.inflated.capacity() > RETAIN_CAPACITY {
            self.inflated = Vec::new();
        }
        if self.deflated.capacity() > RETAIN_CAPACITY {
            self.deflated = Vec::new();
        }
        if self.spare.capacity() > RETAIN_CAPACITY {
            self.spare = Vec::new();
        }
    }

    /// Compresses `data` as one message (raw DEFLATE, sync-flushed, trailer stripped) and returns
    /// the compressed payload, valid until the next call (`None` if zlib failed).
    pub fn deflate(&mut self, data: &[u8], window: Window) -> Option<&[u8]> {
        let state = match window {
            Window::Wide => self
                .wide
                .get_or_insert_with(|| Compress::new(flate2::Compression::new(LEVEL), false)),
            Window::Narrow => self.narrow.get_or_insert_with(|| {
                Compress::new_with_window_bits(
                    flate2::Compression::new(LEVEL),
                    false,
                    NARROW_WINDOW_BITS,
                )
            }),
        };
        state.reset();
        let out = &mut self.deflated;
        out.clear();
        out.reserve(data.len() + data.len() / 16 + 64);
        let mut input = data;
        loop {
            let before = state.total_in();
            if state.compress_vec(input, out, FlushCompress::Sync).is_err() {
                return None; // cannot happen with a healthy state and a Vec with room
            }
            let used = usize::try_from(state.total_in() - before).unwrap_or(input.len());
            input = input.get(used..).unwrap_or_default();
            if input.is_empty() && out.len() < out.capacity() {
                break; // all consumed and the flush had room to finish
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        Some(&self.deflated)
    }

    /// The complete frame for `payload` compressed (RSV1 set), or `None` when compression would
    /// not make it smaller.
    pub fn deflated_frame(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        window: Window,
    ) -> Option<Vec<u8>> {
        let compressed = self.deflate(payload, window)?;
        if compressed.len() >= payload.len() {
            return None;
        }
        let mut header = [0u8; MAX_HEADER];
        let n = encode_header(&mut header, true, opcode, None, compressed.len() as u64);
        header[0] |= RSV1;
        let mut frame = Vec::with_capacity(n + compressed.len());
        frame.extend_from_slice(header.get(..n).unwrap_or_default());
        frame.extend_from_slice(compressed);
        Some(frame)
    }

    /// Compresses, in place, the complete unfragmented text and binary frames in `out[start..]`
    /// whose payload is at least `min_size` bytes (what an application queued for a connection
    /// that negotiated compression). Control frames, fragments and frames that do not shrink are
    /// left as they are.
    pub fn compress_frames(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        min_size: usize,
        window: Window,
    ) {
        let Some(tail) = out.get(start..) else {
            return;
        };
        if !frames(tail).any(|f| f.compressible(min_size)) {
            return;
        }
        let mut spare = std::mem::take(&mut self.spare);
        spare.clear();
        spare.extend_from_slice(tail);
        out.truncate(start);
        for f in frames(&spare) {
            let whole = spare.get(f.start..f.end).unwrap_or_default();
            let payload = whole.get(f.header..).unwrap_or_default();
            let opcode = if f.b0 & 0x0f == Opcode::Binary as u8 {
                Opcode::Binary
            } else {
                Opcode::Text
            };
            match f
                .compressible(min_size)
                .then(|| self.deflated_frame(opcode, payload, window))
            {
                Some(Some(frame)) => out.extend_from_slice(&frame),
                _ => out.extend_from_slice(whole),
            }
        }
        // Anything after the last complete frame (there should be nothing) is kept as it was.
        let parsed: usize = frames(&spare).last().map_or(0, |f| f.end);
        out.extend_from_slice(spare.get(parsed..).unwrap_or_default());
        self.spare = spare;
    }
}

/// The RSV1 bit of the first header byte: "Per-Message Compressed" (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// Runs `input` through the inflater into `out`, stopping past `limit`. `Ok(true)`: the stream
/// ended (a final block), and whatever follows is ignored.
fn inflate_into(
    state: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, InflateError> {
    loop {
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        if out.len() == out.capacity() {
            let room = limit.saturating_add(1).saturating_sub(out.len());
            out.reserve_exact(out.capacity().max(256).min(room.max(1)));
        }
        let (in_before, out_before) = (state.total_in(), out.len());
        let status = state
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let used = usize::try_from(state.total_in() - in_before).unwrap_or(input.len());
        input = input.get(used..).unwrap_or_default();
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        match status {
            Status::StreamEnd => return Ok(true),
            Status::Ok | Status::BufError => {
                let full = out.len() == out.capacity();
                if input.is_empty() && !full {
                    return Ok(false);
                }
                if used == 0 && out.len() == out_before && !full {
                    return Err(InflateError::Corrupt); // no progress with room and input left
                }
            }
        }
    }
}

/// A complete server frame found in a buffer of frames.
struct Frame {
    b0: u8,
    start: usize,
    header: usize,
    end: usize,
}

impl Frame {
    fn compressible(&self, min_size: usize) -> bool {
        let data = matches!(self.b0 & 0x0f, 1 | 2);
        let fin_only = self.b0 & 0xf0 == 0x80;
        data && fin_only && self.end - self.start - self.header >= min_size
    }
}

/// The complete unmasked frames at the start of `buf`, in order.
fn frames(buf: &[u8]) -> impl Iterator<Item = Frame> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let rest = buf.get(pos..)?;
        let super::frame::Decoded::Header(h, n) = super::frame::decode_header(rest).ok()? else {
            return None;
        };
        let len = usize::try_from(h.payload_len).ok()?;
        let end = pos.checked_add(n)?.checked_add(len)?;
        if end > buf.len() {
            return None;
        }
        let frame = Frame {
            b0: *rest.first()?,
            start: pos,
            header: n,
            end,
        };
        pos = end;
        Some(frame)
    })
}

#[cfg(test)]
mod tests;
