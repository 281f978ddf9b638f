//! One connection as the worker sees it ([`Conn`]), the phases of its close ([`Phase`]), and the
//! one place where the protocol core's [`Status`] is applied to it ([`Conn::apply`]).

use crate::io::Token;
use crate::proto::{Connection, Status};

use super::outqueue::OutQueue;

/// Where a connection is on its way to being closed. Each step only ever moves right:
/// `Open → Closing → Lingering → Aborting → Closed` (a step may be skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No close under way (upgraded, or still in its handshake).
    Open,
    /// The server sent (or queued) its close frame and waits for the peer's, under the close
    /// deadline (armed at once, or, while draining, once the close frame is sent).
    Closing,
    /// Nothing more is read: the socket is closed once its output is flushed (handshake refused,
    /// close handshake done, peer gone). `timed`: a close deadline bounds the wait already (armed,
    /// or the close frame's), so a peer that no longer reads cannot hold the connection forever.
    Lingering {
        /// Whether the close deadline is armed (or the close frame's covers it).
        timed: bool,
    },
    /// Closed at this turn's flush, whatever is still queued (a deadline passed, a send failed).
    Aborting,
    /// `Driver::close` was called; waiting for `Released`.
    Closed,
}

/// One connection as the worker sees it.
pub(super) struct Conn {
    pub(super) proto: Connection,
    /// Bytes owed to the peer, not yet handed to the driver.
    pub(super) out: OutQueue,
    /// Bytes of the send in flight (0: none; the driver holds that buffer).
    pub(super) sending: u32,
    /// The worker second at which the peer last sent anything.
    pub(super) last_rx: u32,
    /// Where the connection is on its way to being closed.
    pub(super) phase: Phase,
    /// A liveness ping was sent since `last_rx`.
    pub(super) pinged: bool,
    /// Reading is paused because too much output is waiting.
    pub(super) paused: bool,
    /// Listed in `dirty` for this turn's flush.
    pub(super) dirty: bool,
    /// Listed in `held`: published messages wait for the write delay.
    pub(super) held: bool,
    /// A TLS connection (`SSL_CERT` set): its session is in the worker's `tls::Sessions`.
    pub(super) tls: bool,
}

// Connection state is per-connection memory (docs/STYLE.md: state is a budget): 56 bytes of
// protocol state, 32 of out-queue (the owned tail and a pointer to the shared parts, allocated
// only while some are queued), the in-flight length, the last-heard second, the close phase and
// five flags. It was 160 with the shared parts inline. The slab slot adds the generation
// (`slab.rs`); with the driver's socket state an idle plain connection's fixed state is 136 bytes
// on epoll.
const _: () = assert!(size_of::<Conn>() <= 104);

impl Conn {
    /// A connection in state `proto` whose peer was last heard from at worker second `now`.
    pub(super) fn new(proto: Connection, now: u32) -> Self {
        Conn {
            proto,
            out: OutQueue::default(),
            sending: 0,
            last_rx: now,
            phase: Phase::Open,
            pinged: false,
            paused: false,
            dirty: false,
            held: false,
            tls: false,
        }
    }

    /// Whether anything is owed to the peer: plaintext queued, or (`tls_owes`) TLS records the
    /// session made.
    pub(super) fn owes(&self, tls_owes: bool) -> bool {
        !self.out.is_empty() || tls_owes
    }

    /// Bytes queued for the peer: in the out-queue and in flight.
    pub(super) fn backlog(&self) -> usize {
        self.sending as usize + self.out.len()
    }

    /// Whether `Driver::close` was called.
    pub(super) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether input is still wanted: nothing has decided the socket's end yet (a connection
    /// waiting for the peer's close frame still reads it).
    pub(super) fn reads(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Closing)
    }

    /// Whether a close frame was sent or the close deadline bounds the connection already.
    pub(super) fn closing(&self) -> bool {
        matches!(
            self.phase,
            Phase::Closing | Phase::Lingering { timed: true }
        )
    }

    /// Applies what the protocol core reported after a call (the one place a [`Status`] changes
    /// a connection's phase). Returns whether the close handshake has just begun: the caller arms
    /// the close deadline then (except while draining, where it is armed once the close frame is
    /// sent).
    pub(super) fn apply(&mut self, status: Status) -> bool {
        match status {
            Status::Open => false,
            Status::Closing => self.start_closing(),
            Status::Done => {
                self.linger();
                false
            }
        }
    }

    /// The server's close frame is out (or queued): wait for the peer's. Returns whether this
    /// started it.
    fn start_closing(&mut self) -> bool {
        match self.phase {
            Phase::Open => self.phase = Phase::Closing,
            Phase::Lingering { timed: false } => self.phase = Phase::Lingering { timed: true },
            _ => return false,
        }
        true
    }

    /// Nothing more to read: close once the output is flushed.
    pub(super) fn linger(&mut self) {
        self.phase = match self.phase {
            Phase::Open => Phase::Lingering { timed: false },
            Phase::Closing => Phase::Lingering { timed: true },
            later => later,
        };
    }

    /// A lingering connection still owed output gets a close deadline, once: returns whether
    /// the caller must arm it now.
    pub(super) fn bound_linger(&mut self) -> bool {
        if self.phase == (Phase::Lingering { timed: false }) {
            self.phase = Phase::Lingering { timed: true };
            return true;
        }
        false
    }

    /// Close at this turn's flush, whatever is pending.
    pub(super) fn abort(&mut self) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Aborting;
        }
    }
}

/// Lists `conn` for this turn's flush (once).
#[inline(always)]
pub(super) fn mark_dirty(dirty: &mut Vec<Token>, conn: &mut Conn, token: Token) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(phase: Phase) -> Conn {
        let mut c = Conn::new(Connection::new(), 0);
        c.phase = phase;
        c
    }

    #[test]
    fn phases_only_move_forward() {
        let mut c = conn(Phase::Open);
        assert!(c.apply(Status::Closing), "the close begins");
        assert_eq!(c.phase, Phase::Closing);
        assert!(!c.apply(Status::Closing), "begun once");
        assert!(!c.apply(Status::Done));
        assert_eq!(c.phase, Phase::Lingering { timed: true });
        c.abort();
        assert_eq!(c.phase, Phase::Aborting);
        c.linger();
        assert!(!c.apply(Status::Closing));
        assert_eq!(c.phase, Phase::Aborting, "an abort is not undone");
        c.phase = Phase::Closed;
        c.abort();
        c.linger();
        assert_eq!(c.phase, Phase::Closed, "closed stays closed");
    }

    #[test]
    fn a_lingering_connection_gets_its_deadline_once() {
        let mut c = conn(Phase::Open);
        assert!(!c.apply(Status::Done));
        assert_eq!(c.phase, Phase::Lingering { timed: false });
        assert!(!c.closing() && !c.reads());
        assert!(c.apply(Status::Closing), "the deadline is armed now");
        assert!(c.closing());
        assert!(!c.apply(Status::Closing));
    }
}
