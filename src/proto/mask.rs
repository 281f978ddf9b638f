//! Client-to-server payload masking (RFC 6455 §5.3), applied in place: [`apply_mask`] lives in
//! `wsd-wire`, shared with the load generator.

pub use wsd_wire::mask::apply_mask;
