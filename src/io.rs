//! The driver interface both I/O backends implement, and the choice between them.
//!
//! A driver owns the sockets and every buffer the kernel may be using; the worker owns connection
//! state. Ownership moves across this boundary only by value (`send` takes the buffer, `Sent` gives it
//! back), so no buffer is ever touched while the kernel holds it, whichever backend runs.

use std::fmt;
use std::io;

use bytes::Bytes;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// A connection's key in the worker's slab: slot index plus the slot's generation, so an event for a
/// slot that was freed and reused is recognised as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// Slot index in the worker's connection slab.
    pub index: u32,
    /// Generation of the slot when this connection took it (wraps; the drivers keep 24 bits).
    pub generation: u32,
}

/// What one send carries, in order: `parts` (frames shared with other connections' queues, sent
/// by reference and never copied, and frozen runs of owned bytes between them), then `owned`.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Segments sent first, in order.
    pub parts: Vec<Bytes>,
    /// Bytes owned by this connection, sent after `parts`.
    pub owned: Vec<u8>,
}

impl Outgoing {
    /// Total bytes to send.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum::<usize>() + self.owned.len()
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.owned.is_empty() && self.parts.iter().all(Bytes::is_empty)
    }
}

/// What a driver reports from one loop turn.
#[derive(Debug)]
pub enum Event<'a> {
    /// A new connection was accepted on this worker's listener.
    Accepted(OwnedFd),
    /// A new connection was accepted on the admin listener (`ADMIN_PORT`): `/health` and
    /// `/metrics` only, outside the connection limits.
    AdminAccepted(OwnedFd),
    /// Bytes arrived. The slice is the driver's receive buffer, valid only for this callback; the
    /// worker may modify it in place (unmasking).
    Data(Token, &'a mut [u8]),
    /// The peer closed its side or the socket failed; no more `Data` will come for this token.
    ReadClosed(Token),
    /// A send finished: every byte was written (`Ok`) or the socket failed (`Err`). The buffers
    /// come back to the worker for reuse.
    Sent(Token, Outgoing, io::Result<()>),
    /// After `close`: every operation of this connection has completed and its socket is closed.
    /// The slot may be reused.
    Released(Token),
    /// Another thread called the worker's [`Waker`].
    Woken,
}

/// How often a driver went down its rare recovery paths (monotonic counts).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriverCounters {
    /// Multishot receives that ended because the buffer ring was empty and were re-armed.
    pub recv_enobufs: u64,
    /// Turns that found completions parked in the kernel's overflow list and flushed them.
    pub cq_overflows: u64,
    /// Submissions that found the submission queue full and flushed it to the kernel first.
    pub sq_full: u64,
}

/// The operations a worker asks of its I/O backend. Calls queue work; [`Driver::turn`] submits it.
pub trait Driver {
    /// Starts reading from a newly accepted connection.
    fn register(&mut self, token: Token, fd: OwnedFd);
    /// Sends all of `out`; completion is reported as [`Event::Sent`]. At most one send per token
    /// may be in flight.
    fn send(&mut self, token: Token, out: Outgoing);
    /// Stops (`false`) or resumes (`true`) reading from a connection, for a peer that sends faster
    /// than it reads what it is sent. Data already received may still be reported after a pause.
    fn set_reading(&mut self, token: Token, reading: bool);
    /// Shuts the socket down and closes it once nothing is in flight, then reports
    /// [`Event::Released`]. No other event is reported for the token after this call.
    fn close(&mut self, token: Token);
    /// Stops accepting new connections (closes this worker's listener).
    fn stop_accepting(&mut self);
    /// Pauses (`true`) or resumes (`false`) accepting: while paused, new connections wait in the
    /// listener's kernel backlog (the admission limits are reached). Connections the kernel had
    /// already accepted for the driver may still be reported after a pause.
    fn pause_accepting(&mut self, paused: bool);
    /// Wakes the worker behind `waker` (another worker, after handing it messages). The default
    /// writes its eventfd at once; a driver may instead queue the wake-up with its next submission.
    fn wake_worker(&mut self, waker: &Waker) {
        waker.wake();
    }
    /// Gives back memory the driver keeps for bursts and is not using. The worker calls it on a
    /// quiet turn (one that reported nothing), at most once a second (`worker/trim.rs`), so it
    /// costs nothing under load. The default keeps everything.
    fn trim(&mut self) {}
    /// The driver's recovery counters.
    fn counters(&self) -> DriverCounters {
        DriverCounters::default()
    }
    /// Submits queued work, waits up to `timeout` for at least one completion, and hands every
    /// completion to `on_event`.
    fn turn<F: FnMut(Event<'_>)>(&mut self, timeout: Duration, on_event: F) -> io::Result<()>;
}

/// Which backend to use (`WSD_IO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// io_uring when it can be set up, otherwise epoll (with a log line saying why).
    Auto,
    /// io_uring or refuse to start.
    Uring,
    /// epoll even when io_uring is available.
    Epoll,
}

/// The backend a server actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring with multishot accept/recv and a provided-buffer ring.
    Uring,
    /// Level-triggered epoll.
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// Wakes a worker from another thread: an eventfd the worker's driver watches, and, once an
/// io_uring driver has registered its ring, that ring, which other io_uring workers can post a
/// completion to (`IORING_OP_MSG_RING`, see [`Driver::wake_worker`]).
#[derive(Debug, Clone)]
pub struct Waker {
    fd: std::sync::Arc<OwnedFd>,
    ring: std::sync::Arc<std::sync::OnceLock<OwnedFd>>,
}

impl Waker {
    /// Creates the eventfd behind a new waker.
    pub fn new() -> io::Result<Self> {
        use rustix::event::{EventfdFlags, eventfd};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Waker {
            fd: std::sync::Arc::new(fd),
            ring: std::sync::Arc::default(),
        })
    }

    /// Registers the worker's io_uring (a descriptor of its own, so the ring outlives any waker
    /// that may still post to it). Only the first registration counts.
    pub fn set_ring(&self, ring: OwnedFd) {
        let _ = self.ring.set(ring);
    }

    /// The worker's io_uring, if its driver registered one.
    pub fn ring(&self) -> Option<&OwnedFd> {
        self.ring.get()
    }

    /// Wakes the worker; cheap enough to call on every cross-thread hand-off.
    pub fn wake(&self) {
        // A full counter (EAGAIN) already means "awake"; nothing else can fail on an eventfd.
        let _ = rustix::io::write(&*self.fd, &1u64.to_ne_bytes());
    }

    /// The eventfd, for the driver to watch.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Resets the counter after a wake-up was seen.
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&*self.fd, &mut buf);
    }
}
