//! Delivery counting and publish→delivery latency for fan-out: deliveries are split by phase (warm-up, measured window, drain) and only the measured ones are rated and timed.

use hdrhistogram::Histogram;

use crate::stats::ns_histogram;

/// Which part of the run a delivery falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warmup,
    Measured,
    Drain,
}

/// Counters and latency of new (not duplicated) deliveries.
pub struct Deliveries {
    pub phase: Phase,
    pub warmup: u64,
    pub measured: u64,
    pub drain: u64,
    /// Publish→delivery latency of measured deliveries, ns.
    pub latency_ns: Histogram<u64>,
    /// Deliveries whose timestamp lies in the future (corrupt data: the clock is monotonic).
    pub bad_ts: u64,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self {
            phase: Phase::Warmup,
            warmup: 0,
            measured: 0,
            drain: 0,
            latency_ns: ns_histogram(),
            bad_ts: 0,
        }
    }
}

impl Deliveries {
    /// Records a delivery stamped `ts_ns` that arrived at `now_ns` (both ns since the run's start).
    pub fn record(&mut self, ts_ns: u64, now_ns: u64) {
        let Some(lat) = now_ns.checked_sub(ts_ns) else {
            self.bad_ts += 1;
            return;
        };
        match self.phase {
            Phase::Warmup => self.warmup += 1,
            Phase::Measured => {
                self.measured += 1;
                self.latency_ns.saturating_record(lat.max(1));
            }
            Phase::Drain => self.drain += 1,
        }
    }

    /// All deliveries counted.
    pub fn total(&self) -> u64 {
        self.warmup + self.measured + self.drain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_measured_deliveries_are_timed() {
        let mut d = Deliveries::default();
        d.record(0, 5_000_000);
        d.phase = Phase::Measured;
        for i in 0..100u64 {
            // Latencies 1..=100 µs.
            d.record(1_000_000, 1_000_000 + (i + 1) * 1000);
        }
        d.phase = Phase::Drain;
        d.record(0, 9_000_000_000);
        assert_eq!((d.warmup, d.measured, d.drain, d.total()), (1, 100, 1, 102));
        let h = &d.latency_ns;
        assert_eq!(h.len(), 100);
        assert!(h.equivalent(h.value_at_quantile(0.5), 50_000));
        assert!(h.equivalent(h.value_at_quantile(0.99), 99_000));
        assert!(
            h.equivalent(h.max(), 100_000),
            "the drain delivery is not timed"
        );
        assert!(
            h.equivalent(h.min(), 1_000),
            "the warm-up delivery is not timed"
        );
    }

    #[test]
    fn future_timestamps_are_counted_not_timed() {
        let mut d = Deliveries {
            phase: Phase::Measured,
            ..Deliveries::default()
        };
        d.record(10, 5);
        d.record(7, 7);
        assert_eq!((d.bad_ts, d.measured, d.latency_ns.len()), (1, 1, 1));
        assert_eq!(d.latency_ns.min(), 1, "zero latency is recorded as 1 ns");
    }
}
