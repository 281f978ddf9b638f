//! Token-bucket rate limits: per connection (`RATE_LIMIT`), per identity across workers
//! (`RATE_LIMIT_IDENTITY`) and upgrades per IP address (`UPGRADE_RATE_PER_IP`).
//!
//! - [`bucket`]: the bucket itself (capacity, refill per second, integer costs, retry-after), kept
//!   as one timestamp so a connection's bucket is 8 bytes and a shared one a single atomic.
//! - [`rate`]: parsing `capacity/refill` and the per-type costs (`RATE_LIMIT_COST`).
//! - [`per_ip`]: the process-wide table of upgrade buckets by address.
//!
//! Time is a monotonic count of nanoseconds passed in by the caller (the worker reads its clock
//! once per loop turn), so tests drive it by hand.

pub mod bucket;
pub mod per_ip;
pub mod rate;

pub use bucket::{AtomicBucket, Bucket, Refused};
pub use rate::{Costs, MessageType, Rate};

use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds since the first call in this process: the one monotonic clock every worker reads
/// (once per loop turn) for the buckets, so buckets shared between workers compare like times.
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// [`now_ns`] at instant `t` (0 for an instant before the clock's start).
pub fn ns_at(t: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}
