//! Who may open a WebSocket and what it may do: tokens, rights, origins.
//!
//! - [`jwt`]: verifying JSON Web Tokens (`JWT_SECRET`, `JWT_PUBLIC_KEY`, `JWT_AUDIENCE`, ...).
//! - [`claims`]: the claims wsd reads and the [`claims::Identity`] a connection keeps.
//! - [`pattern`]: topic patterns (`chat:*`, `user:{sub}:>`) for per-topic rights.
//! - [`origin`]: the `ALLOWED_ORIGINS` list.
//! - [`gate`]: [`gate::Access`], everything above as configured, and the upgrade decision.
//! - [`carrier`]: where a token comes from at upgrade (header, query, subprotocol) and the
//!   subprotocol answered.

pub mod carrier;
pub mod claims;
pub mod gate;
pub mod jwt;
pub mod origin;
pub mod pattern;
