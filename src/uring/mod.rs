//! The io_uring backend: multishot accept, multishot receive into a provided-buffer ring, one send
//! in flight per connection, and one `io_uring_enter` per loop turn.
//!
//! Ownership rules (docs/STYLE.md, "Unsafe is fenced"): an in-flight operation owns its buffer and socket
//! until its completion arrives. `close` shuts the socket down so in-flight operations finish, and
//! the slot is released only when none is left; a buffer the kernel may still write is never freed.

mod complete;
mod op;
mod params;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustix::io::Errno;
use tracing::{debug, warn};

use crate::accept_backoff::{AcceptBackoff, is_exhaustion};
use crate::io::{Driver, DriverCounters, Event, Outgoing, Token, Waker};
use crate::table::Chunked;
use op::{OpKind, generation24, pack, unpack};
use params::{BGID, IOV_MAX};
pub use params::{RelayWake, UringParams};
use wsd_wire::bufring::BufRing;

/// The `user_data` token of the listener's multishot accept.
pub(super) const MAIN_ACCEPT: Token = Token {
    index: 0,
    generation: 0,
};
/// The `user_data` token of the admin listener's multishot accept (`ADMIN_PORT`).
pub(super) const ADMIN_ACCEPT: Token = Token {
    index: 1,
    generation: 0,
};

/// The send in flight on one connection.
struct SendOp {
    out: Outgoing,
    /// Bytes the kernel has taken so far.
    sent: usize,
    total: usize,
}

/// One connection as the driver sees it.
struct Sock {
    fd: OwnedFd,
    generation: u32,
    recv_armed: bool,
    /// The send in flight; its buffers belong to the kernel until its completion.
    send: Option<SendOp>,
    /// The iovecs and message header of a vectored send in flight (kept for reuse), allocated on
    /// the connection's first vectored send: an idle or echo-only connection keeps one pointer.
    vectored: Option<Box<Vectored>>,
    /// `close` was called: report nothing more, release when nothing is in flight.
    closing: bool,
    /// Reading is paused (`set_reading(false)`): the receive is cancelled and not re-armed.
    paused: bool,
}

