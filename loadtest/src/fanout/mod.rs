//! The `fanout` scenario: S subscribers over T topics and P publishers on one epoll thread; publishers send PUBLISH envelopes (or raw data) closed-loop with a window or at a fixed rate, and every delivery is checked against per-(publisher, subscriber) sequence numbers.
//!
//! Topics: subscriber `s` subscribes to `t<s % T>`, publisher `p` publishes on `t<p % T>`, so every
//! subscriber of a topic must receive every message of every publisher on it. Closed loop: a message
//! counts as confirmed once every one of its recipients has received it (deliveries are counted, the
//! publishers do not subscribe), and a publisher keeps at most `window` messages unconfirmed. With
//! `--rate`, publishers send on a schedule and the window only caps how far deliveries may lag.
//! After the measured window the publishers stop, the run drains until every recipient has every
//! message (or `--drain` passes), and loss is what is then missing: expected minus received, per pair.

pub(crate) mod conn;
mod handler;
pub(crate) mod msg;
pub(crate) mod reader;
pub mod report;
mod run;
pub(crate) mod seq;
mod stats;
mod window;

use std::time::Duration;

use crate::url::Target;
pub use run::run;
pub use stats::Deliveries;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub subscribers: usize,
    pub publishers: usize,
    pub topics: usize,
    /// Unconfirmed messages per publisher.
    pub window: usize,
    /// Publications per second over all publishers (open loop); `None` = closed loop.
    pub rate: Option<f64>,
    /// Minimum data bytes per publication (padded).
    pub size: usize,
    /// Pad with feed-like records rather than `x`s.
    pub feed_pad: bool,
    /// Raw mode: no envelopes, no SUBSCRIBE; every subscriber receives every publication.
    pub raw: bool,
    /// Raw mode: each publisher also receives its own publications (an echo server).
    pub raw_self: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub connect_timeout: Duration,
    /// Offer permessage-deflate; compressed deliveries are inflated before they are checked.
    pub compression: bool,
    pub server_pid: Option<u32>,
    /// Where odd-numbered subscribers connect instead of `target` (a second instance).
    pub sub_target: Option<Target>,
    /// More processes whose CPU time is added to the server's.
    pub extra_pids: Vec<u32>,
    pub progress: bool,
}

impl Config {
    /// Recipients of each of publisher `p`'s messages.
    pub fn recipients(&self, p: usize) -> usize {
        let t = p % self.topics;
        let subs = if t < self.subscribers {
            (self.subscribers - t).div_ceil(self.topics)
        } else {
            0
        };
        subs + usize::from(self.raw && self.raw_self)
    }

    /// Checks the combination of counts.
    pub fn validate(&self) -> Result<(), String> {
        if self.publishers == 0 || self.topics == 0 {
            return Err("--publishers and --topics must be at least 1".into());
        }
        if self.raw && self.topics != 1 {
            return Err("--raw has no topics: use --topics 1".into());
        }
        if self.raw_self && !self.raw {
            return Err("--raw-self needs --raw".into());
        }
        if let Some(p) = (0..self.publishers.min(self.topics)).find(|&p| self.recipients(p) == 0) {
            return Err(format!(
                "publisher {p}'s topic t{} has no subscriber",
                p % self.topics
            ));
        }
        Ok(())
    }
}

/// Counters of everything that went wrong or is worth reporting.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub connect_failed: u64,
    pub closed: u64,
    pub server_errors: u64,
    /// Deliveries from a publisher this connection should not hear from, or of a message never sent.
    pub unexpected: u64,
    pub pings: u64,
    pub first_error: Option<String>,
}

/// What a run measured.
pub struct Outcome {
    pub deliveries: Deliveries,
    pub counts: Counts,
    pub connected: usize,
    /// Sent (completely written) and confirmed publications, over all publishers.
    pub published: u64,
    pub published_measured: u64,
    /// Expected, distinct received, lost, duplicated and reordered deliveries over all pairs.
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Recipients that did not get everything.
    pub incomplete_recipients: usize,
    pub measured: Duration,
    pub drain_took: Duration,
    pub server_cpu: Option<f64>,
    pub own_cpu: Option<f64>,
    /// Machine CPU seconds over the window charged to neither (other processes, stray interrupts).
    pub other_cpu: Option<f64>,
    /// The server's resident memory from before the first connection to the end of the window.
    pub server_rss: Option<crate::proc::RssSpan>,
    /// Bytes of data frames all connections received (headers included, compressed as sent).
    pub wire_bytes: u64,
    /// Connections on which the server agreed to permessage-deflate.
    pub deflate_agreed: usize,
    pub warnings: Vec<String>,
}
