//! What happens to one connection on input: admission at accept, received bytes through the
//! protocol core to the application or the HTTP routes, and server-initiated closes.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::debug;

use crate::access::claims::Identity;
use crate::app::{App, Outbox};
use crate::http::{self, Routes};
use crate::io::Token;
use crate::metrics::{RejectReason, WorkerStats, add, bump};
use crate::proto::connection::AppClose;
use crate::proto::{
    CloseCode, Connection, Handler, HttpRequest, Message, MessageKind, UpgradeDecision,
};
use crate::state::Shared;

use super::backpressure::READ_PAUSE_BYTES;
use super::conn::{Conn, mark_dirty};
use super::{State, gate};

impl<A: App> State<A> {
    /// Admits a new connection and sets it up, or refuses it (per-address limits: 503). A
    /// process-wide limit hands the descriptor back, for the accept gate to park (`gate.rs`).
    pub(super) fn admit(&mut self, fd: OwnedFd) -> Result<(), OwnedFd> {
        // Admission comes first: a refused connection costs no slab entry, protocol state or
        // buffer, only this check and its static 503.
        let peer = match self.shared.admission.admit(&fd) {
            Ok(peer) => peer,
            Err(RejectReason::MaxConnections | RejectReason::UpgradeConcurrent) => return Err(fd),
            Err(reason) => {
                self.refuse(fd, reason);
                return Ok(());
            }
        };
        if let Err(e) = socket2::SockRef::from(&fd).set_tcp_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY failed");
        }
        let mut conn = Conn::new(Connection::new(), self.second);
        let mut session = None;
        if let Some(tls) = &self.shared.tls {
            match tls.session() {
                Ok(s) => {
                    conn.tls = true;
                    session = Some(s);
                }
                Err(e) => {
                    debug!(error = %e, "cannot start a TLS session");
                    let waited_for = self.shared.admission.release(peer, true);
                    gate::wake_waiting(&self.shared, waited_for);
                    return Ok(());
                }
            }
        }
        let token = self.conns.insert(conn);
        if let Some(session) = session {
            self.sessions.insert(token, session);
        }
        if let Some(peer) = peer {
            let index = token.index as usize;
            if self.peers.len() <= index {
                self.peers.resize(index + 1, None);
            }
            self.peers[index] = Some(peer);
        }
        if self
            .shared
            .access
            .as_ref()
            .is_some_and(|a| a.upgrades.is_some())
        {
            let ip = socket2::SockRef::from(&fd)
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.ip());
            let index = token.index as usize;
            if self.peer_ips.len() <= index {
                self.peer_ips.resize(index + 1, None);
            }
            self.peer_ips[index] = ip;
        }
        self.accepted.push((token, fd));
        self.handshakes.arm(self.now, token);
        let stats = self.worker_stats();
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn on_data(&mut self, token: Token, bytes: &mut [u8]) {
        let stats = &self.shared.workers[self.id];
        add(&stats.bytes_in, bytes.len() as u64);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !conn.reads() {
            return;
        }
        conn.last_rx = self.second;
        conn.pinged = false;
        if conn.tls {
            self.on_ciphertext(token, bytes, false);
        } else {
            self.on_plaintext(token, bytes);
        }
    }

    /// Plaintext input (from the socket, or from the TLS session): to the protocol core.
    pub(super) fn on_plaintext(&mut self, token: Token, bytes: &mut [u8]) {
        let stats = &self.shared.workers[self.id];
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let was_handshaking = conn.proto.is_handshaking();
        let admin = self.admin.contains(token);
        conn.out.provision(&mut self.pool);
        let queued_before = conn.out.len();
        let mut handler = ConnHandler {
            app: &mut self.app,
            routes: &mut self.routes,
            token,
            worker: self.id,
            peer_ips: &self.peer_ips,
            admin,
            now_ns: self.now_ns,
            identity: None,
            shared: &self.shared,
            stats,
            messages_in: 0,
            messages_out: 0,
            over_read_pause: conn.backlog() > READ_PAUSE_BYTES,
        };
        let status = conn.proto.handle_bytes(
            bytes,
            &self.limits,
            &mut self.codec,
            conn.out.tail(),
            &mut handler,
        );
        let (messages_in, messages_out) = (handler.messages_in, handler.messages_out);
        if messages_in > 0 {
            add(&stats.messages_in, messages_in);
        }
        if messages_out > 0 {
            add(&stats.messages_out, messages_out);
        }
        if conn.apply(status) {
            self.closings.arm(self.now, token);
        }
        if was_handshaking && !conn.proto.is_handshaking() && !admin {
            // Upgraded, answered or refused: the handshake slot is free.
            let peer = self.peers.get(token.index as usize).copied().flatten();
            let waited_for = self.shared.admission.upgrade_done(peer);
            gate::wake_waiting(&self.shared, waited_for);
            if conn.proto.is_open() && self.budget.idle_timeout > 0 {
                self.idle.schedule(token, self.second + 1);
            }
        }
        // Output this input produced (or owed before it) goes now; published messages held for
        // the write delay alone keep waiting.
        let owed = conn.out.len() != queued_before || (!conn.out.is_empty() && !conn.held);
        if owed || !conn.reads() {
            mark_dirty(&mut self.dirty, conn, token);
        } else if conn.out.is_empty() {
            // Idle connections keep no buffer; the next input takes one from the pool.
            conn.out.release_if_empty(&mut self.pool);
        }
    }

    /// Reads the turn's clock for the application and closes what it asks to (token expiry).
    pub(super) fn tick_app(&mut self) {
        self.now_ns = crate::ratelimit::ns_at(self.now);
        let mut closes = std::mem::take(&mut self.app_closes);
        self.app.tick(self.now_ns, &mut closes);
        for (token, close) in closes.drain(..) {
            self.close_with(token, close.code, close.reason);
        }
        self.app_closes = closes;
    }

    /// Starts a server-initiated close of one connection.
    pub(super) fn close_with(&mut self, token: Token, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.is_closed() {
            return;
        }
        if conn.proto.is_handshaking() {
            // Nothing to close politely; the protocol state is left as it is, so the connection
            // still counts as handshaking until it is released.
            conn.linger();
            mark_dirty(&mut self.dirty, conn, token);
            return;
        }
        if conn.proto.is_open() {
            self.shared.workers[self.id].count_close(code.0);
        }
        let status = conn.proto.close(code, reason, conn.out.tail());
        if conn.apply(status) {
            self.closings.arm(self.now, token);
        }
        mark_dirty(&mut self.dirty, conn, token);
    }
}

