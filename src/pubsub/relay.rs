//! The cross-worker relay: a lock-free inbox per worker carrying pre-framed messages, the
//! worker's wake-up, and an interest filter so a publish reaches only workers with subscribers.
//!
//! Interest is a fixed array of buckets, one `AtomicU64` of worker bits each: a worker sets its bit
//! in `hash(topic)`'s bucket while it has local subscribers to any topic hashing there (it counts
//! them itself), and sets it *before* acknowledging the SUBSCRIBE, so a publish that starts after
//! the ACK always sees it. Collisions only cost a wasted hand-off (the target finds no subscriber).
//! Workers past the 64th are always treated as interested.
//!
//! Order: a worker pushes its publishes onto each target's FIFO inbox in publish order, so
//! messages from one publisher reach every subscriber in order, whichever worker it is on.
//!
//! Wake-up: once per target worker per loop turn (not per message), through the waking worker's
//! driver: an eventfd write, or on io_uring with `WSD_RELAY_WAKE=msg_ring` an `IORING_OP_MSG_RING`
//! posted to the target's ring with the turn's other submissions (docs/DESIGN.md decision 7; the
//! measurements behind the default are at `uring::RelayWake`).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::SegQueue;

use crate::app::SharedFrame;
use crate::io::Waker;

/// Interest buckets (a power of two).
pub const BUCKETS: usize = 4096;

/// A published message on its way to another worker.
#[derive(Debug)]
pub struct Relayed {
    /// The topic, shared by every target of one publish.
    pub topic: Arc<str>,
    /// The complete WebSocket frame (header + MESSAGE envelope), framed once, with its
    /// compressed forms made at most once (`COMPRESSION=shared`).
    pub frame: SharedFrame,
}

/// State shared by every worker's pub/sub application.
#[derive(Debug)]
pub struct Relay {
    inboxes: Vec<SegQueue<Relayed>>,
    wakers: Vec<Waker>,
    interest: Box<[AtomicU64]>,
}

impl Relay {
    /// A relay between the workers woken by `wakers` (index = worker id).
    pub fn new(wakers: Vec<Waker>) -> Self {
        Relay {
            inboxes: wakers.iter().map(|_| SegQueue::new()).collect(),
            wakers,
            interest: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// The interest bucket of `topic`.
    pub fn bucket(topic: &str) -> usize {
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        (hasher.hash_one(topic) as usize) & (BUCKETS - 1)
    }

    /// Marks `worker` as interested (or not) in the topics of `bucket`.
    pub fn set_interest(&self, bucket: usize, worker: usize, interested: bool) {
        let Some(cell) = self.interest.get(bucket) else {
            return;
        };
        if worker >= 64 {
            return;
        }
        if interested {
            cell.fetch_or(1 << worker, Ordering::SeqCst);
        } else {
            cell.fetch_and(!(1 << worker), Ordering::SeqCst);
        }
    }

    /// Whether `worker` may have subscribers of topics in `bucket`.
    pub fn interested(&self, bucket: usize, worker: usize) -> bool {
        if worker >= 64 {
            return true;
        }
        self.interest
            .get(bucket)
            .is_some_and(|cell| cell.load(Ordering::SeqCst) & (1 << worker) != 0)
    }

    /// Hands a message to `worker` (woken later through [`Relay::waker`]).
    pub fn push(&self, worker: usize, message: Relayed) {
        if let Some(inbox) = self.inboxes.get(worker) {
            inbox.push(message);
        }
    }

    /// The next message for `worker`.
    pub fn pop(&self, worker: usize) -> Option<Relayed> {
        self.inboxes.get(worker)?.pop()
    }

    /// The waker of `worker`, to wake it to drain its inbox.
    pub fn waker(&self, worker: usize) -> Option<&Waker> {
        self.wakers.get(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_bits_are_per_worker_and_bucket() {
        let relay = Relay::new(vec![
            Waker::new().expect("eventfd"),
            Waker::new().expect("eventfd"),
        ]);
        let b = Relay::bucket("room:1");
        assert_eq!(b, Relay::bucket("room:1"), "stable hash");
        assert!(!relay.interested(b, 1));
        relay.set_interest(b, 1, true);
        assert!(relay.interested(b, 1));
        assert!(!relay.interested(b, 0));
        relay.set_interest(b, 1, false);
        assert!(!relay.interested(b, 1));
        assert!(relay.interested(b, 70), "workers past 64 always receive");
    }

    #[test]
    fn inboxes_are_fifo() {
        let relay = Relay::new(vec![Waker::new().expect("eventfd")]);
        let topic: Arc<str> = "t".into();
        for i in 0..3u8 {
            relay.push(
                0,
                Relayed {
                    topic: topic.clone(),
                    frame: SharedFrame::plain(bytes::Bytes::from(vec![i])),
                },
            );
        }
        let got: Vec<u8> = std::iter::from_fn(|| relay.pop(0))
            .map(|m| m.frame.plain_frame()[0])
            .collect();
        assert_eq!(got, [0, 1, 2]);
    }
}
