//! The end of a loop turn: the application delivers what it deferred (through the backpressure
//! rule), then every connection with new output gets one send (corked writes, docs/DESIGN.md
//! decision 5), and connections whose end was decided this turn are closed.

use std::sync::atomic::Ordering;

use tracing::debug;

use crate::app::App;
use crate::io::Driver;
use crate::metrics::add;
use crate::proto::CloseCode;

use super::backpressure::{SlabDeliver, fair_part, pause_reads_if_over};
use super::conn::Phase;
use super::{State, outqueue, tls};

/// Pooled buffers kept beyond one per connection, for the replies of new connections.
const POOL_SLACK: usize = 64;

impl<A: App> State<A> {
    /// Lets the application deliver what it deferred this turn.
    pub(super) fn flush_app(&mut self) {
        let fair = fair_part(self.budget.queued_share, self.conns.len());
        let worker_queued = usize::try_from(self.queued.total()).unwrap_or(usize::MAX);
        let mut deliver = SlabDeliver {
            conns: &mut self.conns,
            dirty: &mut self.dirty,
            held: &mut self.held,
            queued_bytes: &mut self.queued,
            closings: &mut self.closings,
            now: self.now,
            budget: self.budget,
            stats: &self.shared.workers[self.id],
            queued: 0,
            pool: &mut self.pool,
            wakes: &mut self.wakes,
            codec: &mut self.codec,
            worker_queued,
            fair,
        };
        self.app.flush(&mut deliver);
        let queued = deliver.queued;
        if queued > 0 {
            add(&self.shared.workers[self.id].messages_out, queued);
        }
    }

    /// Hands this turn's work to the driver: new sockets, one send per dirty connection with
    /// output (held connections are dirty once their write delay is over), and closes.
    pub(super) fn flush<D: Driver>(&mut self, driver: &mut D) {
        let stats = &self.shared.workers[self.id];
        for (token, fd) in self.accepted.drain(..) {
            driver.register(token, fd);
        }
        for waker in self.wakes.drain(..) {
            driver.wake_worker(&waker);
        }
        // Taken and put back so the list keeps its allocation from turn to turn.
        let mut dirty = std::mem::take(&mut self.dirty);
        for &token in &dirty {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            conn.dirty = false;
            if conn.is_closed() {
                continue;
            }
            let mut drained = conn.sending == 0 && !conn.owes(self.sessions.owes(token));
            let lingering = matches!(conn.phase, Phase::Lingering { .. });
            if drained
                && lingering
                && let Some(session) = self.sessions.get_mut(token)
                && !session.close_notify_sent()
            {
                // TLS: close_notify after the last data (and the WebSocket close), then the
                // socket closes once it is sent.
                session.close_notify();
                drained = session.pending_len() == 0;
            }
            if conn.phase == Phase::Aborting || (drained && lingering) {
                if conn.proto.is_open() {
                    // Upgraded, and no close frame either way: the connection just ended.
                    stats.count_close(CloseCode::ABNORMAL.0);
                }
                self.queued.set(token, 0);
                conn.phase = Phase::Closed;
                conn.out.discard(&mut self.pool);
                driver.close(token);
                self.app.on_close(token);
                continue;
            }
            if conn.sending > 0 && !conn.out.is_empty() {
                // Owed at once (a reply, a ping, a close): sent when the send in flight completes,
                // not when a write delay ends.
                conn.held = false;
            }
            if conn.sending == 0 && conn.owes(self.sessions.owes(token)) {
                // The budget counts plaintext (`tls` module); a send of TLS records alone counts 1.
                conn.sending = u32::try_from(conn.out.len().max(1)).unwrap_or(u32::MAX);
                let mut out = conn.out.take();
                if let Some(session) = self.sessions.get_mut(token) {
                    match tls::seal(session, out, &mut self.pool) {
                        Ok(sealed) => out = sealed,
                        Err(e) => {
                            debug!(worker = self.id, error = %e, "TLS encryption failed");
                            conn.sending = 0;
                            conn.phase = Phase::Closed;
                            self.queued.set(token, 0);
                            driver.close(token);
                            self.app.on_close(token);
                            continue;
                        }
                    }
                }
                add(&stats.bytes_out, out.len() as u64);
                driver.send(token, out);
                self.sends += 1;
            } else if drained && conn.closing() && self.drain.is_some() {
                // Draining: the close frame (behind the queued data) is sent; now the peer has
                // CLOSE_TIMEOUT to answer it. (Arming twice is harmless: the first entry wins.)
                self.closings.arm(self.now, token);
            }
            if conn.bound_linger() {
                // Done (the peer closed or half-closed) but output is still owed: a peer that no
                // longer reads gets CLOSE_TIMEOUT to take it, not forever.
                self.closings.arm(self.now, token);
            }
            self.queued.set(token, conn.backlog());
            pause_reads_if_over(conn, token, driver);
        }
        debug_assert!(
            self.dirty.is_empty(),
            "nothing marks a connection dirty while flushing"
        );
        dirty.clear();
        self.dirty = dirty;
        // A buffer per connection at most: once the clients of a fan-out go, their buffers go
        // back to the allocator instead of staying pooled (docs/OPERATIONS.md, memory).
        self.pool
            .truncate(outqueue::POOL_SMALL_BUFFERS.min(self.conns.len() + POOL_SLACK));
        stats
            .queued_bytes
            .store(self.queued.total(), Ordering::Relaxed);
    }
}
