//! Sequence accounting for one (publisher, subscriber) pair: counts duplicated and reordered arrivals as they come, so that loss can be computed exactly at the end as expected minus distinct received.
//!
//! Every sequence number below `next` has been received, except those inside `given_up` ranges;
//! numbers received above `next` wait in `ahead`. In order (the normal case) nothing is allocated.
//! When more than `limit` numbers wait above a gap, the gap is given up (it stays recorded, so a very
//! late arrival is still recognized as late and not as a duplicate) and `ahead` drains.

use std::collections::BTreeSet;

/// How many out-of-order sequence numbers a pair keeps above its lowest gap before giving the gap up.
pub const AHEAD_LIMIT: usize = 4096;

/// How one arrival was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next sequence number, with nothing higher seen before it.
    InOrder,
    /// Higher than the next expected number: something before it is missing (so far).
    Ahead,
    /// New, but lower than a number already seen: a reordered message.
    Late,
    /// Seen before.
    Duplicate,
}

impl Arrival {
    /// Whether the message had not been received before.
    pub fn is_new(self) -> bool {
        self != Arrival::Duplicate
    }
}

/// The state of one (publisher, subscriber) pair.
#[derive(Debug, Clone)]
pub struct SeqTrack {
    next: u64,
    ahead: BTreeSet<u64>,
    given_up: Vec<(u64, u64)>,
    max_seen: Option<u64>,
    limit: usize,
    /// Arrivals, duplicates included.
    pub received: u64,
    /// Arrivals of a number already received.
    pub duplicates: u64,
    /// New arrivals lower than a number seen before them.
    pub reordered: u64,
}

impl Default for SeqTrack {
    fn default() -> Self {
        Self::with_limit(AHEAD_LIMIT)
    }
}

