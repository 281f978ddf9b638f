//! A publisher's closed-loop window: a message counts as confirmed once every subscriber expected to receive it has received it, and at most W messages are unconfirmed at a time.

use std::collections::VecDeque;

/// Delivery counts of one publisher's unconfirmed messages, oldest first.
#[derive(Debug, Clone)]
pub struct Window {
    /// Sequence number of the oldest unconfirmed message (all below are confirmed).
    base: u64,
    /// Deliveries so far of messages `base..base + pending.len()`.
    pending: VecDeque<u32>,
    /// Recipients of every message of this publisher.
    need: u32,
    cap: usize,
}

impl Window {
    /// A window of `cap` messages, each confirmed after `need` deliveries (`need` must be at least 1).
    pub fn new(cap: usize, need: u32) -> Self {
        Self {
            base: 0,
            pending: VecDeque::with_capacity(cap),
            need: need.max(1),
            cap: cap.max(1),
        }
    }

    /// Messages sent so far; the next one gets this sequence number.
    pub fn sent(&self) -> u64 {
        self.base + self.pending.len() as u64
    }

    /// Messages confirmed so far.
    #[cfg(test)]
    pub fn confirmed(&self) -> u64 {
        self.base
    }

    /// How many more messages may be sent now.
    pub fn room(&self) -> usize {
        self.cap - self.pending.len()
    }

    /// Records that the next message was sent.
    pub fn on_sent(&mut self) {
        self.pending.push_back(0);
    }

    /// Records one new (not duplicated) delivery of `seq`; false if `seq` was never sent.
    pub fn on_delivered(&mut self, seq: u64) -> bool {
        if seq >= self.sent() {
            return false;
        }
        let Some(i) = seq.checked_sub(self.base) else {
            // Already confirmed: possible only for a delivery the caller did not recognize as a duplicate.
            return true;
        };
        if let Some(c) = self.pending.get_mut(i as usize) {
            *c += 1;
        }
        while self.pending.front().is_some_and(|&c| c >= self.need) {
            self.pending.pop_front();
            self.base += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_only_after_every_recipient() {
        let mut w = Window::new(2, 3);
        assert_eq!(w.room(), 2);
        w.on_sent();
        w.on_sent();
        assert_eq!((w.room(), w.sent()), (0, 2));
        assert!(w.on_delivered(0));
        assert!(w.on_delivered(0));
        assert_eq!(w.room(), 0, "two of three recipients");
        assert!(w.on_delivered(0));
        assert_eq!((w.room(), w.confirmed()), (1, 1));
        assert!(!w.on_delivered(2), "never sent");
    }

    #[test]
    fn later_message_completing_first_waits_for_the_oldest() {
        let mut w = Window::new(4, 1);
        for _ in 0..3 {
            w.on_sent();
        }
        assert!(w.on_delivered(2));
        assert!(w.on_delivered(1));
        assert_eq!(w.confirmed(), 0);
        assert!(w.on_delivered(0));
        assert_eq!((w.confirmed(), w.room()), (3, 4));
        w.on_sent();
        assert_eq!((w.sent(), w.room()), (4, 3));
    }
}
