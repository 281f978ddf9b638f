//! What the worker measures for `/metrics` beyond plain increments: the bytes queued for peers
//! (`wsd_queued_bytes`), kept from what the worker already has in hand (the connections marked
//! dirty this turn), so the hot path pays a few instructions per connection sent to and one
//! relaxed store per turn, never a pass over every connection. (Messages and refused requests are
//! counted where they are written: the application's `Outbox` counts its messages, and the protocol
//! core reports each response's status to the worker.)

use crate::io::Token;
use crate::table::Chunked;

/// Bytes queued for peers (in out-queues and in flight), kept as a running total.
///
/// Every change to a connection's backlog marks it dirty (or its bytes would never be sent), so
/// the worker reports each dirty connection's backlog once per turn, after its flush, and each
/// closed connection once; the total is exact at the end of every turn. (Messages held for the
/// write delay do not mark their connection dirty: the fan-out reports those backlogs itself.) The last reported value
/// of each slab slot lives here (4 bytes per slot, in chunks: `table.rs`), not in the connection
/// state.
#[derive(Debug, Default)]
pub struct QueuedBytes {
    total: u64,
    by_slot: Chunked<u32>,
}

impl QueuedBytes {
    /// Records that `token`'s connection now has `backlog` bytes queued.
    pub fn set(&mut self, token: Token, backlog: usize) {
        let backlog = u32::try_from(backlog).unwrap_or(u32::MAX);
        let i = token.index as usize;
        if i >= self.by_slot.len() {
            if backlog == 0 {
                return;
            }
            self.by_slot.resize_with(i + 1, || 0);
        }
        let old = std::mem::replace(&mut self.by_slot[i], backlog);
        self.total = self.total - u64::from(old) + u64::from(backlog);
    }

    /// The total across the worker's connections.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_total_follows_each_slot() {
        let t = |index| Token {
            index,
            generation: 0,
        };
        let mut q = QueuedBytes::default();
        q.set(t(3), 100);
        q.set(t(0), 20);
        assert_eq!(q.total(), 120);
        q.set(t(3), 40);
        assert_eq!(q.total(), 60);
        q.set(t(0), 0);
        q.set(t(3), 0);
        q.set(t(900), 0);
        assert_eq!(q.total(), 0);
        assert_eq!(q.by_slot.len(), 4, "a zero backlog never grows the table");
    }
}