/// What a `SendMsg` points to: its iovecs and its message header.
struct Vectored {
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

// Per-connection memory (docs/STYLE.md: state is a budget); the vectored-send state is boxed to keep it.
const _: () = assert!(size_of::<Option<Sock>>() <= 88);

/// A worker's io_uring ring, its listener and its connections' sockets.
pub struct UringDriver {
    // Field order is drop order: the ring goes first. Buffers the kernel may still use at that
    // point (receives or sends in flight) are leaked by `Drop`, not freed.
    ring: IoUring,
    bufs: Option<BufRing>,
    listener: Option<OwnedFd>,
    /// The listeners after `stop_accepting`, kept open until the next submission: an accept
    /// re-armed this turn is still in the submission queue and names its descriptor number.
    retired_listener: Vec<OwnedFd>,
    /// The admin listener (`ADMIN_PORT`), never paused; its accept is [`ADMIN_ACCEPT`].
    admin: Option<OwnedFd>,
    admin_armed: bool,
    accept_armed: bool,
    /// Accepting is paused (`pause_accepting`): the multishot accept is cancelled and not
    /// re-armed until it resumes.
    accept_paused: bool,
    /// The listener rests after an out-of-descriptors failure (`accept_backoff.rs`).
    accept_backoff: AcceptBackoff,
    waker: Waker,
    wake_armed: bool,
    /// Indexed by token; grows in chunks (`table.rs`).
    socks: Chunked<Option<Sock>>,
    /// Slots whose multishot receive ended without an error and must be re-armed after buffers
    /// are returned.
    rearm: Vec<u32>,
    /// Connections closed with nothing in flight, reported as `Released` next turn.
    released: Vec<Token>,
    cqes: Vec<cqueue::Entry>,
    recv_inflight: usize,
    overflow_seen: u32,
    counters: DriverCounters,
    relay_wake: RelayWake,
}

/// Whether io_uring with the features wsd needs can be set up in this process.
///
/// The trial ring is made and dropped on a short-lived thread of its own: tearing down a
/// `DEFER_TASKRUN` ring queues task work on the thread that owned it, which makes that thread's
/// next blocking call with a timeout fail with EINTR. The caller's thread must not inherit that.
pub fn probe() -> io::Result<()> {
    std::thread::Builder::new()
        .name("wsd-uring-probe".into())
        .spawn(probe_here)?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
}

fn probe_here() -> io::Result<()> {
    let ring = build_ring(8, 16)?;
    let mut bufs = BufRing::new(8, 64)?;
    // SAFETY: no receive is ever submitted on this ring, and the registration ends before `bufs`
    // is dropped.
    unsafe { bufs.register(&ring.submitter(), BGID) }?;
    ring.submitter().unregister_buf_ring(BGID)?;
    Ok(())
}

fn build_ring(sq_entries: u32, cq_entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_submit_all()
        .setup_cqsize(cq_entries.max(sq_entries))
        .build(sq_entries)
}

impl UringDriver {
    /// Sets up the ring on the calling thread (the ring's single issuer) around `listener` and
    /// the admin listener, if any.
    pub fn new(
        listener: OwnedFd,
        admin: Option<OwnedFd>,
        waker: Waker,
        params: UringParams,
    ) -> io::Result<Self> {
        let ring = build_ring(params.sq_entries, params.cq_entries)?;
        let mut bufs = BufRing::new(params.recv_buffers, params.recv_buf_size)?;
        // SAFETY: the driver owns `bufs` and leaks it instead of dropping it while any receive is
        // in flight (`Drop for UringDriver`, `recv_inflight`).
        unsafe { bufs.register(&ring.submitter(), BGID) }?;
        debug!(
            buffers = params.recv_buffers,
            buffer_bytes = params.recv_buf_size,
            incremental = bufs.is_incremental(),
            "io_uring receive buffer ring registered"
        );
        let mut driver = UringDriver {
            ring,
            bufs: Some(bufs),
            listener: Some(listener),
            retired_listener: Vec::new(),
            admin,
            admin_armed: false,
            accept_armed: false,
            accept_paused: false,
            accept_backoff: AcceptBackoff::default(),
            waker,
            wake_armed: false,
            socks: Chunked::new(),
            rearm: Vec::new(),
            released: Vec::new(),
            cqes: Vec::with_capacity(params.cq_entries as usize),
            recv_inflight: 0,
            overflow_seen: 0,
            counters: DriverCounters::default(),
            relay_wake: params.relay_wake,
        };
        if params.relay_wake == RelayWake::MsgRing {
            // Other workers post their wake-ups to this ring through a descriptor of their own.
            let ring_fd = rustix::io::fcntl_dupfd_cloexec(&driver.ring, 0)?;
            driver.waker.set_ring(ring_fd);
        }
        driver.arm_accept();
        driver.arm_admin_accept();
        driver.arm_wake();
        Ok(driver)
    }

