//! What the worker does when time passes: handshakes and close handshakes that ran out of time
//! (`HANDSHAKE_TIMEOUT`, `CLOSE_TIMEOUT`, both in [`Budget`]), idle connections
//! (`IDLE_TIMEOUT`, `SEND_PINGS`), and the end of the write delay (`WRITE_DELAY_MS`).

use std::sync::atomic::Ordering;

use tracing::debug;

use crate::app::App;
use crate::io::Token;
use crate::proto::frame::write_frame;
use crate::proto::{CloseCode, Opcode};

use super::conn::mark_dirty;
use super::{Budget, State, idle};

/// Tokens the turn's expiry list may keep room for between turns.
const EXPIRED_KEEP: usize = 1024;

impl<A: App> State<A> {
    /// Drops connections whose handshake or close handshake ran out of time.
    pub(super) fn expire(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.handshakes.expired(self.now, &mut expired);
        for &token in &expired {
            if let Some(conn) = self.conns.get_mut(token)
                && conn.proto.is_handshaking()
                && !conn.is_closed()
            {
                debug!(worker = self.id, "handshake timed out");
                self.shared.workers[self.id].count_handshake_failure(408);
                conn.abort();
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        expired.clear();
        self.closings.expired(self.now, &mut expired);
        for &token in &expired {
            if let Some(conn) = self.conns.get_mut(token)
                && !conn.is_closed()
            {
                conn.abort();
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        expired.clear();
        self.idle.advance(self.second, &mut expired);
        for &token in &expired {
            self.check_idle(token);
        }
        expired.clear();
        // The idle wheel hands back a whole slot at once (every connection that arrived in one
        // second): a list that large is not kept between turns (it is per-connection memory).
        if expired.capacity() > EXPIRED_KEEP {
            expired = Vec::new();
        }
        self.expired = expired;
    }

    /// Pings or closes one connection from the idle wheel, or files it for its next check.
    fn check_idle(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.is_closed() || conn.closing() || !conn.proto.is_open() {
            return;
        }
        let Budget {
            idle_timeout,
            send_pings,
            ..
        } = self.budget;
        match idle::verdict(
            self.second,
            conn.last_rx,
            conn.pinged,
            idle_timeout,
            send_pings,
        ) {
            idle::Verdict::Close => {
                debug!(worker = self.id, "idle timeout");
                self.worker_stats()
                    .idle_closes
                    .fetch_add(1, Ordering::Relaxed);
                self.close_with(token, CloseCode::GOING_AWAY, "idle timeout");
            }
            idle::Verdict::Ping(next) => {
                conn.pinged = true;
                write_frame(conn.out.tail(), Opcode::Ping, b"");
                mark_dirty(&mut self.dirty, conn, token);
                self.idle.schedule(token, next);
            }
            idle::Verdict::Later(next) => self.idle.schedule(token, next),
        }
    }

    /// Lists the connections whose write delay is over (all of them while draining) for this
    /// turn's flush.
    pub(super) fn release_held(&mut self, draining: bool) {
        match self.held.due {
            Some(due) if draining || self.now >= due => {}
            _ => return,
        }
        self.held.due = None;
        for token in self.held.conns.drain(..) {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.held = false;
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
    }
}
