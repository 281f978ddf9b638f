//! Sequence accounting for one (publisher, subscription) pair of the soak scenario, where a subscriber comes and goes: which of a publisher's messages the subscription must receive, and what it missed.
//!
//! A subscription confirmed (its ACK read) when publisher `p` had completely written `must_from`
//! messages must receive every message from `must_from` on: each was read by the server after the
//! SUBSCRIBE it had already answered. Messages before `must_from` may or may not arrive (they
//! raced the SUBSCRIBE), but once one has arrived every later one must follow, in order, because
//! the server delivers a publisher's messages to a subscription in the order it read them. So the
//! range accounted starts at `base = min(first arrival, must_from)` and ends at the `target` fixed
//! when the subscription is drained (what the publisher had written then); anything missing in
//! `base..target` is lost, anything arriving below `base` after `base` was fixed is reordered.

use crate::fanout::seq::SeqTrack;

/// One publisher as heard by one subscription.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Messages the publisher had completely written when the subscription was confirmed.
    must_from: u64,
    /// First sequence number accounted (fixed by the first arrival).
    base: Option<u64>,
    /// Arrivals, as offsets from `base`.
    track: SeqTrack,
    /// Arrivals below `base` after it was fixed: older than a message already delivered.
    below_base: u64,
}

/// What a finished pair adds to the run's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairTotals {
    /// Messages the subscription had to receive (`base..target`).
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Distinct messages received (the optional ones and any past the target included).
    pub received: u64,
}

impl std::ops::AddAssign for PairTotals {
    fn add_assign(&mut self, o: Self) {
        self.expected += o.expected;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.received += o.received;
    }
}

impl Pair {
    /// A pair confirmed when the publisher had completely written `must_from` messages.
    pub fn new(must_from: u64) -> Self {
        Pair {
            must_from,
            base: None,
            track: SeqTrack::default(),
            below_base: 0,
        }
    }

    /// Accounts for the arrival of `seq`; false if it was a duplicate or a reordered message.
    pub fn on(&mut self, seq: u64) -> bool {
        let base = *self.base.get_or_insert(seq.min(self.must_from));
        if seq < base {
            self.below_base += 1;
            return false;
        }
        let a = self.track.on(seq - base);
        a == crate::fanout::seq::Arrival::InOrder || a == crate::fanout::seq::Arrival::Ahead
    }

    /// Whether every message in `base..target` has arrived.
    pub fn complete(&self, target: u64) -> bool {
        self.missing(target) == 0
    }

    fn start(&self) -> u64 {
        self.base.unwrap_or(self.must_from)
    }

    fn missing(&self, target: u64) -> u64 {
        self.track
            .missing_below(target.saturating_sub(self.start()))
    }

    /// The pair's totals once it ends with `target` messages written by its publisher.
    pub fn finish(&self, target: u64) -> PairTotals {
        PairTotals {
            expected: target.saturating_sub(self.start()),
            lost: self.missing(target),
            duplicates: self.track.duplicates,
            reordered: self.track.reordered + self.below_base,
            received: self.track.distinct() + self.below_base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut Pair, seqs: &[u64]) {
        for &s in seqs {
            p.on(s);
        }
    }

    #[test]
    fn early_arrivals_move_the_start_back() {
        // Confirmed at 10; 7 raced the SUBSCRIBE and arrived: 7.. must all follow.
        let mut p = Pair::new(10);
        feed(&mut p, &[7, 8, 9, 10, 11]);
        assert!(p.complete(12));
        assert_eq!(
            p.finish(12),
            PairTotals {
                expected: 5,
                lost: 0,
                duplicates: 0,
                reordered: 0,
                received: 5
            }
        );
        // 8 missing between an early arrival and the rest is a loss, not an optional message.
        let mut p = Pair::new(10);
        feed(&mut p, &[7, 9, 10, 11]);
        assert_eq!(p.finish(12).lost, 1);
        assert!(!p.complete(12));
    }

    #[test]
    fn nothing_before_the_confirmation_is_required() {
        let mut p = Pair::new(10);
        feed(&mut p, &[10, 11, 12]);
        assert_eq!((p.finish(13).lost, p.finish(13).expected), (0, 3));
        // A first arrival after the confirmation point: the ones between are lost.
        let mut p = Pair::new(10);
        feed(&mut p, &[12, 13]);
        assert_eq!(p.finish(14).lost, 2);
        // Nothing arrived at all: everything from the confirmation on is lost.
        let p = Pair::new(10);
        assert_eq!((p.finish(15).lost, p.finish(15).expected), (5, 5));
        assert_eq!(p.finish(8).expected, 0, "target below the start");
    }

    #[test]
    fn arrivals_past_the_target_do_not_hide_a_loss() {
        let mut p = Pair::new(0);
        feed(&mut p, &[0, 1, 3, 4, 5, 6]);
        assert_eq!(p.finish(4).lost, 1, "2 missing; 4..6 are past the target");
        assert_eq!(p.finish(4).received, 6);
    }

    #[test]
    fn duplicates_and_reordering_are_counted() {
        let mut p = Pair::new(5);
        feed(&mut p, &[5, 6, 6, 8, 7]);
        let t = p.finish(9);
        assert_eq!((t.duplicates, t.reordered, t.lost), (1, 1, 0));
        // Older than the first arrival, which fixed the start: reordered.
        let mut p = Pair::new(10);
        assert!(p.on(8));
        assert!(!p.on(7));
        assert_eq!(p.finish(11).reordered, 1);
    }
}
