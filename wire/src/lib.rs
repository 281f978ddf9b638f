//! The WebSocket wire primitives that both wsd and its load generator need, in one place: RFC 6455
//! frame headers ([`frame`]), payload masking ([`mask`]) and the io_uring provided-buffer ring
//! ([`bufring`]).
//!
//! Frame header decode/encode and masking sit on the server's per-message hot path, so every small
//! function here is `#[inline]` (callers live in other crates). `unsafe` is denied everywhere but
//! in [`bufring`], which shares memory with the kernel.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod bufring;
pub mod frame;
pub mod mask;

pub use frame::{Decoded, FrameHeader, LengthOverflow, MAX_HEADER, Opcode};
