//! The backpressure rule: how much may be queued for one connection, what a connection over
//! its budget loses (`MAX_BACKPRESSURE`, `BACKPRESSURE_POLICY`), when its reading pauses
//! ([`READ_PAUSE_BYTES`]) and how published messages wait for the write delay
//! (`WRITE_DELAY_MS`). [`SlabDeliver`] is the worker's connections as the application's
//! [`Deliver`] sink.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::app::{ConnId, Deliver, SendStatus, SharedFrame};
use crate::config::BackpressurePolicy;
use crate::io::{Driver, Token};
use crate::metrics::{WorkerStats, tally};
use crate::proto::CloseCode;
use crate::proto::deflate::Codec;

use super::Budget;
use super::conn::{Conn, Phase, mark_dirty};
use super::deadlines::Deadlines;
use super::slab::Slab;

/// A connection with more than this many bytes waiting to be sent is not read from until its
/// peer catches up, so a client that sends without reading cannot make the server queue without
/// bound.
pub const READ_PAUSE_BYTES: usize = 1 << 20;

/// Pauses reading from `conn` while its backlog is over [`READ_PAUSE_BYTES`], resumes it once it
/// is back under (called by the flush for every connection it sees).
pub(super) fn pause_reads_if_over<D: Driver>(conn: &mut Conn, token: Token, driver: &mut D) {
    let pause = conn.backlog() > READ_PAUSE_BYTES;
    if pause != conn.paused {
        conn.paused = pause;
        driver.set_reading(token, !pause);
    }
}

/// The worker's connections as the application's [`Deliver`] sink, applying each connection's
/// backpressure budget.
pub(super) struct SlabDeliver<'a> {
    pub(super) conns: &'a mut Slab<Conn>,
    pub(super) dirty: &'a mut Vec<Token>,
    pub(super) held: &'a mut Held,
    /// The queued-bytes tally, for connections whose messages are held.
    pub(super) queued_bytes: &'a mut tally::QueuedBytes,
    pub(super) closings: &'a mut Deadlines,
    pub(super) now: Instant,
    pub(super) budget: Budget,
    pub(super) stats: &'a WorkerStats,
    /// Frames queued this turn (added to `messages_out` once, after the application's flush).
    pub(super) queued: u64,
    pub(super) pool: &'a mut Vec<Vec<u8>>,
    pub(super) wakes: &'a mut Vec<crate::io::Waker>,
    /// Compresses a published message the first time one of its subscribers needs it.
    pub(super) codec: &'a mut Codec,
    /// The worker's queued bytes at the start of the fan-out, plus what it has queued since:
    /// compared with the worker's share of `MAX_QUEUED_BYTES` (`Budget::queued_share`).
    pub(super) worker_queued: usize,
    /// A connection's fair part of the share (the share over the worker's connections): past the
    /// share, the policy applies to the connections holding at least this much.
    pub(super) fair: usize,
}

/// A connection's fair part of the worker's `share` of `MAX_QUEUED_BYTES`, among `conns`
/// connections (computed once per fan-out).
pub(super) fn fair_part(share: usize, conns: usize) -> usize {
    if share == usize::MAX {
        usize::MAX
    } else {
        share / conns.max(1)
    }
}

/// Published frames up to this size are copied into each subscriber's owned tail instead of being
/// shared: a copy of a small frame costs less than the reference count, the iovec and the
/// `sendmsg` bookkeeping of a shared segment, and a connection's messages of one turn become one
/// contiguous buffer (a plain send).
pub const COPY_FRAME_MAX: usize = 256;

