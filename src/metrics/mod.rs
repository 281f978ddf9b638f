//! What wsd counts and how it is read: the per-worker counters ([`stats`]), what the worker
//! measures beyond plain increments ([`tally`], [`delay`]), the process figures read from `/proc`
//! ([`process`]), and the Prometheus exposition of `GET /metrics` ([`exporter`], in OpenMetrics,
//! or in the classic text format through [`classic`]).

pub mod classic;
pub mod delay;
pub mod exporter;
pub mod process;
pub mod stats;
pub mod tally;

pub use exporter::{
    CLASSIC_CONTENT_TYPE, CONTENT_TYPE, FAMILIES, Format, PROCESS_FAMILIES, REDIS_FAMILIES, Scrape,
    Source, render, render_for,
};
pub use stats::{RedisStats, RejectReason, WorkerStats, add, bump};
