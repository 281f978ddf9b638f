//! The streaming frame and message state machine of an open connection.
//!
//! [`Decoder::feed`] takes whatever the driver received, of any size and split anywhere, and reports
//! [`Event`]s to a callback as soon as they are complete:
//!
//! - A header cut by the end of a chunk waits in a 13-byte spill.
//! - Payloads are unmasked in place, in the caller's buffer.
//! - A complete, unfragmented data frame that lies entirely in the current chunk is handed over as a
//!   slice of that chunk: no allocation, no copy. Only a message cut by a chunk boundary or sent in
//!   fragments is copied, into a per-connection `Vec` that is emptied again when the message is done
//!   (and freed when it grew past [`RETAIN_CAPACITY`]).
//! - Control frames may come between fragments. One cut by a chunk boundary is assembled after the
//!   partial message in the same `Vec` (at most 125 bytes) and removed again.
//! - Text is validated as it arrives, so invalid UTF-8 is reported at the first impossible byte, even
//!   in the middle of a frame whose rest has not arrived yet.
//! - The message size limit is judged from the declared lengths in the headers, before anything is
//!   buffered. Past it, the message is either an error (close 1009) or, with
//!   [`Oversized::Discard`], reported once as [`Event::Oversized`] and skipped as it streams in:
//!   the rest of its frames (continuations up to FIN) are neither unmasked, validated nor kept,
//!   control frames between them are still reported, and the next message is decoded as usual.
//!
//! - With `permessage-deflate` negotiated ([`Decoder::with_deflate`]), RSV1 is allowed on the first
//!   frame of a data message and marks it compressed. A compressed message is assembled whole
//!   (still compressed, its declared size judged against the limit as above) and reported as
//!   [`Event::Compressed`] for the caller to inflate with the worker's codec; its text is validated
//!   only once inflated. RSV1 anywhere else, or without the negotiation, is a protocol error.
//!
//! After a protocol error the decoder stays in step with the stream: the rest of the offending frame
//! is skipped, and parsing goes on in *closing* mode, where data frames are discarded unread but
//! control frames (above all the peer's close) are still reported.

use std::ops::ControlFlow;

use super::close::{PeerClose, parse_close_payload};
use super::deflate::Window;
use super::frame::{
    Decoded, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER, Message, MessageKind, Opcode,
    ProtocolError, decode_header,
};
use super::mask::apply_mask;
use super::utf8::{self, Utf8Stream};

/// Buffers that grew beyond this are freed when their message is done, not kept for the next one.
pub const RETAIN_CAPACITY: usize = 64 * 1024;

/// The most that is reserved up front for a frame being buffered; larger messages grow as they
/// arrive, so that a header alone cannot make the server allocate `max_payload` bytes.
const PREALLOC_CAP: usize = 1024 * 1024;

/// What to do with a data message larger than the size limit (`PAYLOAD_LIMIT_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversized {
    /// Report [`ProtocolError::TooBig`] (the connection closes with 1009).
    Fail,
    /// Report [`Event::Oversized`] once and skip the message; the connection goes on.
    Discard,
}

/// What the decoder found in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message (not reported in closing mode).
    Message(Message<'a>),
    /// A complete compressed data message (RSV1 set on its first frame): `data` is the DEFLATE
    /// payload of all its frames joined, not yet inflated, and a text message is not yet validated.
    Compressed(Message<'a>),
    /// A ping with its payload.
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// The peer's close frame, validated.
    Close(PeerClose<'a>),
    /// A data message crossed the size limit and is being discarded ([`Oversized::Discard`]).
    /// Reported once, when the header that crosses the limit arrives.
    Oversized(MessageKind),
    /// The peer broke the protocol. Unless the answer is [`Next::Stop`], the decoder goes on in
    /// closing mode.
    Error(ProtocolError),
}

/// The callback's answer to an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on.
    Continue,
    /// The server has sent a close frame: from now on discard data frames.
    Closing,
    /// Stop here and ignore the rest of the input.
    Stop,
}

/// What the bytes at the current position belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A frame header (partly in the spill, if `short_len > 0`).
    Header,
    /// The payload of a data frame with FIN clear.
    Data,
    /// The payload of the final frame of a data message.
    LastData,
    /// The payload of a ping (`short_len` is its declared length; so for pong and close).
    Ping,
    /// The payload of a pong.
    Pong,
    /// The payload of a close frame.
    Close,
    /// A payload to skip: a data frame in closing mode or of a discarded message, or the rest of a
    /// frame that was in error.
    Skip,
    /// A header had an impossible length, so frame boundaries are lost for good.
    Lost,
}

