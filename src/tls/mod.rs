//! Native TLS (`wss://`, `https://`) with rustls, as a sans-IO layer between a driver and the
//! protocol core.
//!
//! - [`load`]: reading `SSL_CERT`, `SSL_KEY` and `SSL_CLIENT_CA` into a rustls server
//!   configuration, every failure naming the variable (wsd exits 2); the certificate behind it
//!   can be swapped at run time ([`Tls::reload`], `SIGHUP`).
//! - [`session`]: one connection's TLS session: ciphertext in, plaintext out, and the reverse,
//!   on byte slices only, holding no buffer while the connection is idle.
//!
//! # Crypto provider: ring
//!
//! rustls ships two providers. `aws-lc-rs` builds AWS-LC from C with CMake (and wants clang or
//! NASM for its assembly on some targets); this build host and the Dockerfile's builder have
//! neither CMake nor clang, only a C compiler, which is all `ring` needs. Both have AES-NI/CLMUL
//! and ARMv8 AES-GCM and ChaCha20-Poly1305 assembly, so the record layer (what costs at 16 KiB
//! messages) runs the same kind of code; aws-lc-rs is faster at RSA and P-384 signatures, which
//! matters for handshakes with RSA keys (an ECDSA P-256 certificate, the one the README makes,
//! signs fast with either). So: ring, the provider that builds here; BENCHMARKS.md has what a
//! handshake and a record cost with it.
//!
//! # What the server offers
//!
//! TLS 1.3 and 1.2 only; ring's default suites, all AEAD with ephemeral ECDHE (AES-GCM and
//! ChaCha20-Poly1305; no CBC, no RSA key exchange, no SHA-1 MAC), chosen in the server's order:
//! AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 (`load.rs` says why); ALPN `http/1.1` (a client
//! offering only other protocols is refused with `no_application_protocol`, one offering none is
//! served); resumption with stateless tickets (TLS 1.3 and 1.2) from a key made at start and
//! rotated every 6 hours; no renegotiation (rustls has none) and no 0-RTT data.

pub mod load;
pub mod session;

pub use load::{Tls, TlsError, TlsFiles};
pub use session::{Received, TlsSession};

#[cfg(test)]
mod tests;