    /// Queues a submission, flushing the queue to the kernel first if it is full.
    ///
    /// # Safety
    /// Every buffer and file descriptor `sqe` refers to must stay valid until its completion.
    unsafe fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: the caller guarantees the entry's resources outlive the operation.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            self.counters.sq_full += 1;
            if let Err(e) = self.ring.submit()
                && e.raw_os_error() != Some(Errno::BUSY.raw_os_error())
            {
                warn!(error = %e, "io_uring submit failed while the queue was full");
            }
        }
    }

    fn arm_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let fd = listener.as_raw_fd();
        self.arm_accept_on(fd, MAIN_ACCEPT);
        self.accept_armed = true;
    }

    /// Arms the multishot accept of the admin listener, if there is one.
    pub(super) fn arm_admin_accept(&mut self) {
        let Some(admin) = &self.admin else {
            return;
        };
        let fd = admin.as_raw_fd();
        self.arm_accept_on(fd, ADMIN_ACCEPT);
        self.admin_armed = true;
    }

    fn arm_accept_on(&mut self, fd: std::os::fd::RawFd, t: Token) {
        let sqe = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(rustix::net::SocketFlags::CLOEXEC.bits() as i32)
            .build()
            .user_data(pack(OpKind::Accept, t));
        // SAFETY: accept writes no buffer of ours; the listener stays open while the accept is armed
        // (it is only dropped in `stop_accepting`, which cancels it first and keeps the
        // descriptor until the next submission, or with the ring).
        unsafe { self.push(&sqe) };
    }

    /// Cancels an armed multishot accept (`t`: [`MAIN_ACCEPT`] or [`ADMIN_ACCEPT`]); its last
    /// completion (`ECANCELED`) clears its armed flag.
    fn cancel_accept(&mut self, t: Token) {
        let sqe = opcode::AsyncCancel::new(pack(OpKind::Accept, t))
            .build()
            .user_data(pack(OpKind::Cancel, t));
        // SAFETY: a cancel refers to no buffer or descriptor of ours.
        unsafe { self.push(&sqe) };
    }

    fn arm_wake(&mut self) {
        let sqe = opcode::PollAdd::new(
            types::Fd(self.waker.fd().as_raw_fd()),
            0x1, /* POLLIN */
        )
        .multi(true)
        .build()
        .user_data(pack(
            OpKind::Wake,
            Token {
                index: 0,
                generation: 0,
            },
        ));
        // SAFETY: poll writes no buffer; the eventfd is owned by `self.waker`, which lives as long
        // as the ring.
        unsafe { self.push(&sqe) };
        self.wake_armed = true;
    }

    fn arm_recv(&mut self, index: u32) {
        let Some(Some(sock)) = self.socks.get_mut(index as usize) else {
            return;
        };
        if sock.recv_armed || sock.closing || sock.paused {
            return;
        }
        sock.recv_armed = true;
        let token = Token {
            index,
            generation: sock.generation,
        };
        let sqe = opcode::RecvMulti::new(types::Fd(sock.fd.as_raw_fd()), BGID)
            .build()
            .user_data(pack(OpKind::Recv, token));
        self.recv_inflight += 1;
        // SAFETY: the receive writes only into provided buffers, which live until the ring is gone;
        // the socket is kept open until this receive's final completion (see `maybe_release`).
        unsafe { self.push(&sqe) };
    }

    fn submit_send(&mut self, index: u32) {
        let Some(Some(sock)) = self.socks.get_mut(index as usize) else {
            return;
        };
        let Sock {
            fd,
            generation,
            send,
            vectored,
            ..
        } = sock;
        let Some(op) = send.as_ref() else { return };
        let token = Token {
            index,
            generation: *generation,
        };
        let fd = types::Fd(fd.as_raw_fd());
        let flags = rustix::net::SendFlags::NOSIGNAL.bits();
        let sqe = if op.out.parts.is_empty() {
            // One contiguous buffer: a plain send.
            let rest = op.out.owned.get(op.sent..).unwrap_or_default();
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            opcode::Send::new(fd, rest.as_ptr(), len)
                .flags(flags as i32)
                .build()
        } else {
            // Shared frames and owned bytes: one sendmsg over the bytes not yet sent.
            let Vectored { iov, msg: header } = &mut **vectored.get_or_insert_with(|| {
                Box::new(Vectored {
                    iov: Vec::new(),
                    // SAFETY: `msghdr` is a plain C struct for which all-zero bytes are a valid value.
                    msg: unsafe { std::mem::zeroed() },
                })
            });
            iov.clear();
            let mut skip = op.sent;
            let segments = op
                .out
                .parts
                .iter()
                .map(|b| &b[..])
                .chain([&op.out.owned[..]]);
            for segment in segments {
                if skip >= segment.len() {
                    skip -= segment.len();
                    continue;
                }
                let rest = &segment[skip..];
                skip = 0;
                iov.push(libc::iovec {
                    iov_base: rest.as_ptr() as *mut _,
                    iov_len: rest.len(),
                });
                if iov.len() == IOV_MAX {
                    break;
                }
            }
            header.msg_iov = iov.as_mut_ptr();
            header.msg_iovlen = iov.len();
            opcode::SendMsg::new(fd, &raw const *header)
                .flags(flags)
                .build()
        };
        let sqe = sqe.user_data(pack(OpKind::Send, token));
        // SAFETY: the bytes live in the send's buffers (the owned Vec and the shared `Bytes`),
        // whose heap storage is neither moved nor dropped until this send's completion; the iovec
        // array and the boxed message header stay untouched until then (the next send of this
        // connection is built only after the completion); the socket stays open until then too.
        unsafe { self.push(&sqe) };
    }

    /// Looks up a live slot by token; `None` for a stale generation.
    fn sock_mut(&mut self, token: Token) -> Option<&mut Sock> {
        match self.socks.get_mut(token.index as usize) {
            Some(Some(sock)) if generation24(sock.generation) == token.generation => Some(sock),
            _ => None,
        }
    }

    /// Frees a closing slot once no operation is in flight; the fd closes as the `Sock` drops.
    fn maybe_release(&mut self, index: u32) -> Option<Token> {
        let slot = self.socks.get_mut(index as usize)?;
        let sock = slot.as_ref()?;
        if sock.closing && !sock.recv_armed && sock.send.is_none() {
            let token = Token {
                index,
                generation: sock.generation,
            };
            *slot = None;
            return Some(token);
        }
        None
    }
}

