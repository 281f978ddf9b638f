//! The `POST /publish` body splitter against arbitrary bodies: it must never panic, and every
//! range it returns must lie inside the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::envelope::{Scratch, split_publish_body};

fuzz_target!(|data: &[u8]| {
    let mut scratch = Scratch::new();
    if let Ok(items) = split_publish_body(data, &mut scratch) {
        for r in items {
            assert!(
                r.start <= r.end && r.end <= data.len(),
                "{r:?} outside {}",
                data.len()
            );
        }
    }
});
