//! The `Sec-WebSocket-Extensions` parser and `permessage-deflate` negotiation against arbitrary
//! header values. It must never panic; whatever it agrees to must be answerable (a window of
//! 8-15 bits), and the answer must parse back as the same agreement.
//!
//! Input: header values separated by `\n` (a request may carry several such headers).

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::proto::extensions::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, negotiate};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(agreed)) = negotiate(data.split(|&b| b == b'\n')) else {
        return;
    };
    if let Some(bits) = agreed.server_max_window_bits {
        assert!((MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits));
    }
    let mut line = Vec::new();
    agreed.write_header(&mut line);
    let value = line
        .strip_prefix(b"Sec-WebSocket-Extensions: ")
        .and_then(|v| v.strip_suffix(b"\r\n"))
        .expect("a header line");
    assert_eq!(negotiate([value]), Ok(Some(agreed)));
});