impl Driver for UringDriver {
    fn register(&mut self, token: Token, fd: OwnedFd) {
        let index = token.index as usize;
        if self.socks.len() <= index {
            self.socks.resize_with(index + 1, || None);
        }
        debug_assert!(self.socks[index].is_none(), "slot registered twice");
        self.socks[index] = Some(Sock {
            fd,
            generation: token.generation,
            recv_armed: false,
            send: None,
            vectored: None,
            closing: false,
            paused: false,
        });
        self.arm_recv(token.index);
    }

    fn send(&mut self, token: Token, out: Outgoing) {
        let t = Token {
            generation: generation24(token.generation),
            ..token
        };
        let Some(sock) = self.sock_mut(t) else { return };
        debug_assert!(sock.send.is_none(), "two sends in flight on one connection");
        let total = out.len();
        if sock.closing || sock.send.is_some() || total == 0 {
            return;
        }
        sock.send = Some(SendOp {
            out,
            sent: 0,
            total,
        });
        self.submit_send(token.index);
    }

    fn set_reading(&mut self, token: Token, reading: bool) {
        let t = Token {
            generation: generation24(token.generation),
            ..token
        };
        let Some(sock) = self.sock_mut(t) else { return };
        if sock.closing || sock.paused != reading {
            return;
        }
        sock.paused = !reading;
        if reading {
            self.arm_recv(t.index);
        } else if sock.recv_armed {
            let sqe = opcode::AsyncCancel::new(pack(OpKind::Recv, t))
                .build()
                .user_data(pack(OpKind::Cancel, t));
            // SAFETY: a cancel refers to no buffer or descriptor of ours.
            unsafe { self.push(&sqe) };
        }
    }

    fn close(&mut self, token: Token) {
        let t = Token {
            generation: generation24(token.generation),
            ..token
        };
        let Some(sock) = self.sock_mut(t) else { return };
        if sock.closing {
            return;
        }
        sock.closing = true;
        // Shutting the socket down ends a pending receive (end of stream) and fails a send that is
        // waiting for the peer's window, so every operation completes and the slot can be freed.
        let _ = rustix::net::shutdown(&sock.fd, rustix::net::Shutdown::Both);
        if sock.recv_armed {
            let sqe = opcode::AsyncCancel::new(pack(OpKind::Recv, t))
                .build()
                .user_data(pack(OpKind::Cancel, t));
            // SAFETY: a cancel refers to no buffer or descriptor of ours.
            unsafe { self.push(&sqe) };
        }
        if let Some(released) = self.maybe_release(token.index) {
            self.released.push(released);
        }
    }

    fn stop_accepting(&mut self) {
        if self.accept_armed && self.listener.is_some() {
            self.cancel_accept(MAIN_ACCEPT);
        }
        if self.admin_armed && self.admin.is_some() {
            self.cancel_accept(ADMIN_ACCEPT);
        }
        // Once submitted, the kernel holds its own file reference for an armed accept. An accept
        // re-armed this turn is not submitted yet, so the descriptors stay open until the next
        // submission (`retired_listener`).
        for listener in [self.listener.take(), self.admin.take()]
            .into_iter()
            .flatten()
        {
            let _ = rustix::net::shutdown(&listener, rustix::net::Shutdown::Both);
            self.retired_listener.push(listener);
        }
    }

    fn pause_accepting(&mut self, paused: bool) {
        if self.accept_paused == paused {
            return;
        }
        self.accept_paused = paused;
        if paused && self.accept_armed && self.listener.is_some() {
            self.cancel_accept(MAIN_ACCEPT);
        }
        // Resuming: `turn` re-arms the accept before its submission (or, if the cancel has not
        // completed yet, its final completion re-arms it).
    }

    fn counters(&self) -> DriverCounters {
        self.counters
    }

    /// Gives the receive ring's resident pages back (`BufRing::release_pages`): receives walk the
    /// whole ring over time, so without this all of it (256 × 32 KiB) stays resident for good.
    fn trim(&mut self) {
        // Every byte the kernel wrote into the ring must have been reported first. The ring is
        // DEFER_TASKRUN: receives copy data and post their completions only inside this thread's
        // `io_uring_enter`, and `turn` drained every completion it posted. A completion waiting
        // now (or parked in the overflow list) would mean unread bytes: then wait for a later
        // quiet turn.
        if !self.ring.completion().is_empty() || self.ring.submission().cq_overflow() {
            return;
        }
        if let Some(bufs) = self.bufs.as_mut()
            && let Err(e) = bufs.release_pages()
        {
            debug!(error = %e, "could not release the receive ring's pages");
        }
    }

