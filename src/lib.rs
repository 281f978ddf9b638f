//! wsd: a WebSocket server for Linux on per-core io_uring workers.
//!
//! # Layout
//! - [`proto`]: the sans-IO protocol core: HTTP/1.1 upgrade, RFC 6455 frames, masking, UTF-8, close
//!   handshake. Sees only byte slices; never touches a socket. `#![forbid(unsafe_code)]`.
//! - [`app`]: the application boundary ([`app::App`]) and the built-in applications (`echo`).
//! - [`envelope`]: the pub/sub protocol's JSON envelopes (simd-json), sans-IO.
//! - [`pubsub`]: the pub/sub application: topic tables, framed-once fan-out, the cross-worker
//!   relay.
//! - [`io`]: the driver interface both I/O backends implement, and the choice between them.
//! - [`uring`]: the io_uring backend (multishot accept/recv, provided-buffer ring, corked sends). The
//!   only module with `unsafe`, every block with a `// SAFETY:` line.
//! - [`epoll`]: the epoll fallback backend, used when io_uring cannot be set up or `WSD_IO=epoll`.
//! - [`table`]: per-connection tables that grow in fixed chunks, never by doubling and copying.
//! - [`worker`]: the per-core event loop that joins a driver, the connection slab and the protocol core.
//! - [`server`]: starts one worker thread per core, each with its own `SO_REUSEPORT` listener;
//!   the graceful shutdown (drain) sequence.
//! - [`admission`]: the connection limits checked at accept (`MAX_CONNECTIONS`,
//!   `MAX_CONNECTIONS_PER_IP`, `UPGRADE_MAX_CONCURRENT`) and their 503 answers.
//! - [`stats`]: per-worker counters behind `/health` and `/metrics`.
//! - [`config`]: every knob, from flags, environment and a TOML file, validated at start.
//! - [`metrics`]: `GET /metrics`, the counters in the Prometheus (OpenMetrics) text format.
//! - [`auth`]: the bearer-key check of `POST /publish` and `GET /metrics`.
//! - [`logging`]: the `tracing` subscriber (`LOG_FORMAT`, `LOG_LEVEL`).

pub mod admission;
pub mod app;
pub mod auth;
pub mod config;
pub mod envelope;
pub mod epoll;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod proto;
pub mod pubsub;
pub mod server;
pub mod stats;
pub mod table;
pub mod uring;
pub mod worker;
