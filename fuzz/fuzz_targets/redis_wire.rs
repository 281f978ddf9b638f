//! What wsd accepts from Redis (`pubsub::engine::wire::decode`): any payload a Redis channel
//! hands over. It must never panic, and whatever it accepts must be exactly one final, unmasked
//! text frame with UTF-8 payload after the header, which a subscriber can be sent as is.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsd::pubsub::engine::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = wire::decode(data) {
        let frame = &data[p.frame_start..];
        assert!(frame.len() >= 2);
        assert_eq!(frame[0], 0x81, "FIN + text, no RSV");
        assert_eq!(frame[1] & 0x80, 0, "unmasked");
        // Re-encoding the same frame for the same instance gives the same bytes.
        assert_eq!(wire::encode(p.instance, frame), data);
    }
});
