//! wsd: a WebSocket server for Linux on per-core io_uring workers.
//!
//! # Layout
//!
//! The import graph between these modules has no cycle (`tests/module_graph.rs` checks it):
//! `main → server → worker → {io driver, proto, app}`; docs/ARCHITECTURE.md has the data path.
//!
//! - [`server`]: starts one worker thread per core, each with its own `SO_REUSEPORT` listener,
//!   and stops them (the drain).
//! - [`state`]: what every worker of one server shares: counters, connection limits, the drain.
//! - [`worker`]: the per-core event loop that joins a driver, the connection table, the protocol
//!   core, the application and the HTTP routes.
//! - [`http`]: every plain HTTP route (`/health`, `/metrics`, `POST /publish`, 404/405), the
//!   bearer-key check, and the checks an upgrade passes.
//! - [`proto`]: the sans-IO protocol core: HTTP/1.1 upgrade, RFC 6455 frames, masking, UTF-8, close
//!   handshake. Sees only byte slices; never touches a socket.
//! - [`app`]: the application boundary ([`app::App`]) and the built-in applications (`echo`).
//! - [`pubsub`]: the pub/sub application: topic tables, framed-once fan-out, the cross-worker
//!   relay.
//! - [`envelope`]: the pub/sub protocol's JSON envelopes (simd-json), sans-IO.
//! - [`io`]: the driver interface both I/O backends implement, and the choice between them.
//! - [`uring`]: the io_uring backend (multishot accept/recv, provided-buffer ring, corked sends). The
//!   only module allowed `unsafe`, every block with a `// SAFETY:` line.
//! - [`epoll`]: the epoll fallback backend, used when io_uring cannot be set up or `WSD_IO=epoll`.
//! - [`table`]: per-connection tables that grow in fixed chunks, never by doubling and copying.
//! - [`admission`]: the connection limits checked at accept (`MAX_CONNECTIONS`,
//!   `MAX_CONNECTIONS_PER_IP`, `UPGRADE_MAX_CONCURRENT`) and their 503 answers.
//! - [`metrics`]: the per-worker counters, what the worker tallies, and the `/metrics` exposition.
//! - [`config`]: every knob, from flags, environment and a TOML file, validated at start.
//! - [`sys`]: process-wide OS settings: allowed CPUs and pinning, `RLIMIT_NOFILE`, THP.
//! - [`tls`]: native TLS (rustls), a sans-IO layer between a driver and the protocol core.
//! - [`access`]: JWT verification, per-topic rights (patterns), the `Origin` allowlist.
//! - [`ratelimit`]: token buckets per connection, per identity and per address.
//! - [`wheel`]: the one-second timer wheel of connection tokens (idle checks, token expiry).
//! - [`logging`]: the `tracing` subscriber (`LOG_FORMAT`, `LOG_LEVEL`).
//! - [`accept_backoff`]: the listener's rest after `accept` runs out of descriptors.

#![deny(unsafe_code)]

pub mod accept_backoff;
pub mod access;
pub mod admission;
pub mod app;
pub mod config;
pub mod envelope;
pub mod epoll;
pub mod http;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod proto;
pub mod pubsub;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod sys;
pub mod table;
pub mod tls;
#[allow(unsafe_code)] // the io_uring driver: every unsafe block has its `// SAFETY:` line
pub mod uring;
pub mod wheel;
pub mod worker;
