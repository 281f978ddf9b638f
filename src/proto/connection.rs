//! One client connection from the first request byte to the end of the close handshake: the public
//! API that the worker drives.
//!
//! A [`Connection`] starts in the handshake phase. [`Connection::handle_bytes`] buffers the request
//! head until it is complete, answers it (101, an error, or the [`Handler`]'s HTTP response), and from
//! then on decodes frames, in the same call for bytes that were pipelined after the request. All
//! bytes owed to the peer are appended to the caller's `out`; the returned [`Status`] says what to do
//! with the socket.

use std::mem;

use super::close::{CloseCode, write_close};
use super::decoder::{Decoder, Event, Next, Oversized};
use super::deflate::{Codec, Compression, InflateError, Window};
use super::frame::{Message, MessageKind, Opcode, ProtocolError, write_frame};
use super::handshake::{self, HttpRequest, Outcome};
use super::utf8;

/// Per-server limits, shared by all connections (passed in on every call, not stored per connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, all fragments together; larger is closed with 1009 or
    /// discarded, as `oversized` says.
    pub max_payload: usize,
    /// What happens to a message over `max_payload` (`PAYLOAD_LIMIT_POLICY`).
    pub oversized: Oversized,
    /// The request path that is upgraded to WebSocket; other paths go to [`Handler::http_request`].
    pub ws_path: String,
    /// The largest request head accepted; larger is answered with 431.
    pub max_header_bytes: usize,
    /// `permessage-deflate` (`COMPRESSION=shared`); `None`: never negotiated.
    pub compression: Option<Compression>,
}

/// Why the application asks to close (returned from [`Handler::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppClose {
    /// The code of the close frame.
    pub code: CloseCode,
    /// The reason of the close frame (cut to 123 bytes).
    pub reason: &'static str,
}

/// The application side of a connection.
pub trait Handler {
    /// The upgrade succeeded; the 101 response is already in `out`.
    fn opened(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }

    /// A complete message (text already UTF-8-validated). Append reply frames to `out` with
    /// [`write_frame`].
    fn message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), AppClose>;

    /// A message over the size limit is being discarded ([`Oversized::Discard`]); the connection
    /// stays open. Called once per such message, when its size first passes the limit.
    fn oversized(&mut self, kind: MessageKind, out: &mut Vec<u8>) -> Result<(), AppClose> {
        let _ = (kind, out);
        Ok(())
    }

    /// A request that is not on the WebSocket path: append one complete HTTP response to `out`
    /// and return its status code. The connection is closed after it is flushed.
    fn http_request(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> u16;

    /// A request was answered without an upgrade (an error, a refused upgrade, or the answer of
    /// [`Handler::http_request`]); `status` is the response's code. Called once, just before the
    /// call that wrote it returns [`Status::Done`].
    fn responded(&mut self, status: u16) {
        let _ = status;
    }

    /// The close handshake began while decoding: `code` is the first close code sent or received
    /// (1005 for a peer close without one). Called at most once per connection, and not for closes
    /// started with [`Connection::close`], whose caller knows the code.
    fn close_started(&mut self, code: CloseCode) {
        let _ = code;
    }

    /// Whether the peer is not taking what is already owed to it (its backlog is over the
    /// read-pause bound): then a run of pings in one input answers with one pong, for the most
    /// recent ping (RFC 6455 §5.5.3 allows it for pongs not yet sent), so a peer that floods
    /// pings and never reads cannot make the server queue a pong per ping. Asked once per input.
    fn coalesce_pongs(&mut self) -> bool {
        false
    }

    /// Decides a valid upgrade request on the WebSocket path: accept it (with the subprotocol to
    /// answer, if any), or append a complete refusal response to `out` (e.g. `503` while the
    /// server shuts down, `401` without a valid token). By default every one is accepted, with
    /// no subprotocol.
    fn upgrade(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> UpgradeDecision {
        let _ = (req, out);
        UpgradeDecision::Accept { protocol: None }
    }
}

/// What [`Handler::upgrade`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeDecision {
    /// Answer `101`, with `Sec-WebSocket-Protocol: protocol` when given (one token, RFC 6455
    /// §4.2.2: one of those the client offered).
    Accept {
        /// The subprotocol selected.
        protocol: Option<&'static str>,
    },
    /// A complete refusal response with this status is in `out`.
    Refused {
        /// The response's status code.
        status: u16,
    },
}

/// What the driver must do with the socket after a call.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Keep reading.
    Open,
    /// The server sent a close frame and is waiting for the peer's close (the driver arms a deadline).
    Closing,
    /// Flush `out`, then close the socket. Input after this is ignored.
    Done,
}