    fn wake_worker(&mut self, waker: &Waker) {
        let Some(target) = waker
            .ring()
            .filter(|_| self.relay_wake == RelayWake::MsgRing)
        else {
            waker.wake();
            return;
        };
        let t = Token {
            index: 0,
            generation: 0,
        };
        let sqe = opcode::MsgRingData::new(
            types::Fd(target.as_raw_fd()),
            0,
            pack(OpKind::RingWake, t),
            None,
        )
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(pack(OpKind::MsgRing, t));
        // SAFETY: MSG_RING reads and writes no buffer of ours; the target ring's descriptor is
        // owned by `waker` (a duplicate, so the ring outlives its worker) and `waker` is one of
        // the relay's, which lives as long as every worker.
        unsafe { self.push(&sqe) };
    }

    fn turn<F: FnMut(Event<'_>)>(&mut self, timeout: Duration, mut on_event: F) -> io::Result<()> {
        let now = Instant::now();
        if !self.accept_armed
            && !self.accept_paused
            && !self.accept_backoff.resting(now)
            && self.listener.is_some()
        {
            self.arm_accept();
        }
        let timeout = self.accept_backoff.cap(timeout, now);
        if !self.admin_armed && !self.accept_backoff.resting(now) && self.admin.is_some() {
            self.arm_admin_accept();
        }
        let released = std::mem::take(&mut self.released);
        let want = if released.is_empty() { 1 } else { 0 };
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            // Everything queued, a re-armed accept included, is with the kernel now.
            Ok(_) => self.retired_listener.clear(),
            Err(e) => {
                if e.raw_os_error() == Some(Errno::TIME.raw_os_error()) {
                    // Submitted, then the wait timed out.
                    self.retired_listener.clear();
                }
                let benign = [Errno::TIME, Errno::INTR, Errno::BUSY, Errno::AGAIN];
                if !benign
                    .iter()
                    .any(|b| e.raw_os_error() == Some(b.raw_os_error()))
                {
                    return Err(e);
                }
            }
        }
        for token in released {
            on_event(Event::Released(token));
        }
        // Drain the completion queue fully; more may arrive (overflow flushed) while we work.
        loop {
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(self.ring.completion());
            if cqes.is_empty() {
                self.cqes = cqes;
                break;
            }
            for cqe in &cqes {
                self.complete(cqe, &mut on_event);
            }
            cqes.clear();
            self.cqes = cqes;
            if let Some(bufs) = self.bufs.as_mut() {
                bufs.publish();
            }
            if !self.ring.submission().cq_overflow() {
                break;
            }
            // Completions were parked in the kernel's overflow list: flush them in.
            self.counters.cq_overflows += 1;
            let _ = self.ring.submit_and_wait(0);
        }
        let overflow = self.ring.completion().overflow();
        if overflow != self.overflow_seen {
            warn!(
                lost = overflow - self.overflow_seen,
                "io_uring completion queue overflowed"
            );
            self.overflow_seen = overflow;
        }
        for index in std::mem::take(&mut self.rearm) {
            self.arm_recv(index);
        }
        Ok(())
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        if self.recv_inflight > 0 {
            // A receive might still be writing into a provided buffer: leak the buffers rather than
            // free memory the kernel may use. (Workers drain their connections before exiting, so
            // this happens only on abnormal exits.)
            debug!(
                in_flight = self.recv_inflight,
                "leaking receive buffers at driver drop"
            );
            std::mem::forget(self.bufs.take());
        }
        // Likewise a send in flight: the kernel reads its buffers until the completion, and the
        // ring can outlive this driver (a MSG_RING waker holds a duplicate of its descriptor, and
        // ring teardown itself is asynchronous). Leak those buffers rather than free them. A
        // drained worker has no send in flight: this, too, is for abnormal exits only.
        for i in 0..self.socks.len() {
            if let Some(Some(sock)) = self.socks.get_mut(i)
                && sock.send.is_some()
            {
                std::mem::forget(sock.send.take());
                std::mem::forget(sock.vectored.take());
            }
        }
    }
}
