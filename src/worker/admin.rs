//! Admin connections: those accepted on the admin listener (`ADMIN_PORT`, worker 0 only). They
//! are served `GET /health` and `GET /metrics` and nothing else, and stand outside every
//! connection limit: no admission slot, not counted in `wsd_connections` or `/health`'s counts,
//! never parked by the accept gate. Their own bound is [`ADMIN_MAX`] at once (more are closed at
//! accept) and the handshake timeout, like any connection.

use std::os::fd::OwnedFd;

use tracing::debug;

use crate::app::App;
use crate::io::Token;
use crate::proto::Connection;

use super::State;
use super::conn::Conn;

/// Most admin connections open at once; more are closed as soon as they are accepted.
pub(super) const ADMIN_MAX: usize = 64;

/// Which slab slots hold admin connections (empty without `ADMIN_PORT`).
#[derive(Debug, Default)]
pub(super) struct AdminConns {
    slots: Vec<bool>,
    open: usize,
}

impl AdminConns {
    /// Whether `token`'s connection came in on the admin listener.
    pub(super) fn contains(&self, token: Token) -> bool {
        self.slots
            .get(token.index as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Forgets a released connection; `true` if it was an admin one.
    pub(super) fn remove(&mut self, token: Token) -> bool {
        match self.slots.get_mut(token.index as usize) {
            Some(slot) if *slot => {
                *slot = false;
                self.open -= 1;
                true
            }
            _ => false,
        }
    }
}

impl<A: App> State<A> {
    pub(super) fn on_admin_accepted(&mut self, fd: OwnedFd) {
        if self.drain.is_some() {
            return;
        }
        if self.admin.open >= ADMIN_MAX {
            debug!(
                worker = self.id,
                "admin connection closed: {ADMIN_MAX} already open"
            );
            return;
        }
        if let Err(e) = socket2::SockRef::from(&fd).set_tcp_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY failed");
        }
        let token = self.conns.insert(Conn::new(Connection::new(), self.second));
        let index = token.index as usize;
        if self.admin.slots.len() <= index {
            self.admin.slots.resize(index + 1, false);
        }
        self.admin.slots[index] = true;
        self.admin.open += 1;
        self.accepted.push((token, fd));
        self.handshakes.arm(self.now, token);
    }
}