/// One connection's side of the protocol core's callbacks: messages go to the application (with
/// the connection's id and a counting [`Outbox`]), plain requests to the HTTP routes, upgrades
/// through the upgrade checks; the counts are added to the counters once per input by the caller.
struct ConnHandler<'a, A> {
    app: &'a mut A,
    routes: &'a mut Routes,
    token: Token,
    worker: usize,
    /// Connections' addresses by slot, when the upgrade check needs them.
    peer_ips: &'a [Option<IpAddr>],
    /// The connection came in on the admin listener: `/health` and `/metrics` only.
    admin: bool,
    /// The turn's clock.
    now_ns: u64,
    /// The identity the upgrade check verified, handed to the application when it opens.
    identity: Option<Arc<Identity>>,
    shared: &'a Arc<Shared>,
    stats: &'a WorkerStats,
    /// Data messages received in this call, added to the counters once by the caller.
    messages_in: u64,
    /// Data frames the application queued in this call, likewise.
    messages_out: u64,
    /// The connection's backlog was over [`READ_PAUSE_BYTES`] before this input: pings in a
    /// run get one pong (`Handler::coalesce_pongs`).
    over_read_pause: bool,
}

impl<A: App> Handler for ConnHandler<'_, A> {
    fn coalesce_pongs(&mut self) -> bool {
        self.over_read_pause
    }

    fn opened(&mut self, out: &mut Vec<u8>) {
        if let Some(identity) = self.identity.take() {
            self.app.on_identity(self.token, identity);
        }
        let mut outbox = Outbox::new(out);
        self.app.on_open(self.token, &mut outbox);
        self.messages_out += outbox.sent();
    }

    fn message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), AppClose> {
        self.messages_in += 1;
        let mut outbox = Outbox::new(out);
        let result = self.app.on_message(self.token, msg, &mut outbox);
        self.messages_out += outbox.sent();
        result
    }

    fn close_started(&mut self, code: CloseCode) {
        self.stats.count_close(code.0);
    }

    fn oversized(&mut self, kind: MessageKind, out: &mut Vec<u8>) -> Result<(), AppClose> {
        bump(&self.stats.oversized_discarded);
        let mut outbox = Outbox::new(out);
        let result = self.app.on_oversized(self.token, kind, &mut outbox);
        self.messages_out += outbox.sent();
        result
    }

    fn http_request(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> u16 {
        if self.admin {
            return crate::http::respond_admin(req, self.shared, out);
        }
        self.routes.respond(req, self.shared, self.app, out)
    }

    fn responded(&mut self, status: u16) {
        if status >= 400 {
            self.stats.count_handshake_failure(status);
        }
    }

    fn upgrade(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> UpgradeDecision {
        if self.admin {
            let status = crate::http::respond_admin(req, self.shared, out);
            return UpgradeDecision::Refused { status };
        }
        let ip = self
            .peer_ips
            .get(self.token.index as usize)
            .copied()
            .flatten();
        let (decision, identity) =
            http::upgrade::decide(self.shared, self.worker, req, ip, self.now_ns, out);
        self.identity = identity;
        decision
    }
}
