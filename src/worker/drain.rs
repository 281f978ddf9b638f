//! This worker's part of the drain (docs/ARCHITECTURE.md has the whole sequence): the first
//! turn that sees the server draining stops accepting and reports this worker quiesced; the first
//! turn that begins with every worker quiesced queues close 1001 on every WebSocket connection
//! behind what is queued for it; at `SHUTDOWN_TIMEOUT` whatever is left is dropped.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::debug;

use crate::app::App;
use crate::io::{Driver, Token};
use crate::proto::CloseCode;

use super::State;
use super::conn::mark_dirty;

/// This worker's part of the drain.
#[derive(Debug)]
pub(super) struct Drain {
    /// `SHUTDOWN_TIMEOUT` after the drain began: whatever is left is dropped.
    pub(super) deadline: Instant,
    /// Connections open when the drain began.
    at_start: usize,
    /// Close frames are queued on the WebSocket connections (every worker had quiesced).
    closing: bool,
    /// The deadline passed and what was left was dropped.
    pub(super) cut: bool,
    /// Connections dropped at the deadline, and the bytes still queued for them.
    dropped: usize,
    unsent: u64,
}

impl<A: App> State<A> {
    /// One step of the drain, once per loop turn after the application's flush. `quiet`: every
    /// worker had quiesced before that flush.
    pub(super) fn drain_step<D: Driver>(&mut self, driver: &mut D, quiet: bool) {
        let Some(drain) = self.drain.as_mut() else {
            self.begin_drain(driver);
            // This turn's flush handed over everything this worker accepted so far.
            self.shared.worker_quiesced();
            return;
        };
        if quiet && !drain.closing {
            drain.closing = true;
            for token in self.conns.tokens() {
                self.drain_close(token);
            }
            return; // the close frames get one flush before any deadline cuts them off
        }
        self.check_drain_deadline();
    }

    /// Begins this worker's drain: stop accepting, close connections that have not sent
    /// anything, and let requests already begun finish. WebSocket connections get their 1001
    /// once every worker has begun (`drain_step`).
    fn begin_drain<D: Driver>(&mut self, driver: &mut D) {
        driver.stop_accepting();
        let mut open = 0;
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.is_closed() {
                continue;
            }
            open += 1;
            // Connected but silent (a pre-opened or idle connection): nothing is owed to it. A
            // request begun is answered when it is complete (`/health` says draining).
            if conn.proto.is_handshaking() && !conn.proto.has_partial_request() {
                conn.abort();
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        self.drain = Some(Drain {
            deadline: self.now + self.shared.shutdown_timeout,
            at_start: open,
            closing: false,
            cut: false,
            dropped: 0,
            unsent: 0,
        });
        debug!(worker = self.id, connections = open, "worker draining");
    }

    /// Queues close 1001 on an upgraded connection behind what is already queued for it (nothing
    /// for one still in its handshake or already closed). Unlike [`State::close_with`] it arms
    /// no close deadline now: the peer gets `CLOSE_TIMEOUT` to answer once the close frame is
    /// actually sent (see `flush`), however long the queued data takes, up to the drain's deadline.
    fn drain_close(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.is_closed() || conn.proto.is_handshaking() {
            return;
        }
        if conn.proto.is_open() {
            self.shared.workers[self.id].count_close(CloseCode::GOING_AWAY.0);
        }
        conn.out.provision(&mut self.pool);
        let status = conn.proto.close(
            CloseCode::GOING_AWAY,
            "server shutting down",
            conn.out.tail(),
        );
        // No close deadline now: the flush arms it once the close frame is sent.
        let _ = conn.apply(status);
        mark_dirty(&mut self.dirty, conn, token);
    }

    /// At the drain's deadline: drops every connection left, whatever is still queued for it.
    fn check_drain_deadline(&mut self) {
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        if drain.cut || self.now < drain.deadline {
            return;
        }
        drain.cut = true;
        for token in self.conns.tokens() {
            if let Some(conn) = self.conns.get_mut(token)
                && !conn.is_closed()
            {
                drain.dropped += 1;
                drain.unsent += conn.backlog() as u64;
                conn.abort();
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        if drain.dropped > 0 {
            debug!(
                worker = self.id,
                dropped = drain.dropped,
                unsent_bytes = drain.unsent,
                "shutdown timeout: dropping the connections left"
            );
        }
    }

    /// Adds this worker's drain outcome to the server's.
    pub(super) fn finish_drain(&mut self) {
        let Some(drain) = &self.drain else { return };
        let totals = &self.shared.drain;
        totals.closed.fetch_add(
            drain.at_start.saturating_sub(drain.dropped),
            Ordering::Relaxed,
        );
        totals.dropped.fetch_add(drain.dropped, Ordering::Relaxed);
        totals
            .unsent_bytes
            .fetch_add(drain.unsent, Ordering::Relaxed);
        debug!(worker = self.id, "worker stopped");
    }
}
