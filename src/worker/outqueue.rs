//! A connection's out-queue: the bytes owed to the peer, in order, as owned bytes (protocol
//! replies, echoes, small published frames copied in) and shared frames (a larger published
//! message, framed once, referenced by every subscriber's queue).

use bytes::Bytes;

use crate::io::Outgoing;

/// Output buffers a worker keeps for reuse, of any capacity up to `POOL_MAX_CAPACITY`...
const POOL_BUFFERS: usize = 256;
const POOL_MAX_CAPACITY: usize = 256 * 1024;
/// ...and more of them when small: a fan-out turn hands one buffer per subscriber to the kernel,
/// and each comes back at the end of its send; without them every turn would allocate (and grow)
/// a buffer per subscriber. Bounds what the pool may hold to 64 MiB + 14 MiB.
pub const POOL_SMALL_BUFFERS: usize = 2048;
const POOL_SMALL_CAPACITY: usize = 8 * 1024;
/// Capacity of a tail allocated when the pool is empty: most turns' output fits without growing.
const FRESH_CAPACITY: usize = 4 * 1024;

/// Shared parts a queue makes room for at once.
const SHARED_PARTS: usize = 16;

/// Bytes waiting to be handed to the driver.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Owned bytes after the last shared part; the protocol core and applications append here.
    tail: Vec<u8>,
    /// The parts before `tail`, boxed: only a queue holding a shared frame has them, and an idle
    /// connection's queue (almost all of them) keeps one pointer instead of two vectors and a
    /// length inline (docs/STYLE.md: state is a budget).
    shared: Option<Box<Shared>>,
}

// Per-connection memory: the owned tail and one pointer (80 bytes with the parts inline).
const _: () = assert!(size_of::<OutQueue>() <= 32);

/// The segments queued before the owned tail.
#[derive(Debug)]
struct Shared {
    /// Segments before `tail`, in order: published frames, and the owned bytes frozen before them.
    parts: Vec<Bytes>,
    /// The indexes in `parts` of frozen owned bytes (never dropped), ascending. Empty unless owned
    /// bytes came between published frames, so it usually allocates nothing.
    kept: Vec<u32>,
    /// Bytes in `parts`.
    len: usize,
}

impl OutQueue {
    /// The owned tail, for appending frames.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Queues a shared frame after everything queued so far, without copying it.
    pub fn push_shared(&mut self, frame: Bytes) {
        // One allocation per turn instead of a growth chain 1, 2, 4, 8 (`take` leaves none).
        let shared = self.shared.get_or_insert_with(|| {
            Box::new(Shared {
                parts: Vec::with_capacity(SHARED_PARTS),
                kept: Vec::new(),
                len: 0,
            })
        });
        if !self.tail.is_empty() {
            // A `Bytes` made from a Vec keeps the Vec's whole capacity, and the budget counts only
            // queued bytes: freezing a mostly empty pooled tail (up to 256 KiB) per small frame
            // would let a subscriber that does not read hold many times its budget. So a mostly
            // empty tail is copied out and kept for the next frames; a full one is frozen as is
            // (at most twice its length).
            let part = if self.tail.len() * 2 < self.tail.capacity() {
                let part = Bytes::copy_from_slice(&self.tail);
                self.tail.clear();
                part
            } else {
                Bytes::from(std::mem::take(&mut self.tail))
            };
            shared.len += part.len();
            shared
                .kept
                .push(u32::try_from(shared.parts.len()).unwrap_or(u32::MAX));
            shared.parts.push(part);
        }
        shared.len += frame.len();
        shared.parts.push(frame);
    }

    /// Queues a small published frame by copying it into the owned tail: no reference count to
    /// touch, and consecutive messages make one contiguous send buffer. Such a copy is never
    /// dropped by `drop_oldest_shared`, so the worker copies only when that policy is not in use.
    /// The tail takes a buffer from `pool` first if it has none.
    #[inline(always)]
    pub fn push_copied(&mut self, frame: &[u8], pool: &mut Vec<Vec<u8>>) {
        if self.tail.capacity() == 0 {
            self.provision(pool);
        }
        self.tail.extend_from_slice(frame);
    }

