//! The per-worker `permessage-deflate` codec against arbitrary compressed payloads: inflating
//! must never panic nor produce more than the limit, and the codec must stay usable. Data that
//! the codec compresses itself must come back unchanged, in both windows.
//!
//! Input: byte 0 picks the limit (0-255 KiB in 1 KiB steps, so bombs hit it), the rest is the
//! payload of a compressed message as a client would send it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::proto::deflate::{Codec, InflateError, Window};

fuzz_target!(|data: &[u8]| {
    let [limit, payload @ ..] = data else {
        return;
    };
    let limit = usize::from(*limit) * 1024;
    let mut codec = Codec::new();
    match codec.inflate(payload, limit) {
        Ok(out) => assert!(out.len() <= limit),
        Err(InflateError::TooBig | InflateError::Corrupt) => {}
    }
    codec.release();
    // The same bytes as a message to compress: the round trip is exact.
    for window in [Window::Wide, Window::Narrow] {
        let compressed = codec.deflate(payload, window).expect("compresses").to_vec();
        let back = codec.inflate(&compressed, payload.len()).expect("inflates");
        assert_eq!(back, payload);
    }
});
