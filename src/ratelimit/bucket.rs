//! A token bucket kept as one number: the time at which it would be full again ("theoretical
//! arrival time", the GCRA form of a token bucket).
//!
//! With `interval` = nanoseconds per token and `span` = `capacity * interval`, the bucket holds
//! `(span - (full_at - now)) / interval` tokens when `full_at > now` and `capacity` otherwise.
//! Taking `cost` tokens moves `full_at` to `max(full_at, now) + cost * interval`, allowed only
//! while that stays within `span` of `now`: the bucket never holds more than `capacity` nor fewer
//! than zero tokens. An [`AtomicBucket`] does the same with one compare-and-swap, so concurrent
//! takers never spend more than the bucket holds.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::Rate;

/// Why tokens were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not enough tokens now: enough will have refilled after this many milliseconds.
    RetryAfterMs(u64),
    /// The cost is larger than the capacity: it can never be paid.
    Never,
}

/// The new `full_at` after taking `cost` at `now`, or why not.
#[inline]
fn take(full_at: u64, now: u64, cost: u32, rate: &Rate) -> Result<u64, Refused> {
    if cost > rate.capacity() {
        return Err(Refused::Never);
    }
    let need = u64::from(cost) * rate.interval_ns();
    let new = full_at.max(now).saturating_add(need);
    let ahead = new - now;
    if ahead <= rate.span_ns() {
        Ok(new)
    } else {
        let wait_ns = ahead - rate.span_ns();
        Err(Refused::RetryAfterMs(wait_ns.div_ceil(1_000_000)))
    }
}

/// Tokens in a bucket whose full time is `full_at`, at `now`.
fn tokens(full_at: u64, now: u64, rate: &Rate) -> u32 {
    let missing = full_at.saturating_sub(now);
    let available_ns = rate.span_ns().saturating_sub(missing);
    u32::try_from(available_ns / rate.interval_ns()).unwrap_or(u32::MAX)
}

/// One connection's bucket (8 bytes; the rate is shared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    full_at: u64,
}

impl Bucket {
    /// A full bucket.
    pub const fn full() -> Bucket {
        Bucket { full_at: 0 }
    }

    /// Takes `cost` tokens at `now` (nanoseconds), or says when to retry.
    #[inline]
    pub fn try_take(&mut self, cost: u32, now: u64, rate: &Rate) -> Result<(), Refused> {
        self.full_at = take(self.full_at, now, cost, rate)?;
        Ok(())
    }

    /// Tokens available at `now`.
    pub fn tokens(&self, now: u64, rate: &Rate) -> u32 {
        tokens(self.full_at, now, rate)
    }
}

/// A bucket shared between threads (one identity's connections on every worker).
#[derive(Debug, Default)]
pub struct AtomicBucket {
    full_at: AtomicU64,
}

impl AtomicBucket {
    /// A full bucket.
    pub const fn full() -> AtomicBucket {
        AtomicBucket {
            full_at: AtomicU64::new(0),
        }
    }

    /// Takes `cost` tokens at `now` (nanoseconds of the same clock on every thread), or says when
    /// to retry. Lock-free: one compare-and-swap, retried only if another thread took meanwhile.
    #[inline]
    pub fn try_take(&self, cost: u32, now: u64, rate: &Rate) -> Result<(), Refused> {
        let mut current = self.full_at.load(Ordering::Relaxed);
        loop {
            let new = take(current, now, cost, rate)?;
            match self.full_at.compare_exchange_weak(
                current,
                new,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Tokens available at `now`.
    pub fn tokens(&self, now: u64, rate: &Rate) -> u32 {
        tokens(self.full_at.load(Ordering::Relaxed), now, rate)
    }
}

#[cfg(test)]
mod tests;