    /// Drops queued shared frames, oldest first, until `extra` more bytes fit in `budget` (or no
    /// shared frame is left). Returns how many were dropped. Owned bytes are never touched.
    ///
    /// One pass over the parts, whatever the number dropped (kept parts keep their order).
    pub fn drop_oldest_shared(&mut self, extra: usize, budget: usize) -> usize {
        let mut excess = (self.len() + extra).saturating_sub(budget);
        let Some(shared) = self.shared.as_mut() else {
            return 0;
        };
        if excess == 0 {
            return 0;
        }
        let mut dropped = 0;
        let mut kept = 0;
        // The next frozen owned part, as an index into `shared.kept`.
        let mut owned = 0;
        for i in 0..shared.parts.len() {
            let is_owned = shared.kept.get(owned).is_some_and(|&k| k as usize == i);
            if is_owned {
                // It stays, at its new place.
                shared.kept[owned] = u32::try_from(kept).unwrap_or(u32::MAX);
                owned += 1;
            }
            if excess > 0 && !is_owned {
                let len = shared.parts[i].len();
                excess = excess.saturating_sub(len);
                shared.len -= len;
                dropped += 1;
            } else {
                shared.parts.swap(kept, i);
                kept += 1;
            }
        }
        shared.parts.truncate(kept);
        dropped
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.tail.len() + self.shared.as_ref().map_or(0, |s| s.len)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds an allocation (an idle connection should not).
    pub fn holds_memory(&self) -> bool {
        self.tail.capacity() > 0 || self.shared.is_some()
    }

    /// Gives the owned tail an allocation from `pool` when it has none.
    pub fn provision(&mut self, pool: &mut Vec<Vec<u8>>) {
        if self.tail.capacity() == 0 {
            self.tail = pool
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(FRESH_CAPACITY));
        }
    }

    /// Empties the queue into one send. Leaves no allocation behind.
    pub fn take(&mut self) -> Outgoing {
        Outgoing {
            parts: self.shared.take().map(|s| s.parts).unwrap_or_default(),
            owned: std::mem::take(&mut self.tail),
        }
    }

    /// Drops everything queued, returning the owned allocation to `pool`.
    pub fn discard(&mut self, pool: &mut Vec<Vec<u8>>) {
        let out = self.take();
        recycle(out, pool);
    }

    /// Returns an idle queue's owned allocation to `pool`.
    pub fn release_if_empty(&mut self, pool: &mut Vec<Vec<u8>>) {
        if self.is_empty() && self.holds_memory() {
            self.discard(pool);
        }
    }
}