/// Where the connection stands between and within data messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No data message in progress.
    Idle,
    /// A fragmented text message is in progress.
    Text,
    /// A fragmented binary message is in progress.
    Binary,
    /// An oversized message is being discarded: its continuation frames are skipped up to FIN.
    Discard,
    /// The server sent a close: data frames are discarded, so no message is ever in progress.
    Closing,
}

impl Mode {
    fn message(self) -> Option<MessageKind> {
        match self {
            Self::Text => Some(MessageKind::Text),
            Self::Binary => Some(MessageKind::Binary),
            Self::Idle | Self::Discard | Self::Closing => None,
        }
    }
}

/// The decoding state of one open connection (56 bytes).
#[derive(Debug)]
pub struct Decoder {
    /// The message being assembled, then possibly a control frame being assembled after it.
    buf: Vec<u8>,
    /// Payload bytes of the current frame not yet received.
    remaining: u64,
    /// Validation state of the text message in progress.
    utf8: Utf8Stream,
    /// In [`Phase::Header`], the start of a header cut by the end of a chunk (an incomplete header
    /// is at most 13 bytes). In the payload phases, which need no spill, its first four bytes are
    /// the current frame's mask key, rotated so that the first applies to the next payload byte.
    /// (Sharing the bytes keeps the decoder at 56 bytes with the deflate fields below.)
    spill: [u8; MAX_HEADER - 1],
    /// In [`Phase::Header`], how many bytes of `spill` are used; in the control phases, the control
    /// frame's declared payload length. (One byte serving both keeps the decoder at 56 bytes.)
    short_len: u8,
    phase: Phase,
    mode: Mode,
    /// Whether `permessage-deflate` was negotiated, and which window the server's messages use.
    deflate: Option<Window>,
    /// The message in progress is compressed (RSV1 on its first frame).
    compressed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of the frame stream. Allocates nothing.
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            remaining: 0,
            utf8: Utf8Stream::new(),
            spill: [0; MAX_HEADER - 1],
            short_len: 0,
            phase: Phase::Header,
            mode: Mode::Idle,
            deflate: None,
            compressed: false,
        }
    }

    /// A decoder for a connection that negotiated `permessage-deflate`: RSV1 marks compressed
    /// messages.
    pub const fn with_deflate(window: Option<Window>) -> Self {
        let mut d = Self::new();
        d.deflate = window;
        d
    }

    /// The `permessage-deflate` window negotiated, if any.
    pub fn deflate(&self) -> Option<Window> {
        self.deflate
    }

    /// Whether the decoder is in closing mode (data frames are discarded).
    pub fn is_closing(&self) -> bool {
        self.mode == Mode::Closing
    }

    /// The capacity of the message buffer, for memory accounting (0 when idle after a big message).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Switches to closing mode: the message in progress is dropped, data frames are discarded from
    /// now on, control frames are still reported.
    pub fn start_closing(&mut self) {
        self.mode = Mode::Closing;
        self.compressed = false;
        self.utf8.reset();
        match self.phase {
            Phase::Data | Phase::LastData => self.phase = Phase::Skip,
            Phase::Ping | Phase::Pong | Phase::Close => {
                // Keep the part of the control frame already received, drop the message before it.
                let start = self.control_start();
                self.buf.drain(..start);
                return;
            }
            _ => {}
        }
        self.buf = Vec::new();
    }

    /// Decodes `input`, unmasking it in place, and reports what it holds to `on_event`. A data
    /// message over `max_payload` bytes (all fragments together) is handled as `oversized` says.
    ///
    /// Returns `Break` when `on_event` answered [`Next::Stop`]; the rest of the input is then ignored.
    pub fn feed<F>(
        &mut self,
        input: &mut [u8],
        max_payload: usize,
        oversized: Oversized,
        mut on_event: F,
    ) -> ControlFlow<()>
    where
        F: FnMut(Event<'_>) -> Next,
    {
        if self.phase == Phase::Lost {
            if input.is_empty() {
                return ControlFlow::Continue(());
            }
            // Nothing after an unframeable header can be understood.
            return self.fail(ProtocolError::LengthOverflow, &mut on_event);
        }
        let mut pos = 0;
        loop {
            if self.phase == Phase::Header {
                let rest = input.get(pos..).unwrap_or_default();
                if rest.is_empty() {
                    return ControlFlow::Continue(());
                }
                match self.read_header(rest) {
                    Ok(None) => return ControlFlow::Continue(()),
                    Ok(Some((header, used))) => {
                        pos += used;
                        match self.begin_frame(&header, max_payload, oversized) {
                            Ok(None) => {}
                            Ok(Some(kind)) => self.answer(on_event(Event::Oversized(kind)))?,
                            Err(e) => self.fail(e, &mut on_event)?,
                        }
                    }
                    Err(e) => {
                        // Frame boundaries are lost: ignore the rest, fail on any later input.
                        self.phase = Phase::Lost;
                        self.fail(e, &mut on_event)?;
                        return ControlFlow::Continue(());
                    }
                }
            }

            let avail = input.len().saturating_sub(pos);
            let take = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
            if take == 0 && self.remaining > 0 {
                return ControlFlow::Continue(());
            }
            let Some(chunk) = input.get_mut(pos..pos + take) else {
                return ControlFlow::Continue(());
            };
            pos += take;
            self.remaining -= take as u64;
            let whole = self.remaining == 0;
            if self.phase != Phase::Skip
                && let Some(key) = self.spill.first_chunk_mut::<4>()
            {
                apply_mask(chunk, *key, 0);
                key.rotate_left(take % 4);
            }
            let next = match self.phase {
                Phase::Data | Phase::LastData => self.data(chunk, whole, &mut on_event),
                Phase::Ping | Phase::Pong | Phase::Close => {
                    self.control(chunk, whole, &mut on_event)
                }
                _ => {
                    if whole {
                        self.phase = Phase::Header;
                        self.short_len = 0;
                    }
                    Ok(Next::Continue)
                }
            };
            match next {
                Ok(next) => self.answer(next)?,
                Err(e) => self.fail(e, &mut on_event)?,
            }
        }
    }

    /// Reads a header from the spill and the start of `input`. `Ok(None)`: all of `input` went into
    /// the spill. Otherwise the header and how many bytes of `input` it used.
    fn read_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let have = usize::from(self.short_len);
        if have == 0 {
            if let Decoded::Header(h, n) = decode_header(input)? {
                return Ok(Some((h, n)));
            }
            self.spill(input);
            return Ok(None);
        }
        // Stitch the spilled bytes with enough of the input to complete any header.
        let take = input.len().min(MAX_HEADER.saturating_sub(have));
        let mut stitch = [0u8; MAX_HEADER];
        let (head, tail) = stitch.split_at_mut(have);
        head.copy_from_slice(self.spill.get(..have).unwrap_or_default());
        if let (Some(dst), Some(src)) = (tail.get_mut(..take), input.get(..take)) {
            dst.copy_from_slice(src);
        }
        let stitched = stitch.get(..have + take).unwrap_or_default();
        self.short_len = 0;
        match decode_header(stitched)? {
            Decoded::Header(h, n) => Ok(Some((h, n.saturating_sub(have)))),
            Decoded::Incomplete => {
                // Then `take` was all of the input.
                self.spill(stitched);
                Ok(None)
            }
        }
    }

    /// Keeps `bytes`, an incomplete header (so shorter than [`MAX_HEADER`]), for the next input.
    fn spill(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.spill.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.short_len = bytes.len() as u8;
        }
    }

    /// Validates a header against the connection's state and sets up its payload. On error the
    /// payload is set up to be skipped. `Ok(Some(kind))`: the frame makes its message oversized
    /// and, under [`Oversized::Discard`], the message is now being skipped.
    fn begin_frame(
        &mut self,
        h: &FrameHeader,
        max_payload: usize,
        oversized: Oversized,
    ) -> Result<Option<MessageKind>, ProtocolError> {
        self.remaining = h.payload_len;
        if let Some(key) = self.spill.first_chunk_mut::<4>() {
            *key = h.mask.unwrap_or_default();
        }
        self.phase = Phase::Skip;
        if h.mask.is_none() {
            return Err(ProtocolError::Unmasked);
        }
        // RSV1 is "Per-Message Compressed" when permessage-deflate was negotiated (RFC 7692 §6);
        // it is checked against the frame's place in its message below.
        let rsv1 = h.rsv == 0b100 && self.deflate.is_some();
        if h.rsv != 0 && !rsv1 {
            return Err(ProtocolError::ReservedBits);
        }
        let opcode = Opcode::from_u8(h.opcode).ok_or(ProtocolError::ReservedOpcode(h.opcode))?;
        if rsv1 && (opcode.is_control() || opcode == Opcode::Continuation) {
            // Only the first frame of a data message may carry it (RFC 7692 §6.1).
            return Err(ProtocolError::ReservedBits);
        }
        if opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::ControlFragmented);
            }
            self.short_len = u8::try_from(h.payload_len)
                .ok()
                .filter(|&l| usize::from(l) <= MAX_CONTROL_PAYLOAD)
                .ok_or(if opcode == Opcode::Close {
                    ProtocolError::CloseTooLong
                } else {
                    ProtocolError::ControlTooLong
                })?;
            self.phase = match opcode {
                Opcode::Ping => Phase::Ping,
                Opcode::Pong => Phase::Pong,
                _ => Phase::Close,
            };
            return Ok(None);
        }
        if self.mode == Mode::Closing {
            // Discarded unread, whatever its place in a message.
            return Ok(None);
        }
        if self.mode == Mode::Discard {
            // The rest of an oversized message: skipped unread up to its final frame.
            if opcode != Opcode::Continuation {
                return Err(ProtocolError::ExpectedContinuation);
            }
            if h.fin {
                self.mode = Mode::Idle;
            }
            return Ok(None);
        }
        let (kind, so_far) = match (opcode, self.mode.message()) {
            (Opcode::Continuation, Some(kind)) => (kind, self.buf.len()),
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (Opcode::Text, None) => (MessageKind::Text, 0),
            (_, None) => (MessageKind::Binary, 0),
        };
        let total = u64::try_from(so_far)
            .ok()
            .and_then(|n| n.checked_add(h.payload_len));
        if total.is_none_or(|t| t > max_payload as u64) {
            if oversized == Oversized::Fail {
                // The partial message is dropped by the switch to closing mode.
                return Err(ProtocolError::TooBig);
            }
            // Drop what was kept of the message and skip the rest as it arrives.
            self.mode = if h.fin { Mode::Idle } else { Mode::Discard };
            self.utf8.reset();
            self.release();
            return Ok(Some(kind));
        }
        if self.mode == Mode::Idle {
            self.mode = match kind {
                MessageKind::Text => Mode::Text,
                MessageKind::Binary => Mode::Binary,
            };
            self.utf8.reset();
            self.compressed = rsv1;
        }
        self.phase = if h.fin { Phase::LastData } else { Phase::Data };
        Ok(None)
    }

    /// Handles the next unmasked `chunk` of a data frame's payload; `whole`: the frame ends with it.
    /// On error the rest of the frame is set up to be skipped.
    fn data<F>(
        &mut self,
        chunk: &[u8],
        whole: bool,
        on_event: &mut F,
    ) -> Result<Next, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Next,
    {
        let fin = self.phase == Phase::LastData;
        let kind = self.mode.message().unwrap_or(MessageKind::Binary);
        if whole {
            self.phase = Phase::Header;
        }
        if self.compressed {
            return Ok(self.compressed_data(chunk, fin && whole, kind, on_event));
        }
        let text = kind == MessageKind::Text;
        if fin && whole && self.buf.is_empty() {
            // Zero-copy: the whole message (or all that is not empty of it) is in this chunk.
            let valid = if self.utf8.is_pending() {
                self.utf8
                    .feed(chunk)
                    .and_then(|()| self.utf8.finish())
                    .is_ok()
            } else {
                !text || utf8::is_valid(chunk)
            };
            self.mode = Mode::Idle;
            self.utf8.reset();
            if !valid {
                return Err(ProtocolError::InvalidUtf8);
            }
            return Ok(on_event(Event::Message(Message { kind, data: chunk })));
        }
        if text && self.utf8.feed(chunk).is_err() {
            if !whole {
                self.phase = Phase::Skip;
            }
            return Err(ProtocolError::InvalidUtf8);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .saturating_add(chunk.len())
            .min(PREALLOC_CAP);
        self.buf.reserve(want);
        self.buf.extend_from_slice(chunk);
        if !(fin && whole) {
            return Ok(Next::Continue);
        }
        self.mode = Mode::Idle;
        if text && self.utf8.finish().is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        let next = on_event(Event::Message(Message {
            kind,
            data: &self.buf,
        }));
        self.release();
        Ok(next)
    }

    /// Handles the next unmasked `chunk` of a compressed message: kept as it is (nothing to
    /// validate before it is inflated) and reported when `last`.
    fn compressed_data<F>(
        &mut self,
        chunk: &[u8],
        last: bool,
        kind: MessageKind,
        on_event: &mut F,
    ) -> Next
    where
        F: FnMut(Event<'_>) -> Next,
    {
        if last && self.buf.is_empty() {
            // Zero-copy, as for plain messages.
            self.mode = Mode::Idle;
            self.compressed = false;
            return on_event(Event::Compressed(Message { kind, data: chunk }));
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .saturating_add(chunk.len())
            .min(PREALLOC_CAP);
        self.buf.reserve(want);
        self.buf.extend_from_slice(chunk);
        if !last {
            return Next::Continue;
        }
        self.mode = Mode::Idle;
        self.compressed = false;
        let next = on_event(Event::Compressed(Message {
            kind,
            data: &self.buf,
        }));
        self.release();
        next
    }

    /// Handles the next unmasked `chunk` of a control frame's payload.
    fn control<F>(
        &mut self,
        chunk: &[u8],
        whole: bool,
        on_event: &mut F,
    ) -> Result<Next, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Next,
    {
        let phase = self.phase;
        if whole && chunk.len() == usize::from(self.short_len) {
            // The whole payload is in this chunk.
            self.phase = Phase::Header;
            self.short_len = 0;
            return Self::report_control(phase, chunk, on_event);
        }
        self.buf.extend_from_slice(chunk);
        if !whole {
            return Ok(Next::Continue);
        }
        let start = self.control_start();
        self.phase = Phase::Header;
        self.short_len = 0;
        let next = Self::report_control(phase, self.buf.get(start..).unwrap_or_default(), on_event);
        self.buf.truncate(start);
        if self.mode.message().is_none() {
            self.release();
        }
        next
    }

    fn report_control<F>(
        phase: Phase,
        payload: &[u8],
        on_event: &mut F,
    ) -> Result<Next, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Next,
    {
        Ok(match phase {
            Phase::Ping => on_event(Event::Ping(payload)),
            Phase::Pong => on_event(Event::Pong(payload)),
            _ => on_event(Event::Close(parse_close_payload(payload)?)),
        })
    }

    /// Where the control frame being assembled starts in `buf`.
    fn control_start(&self) -> usize {
        let received = u64::from(self.short_len).saturating_sub(self.remaining);
        self.buf
            .len()
            .saturating_sub(usize::try_from(received).unwrap_or(0))
    }

    /// Empties the message buffer, freeing it if it grew large.
    fn release(&mut self) {
        if self.buf.capacity() > RETAIN_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Reports a protocol error and, unless told to stop, carries on in closing mode.
    fn fail<F>(&mut self, e: ProtocolError, on_event: &mut F) -> ControlFlow<()>
    where
        F: FnMut(Event<'_>) -> Next,
    {
        match on_event(Event::Error(e)) {
            Next::Stop => ControlFlow::Break(()),
            Next::Continue | Next::Closing => {
                self.start_closing();
                ControlFlow::Continue(())
            }
        }
    }

    fn answer(&mut self, next: Next) -> ControlFlow<()> {
        match next {
            Next::Continue => {}
            Next::Closing => self.start_closing(),
            Next::Stop => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
