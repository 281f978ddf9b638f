//! What wsd counts and how it is read: the per-worker counters ([`stats`]), what the worker
//! measures beyond plain increments ([`tally`]), and the Prometheus exposition of `GET /metrics`
//! ([`exporter`]).

pub mod exporter;
pub mod stats;
pub mod tally;

pub use exporter::{CONTENT_TYPE, FAMILIES, REDIS_FAMILIES, Source, render};
pub use stats::{RedisStats, RejectReason, WorkerStats, add, bump};
