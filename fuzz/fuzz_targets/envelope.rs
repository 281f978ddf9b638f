//! The pub/sub envelope parser against arbitrary client messages: it must never panic, only
//! return an envelope or an error (which wsd answers with `ERROR INVALID_ARGUMENT`). The same
//! scratch is reused across messages, as a connection's worker does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::envelope::{Scratch, parse};

fuzz_target!(|data: &[u8]| {
    let mut scratch = Scratch::new();
    // Twice with one scratch: the second parse must not depend on what the first left behind.
    let first = parse(data, &mut scratch).map(|e| format!("{:?}", e.request));
    let second = parse(data, &mut scratch).map(|e| format!("{:?}", e.request));
    assert_eq!(first.ok(), second.ok());
});