#[derive(Debug)]
enum State {
    /// The request received so far (empty, and unallocated, until a request arrives in pieces),
    /// and how many bytes must be there before it is worth parsing again (a body in progress).
    Handshaking(Vec<u8>, usize),
    /// Upgraded; the decoder knows whether the server has sent its close (closing mode).
    Open(Decoder),
    /// Nothing more to do.
    Closed,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Connection {
    state: State,
}

// Per-connection memory: keep it at one cache line.
const _: () = assert!(mem::size_of::<Connection>() <= 64);

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    /// A connection in the handshake phase. Allocates nothing.
    pub const fn new() -> Self {
        Self {
            state: State::Handshaking(Vec::new(), 0),
        }
    }

    /// Upgraded, and no close frame sent or received.
    pub fn is_open(&self) -> bool {
        matches!(&self.state, State::Open(d) if !d.is_closing())
    }

    /// Still waiting for (the rest of) the request head.
    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking(..))
    }

    /// In the handshake phase with part of a request received (a request begun, not complete).
    /// `false` for a connection that has sent nothing yet.
    pub fn has_partial_request(&self) -> bool {
        matches!(&self.state, State::Handshaking(buf, _) if !buf.is_empty())
    }

    /// The `permessage-deflate` window negotiated with this connection, if any: frames sent to it
    /// may then be compressed ones of that window.
    pub fn deflate(&self) -> Option<Window> {
        match &self.state {
            State::Open(decoder) => decoder.deflate(),
            _ => None,
        }
    }

    /// Feed received bytes; bytes owed to the peer are appended to `out`.
    ///
    /// `input` is unmasked in place. `codec` is the worker's compression state, used only by
    /// connections that negotiated `permessage-deflate`: to inflate their messages, and to
    /// compress the data frames the handler queues for them.
    pub fn handle_bytes<H: Handler>(
        &mut self,
        input: &mut [u8],
        limits: &Limits,
        codec: &mut Codec,
        out: &mut Vec<u8>,
        handler: &mut H,
    ) -> Status {
        let mut io = Io { limits, codec, out };
        match &mut self.state {
            State::Closed => Status::Done,
            State::Open(decoder) => {
                let status = feed(decoder, input, &mut io, handler);
                self.finish(status)
            }
            State::Handshaking(buf, need) if buf.is_empty() => {
                match handshake::handle(input, limits, io.out, handler) {
                    Outcome::Partial => {
                        buf.extend_from_slice(input);
                        Status::Open
                    }
                    Outcome::NeedBytes(total) => {
                        buf.extend_from_slice(input);
                        *need = total;
                        Status::Open
                    }
                    Outcome::Responded(code) => {
                        handler.responded(code);
                        self.finish(Status::Done)
                    }
                    Outcome::Upgraded(len, deflate) => {
                        let rest = input.get_mut(len..).unwrap_or_default();
                        self.upgraded(rest, deflate, &mut io, handler)
                    }
                }
            }
            State::Handshaking(buf, need) => {
                buf.extend_from_slice(input);
                if *need > 0 {
                    // A body in progress: parse again only once all of it is here.
                    if buf.len() < *need {
                        return Status::Open;
                    }
                } else if !input.contains(&b'\n') && buf.len() <= limits.max_header_bytes {
                    // Parse again only once a line may have ended (or the limit is passed), so
                    // that a request trickling in byte by byte is not parsed once per byte.
                    return Status::Open;
                }
                match handshake::handle(buf, limits, io.out, handler) {
                    Outcome::Partial => Status::Open,
                    Outcome::NeedBytes(total) => {
                        *need = total;
                        Status::Open
                    }
                    Outcome::Responded(code) => {
                        handler.responded(code);
                        self.finish(Status::Done)
                    }
                    Outcome::Upgraded(len, deflate) => {
                        let mut bytes = mem::take(buf);
                        let rest = bytes.get_mut(len..).unwrap_or_default();
                        self.upgraded(rest, deflate, &mut io, handler)
                    }
                }
            }
        }
    }

    /// Server-initiated close (application, shutdown, idle timeout): writes a close frame with
    /// `code` and `reason` and answers [`Status::Closing`]. In the handshake phase, or when already
    /// closing or closed, it writes nothing and answers `Done` or the current status.
    pub fn close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Status {
        match &mut self.state {
            State::Open(decoder) if !decoder.is_closing() => {
                write_close(out, Some(code), reason);
                decoder.start_closing();
                Status::Closing
            }
            State::Open(_) => Status::Closing,
            State::Handshaking(..) | State::Closed => self.finish(Status::Done),
        }
    }

    /// Switches to the open state and decodes the bytes that followed the request.
    fn upgraded<H: Handler>(
        &mut self,
        rest: &mut [u8],
        deflate: Option<Window>,
        io: &mut Io<'_>,
        handler: &mut H,
    ) -> Status {
        let mut decoder = Decoder::with_deflate(deflate);
        let start = io.out.len();
        handler.opened(io.out);
        io.compress_replies(&decoder, start);
        let status = feed(&mut decoder, rest, io, handler);
        self.state = State::Open(decoder);
        self.finish(status)
    }

    /// Drops all state once the connection is done.
    fn finish(&mut self, status: Status) -> Status {
        if status == Status::Done {
            self.state = State::Closed;
        }
        status
    }
}

