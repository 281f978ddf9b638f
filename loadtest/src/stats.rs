//! Counting: the per-connection FIFO of send timestamps, and the run's message counters, error counters and latency histogram.

use std::collections::VecDeque;
use std::time::Instant;

use hdrhistogram::Histogram;

/// A histogram of nanoseconds from 1 ns to 1 h at 3 significant digits (larger values saturate).
pub fn ns_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// p50, p90, p99, p99.9 and max of a nanosecond histogram, in µs (`None` without samples).
pub fn percentiles_us(h: &Histogram<u64>) -> Option<[f64; 5]> {
    let us = |ns: u64| ns as f64 / 1000.0;
    (!h.is_empty()).then(|| {
        [
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.9)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        ]
    })
}

/// The JSON object form of [`percentiles_us`] (`null` without samples).
pub fn percentiles_json(p: Option<[f64; 5]>) -> String {
    match p {
        Some([p50, p90, p99, p999, max]) => format!(
            "{{\"p50\":{p50:.1},\"p90\":{p90:.1},\"p99\":{p99:.1},\"p99_9\":{p999:.1},\"max\":{max:.1}}}"
        ),
        None => "null".to_string(),
    }
}

/// The one-line human form of [`percentiles_us`].
pub fn percentiles_line(p: Option<[f64; 5]>) -> String {
    match p {
        Some([p50, p90, p99, p999, max]) => {
            format!("p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}")
        }
        None => "(no samples)".to_string(),
    }
}

/// Send timestamps of one connection's in-flight messages, oldest first (echoes come back in order).
#[derive(Debug)]
pub struct LatencyFifo {
    sent: VecDeque<Instant>,
}

impl LatencyFifo {
    /// A FIFO for at most `in_flight` outstanding messages; never reallocates after this.
    pub fn new(in_flight: usize) -> Self {
        Self {
            sent: VecDeque::with_capacity(in_flight),
        }
    }

    /// Records that one message was queued for sending at `at`.
    pub fn push(&mut self, at: Instant) {
        self.sent.push_back(at);
    }

    /// Matches one received echo with the oldest outstanding send; `None` if nothing was outstanding.
    pub fn pop(&mut self, now: Instant) -> Option<std::time::Duration> {
        self.sent
            .pop_front()
            .map(|t| now.saturating_duration_since(t))
    }

    /// Messages sent and not yet echoed.
    pub fn outstanding(&self) -> usize {
        self.sent.len()
    }
}

/// Error counters; any non-zero one makes the run fail.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Errors {
    /// Connections that could not connect or whose upgrade failed or timed out.
    pub connect_failed: u64,
    /// Server byte streams that were not valid echo frames (or echoes nobody sent).
    pub bad_frames: u64,
    /// Connections the server closed (close frame, EOF or reset) before the end.
    pub closed: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect_failed + self.bad_frames + self.closed
    }
}

/// Counters and latency histogram of the measured window.
pub struct Stats {
    measuring: bool,
    /// Echoes received inside the measured window.
    pub messages: u64,
    /// Echoes received during warm-up (not part of the results).
    pub warmup_messages: u64,
    /// Round-trip latency of measured echoes, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    pub errors: Errors,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            measuring: false,
            messages: 0,
            warmup_messages: 0,
            latency_ns: ns_histogram(),
            errors: Errors::default(),
        }
    }

    /// Starts the measured window: from now on echoes are counted.
    pub fn start_measuring(&mut self) {
        self.measuring = true;
    }

    /// Ends the measured window.
    pub fn stop_measuring(&mut self) {
        self.measuring = false;
    }

    /// Accounts for `n` echoes received at `now` on a connection with send FIFO `fifo`.
    /// Returns false if more echoes arrived than were sent (a protocol error).
    pub fn record_echoes(&mut self, fifo: &mut LatencyFifo, n: u32, now: Instant) -> bool {
        for _ in 0..n {
            let Some(rtt) = fifo.pop(now) else {
                return false;
            };
            if self.measuring {
                self.messages += 1;
                let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
                self.latency_ns.saturating_record(ns);
            } else {
                self.warmup_messages += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fifo_matches_echoes_in_send_order() {
        let t0 = Instant::now();
        let mut fifo = LatencyFifo::new(3);
        fifo.push(t0);
        fifo.push(t0 + Duration::from_micros(10));
        fifo.push(t0 + Duration::from_micros(20));
        assert_eq!(fifo.outstanding(), 3);
        let now = t0 + Duration::from_micros(100);
        assert_eq!(fifo.pop(now), Some(Duration::from_micros(100)));
        assert_eq!(fifo.pop(now), Some(Duration::from_micros(90)));
        fifo.push(now);
        assert_eq!(fifo.pop(now), Some(Duration::from_micros(80)));
        assert_eq!(
            fifo.pop(now + Duration::from_micros(5)),
            Some(Duration::from_micros(5))
        );
        assert_eq!(fifo.pop(now), None);
        assert_eq!(fifo.outstanding(), 0);
    }

    #[test]
    fn only_measured_echoes_are_counted_and_timed() {
        let t0 = Instant::now();
        let mut stats = Stats::new();
        let mut fifo = LatencyFifo::new(2);
        fifo.push(t0);
        fifo.push(t0);
        // Warm-up echo: popped (keeps the FIFO aligned) but not counted.
        assert!(stats.record_echoes(&mut fifo, 1, t0 + Duration::from_micros(1)));
        assert_eq!((stats.messages, stats.warmup_messages), (0, 1));
        assert_eq!(stats.latency_ns.len(), 0);
        stats.start_measuring();
        fifo.push(t0 + Duration::from_micros(2));
        assert!(stats.record_echoes(&mut fifo, 2, t0 + Duration::from_micros(50)));
        assert_eq!(stats.messages, 2);
        assert_eq!(stats.latency_ns.len(), 2);
        assert!(stats.latency_ns.equivalent(stats.latency_ns.max(), 50_000));
        assert!(stats.latency_ns.equivalent(stats.latency_ns.min(), 48_000));
        // An echo that was never sent is reported, not counted.
        assert!(!stats.record_echoes(&mut fifo, 1, t0));
        assert_eq!(stats.messages, 2);
        stats.stop_measuring();
        fifo.push(t0);
        assert!(stats.record_echoes(&mut fifo, 1, t0));
        assert_eq!(stats.messages, 2);
    }

    #[test]
    fn error_total_adds_all_kinds() {
        let e = Errors {
            connect_failed: 1,
            bad_frames: 2,
            closed: 3,
        };
        assert_eq!(e.total(), 6);
    }
}
