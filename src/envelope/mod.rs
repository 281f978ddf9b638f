//! The JSON envelope of wsd's pub/sub protocol (docs/PROTOCOL.md): a sans-IO parser for client
//! messages and writers for server messages.
//!
//! # Parsing
//! [`parse()`] takes one text message and a per-worker [`Scratch`] and returns an [`Envelope`]: a
//! [`Request`] (`SUBSCRIBE`/`UNSUBSCRIBE` with 1..=512 [`Topics`], `PUBLISH` with topic, `data`
//! and `excludeSelf`, or `PING`) and the optional `meta.correlationId`. Every problem is an
//! [`EnvelopeError`] (code `INVALID_ARGUMENT`) whose message says exactly what is wrong and which
//! carries the correlation id whenever the message is JSON with a readable one.
//!
//! How it works, in one pass of simd-json plus a walk of its output:
//! 1. The message is copied into a padded buffer in [`Scratch`] and simd-json validates the whole
//!    of it (UTF-8, grammar, no trailing bytes, depth) and builds its tape there
//!    (`fill_tape_padded`, reusing the tape and `Buffers`: no allocation in steady state).
//!    simd-json unescapes strings in that copy, so topic names and the correlation id are read
//!    from the tape, unescaped; keys are compared unescaped too (`"d\u0061ta"` is `data`).
//! 2. The tape is walked for `type`, `payload` and `meta` and the payload's members.
//! 3. `data` is a slice of the *original* message, never re-serialized. Its span comes from the
//!    structural indexes simd-json's stage 1 computed for the message
//!    (`Buffers::structural_indexes`): once the message is known to be valid, those offsets form
//!    a token stream (`{ } [ ] : ,`, string starts, scalar starts, nothing inside strings), so the
//!    member positions found on the tape lead to the first token of `data`, and its end is the
//!    closing bracket of a container, or the start of the next token with whitespace trimmed for
//!    a string or scalar (see `span.rs`). `data` is therefore byte for byte what the client sent
//!    and validated by simd-json as part of the message.
//!
//! The alternatives were to scan the envelope ourselves byte by byte to find the span (then
//! validate it with simd-json), or to re-parse the span separately: both read every byte of
//! `data` once more. The structural walk reads no string bytes, so its cost does not grow with
//! string length. Measured (release, fat LTO, this 2-core AMD EPYC machine, best of 5 batches;
//! `tests/speed.rs`): a typical 117-byte `PUBLISH` parses in about 180 ns, of which simd-json's
//! pass (copy, validation, tape) is about 150 ns and locating `data` about 12 ns; with a 1 MiB
//! `data` string the parse takes about 150 µs and locating `data` 8 ns, where a byte scan for
//! the end of that string alone took about 275 µs.
//!
//! Limits and choices:
//! - Depth: objects and arrays may nest at most [`MAX_DEPTH`] = 64 levels in the whole envelope
//!   (the envelope is level 1, `payload` 2, so `data` gets 62), enforced by simd-json's
//!   `Buffers::with_max_depth`; simd-json's stage 2 is iterative, so 1,000,000 levels are a clean
//!   [`ErrorKind::TooDeep`], not a stack overflow.
//! - Numbers: simd-json rejects numbers outside the i64/u64/f64 range (`1e400`, 30-digit
//!   integers). JSON allows them and `data` is forwarded verbatim, so such messages are parsed
//!   again with every grammatical number token blanked to `0` (same offsets); the token grammar
//!   is then checked by this module (RFC 8259), everything else still by simd-json.
//! - Duplicate keys among the keys the protocol defines (`type`, `payload`, `meta`,
//!   `payload.topic`/`topics`/`data`/`excludeSelf`, `meta.correlationId`) are rejected; other keys
//!   are ignored (not checked for duplicates either), for forward compatibility.
//! - `payload` may be omitted for `PING` only. `type` is case-sensitive.
//!
//! # Writing
//! [`write_message`] (with [`message_len`]), [`write_ack`], [`write_error`],
//! [`write_envelope_error`] and [`write_pong`] append one envelope to a `Vec<u8>` (append-only,
//! so a frame header can be written first), escaping strings (`"`, `\`, U+0000..=U+001F as
//! `\u00XX`). `data` is copied verbatim.
#![forbid(unsafe_code)]

mod body;
mod error;
mod json;
mod parse;
mod span;
mod topic;
mod write;

#[cfg(test)]
mod tests;

pub use body::{MAX_BATCH, publish_envelope, publish_envelope_prefix_len, split_publish_body};
pub use error::{EnvelopeError, ErrorCode, ErrorKind, InlineStr};
pub use json::Scratch;
pub use parse::{Envelope, Request, parse};
pub use topic::{MAX_TOPIC_LEN, MAX_TOPICS, Topics, TopicsIter, validate_topic};
pub use write::{
    escaped_len, message_len, push_escaped, write_ack, write_envelope_error, write_error,
    write_message, write_pong,
};

/// Deepest nesting of objects and arrays in a client envelope, the envelope itself included.
pub const MAX_DEPTH: usize = 64;

/// Longest `meta.correlationId`, in bytes.
pub const MAX_CORRELATION_ID_LEN: usize = 64;
