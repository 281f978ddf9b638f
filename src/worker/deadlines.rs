//! Deadlines of one fixed duration (handshake, close handshake), kept in arrival order.
//!
//! Every entry gets the same timeout, so entries expire in the order they were added and a FIFO is
//! an exact timer: O(1) to arm, O(1) per expiry, no per-connection timer. An entry whose
//! connection has moved on is simply skipped when it comes due.
//!
//! Every accepted connection has a handshake entry for `HANDSHAKE_TIMEOUT`, so the FIFO is
//! per-connection memory while connections arrive: it is kept in blocks of [`BLOCK`] entries,
//! each freed once its entries are due (a doubling `VecDeque` kept its largest size for good and
//! up to twice what it held), and an entry is a nanosecond count and a token (16 bytes, not 24).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::io::Token;

/// Entries per block: 4 KiB.
const BLOCK: usize = 256;

/// One entry: its deadline in nanoseconds since the FIFO was made (584 years), and its connection.
type Entry = (u64, Token);

const _: () = assert!(size_of::<Entry>() <= 16);

/// A FIFO of `(deadline, connection)` for one timeout length.
pub struct Deadlines {
    timeout: Duration,
    /// What the entries' nanoseconds count from.
    base: Instant,
    /// Blocks of entries in deadline order; only the last is being filled.
    blocks: VecDeque<Vec<Entry>>,
    /// Entries of the first block already handed out.
    head: usize,
}

impl Deadlines {
    /// Deadlines that fall `timeout` after they are armed.
    pub fn new(timeout: Duration) -> Self {
        Deadlines {
            timeout,
            base: Instant::now(),
            blocks: VecDeque::new(),
            head: 0,
        }
    }

    /// Arms a deadline for `token` at `now + timeout`.
    pub fn arm(&mut self, now: Instant, token: Token) {
        let due = self.nanos(now + self.timeout);
        match self.blocks.back_mut() {
            Some(block) if block.len() < BLOCK => block.push((due, token)),
            _ => {
                let mut block = Vec::with_capacity(BLOCK);
                block.push((due, token));
                self.blocks.push_back(block);
            }
        }
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        let &(due, _) = self.blocks.front()?.get(self.head)?;
        Some(self.base + Duration::from_nanos(due))
    }

    /// `at` in nanoseconds since `base` (0 before it).
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    /// Removes and returns every entry due at `now`.
    pub fn expired(&mut self, now: Instant, into: &mut Vec<Token>) {
        let now = self.nanos(now);
        while let Some(block) = self.blocks.front() {
            while let Some(&(due, token)) = block.get(self.head) {
                if due > now {
                    return;
                }
                self.head += 1;
                into.push(token);
            }
            // Every entry of the first block is out: it goes (unless it is the one being filled:
            // then it is emptied and kept).
            if self.blocks.len() == 1 {
                if let Some(block) = self.blocks.front_mut() {
                    block.clear();
                }
                self.head = 0;
                return;
            }
            self.blocks.pop_front();
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(Duration::from_secs(10));
        let a = Token {
            index: 1,
            generation: 0,
        };
        let b = Token {
            index: 2,
            generation: 0,
        };
        d.arm(t0, a);
        d.arm(t0 + Duration::from_secs(1), b);
        let mut out = Vec::new();
        d.expired(t0 + Duration::from_secs(9), &mut out);
        assert!(out.is_empty());
        d.expired(t0 + Duration::from_secs(10), &mut out);
        assert_eq!(out, vec![a]);
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(11)));
        d.expired(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out, vec![a, b]);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn blocks_are_freed_as_their_entries_come_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(Duration::from_secs(10));
        let n = 3 * BLOCK + 5;
        for i in 0..n {
            let token = Token {
                index: i as u32,
                generation: 0,
            };
            d.arm(t0 + Duration::from_millis(i as u64), token);
        }
        assert_eq!(d.blocks.len(), 4);
        let mut out = Vec::new();
        // Due: the first block and one entry more.
        d.expired(t0 + Duration::from_millis(10_000 + BLOCK as u64), &mut out);
        assert_eq!(out.len(), BLOCK + 1);
        assert!(out.iter().enumerate().all(|(i, t)| t.index as usize == i));
        assert_eq!(d.blocks.len(), 3, "the first block is freed");
        assert!(d.next().is_some());
        d.expired(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out.len(), n);
        assert!(
            out.iter().enumerate().all(|(i, t)| t.index as usize == i),
            "in order"
        );
        assert_eq!(d.blocks.len(), 1, "only the block being filled is kept");
        assert_eq!(d.next(), None);
        d.arm(t0 + Duration::from_secs(61), out[0]);
        assert_eq!(d.blocks.len(), 1, "and reused");
        assert!(
            d.next()
                .is_some_and(|at| at >= t0 + Duration::from_secs(71))
        );
    }
}