impl SlabDeliver<'_> {
    /// Whether `frame` is queued by copy (see [`COPY_FRAME_MAX`]). Not under `drop-oldest`, which
    /// must be able to drop each queued message on its own.
    fn copies(&self, frame: &[u8]) -> bool {
        frame.len() <= COPY_FRAME_MAX && self.budget.policy != BackpressurePolicy::DropOldest
    }

    /// Queues `frame` on `conn` by copy (`copy`) or by reference, applying the budget.
    #[inline(always)]
    fn queue(&mut self, conn: ConnId, frame: &bytes::Bytes, copy: bool) -> SendStatus {
        let Some(c) = self.conns.get_mut(conn) else {
            return SendStatus::Gone;
        };
        if c.phase != Phase::Open || !c.proto.is_open() {
            return SendStatus::Gone;
        }
        // The policy applies once the backlog (queued and in flight) has reached the budget, as
        // uWebSockets' maxBackpressure does: a connection holds at most the budget plus one
        // message, and a message larger than the budget still reaches a client that keeps up.
        // Past the worker's share of MAX_QUEUED_BYTES, the budget of a connection is its fair
        // part of the share: the connections holding the most lose first.
        let mut budget = self.budget.max_backpressure;
        let over_share = self.worker_queued >= self.budget.queued_share;
        if over_share && self.fair < budget {
            budget = self.fair;
        }
        let backlog = c.backlog();
        if backlog >= budget {
            if over_share && budget < self.budget.max_backpressure {
                self.stats.over_queued_bound.fetch_add(1, Ordering::Relaxed);
            }
            match self.budget.policy {
                BackpressurePolicy::DropNewest => {
                    self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    return SendStatus::Dropped;
                }
                BackpressurePolicy::DropOldest => {
                    // Make the backlog fall below the budget again, oldest messages first, and an
                    // eighth of the budget further: each drop is one pass over the queue, so for
                    // a subscriber that stays full it happens once per eighth of a budget of new
                    // messages, not once per message (O(1) per delivery, amortized).
                    let room = budget.saturating_sub(c.sending as usize + 1 + budget / 8);
                    let dropped = c.out.drop_oldest_shared(0, room);
                    self.stats
                        .dropped_oldest
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    if c.backlog() >= budget {
                        // Owned bytes or the send in flight alone fill the budget.
                        self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                        return SendStatus::Dropped;
                    }
                }
                BackpressurePolicy::Close => {
                    self.stats
                        .closed_backpressure
                        .fetch_add(1, Ordering::Relaxed);
                    self.stats.count_close(CloseCode::TRY_AGAIN.0);
                    let status =
                        c.proto
                            .close(CloseCode::TRY_AGAIN, "too slow to receive", c.out.tail());
                    if c.apply(status) {
                        self.closings.arm(self.now, conn);
                    }
                    mark_dirty(self.dirty, c, conn);
                    return SendStatus::Dropped;
                }
            }
        }
        // Something not held is already queued (a reply behind a send in flight, say): this
        // message goes with it, not after a write delay.
        let owed = !c.out.is_empty() && !c.held;
        if copy {
            c.out.push_copied(frame, self.pool);
        } else {
            c.out.push_shared(frame.clone());
        }
        self.worker_queued += frame.len();
        if self.budget.write_delay.is_zero() || owed {
            mark_dirty(self.dirty, c, conn);
        } else if !c.dirty {
            if !c.held {
                // Flushed when the write delay that the first held message started is over, or
                // earlier with anything else the connection sends (same queue, same order).
                c.held = true;
                self.held.conns.push(conn);
                self.held
                    .due
                    .get_or_insert(self.now + self.budget.write_delay);
            }
            // Held bytes are queued bytes too (`/metrics`), though no flush reports them yet.
            self.queued_bytes.set(conn, c.backlog());
        }
        self.queued += 1;
        SendStatus::Queued
    }
}

impl Deliver for SlabDeliver<'_> {
    fn send_shared(&mut self, conn: ConnId, frame: &bytes::Bytes) -> SendStatus {
        let copy = self.copies(frame);
        self.queue(conn, frame, copy)
    }

    fn send_to_all(
        &mut self,
        conns: &[ConnId],
        exclude: Option<ConnId>,
        frame: &SharedFrame,
    ) -> u64 {
        let plain = frame.plain_frame();
        let copy = self.copies(plain);
        let mut queued = 0;
        if !frame.may_compress() {
            // Compression off or a short message: one frame for all, as before.
            for &conn in conns {
                if Some(conn) != exclude && self.queue(conn, plain, copy) == SendStatus::Queued {
                    queued += 1;
                }
            }
            return queued;
        }
        for &conn in conns {
            if Some(conn) == exclude {
                continue;
            }
            let deflate = self.conns.get_mut(conn).and_then(|c| c.proto.deflate());
            let status = match deflate {
                None => self.queue(conn, plain, copy),
                Some(_) => {
                    let form = frame.for_connection(deflate, self.codec);
                    let copy = self.copies(form);
                    self.queue(conn, form, copy)
                }
            };
            if status == SendStatus::Queued {
                queued += 1;
            }
        }
        queued
    }

    fn wake(&mut self, waker: &crate::io::Waker) {
        self.wakes.push(waker.clone());
    }
}

/// Connections holding published messages back for the write delay (`WRITE_DELAY_MS`).
#[derive(Default)]
pub(super) struct Held {
    pub(super) conns: Vec<Token>,
    /// When the oldest held message has waited the write delay (`None`: nothing held).
    pub(super) due: Option<Instant>,
}
