//! A connection's out-queue: the bytes owed to the peer, in order, as owned bytes (protocol
//! replies, echoes) and shared frames (a published message, framed once, referenced by every
//! subscriber's queue).

use bytes::Bytes;

use crate::io::Outgoing;

/// Bytes waiting to be handed to the driver.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Segments before `tail`, in order.
    parts: Vec<Bytes>,
    /// For each part: a published message (droppable under backpressure) rather than protocol or
    /// application bytes (never dropped).
    droppable: Vec<bool>,
    parts_len: usize,
    /// Owned bytes after the last part; the protocol core and applications append here.
    tail: Vec<u8>,
}

impl OutQueue {
    /// The owned tail, for appending frames.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Queues a shared frame after everything queued so far, without copying it.
    pub fn push_shared(&mut self, frame: Bytes) {
        if !self.tail.is_empty() {
            let owned = std::mem::take(&mut self.tail);
            self.parts_len += owned.len();
            self.parts.push(Bytes::from(owned));
            self.droppable.push(false);
        }
        self.parts_len += frame.len();
        self.parts.push(frame);
        self.droppable.push(true);
    }

    /// Drops queued shared frames, oldest first, until `extra` more bytes fit in `budget` (or no
    /// shared frame is left). Returns how many were dropped. Owned bytes are never touched.
    pub fn drop_oldest_shared(&mut self, extra: usize, budget: usize) -> usize {
        let mut dropped = 0;
        let mut i = 0;
        while i < self.parts.len() && self.len() + extra > budget {
            if self.droppable[i] {
                let part = self.parts.remove(i);
                self.droppable.remove(i);
                self.parts_len -= part.len();
                dropped += 1;
            } else {
                i += 1;
            }
        }
        dropped
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.parts_len + self.tail.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds an allocation (an idle connection should not).
    pub fn holds_memory(&self) -> bool {
        self.tail.capacity() > 0 || self.parts.capacity() > 0
    }

    /// Gives the owned tail an allocation from `pool` when it has none.
    pub fn provision(&mut self, pool: &mut Vec<Vec<u8>>) {
        if self.tail.capacity() == 0
            && let Some(buf) = pool.pop()
        {
            self.tail = buf;
        }
    }

    /// Empties the queue into one send. Leaves no allocation behind.
    pub fn take(&mut self) -> Outgoing {
        self.parts_len = 0;
        self.droppable = Vec::new();
        Outgoing {
            parts: std::mem::take(&mut self.parts),
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

/// Returns a finished send's owned buffer to `pool` (shared frames are simply dropped).
pub fn recycle(out: Outgoing, pool: &mut Vec<Vec<u8>>) {
    let mut owned = out.owned;
    if owned.capacity() > 0 {
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
}
