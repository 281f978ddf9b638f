//! The sans-IO protocol core: it turns received bytes into messages and the bytes owed to the peer.
//!
//! Nothing here touches a socket or a clock. [`Connection::handle_bytes`] is fed whatever the driver
//! received; it appends every byte the server owes the peer (the 101 or an HTTP error response, pongs,
//! close frames, application replies) to the caller's `out` buffer, and reports through [`Status`] what
//! the driver must do with the socket.
#![forbid(unsafe_code)]

pub mod close;
pub mod connection;
pub mod decoder;
pub mod deflate;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod utf8;

pub use close::CloseCode;
pub use connection::{Connection, Handler, Limits, Status, UpgradeDecision};
pub use decoder::Oversized;
pub use frame::{Message, MessageKind, Opcode};
pub use handshake::HttpRequest;
