//! The checks a valid WebSocket upgrade request passes before it gets its `101`.
//!
//! Today there is one: a draining server refuses new WebSocket connections (the protocol core
//! answers `503` with `Retry-After`), so that a request finished after the signal does not get a
//! connection that would be closed at once. Upgrade authentication, `Origin` checks and rate
//! limits belong here too, so that every refusal of an upgrade is decided in one place.

use crate::state::Shared;

/// Whether a valid upgrade may be accepted now.
pub fn accepts(shared: &Shared) -> bool {
    !shared.is_draining()
}
