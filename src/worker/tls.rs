//! The worker's side of TLS ([`crate::tls`]): ciphertext from the driver goes through the
//! connection's session and the plaintext to the protocol core; on send, the out-queue's
//! plaintext is encrypted into one buffer for the driver. Plain connections never get here (their
//! `Conn::tls` is `None`: one branch).
//!
//! # Handshakes do not stall the loop
//!
//! A full handshake costs the server an ECDHE key share and a signature (BENCHMARKS.md has the
//! figure). A worker does at most one handshake step (one read's worth of handshake records on one
//! connection) per loop turn: handshake input that arrives when this turn's step is taken, or while
//! older handshakes wait, is kept in its session ([`crate::tls::TlsSession::stash`]) and taken up in
//! arrival order, one per later turn, and the loop does not sleep while any wait. Established
//! connections' input is handled as it comes, so during a storm of new connections each turn
//! delays them by at most one handshake step.
//!
//! # Sessions live in a table, not in boxes
//!
//! A session is 1,144 bytes inline (rustls's `UnbufferedServerConnection`, almost all of it). Boxed
//! per connection, mimalloc rounds it up to its 1,280-byte size class and places it among the
//! handshake's short-lived allocations; the worker keeps sessions in a [`Sessions`] table instead,
//! indexed like the connection slab and grown in chunks ([`crate::table::Chunked`]), so an idle
//! TLS connection's session costs its size. (What rustls allocates for the session, about 2.2 KiB
//! with TLS 1.3, is out of wsd's hands: `tests/tls_idle_memory.rs` lists and pins it.)
//!
//! # Backpressure counts plaintext
//!
//! `MAX_BACKPRESSURE`, the read pause and `wsd_queued_bytes` count the WebSocket bytes queued (the
//! plaintext), as on a plain connection; records add 22-29 bytes per 16 KiB on the wire.

use std::collections::VecDeque;

use tracing::debug;

use crate::app::App;
use crate::io::{Outgoing, Token};
use crate::table::Chunked;
use crate::tls::TlsSession;

use super::conn::mark_dirty;
use super::{State, outqueue};

impl<A: App> State<A> {
    /// TLS input: through the session (one handshake step per turn), then the plaintext to the
    /// protocol core. `waited`: the input is the stash of a handshake taken from the queue.
    pub(super) fn on_ciphertext(&mut self, token: Token, bytes: &mut [u8], waited: bool) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(token) else {
            return;
        };
        let handshaking = session.is_handshaking();
        if handshaking && !self.handshakes_tls.may_step(waited) {
            match session.stash(bytes) {
                Ok(()) => self.handshakes_tls.wait(token),
                Err(e) => {
                    debug!(worker = self.id, error = %e, "TLS input refused");
                    conn.abort();
                    mark_dirty(&mut self.dirty, conn, token);
                }
            }
            return;
        }
        if handshaking {
            self.handshakes_tls.stepped();
        }
        let mut plain = std::mem::take(&mut self.plaintext);
        plain.clear();
        let received = session.receive(bytes, &mut plain);
        let owes = session.pending_len() > 0;
        if handshaking && !session.is_handshaking() {
            debug!(
                worker = self.id,
                version = ?session.protocol_version(),
                client = session.peer_subject().as_deref().unwrap_or("-"),
                "TLS handshake complete"
            );
        }
        match received {
            Err(e) => {
                // The alert (if any) goes out, then the connection closes.
                debug!(worker = self.id, error = %e, "TLS error");
                conn.linger();
                mark_dirty(&mut self.dirty, conn, token);
            }
            Ok(received) => {
                if owes {
                    mark_dirty(&mut self.dirty, conn, token);
                }
                if !plain.is_empty() {
                    self.on_plaintext(token, &mut plain);
                }
                if received.peer_closed
                    && let Some(conn) = self.conns.get_mut(token)
                {
                    // close_notify: as a read side closed.
                    conn.linger();
                    mark_dirty(&mut self.dirty, conn, token);
                }
            }
        }
        self.plaintext = plain;
    }

    /// Takes up the oldest handshake waiting, if this turn's step is still free.
    pub(super) fn step_waiting_handshake(&mut self) {
        while let Some(token) = self.handshakes_tls.next_waiting() {
            if self.conns.get_mut(token).is_some_and(|c| c.reads()) {
                self.on_ciphertext(token, &mut [], true);
                return;
            }
        }
    }
}