/// Returns a finished send's owned buffer to `pool` if the pool has room for it (shared frames are
/// simply dropped).
pub fn recycle(out: Outgoing, pool: &mut Vec<Vec<u8>>) {
    let mut owned = out.owned;
    let capacity = owned.capacity();
    let keep = (capacity <= POOL_MAX_CAPACITY && pool.len() < POOL_BUFFERS)
        || (capacity <= POOL_SMALL_CAPACITY && pool.len() < POOL_SMALL_BUFFERS);
    if capacity > 0 && keep {
        owned.clear();
        pool.push(owned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_owned_bytes_keep_their_order() {
        let mut q = OutQueue::default();
        q.tail().extend_from_slice(b"a1");
        let shared = Bytes::from_static(b"S1");
        q.push_shared(shared.clone());
        q.push_shared(shared.clone());
        q.tail().extend_from_slice(b"b2");
        assert_eq!(q.len(), 8);
        let out = q.take();
        let mut flat = Vec::new();
        for part in &out.parts {
            flat.extend_from_slice(part);
        }
        flat.extend_from_slice(&out.owned);
        assert_eq!(flat, b"a1S1S1b2");
        assert_eq!(out.len(), 8);
        assert!(q.is_empty() && !q.holds_memory());
        // The shared frame was referenced, not copied.
        assert_eq!(out.parts[1].as_ptr(), shared.as_ptr());
    }

    #[test]
    fn a_mostly_empty_tail_is_copied_out_not_frozen_with_its_capacity() {
        let mut pool = vec![Vec::with_capacity(256 * 1024)];
        let mut q = OutQueue::default();
        q.push_copied(b"small", &mut pool);
        q.push_shared(Bytes::from(vec![b'L'; 300]));
        // The 256 KiB buffer stayed with the queue as its tail instead of being frozen into a part.
        assert!(q.tail().capacity() >= 256 * 1024 && q.tail().is_empty());
        q.push_copied(b"again", &mut pool);
        let out = q.take();
        let flat: Vec<u8> = out
            .parts
            .iter()
            .flat_map(|p| p.to_vec())
            .chain(out.owned)
            .collect();
        let mut want = b"small".to_vec();
        want.extend_from_slice(&[b'L'; 300]);
        want.extend_from_slice(b"again");
        assert_eq!(flat, want);
        // A full tail is frozen without a copy.
        let mut q = OutQueue::default();
        q.tail().extend_from_slice(b"0123456789");
        let tail_ptr = q.tail().as_ptr();
        q.tail().shrink_to_fit();
        let tail_ptr = if q.tail().as_ptr() == tail_ptr {
            tail_ptr
        } else {
            q.tail().as_ptr()
        };
        q.push_shared(Bytes::from_static(b"S"));
        let out = q.take();
        assert_eq!(out.parts[0].as_ptr(), tail_ptr);
    }

    #[test]
    fn copied_frames_join_the_owned_tail_in_order() {
        let mut pool = vec![Vec::with_capacity(64)];
        let mut q = OutQueue::default();
        q.push_copied(b"m1", &mut pool);
        assert!(pool.is_empty(), "the tail took the pooled buffer");
        q.push_shared(Bytes::from_static(b"S"));
        q.push_copied(b"m2", &mut pool);
        q.tail().extend_from_slice(b"pong");
        assert_eq!(q.len(), 9);
        let out = q.take();
        let flat: Vec<u8> = out
            .parts
            .iter()
            .flat_map(|p| p.to_vec())
            .chain(out.owned)
            .collect();
        assert_eq!(flat, b"m1Sm2pong");
        let mut q = OutQueue::default();
        q.push_copied(b"m3", &mut pool);
        assert!(
            q.tail().capacity() >= FRESH_CAPACITY,
            "an empty pool gives a fresh buffer"
        );
    }

    #[test]
    fn the_pool_keeps_many_small_buffers_and_few_large_ones() {
        let mut pool = Vec::new();
        for _ in 0..POOL_SMALL_BUFFERS + 10 {
            let out = Outgoing {
                parts: Vec::new(),
                owned: Vec::with_capacity(FRESH_CAPACITY),
            };
            recycle(out, &mut pool);
        }
        assert_eq!(pool.len(), POOL_SMALL_BUFFERS);
        let mut pool = vec![Vec::new(); POOL_BUFFERS];
        let out = Outgoing {
            parts: Vec::new(),
            owned: Vec::with_capacity(POOL_SMALL_CAPACITY + 1),
        };
        recycle(out, &mut pool);
        assert_eq!(
            pool.len(),
            POOL_BUFFERS,
            "a large buffer past the large bound is freed"
        );
    }

    #[test]
    fn drop_oldest_removes_only_shared_frames() {
        let mut q = OutQueue::default();
        q.tail().extend_from_slice(b"pong");
        q.push_shared(Bytes::from_static(b"m1"));
        q.push_shared(Bytes::from_static(b"m2"));
        q.tail().extend_from_slice(b"close");
        q.push_shared(Bytes::from_static(b"m3"));
        assert_eq!(q.len(), 15);
        assert_eq!(q.drop_oldest_shared(2, 13), 2, "m1 and m2 go, oldest first");
        let out = q.take();
        let flat: Vec<u8> = out
            .parts
            .iter()
            .flat_map(|p| p.to_vec())
            .chain(out.owned)
            .collect();
        assert_eq!(flat, b"pongclosem3");
        let mut q = OutQueue::default();
        q.tail().extend_from_slice(b"only-owned");
        assert_eq!(
            q.drop_oldest_shared(5, 1),
            0,
            "owned bytes are never dropped"
        );
        assert_eq!(q.len(), 10);
    }

    #[test]
    fn drop_oldest_on_a_long_queue_keeps_order_and_stops_once_it_fits() {
        let mut q = OutQueue::default();
        let frame = |i: u32| Bytes::from(format!("m{i:04}").into_bytes());
        for i in 0..1000 {
            q.push_shared(frame(i));
            if i % 100 == 50 {
                q.tail().extend_from_slice(b"pong!");
            }
        }
        let before = q.len();
        // Make room for 5 bytes within 5,000: the oldest messages (5 bytes each) go, pongs stay.
        let dropped = q.drop_oldest_shared(5, 5_000);
        assert_eq!(q.len() + 5, 5_000);
        assert_eq!(before - q.len(), dropped * 5);
        let out = q.take();
        let text: Vec<String> = out
            .parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let pongs = text.iter().filter(|t| *t == "pong!").count();
        assert_eq!(pongs, 10, "owned bytes are never dropped");
        let seqs: Vec<u32> = text
            .iter()
            .filter_map(|t| t.strip_prefix('m')?.parse().ok())
            .collect();
        let first = seqs[0] as usize;
        assert_eq!(first, dropped, "the oldest went first");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "order kept");
        assert_eq!(seqs.last(), Some(&999));
    }
}
