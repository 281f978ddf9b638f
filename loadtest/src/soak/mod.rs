//! The `soak` scenario: N connections (P publishers, the rest subscribers over T topics) for a bounded time, with subscribers reconnecting all along; every delivery is checked per (publisher, subscription) pair, and the server's descriptors, resident memory and declared drops are read before, during and after.
//!
//! Subscriber `i` subscribes to `t<i % T>`; publisher `j` publishes on `t<j % T>` at `rate / P`
//! messages per second (open loop). `churn` times per second a random live subscriber is drained
//! (it waits until it has every message its publishers had written when it decided to go), closes
//! with a close handshake and connects again as a new subscription of the same topic. At the end
//! the publishers stop, every subscriber is drained the same way, every connection closes, and the
//! server's descriptor count must come back to what it was before the first connection.

mod pair;
pub mod report;
mod run;
mod server;

use std::time::Duration;

use crate::url::Target;
pub use run::run;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// Every connection: publishers plus subscribers.
    pub connections: usize,
    pub publishers: usize,
    pub topics: usize,
    /// Publications per second over all publishers.
    pub rate: f64,
    /// Minimum data bytes per publication.
    pub size: usize,
    /// Subscriber reconnects per second.
    pub churn: f64,
    pub duration: Duration,
    /// Seconds after every connection is up before RSS samples count for the slope.
    pub warmup: Duration,
    /// Most time a draining subscriber waits for its missing messages (then they are lost).
    pub drain: Duration,
    /// Most time for one connection's handshake and subscription, or its close handshake.
    pub connect_timeout: Duration,
    /// Most time to wait for the server's descriptors to come back to the baseline.
    pub settle: Duration,
    pub server_pid: u32,
    /// Fail the run when the RSS slope after warm-up is above this (KiB per minute).
    pub max_rss_slope: Option<f64>,
    pub progress: bool,
}

impl Config {
    pub fn subscribers(&self) -> usize {
        self.connections - self.publishers
    }

    /// Checks the combination of counts.
    pub fn validate(&self) -> Result<(), String> {
        if self.target.tls {
            return Err("soak runs over ws:// only (it reads the server's /health)".into());
        }
        if self.publishers == 0 || self.topics == 0 {
            return Err("--publishers and --topics must be at least 1".into());
        }
        if self.connections < self.publishers + self.topics.min(self.publishers) {
            return Err("--connections must leave at least one subscriber per topic".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err("--rate must be a positive number of publications per second".into());
        }
        if !(self.churn.is_finite() && self.churn >= 0.0) {
            return Err("--churn must be a number of reconnects per second, 0 or more".into());
        }
        Ok(())
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Connections up at once after the connect phase.
    pub connected: usize,
    pub connect_took: Duration,
    pub published: u64,
    /// Subscriber reconnects completed (drained, closed, connected and subscribed again).
    pub reconnects: u64,
    /// Per-pair totals over every subscription of the run.
    pub pairs: pair::PairTotals,
    /// Messages the server declared dropped over the run (its /health).
    pub declared_drops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub pings: u64,
    /// Seconds from the first publication to the publishers' stop.
    pub ran: Duration,
    pub fds_before: u64,
    /// The server's descriptors with every connection up (at the end of the connect phase).
    pub fds_connected: u64,
    /// After every client closed (once back to the baseline, or when `settle` ran out).
    pub fds_after: u64,
    pub rss_before_kib: u64,
    /// (seconds since the connect phase ended, VmRSS KiB), one a second.
    pub rss_samples: Vec<(f64, u64)>,
    pub rss_after_kib: u64,
    pub rss_peak_kib: u64,
    /// Least-squares slope of the samples after warm-up, KiB per minute.
    pub rss_slope: Option<f64>,
}
