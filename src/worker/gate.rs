//! The accept gate: at a process-wide admission limit (`MAX_CONNECTIONS`,
//! `UPGRADE_MAX_CONCURRENT`) the worker stops accepting, so new connections wait in the
//! listener's kernel backlog instead of being accepted and refused, and resumes when a slot frees
//! (on any worker: the worker that frees it wakes the others, `Admission::wait_for_slot`).
//!
//! The driver may still report a few connections after the pause (epoll: the rest of an accept
//! batch; io_uring: completions posted before the multishot accept's cancel took effect). Those
//! are parked here, in order, holding nothing but their descriptor, and admitted first when
//! slots free; past [`PARKED_MAX`] they are refused with the limit's 503 (a safety valve that a
//! paused listener does not reach in practice). Per-address limits still refuse at once: one
//! crowded address must not stop the listener for everyone.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use tracing::debug;

use crate::admission;
use crate::app::App;
use crate::io::Driver;
use crate::metrics::RejectReason;
use crate::state::Shared;

use super::State;

/// Most connections a worker parks while its accepting is paused.
pub(super) const PARKED_MAX: usize = 1024;

/// One worker's accept gate.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Accepted connections waiting for a process-wide slot, oldest first.
    parked: VecDeque<OwnedFd>,
    /// The driver was told to pause accepting.
    paused: bool,
    /// A connection was accepted this turn: the limits may have been reached.
    accepted: bool,
}

impl<A: App> State<A> {
    pub(super) fn on_accepted(&mut self, fd: OwnedFd) {
        if self.drain.is_some() {
            return; // dropping the descriptor closes it
        }
        self.gate.accepted = true;
        // Connections parked earlier go first.
        let fd = if self.gate.parked.is_empty() {
            match self.admit(fd) {
                Ok(()) => return,
                Err(fd) => fd,
            }
        } else {
            fd
        };
        if self.gate.parked.len() >= PARKED_MAX {
            let reason = if self.shared.admission.open() >= self.shared.admission.max_connections()
            {
                RejectReason::MaxConnections
            } else {
                RejectReason::UpgradeConcurrent
            };
            self.refuse(fd, reason);
            return;
        }
        self.gate.parked.push_back(fd);
    }

    /// Answers a connection refused for `reason` (503, or a TLS alert) and closes it.
    pub(super) fn refuse(&mut self, fd: OwnedFd, reason: RejectReason) {
        self.worker_stats().count_rejected(reason);
        debug!(
            worker = self.id,
            limit = reason.as_str(),
            "connection refused with 503"
        );
        if self.shared.tls.is_some() {
            admission::refuse_tls(fd);
        } else {
            admission::refuse(fd, reason);
        }
    }

    /// Once per turn, before the flush: admits parked connections while slots allow, then
    /// pauses accepting at a process-wide limit or resumes it below.
    pub(super) fn gate_accepting<D: Driver>(&mut self, driver: &mut D) {
        if self.drain.is_some() {
            self.gate.parked.clear(); // closed, like every connection that sent nothing yet
            return;
        }
        // Nothing accepted and nothing waiting: no limit can have been reached by this worker
        // (slots only free elsewhere), so the turn costs a branch.
        if !std::mem::take(&mut self.gate.accepted) && !self.gate.paused {
            return;
        }
        let pause = loop {
            while let Some(fd) = self.gate.parked.pop_front() {
                if let Err(fd) = self.admit(fd) {
                    self.gate.parked.push_front(fd);
                    break;
                }
            }
            let admission = &self.shared.admission;
            if self.gate.parked.is_empty() && !admission.full() {
                break false;
            }
            // Full: ask to be woken by the next slot that frees, unless one freed meanwhile.
            if admission.wait_for_slot() {
                break true;
            }
        };
        if pause != self.gate.paused {
            self.gate.paused = pause;
            driver.pause_accepting(pause);
            debug!(
                worker = self.id,
                paused = pause,
                "accepting paused at a limit"
            );
        }
    }
}

/// Wakes every worker when a freed slot was waited for (see `Admission::wait_for_slot`).
pub(super) fn wake_waiting(shared: &Shared, waited_for: bool) {
    if waited_for {
        for waker in &shared.wakers {
            waker.wake();
        }
    }
}