/// Each TLS connection's session, by connection slab index, with the token it belongs to (a slot
/// reused by a plain connection, or a late event for a closed one, finds no session).
#[derive(Default)]
pub(super) struct Sessions {
    slots: Chunked<Option<(Token, TlsSession)>>,
}

// A session slot is per-connection memory (docs/STYLE.md): rustls 0.23.46's connection state
// (1,144 bytes with wsd's fields) and the owner's token, no padding. A box would have cost a
// 1,280-byte mimalloc block.
const _: () = assert!(size_of::<Option<(Token, TlsSession)>>() <= 1152);

impl Sessions {
    /// Stores `token`'s session (its slot's previous one, if any, is dropped).
    pub(super) fn insert(&mut self, token: Token, session: TlsSession) {
        let index = token.index as usize;
        self.slots.resize_with(index + 1, || None);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some((token, session));
        }
    }

    /// `token`'s session, if it has one.
    pub(super) fn get_mut(&mut self, token: Token) -> Option<&mut TlsSession> {
        match self.slots.get_mut(token.index as usize) {
            Some(Some((owner, session))) if *owner == token => Some(session),
            _ => None,
        }
    }

    /// Whether `token`'s session has records waiting to be sent.
    pub(super) fn owes(&self, token: Token) -> bool {
        match self.slots.get(token.index as usize) {
            Some(Some((owner, session))) if *owner == token => session.pending_len() > 0,
            _ => false,
        }
    }

    /// Drops `token`'s session (the connection is released).
    pub(super) fn remove(&mut self, token: Token) {
        if let Some(slot) = self.slots.get_mut(token.index as usize)
            && slot.as_ref().is_some_and(|(owner, _)| *owner == token)
        {
            *slot = None;
        }
    }
}

/// Handshake steps a worker does per loop turn (see the module documentation).
const HANDSHAKE_STEPS_PER_TURN: u32 = 1;

/// The handshake steps of this turn and the handshakes waiting for a later one.
#[derive(Debug, Default)]
pub(super) struct Handshakes {
    steps: u32,
    waiting: VecDeque<Token>,
}

impl Handshakes {
    /// A new loop turn: one step is available again.
    pub(super) fn new_turn(&mut self) {
        self.steps = 0;
    }

    /// Whether a handshake step may run now: for new input (`waited` false), none this turn yet
    /// and none waiting before it; for the handshake just taken from the queue, none this turn yet.
    pub(super) fn may_step(&self, waited: bool) -> bool {
        self.steps < HANDSHAKE_STEPS_PER_TURN && (waited || self.waiting.is_empty())
    }

    /// A step was taken.
    pub(super) fn stepped(&mut self) {
        self.steps += 1;
    }

    /// `token`'s handshake input waits (stashed in its session) for a later turn.
    pub(super) fn wait(&mut self, token: Token) {
        if !self.waiting.contains(&token) {
            self.waiting.push_back(token);
        }
    }

    /// The handshake to step now, if this turn's step is still free.
    pub(super) fn next_waiting(&mut self) -> Option<Token> {
        if self.steps < HANDSHAKE_STEPS_PER_TURN {
            self.waiting.pop_front()
        } else {
            None
        }
    }

    /// Whether handshakes wait (the loop must not sleep).
    pub(super) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

/// Encrypts a connection's queued plaintext into one buffer for the driver, behind the records
/// its session made since the last send. The plaintext's owned buffer goes back to `pool`.
pub(super) fn seal(
    tls: &mut TlsSession,
    plain: Outgoing,
    pool: &mut Vec<Vec<u8>>,
) -> Result<Outgoing, rustls::Error> {
    let mut cipher = pool.pop().unwrap_or_default();
    tls.take_pending(&mut cipher);
    let mut result = Ok(());
    for part in plain.parts.iter() {
        result = result.and_then(|()| tls.encrypt(part, &mut cipher));
    }
    result = result.and_then(|()| tls.encrypt(&plain.owned, &mut cipher));
    outqueue::recycle(plain, pool);
    result.map(|()| Outgoing {
        parts: Vec::new(),
        owned: cipher,
    })
}