impl SeqTrack {
    /// A pair that keeps at most `limit` numbers waiting above a gap.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            next: 0,
            ahead: BTreeSet::new(),
            given_up: Vec::new(),
            max_seen: None,
            limit: limit.max(1),
            received: 0,
            duplicates: 0,
            reordered: 0,
        }
    }

    /// Accounts for the arrival of `seq`.
    pub fn on(&mut self, seq: u64) -> Arrival {
        self.received += 1;
        let late = self.max_seen.is_some_and(|m| seq < m);
        if seq < self.next {
            return self.below_next(seq);
        }
        if seq == self.next {
            self.next += 1;
            self.drain();
        } else {
            if !self.ahead.insert(seq) {
                self.duplicates += 1;
                return Arrival::Duplicate;
            }
            if self.ahead.len() > self.limit {
                self.give_up_lowest_gap();
            }
        }
        self.max_seen = Some(self.max_seen.map_or(seq, |m| m.max(seq)));
        if late {
            self.reordered += 1;
            Arrival::Late
        } else if seq + 1 == self.next && self.ahead.is_empty() {
            Arrival::InOrder
        } else {
            Arrival::Ahead
        }
    }

    /// Distinct sequence numbers received.
    pub fn distinct(&self) -> u64 {
        self.received - self.duplicates
    }

    /// Messages missing out of `expected` (numbers `0..expected` were sent).
    pub fn lost(&self, expected: u64) -> u64 {
        expected.saturating_sub(self.distinct())
    }

    /// Numbers in `0..end` not received (exact whatever arrived at or above `end`; the soak
    /// scenario ends a pair at a bound below what it may already have received).
    pub fn missing_below(&self, end: u64) -> u64 {
        let below_next = end.min(self.next);
        let given_up: u64 = self
            .given_up
            .iter()
            .map(|&(a, b)| b.min(below_next).saturating_sub(a))
            .sum();
        let above = end.saturating_sub(self.next);
        let waiting = self.ahead.range(self.next..end.max(self.next)).count() as u64;
        given_up + above - waiting
    }

    /// Whether every number in `0..expected` has arrived.
    pub fn complete(&self, expected: u64) -> bool {
        self.distinct() >= expected
    }

    fn below_next(&mut self, seq: u64) -> Arrival {
        let Some(i) = self.given_up.iter().position(|&(a, b)| a <= seq && seq < b) else {
            self.duplicates += 1;
            return Arrival::Duplicate;
        };
        let (a, b) = self.given_up.swap_remove(i);
        for (lo, hi) in [(a, seq), (seq + 1, b)] {
            if lo < hi {
                self.given_up.push((lo, hi));
            }
        }
        self.reordered += 1;
        Arrival::Late
    }

    fn drain(&mut self) {
        while self.ahead.first() == Some(&self.next) {
            self.ahead.pop_first();
            self.next += 1;
        }
    }

    fn give_up_lowest_gap(&mut self) {
        if let Some(&lowest) = self.ahead.first() {
            self.given_up.push((self.next, lowest));
            self.next = lowest;
            self.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut SeqTrack, seqs: &[u64]) -> Vec<Arrival> {
        seqs.iter().map(|&s| t.on(s)).collect()
    }

    #[test]
    fn in_order_is_clean() {
        let mut t = SeqTrack::default();
        assert!(
            feed(&mut t, &(0..1000).collect::<Vec<_>>())
                .iter()
                .all(|a| *a == Arrival::InOrder)
        );
        assert_eq!(
            (t.distinct(), t.duplicates, t.reordered, t.lost(1000)),
            (1000, 0, 0, 0)
        );
        assert!(t.complete(1000));
        // One more was sent and never came: that is a loss, found only against the expected count.
        assert_eq!(t.lost(1001), 1);
        assert!(!t.complete(1001));
    }

    #[test]
    fn gaps_and_tail_are_lost() {
        let mut t = SeqTrack::default();
        let seqs: Vec<u64> = (0..90).filter(|s| *s != 5 && *s != 50).collect();
        feed(&mut t, &seqs);
        assert_eq!((t.duplicates, t.reordered), (0, 0));
        assert_eq!(t.lost(100), 2 + 10);
    }

    #[test]
    fn duplicates_are_counted_not_delivered() {
        let mut t = SeqTrack::default();
        let a = feed(&mut t, &[0, 1, 1, 2, 2, 2, 0]);
        assert_eq!(a.iter().filter(|a| !a.is_new()).count(), 4);
        assert_eq!(
            (t.received, t.distinct(), t.duplicates, t.reordered),
            (7, 3, 4, 0)
        );
        assert_eq!(t.lost(3), 0);
        // A duplicate must not hide a loss: 4 arrivals of 3 distinct numbers out of 4 sent.
        let mut t = SeqTrack::default();
        feed(&mut t, &[0, 1, 1, 3]);
        assert_eq!((t.lost(4), t.duplicates), (1, 1));
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut t = SeqTrack::default();
        let a = feed(&mut t, &[0, 2, 3, 1, 4]);
        assert_eq!(
            a,
            [
                Arrival::InOrder,
                Arrival::Ahead,
                Arrival::Ahead,
                Arrival::Late,
                Arrival::InOrder
            ]
        );
        assert_eq!((t.reordered, t.duplicates, t.lost(5)), (1, 0, 0));
        // A duplicate of a number waiting above the gap.
        let mut t = SeqTrack::default();
        let a = feed(&mut t, &[0, 2, 2, 1]);
        assert_eq!(a[2], Arrival::Duplicate);
        assert_eq!((t.reordered, t.duplicates, t.lost(3)), (1, 1, 0));
        // Fully reversed: every arrival after the first is late.
        let mut t = SeqTrack::default();
        feed(&mut t, &[4, 3, 2, 1, 0]);
        assert_eq!((t.reordered, t.duplicates, t.lost(5)), (4, 0, 0));
    }

    #[test]
    fn given_up_gap_still_tells_late_from_duplicate() {
        let mut t = SeqTrack::with_limit(4);
        // 1 is missing; 2..=7 wait above it until the limit gives the gap up.
        feed(&mut t, &[0, 2, 3, 4, 5, 6, 7]);
        assert_eq!(t.ahead.len(), 0, "gap given up, ahead drained");
        assert_eq!(t.lost(8), 1);
        assert_eq!(t.on(1), Arrival::Late);
        assert_eq!(t.on(1), Arrival::Duplicate);
        assert_eq!(t.on(3), Arrival::Duplicate);
        assert_eq!((t.lost(8), t.reordered, t.duplicates), (0, 1, 2));
    }

    #[test]
    fn given_up_ranges_split_on_late_arrivals() {
        let mut t = SeqTrack::with_limit(2);
        // 1..=3 missing, then 4, 5, 6 arrive: the gap [1, 4) is given up.
        feed(&mut t, &[0, 4, 5, 6]);
        assert_eq!(t.lost(7), 3);
        assert_eq!(t.on(2), Arrival::Late);
        assert_eq!(t.on(2), Arrival::Duplicate);
        assert_eq!(t.on(1), Arrival::Late);
        assert_eq!(t.on(3), Arrival::Late);
        assert_eq!((t.lost(7), t.reordered, t.duplicates), (0, 3, 1));
    }

    #[test]
    fn missing_below_ignores_arrivals_at_or_above_the_bound() {
        let mut t = SeqTrack::with_limit(2);
        feed(&mut t, &[0, 1, 3, 7, 8, 9]);
        // 2 and 4..=6 are missing; the gap [2, 3) was given up when 8 and 9 waited.
        assert_eq!(t.missing_below(3), 1);
        assert_eq!(t.missing_below(5), 2);
        assert_eq!(t.missing_below(10), 4);
        assert_eq!(t.missing_below(12), 6);
        assert_eq!(t.missing_below(0), 0);
        let mut t = SeqTrack::default();
        feed(&mut t, &[0, 2, 5]);
        assert_eq!(
            (t.missing_below(2), t.missing_below(4), t.missing_below(6)),
            (1, 2, 3)
        );
        t.on(1);
        assert_eq!(t.missing_below(6), 2);
    }

    #[test]
    fn heavy_loss_stays_bounded_and_exact() {
        let mut t = SeqTrack::with_limit(16);
        // Every third number lost over 100 000 messages.
        let n = 100_000u64;
        for s in (0..n).filter(|s| s % 3 != 1) {
            assert!(t.on(s).is_new());
        }
        assert!(t.ahead.len() <= 16);
        assert_eq!(t.lost(n), n / 3 + u64::from(n % 3 > 1));
        assert_eq!(t.duplicates, 0);
    }
}