/// What one call works with besides the connection and the handler.
struct Io<'a> {
    limits: &'a Limits,
    codec: &'a mut Codec,
    out: &'a mut Vec<u8>,
}

impl Io<'_> {
    /// Compresses the data frames the handler appended from `start` on, if the connection
    /// negotiated `permessage-deflate`.
    fn compress_replies(&mut self, decoder: &Decoder, start: usize) {
        if let (Some(window), Some(c)) = (decoder.deflate(), self.limits.compression) {
            self.codec
                .compress_frames(self.out, start, c.min_size, window);
        }
    }
}

/// Runs the decoder over `input` and answers its events.
fn feed<H: Handler>(
    decoder: &mut Decoder,
    input: &mut [u8],
    io: &mut Io<'_>,
    handler: &mut H,
) -> Status {
    let mut status = if decoder.is_closing() {
        Status::Closing
    } else {
        Status::Open
    };
    let limits = io.limits;
    let (window, compression) = (decoder.deflate(), limits.compression);
    let codec = &mut *io.codec;
    let out = &mut *io.out;
    // Compresses what the handler appended from `start` on, for a connection that negotiated it.
    let compress = |codec: &mut Codec, out: &mut Vec<u8>, start: usize| {
        if let (Some(window), Some(c)) = (window, compression) {
            codec.compress_frames(out, start, c.min_size, window);
        }
    };
    let coalesce = handler.coalesce_pongs();
    // Where the last pong written by this input starts and ends (when coalescing).
    let mut last_pong: Option<(usize, usize)> = None;
    let _ = decoder.feed(input, limits.max_payload, limits.oversized, |event| {
        let closing = status == Status::Closing;
        if !matches!(event, Event::Ping(_)) {
            last_pong = None;
        }
        match event {
            Event::Message(msg) => {
                let start = out.len();
                let result = handler.message(msg, out);
                compress(codec, out, start);
                answer(handler, result, out, &mut status)
            }
            Event::Compressed(msg) => {
                let start = out.len();
                let verdict = match codec.inflate(msg.data, limits.max_payload) {
                    Ok(data) if msg.kind == MessageKind::Text && !utf8::is_valid(data) => {
                        Err(ProtocolError::InvalidUtf8)
                    }
                    Ok(data) => Ok(handler.message(
                        Message {
                            kind: msg.kind,
                            data,
                        },
                        out,
                    )),
                    Err(InflateError::TooBig) if limits.oversized == Oversized::Discard => {
                        Ok(handler.oversized(msg.kind, out))
                    }
                    Err(InflateError::TooBig) => Err(ProtocolError::TooBig),
                    Err(InflateError::Corrupt) => Err(ProtocolError::BadDeflate),
                };
                compress(codec, out, start);
                codec.release();
                match verdict {
                    Ok(result) => answer(handler, result, out, &mut status),
                    Err(e) => {
                        handler.close_started(e.close_code());
                        write_close(out, Some(e.close_code()), e.reason());
                        status = Status::Closing;
                        Next::Closing
                    }
                }
            }
            Event::Oversized(kind) => {
                let start = out.len();
                let result = handler.oversized(kind, out);
                compress(codec, out, start);
                answer(handler, result, out, &mut status)
            }
            Event::Ping(payload) => {
                if !closing {
                    if let Some((start, end)) = last_pong
                        && end == out.len()
                    {
                        // The previous pong of this run is not sent yet: this one replaces it.
                        out.truncate(start);
                    }
                    let start = out.len();
                    write_frame(out, Opcode::Pong, payload);
                    if coalesce {
                        last_pong = Some((start, out.len()));
                    }
                }
                Next::Continue
            }
            Event::Pong(_) => Next::Continue,
            Event::Close(peer) => {
                if !closing {
                    handler.close_started(peer.code.unwrap_or(CloseCode::NO_STATUS));
                    write_close(out, peer.code, "");
                }
                status = Status::Done;
                Next::Stop
            }
            Event::Error(_) if closing => {
                status = Status::Done;
                Next::Stop
            }
            Event::Error(e) if e.is_in_peer_close() => {
                handler.close_started(e.close_code());
                write_close(out, Some(e.close_code()), e.reason());
                status = Status::Done;
                Next::Stop
            }
            Event::Error(e) => {
                handler.close_started(e.close_code());
                write_close(out, Some(e.close_code()), e.reason());
                status = Status::Closing;
                Next::Closing
            }
        }
    });
    status
}

/// Turns the application's verdict on a message into the decoder's next step: on
/// [`AppClose`] the close frame is written and the connection starts closing.
fn answer<H: Handler>(
    handler: &mut H,
    result: Result<(), AppClose>,
    out: &mut Vec<u8>,
    status: &mut Status,
) -> Next {
    match result {
        Ok(()) => Next::Continue,
        Err(app) => {
            handler.close_started(app.code);
            write_close(out, Some(app.code), app.reason);
            *status = Status::Closing;
            Next::Closing
        }
    }
}

#[cfg(test)]
mod tests;
