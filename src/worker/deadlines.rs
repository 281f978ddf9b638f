//! Deadlines of one fixed duration (handshake, close handshake), kept in arrival order.
//!
//! Every entry gets the same timeout, so entries expire in the order they were added and a FIFO is
//! an exact timer: O(1) to arm, O(1) per expiry, no per-connection timer. An entry whose
//! connection has moved on is simply skipped when it comes due.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::io::Token;

/// A FIFO of `(deadline, connection)` for one timeout length.
pub struct Deadlines {
    timeout: Duration,
    queue: VecDeque<(Instant, Token)>,
}

impl Deadlines {
    /// Deadlines that fall `timeout` after they are armed.
    pub fn new(timeout: Duration) -> Self {
        Deadlines {
            timeout,
            queue: VecDeque::new(),
        }
    }

    /// Arms a deadline for `token` at `now + timeout`.
    pub fn arm(&mut self, now: Instant, token: Token) {
        self.queue.push_back((now + self.timeout, token));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// Removes and returns every entry due at `now`.
    pub fn expired(&mut self, now: Instant, into: &mut Vec<Token>) {
        while let Some(&(at, token)) = self.queue.front() {
            if at > now {
                break;
            }
            self.queue.pop_front();
            into.push(token);
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
}
