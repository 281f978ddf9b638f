//! `wsd_publish_delay_seconds`: how long published messages wait in a worker before their sends
//! are queued, observed once per loop turn (never per message or per delivery).
//!
//! A turn that delivers published messages (local publishes, relayed ones from other workers, or
//! messages from Redis) records one observation: the time from the start of the turn's work (the
//! moment its completions or wake-up were seen) to the end of its flush, when every send of the
//! turn is queued (epoll: written; io_uring: submitted with the next `io_uring_enter`, straight
//! after). It bounds from above how long a message published by input of this turn waited in
//! wsd, and is the batch time of a fan-out turn. Not included: the time a relayed message spent
//! in the relay before the wake-up, and `WRITE_DELAY_MS` (held messages are observed in the turn
//! that releases them, with that turn's batch time only).
//!
//! The worker is the only writer, so an observation is a few relaxed loads and stores (no atomic
//! read-modify-write) on the worker's own cache lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds in nanoseconds: 10 µs to 1 s, about three per decade. Observations
/// above the last bound count only in `+Inf`.
pub const BOUNDS_NS: [u64; 14] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// One worker's histogram: non-cumulative bucket counts (the last is `+Inf`) and the sum; the
/// count is the buckets' total.
#[derive(Debug, Default)]
pub struct DelayHistogram {
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

/// A relaxed increment for a counter with a single writer: a load and a store, no lock prefix.
fn add_single_writer(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl DelayHistogram {
    /// Records one turn's delay. Only the owning worker may call it (single writer).
    pub fn observe(&self, delay: Duration) {
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&bound| bound < ns);
        add_single_writer(&self.buckets[i], 1);
        add_single_writer(&self.sum_ns, ns);
    }

    /// The histogram as an exposition encodes it: sum in seconds, count, and (upper bound in
    /// seconds, non-cumulative count) per bucket, `+Inf` last.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bound = BOUNDS_NS
                    .get(i)
                    .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
                (bound, b.load(Ordering::Relaxed))
            })
            .collect::<Vec<_>>();
        // The count is the sum of the buckets read here, so a scrape racing an observation
        // still shows `count == +Inf bucket`, which parsers check.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = DelayHistogram::default();
        h.observe(Duration::from_micros(10)); // exactly the first bound
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2)); // above every bound: +Inf only
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - (10e-6 + 11e-6 + 3e-3 + 2.0)).abs() < 1e-9, "{sum}");
        assert_eq!(buckets.len(), BOUNDS_NS.len() + 1);
        assert_eq!(buckets[0], (10e-6, 1));
        assert_eq!(buckets[1], (25e-6, 1));
        assert_eq!(buckets[8], (5e-3, 1));
        assert_eq!(buckets[BOUNDS_NS.len()], (f64::INFINITY, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 4);
    }
}
