//! The epoll backend: the same [`Driver`] contract on level-triggered epoll, for hosts where
//! io_uring is disabled (sysctl, container seccomp) or when `WSD_IO=epoll`.
//!
//! Sends are written at once; what the socket does not take waits for `EPOLLOUT`. Completions that
//! happen inside a call (`send`, `close`) are queued and reported on the next [`Driver::turn`].

use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, Event as EpEvent, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, SocketFlags};
use tracing::warn;

use crate::accept_backoff::{AcceptBackoff, is_exhaustion};
use crate::io::{Driver, Event, Outgoing, Token, Waker};
use crate::table::Chunked;

/// Bytes read from one socket per readiness event.
const READ_CHUNK: usize = 64 * 1024;
/// Accepts per listener readiness event, so a connection storm cannot starve established ones.
const ACCEPT_BATCH: usize = 64;
/// Segments per `sendmsg` call.
const IOV_BATCH: usize = 64;
/// Readiness events handled per `epoll_wait`.
const EVENT_BATCH: usize = 1024;

const KEY_LISTENER: u64 = u64::MAX;
const KEY_WAKER: u64 = u64::MAX - 1;
const KEY_ADMIN: u64 = u64::MAX - 2;

fn key(token: Token) -> u64 {
    u64::from(token.generation) << 32 | u64::from(token.index)
}

fn unkey(key: u64) -> Token {
    Token {
        index: key as u32,
        generation: (key >> 32) as u32,
    }
}

struct Sock {
    fd: OwnedFd,
    generation: u32,
    /// The send the socket did not take at once, and how many of its bytes it has taken since:
    /// boxed, so that a connection with nothing waiting (almost all of them) keeps one pointer.
    send: Option<Box<(Outgoing, usize)>>,
    read_closed: bool,
    /// Reading is paused by `set_reading(false)`.
    paused: bool,
}

// Per-connection memory (docs/STYLE.md: state is a budget): the descriptor, the generation, the
// boxed pending send and two flags. It was 72 bytes with the pending send inline.
const _: () = assert!(size_of::<Option<Sock>>() <= 24);

/// Completions produced inside a call, reported on the next turn.
enum Done {
    Sent(Token, Outgoing, io::Result<()>),
    ReadClosed(Token),
    Released(Token),
}

/// Registers `fd` (a listener) under `key` for readability, or for nothing.
fn watch(epoll: &OwnedFd, fd: &OwnedFd, key: u64, readable: bool) -> rustix::io::Result<()> {
    let flags = if readable {
        EventFlags::IN
    } else {
        EventFlags::empty()
    };
    epoll::modify(epoll, fd, EventData::new_u64(key), flags)
}

/// A worker's epoll instance, its listener and its connections' sockets.
pub struct EpollDriver {
    epoll: OwnedFd,
    listener: Option<OwnedFd>,
    /// Accepting is paused (`pause_accepting`): the listener is watched for nothing.
    accept_paused: bool,
    /// The listener rests after an out-of-descriptors failure (`accept_backoff.rs`).
    backoff: AcceptBackoff,
    /// The listener is registered for readability now (not paused and not resting).
    listener_watched: bool,
    /// The admin listener is registered for readability now (not resting).
    admin_watched: bool,
    /// The admin listener (`ADMIN_PORT`), never paused.
    admin: Option<OwnedFd>,
    waker: Waker,
    /// Indexed by token; grows in chunks (`table.rs`).
    socks: Chunked<Option<Sock>>,
    done: Vec<Done>,
    events: Vec<EpEvent>,
    scratch: Vec<u8>,
}

impl EpollDriver {
    /// Creates the epoll instance and watches `listener`, the admin listener if any, and the
    /// waker.
    pub fn new(listener: OwnedFd, admin: Option<OwnedFd>, waker: Waker) -> io::Result<Self> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        rustix::net::sockopt::set_socket_reuseport(&listener, true).ok();
        rustix::fs::fcntl_setfl(&listener, rustix::fs::OFlags::NONBLOCK)?;
        epoll::add(
            &ep,
            &listener,
            EventData::new_u64(KEY_LISTENER),
            EventFlags::IN,
        )?;
        if let Some(admin) = &admin {
            rustix::fs::fcntl_setfl(admin, rustix::fs::OFlags::NONBLOCK)?;
            epoll::add(&ep, admin, EventData::new_u64(KEY_ADMIN), EventFlags::IN)?;
        }
        epoll::add(
            &ep,
            waker.fd(),
            EventData::new_u64(KEY_WAKER),
            EventFlags::IN,
        )?;
        let blank = EpEvent {
            flags: EventFlags::empty(),
            data: EventData::new_u64(0),
        };
        Ok(EpollDriver {
            epoll: ep,
            listener: Some(listener),
            accept_paused: false,
            backoff: AcceptBackoff::default(),
            listener_watched: true,
            admin_watched: true,
            admin,
            waker,
            socks: Chunked::new(),
            done: Vec::new(),
            events: vec![blank; EVENT_BATCH],
            scratch: vec![0; READ_CHUNK],
        })
    }

    fn sock_mut(&mut self, token: Token) -> Option<&mut Sock> {
        match self.socks.get_mut(token.index as usize) {
            Some(Some(sock)) if sock.generation == token.generation => Some(sock),
            _ => None,
        }
    }

    fn interest(&self, sock: &Sock) -> EventFlags {
        let mut flags = EventFlags::empty();
        if !sock.read_closed && !sock.paused {
            flags |= EventFlags::IN | EventFlags::RDHUP;
        }
        if sock.send.is_some() {
            flags |= EventFlags::OUT;
        }
        flags
    }

    /// Writes as much of `out` after its first `sent` bytes as `fd` takes. `Some` once it is
    /// finished.
    fn write_some(fd: &OwnedFd, out: &Outgoing, sent: &mut usize) -> Option<io::Result<()>> {
        let total = out.len();
        while *sent < total {
            let written = if out.parts.is_empty() {
                let rest = out.owned.get(*sent..).unwrap_or_default();
                rustix::net::send(fd, rest, SendFlags::NOSIGNAL)
            } else {
                let mut iov: [IoSlice<'_>; IOV_BATCH] = std::array::from_fn(|_| IoSlice::new(&[]));
                let mut n = 0;
                let mut skip = *sent;
                for segment in out.parts.iter().map(|b| &b[..]).chain([&out.owned[..]]) {
                    if skip >= segment.len() {
                        skip -= segment.len();
                        continue;
                    }
                    iov[n] = IoSlice::new(&segment[skip..]);
                    skip = 0;
                    n += 1;
                    if n == IOV_BATCH {
                        break;
                    }
                }
                let mut control = rustix::net::SendAncillaryBuffer::default();
                rustix::net::sendmsg(fd, &iov[..n], &mut control, SendFlags::NOSIGNAL)
            };
            match written {
                Ok(0) => return Some(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *sent += n,
                Err(Errno::AGAIN) => return None,
                Err(Errno::INTR) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
        Some(Ok(()))
    }

    /// Writes a pending send; once it is finished, queues `Sent` and drops the write interest.
    fn flush(&mut self, token: Token) {
        let Some(sock) = self.sock_mut(token) else {
            return;
        };
        let Some(pending) = sock.send.as_mut() else {
            return;
        };
        let (out, sent) = &mut **pending;
        let Some(result) = Self::write_some(&sock.fd, out, sent) else {
            return;
        };
        if let Some(pending) = sock.send.take() {
            let (buf, _) = *pending;
            self.done.push(Done::Sent(token, buf, result));
            let flags = self.sock_interest(token);
            self.rearm(token, flags);
        }
    }

    fn sock_interest(&self, token: Token) -> EventFlags {
        match self.socks.get(token.index as usize) {
            Some(Some(sock)) => self.interest(sock),
            _ => EventFlags::empty(),
        }
    }

    fn rearm(&mut self, token: Token, flags: EventFlags) {
        if let Some(Some(sock)) = self.socks.get(token.index as usize)
            && let Err(e) =
                epoll::modify(&self.epoll, &sock.fd, EventData::new_u64(key(token)), flags)
        {
            warn!(error = %e, "epoll_ctl(MOD) failed");
        }
    }

    fn report_done<F: FnMut(Event<'_>)>(&mut self, on_event: &mut F) {
        for done in std::mem::take(&mut self.done) {
            match done {
                Done::Sent(t, buf, result) => on_event(Event::Sent(t, buf, result)),
                Done::ReadClosed(t) => on_event(Event::ReadClosed(t)),
                Done::Released(t) => on_event(Event::Released(t)),
            }
        }
    }

    /// Registers each listener for readability when it may accept (the main one: neither paused
    /// nor resting; the admin one: not resting), and for nothing otherwise.
    fn watch_listeners(&mut self) {
        let resting = self.backoff.resting(Instant::now());
        let main = !self.accept_paused && !resting;
        if main != self.listener_watched
            && let Some(listener) = &self.listener
        {
            match watch(&self.epoll, listener, KEY_LISTENER, main) {
                Ok(()) => self.listener_watched = main,
                Err(e) => warn!(error = %e, main, "epoll_ctl(MOD) on the listener failed"),
            }
        }
        if resting == self.admin_watched
            && let Some(admin) = &self.admin
        {
            match watch(&self.epoll, admin, KEY_ADMIN, !resting) {
                Ok(()) => self.admin_watched = !resting,
                Err(e) => warn!(error = %e, "epoll_ctl(MOD) on the admin listener failed"),
            }
        }
    }

    fn accept_batch<F: FnMut(Event<'_>)>(&mut self, admin: bool, on_event: &mut F) {
        let listener = if admin {
            if !self.admin_watched {
                return; // readiness reported before the rest took effect
            }
            &self.admin
        } else if !self.listener_watched {
            return; // readiness reported before the pause or rest took effect
        } else {
            &self.listener
        };
        let Some(listener) = listener else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            match rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Ok(fd) if admin => on_event(Event::AdminAccepted(fd)),
                Ok(fd) => on_event(Event::Accepted(fd)),
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR | Errno::CONNABORTED) => {}
                Err(e) if is_exhaustion(e.raw_os_error()) => {
                    // Out of descriptors: rest instead of spinning on a readable listener.
                    self.backoff.fail(&e.into(), Instant::now());
                    self.watch_listeners();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn read_ready<F: FnMut(Event<'_>)>(&mut self, token: Token, on_event: &mut F) {
        let Some(Some(sock)) = self.socks.get_mut(token.index as usize) else {
            return;
        };
        if sock.generation != token.generation || sock.read_closed || sock.paused {
            return;
        }
        match rustix::net::recv(&sock.fd, &mut self.scratch[..], RecvFlags::empty()) {
            Ok((0, _)) => {}
            Ok((n, _)) => {
                let n = n.min(self.scratch.len());
                on_event(Event::Data(token, &mut self.scratch[..n]));
                return;
            }
            Err(Errno::AGAIN | Errno::INTR) => return,
            Err(_) => {}
        }
        // End of stream or a socket error: stop reading and say so.
        sock.read_closed = true;
        let flags = self.sock_interest(token);
        self.rearm(token, flags);
        on_event(Event::ReadClosed(token));
    }
}

impl Driver for EpollDriver {
    fn register(&mut self, token: Token, fd: OwnedFd) {
        let index = token.index as usize;
        if self.socks.len() <= index {
            self.socks.resize_with(index + 1, || None);
        }
        if let Err(e) = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK) {
            warn!(error = %e, "cannot make a socket non-blocking");
        }
        let flags = EventFlags::IN | EventFlags::RDHUP;
        let added = epoll::add(&self.epoll, &fd, EventData::new_u64(key(token)), flags);
        let read_closed = added.is_err();
        self.socks[index] = Some(Sock {
            fd,
            generation: token.generation,
            send: None,
            read_closed,
            paused: false,
        });
        if let Err(e) = added {
            warn!(error = %e, "epoll_ctl(ADD) failed");
            self.done.push(Done::ReadClosed(token));
        }
    }

    fn send(&mut self, token: Token, out: Outgoing) {
        let Some(sock) = self.sock_mut(token) else {
            return;
        };
        debug_assert!(sock.send.is_none(), "two sends in flight on one connection");
        if sock.send.is_some() || out.is_empty() {
            return;
        }
        // Written from here; only what the socket does not take at once is boxed and waits.
        let mut sent = 0;
        match Self::write_some(&sock.fd, &out, &mut sent) {
            Some(result) => self.done.push(Done::Sent(token, out, result)),
            None => {
                sock.send = Some(Box::new((out, sent)));
                let flags = self.sock_interest(token);
                self.rearm(token, flags);
            }
        }
    }

    fn set_reading(&mut self, token: Token, reading: bool) {
        let Some(sock) = self.sock_mut(token) else {
            return;
        };
        if sock.paused != reading {
            return;
        }
        sock.paused = !reading;
        let flags = self.sock_interest(token);
        self.rearm(token, flags);
    }

    fn close(&mut self, token: Token) {
        let Some(slot) = self.socks.get_mut(token.index as usize) else {
            return;
        };
        if !matches!(slot, Some(sock) if sock.generation == token.generation) {
            return;
        }
        if let Some(sock) = slot.take() {
            let _ = rustix::net::shutdown(&sock.fd, rustix::net::Shutdown::Both);
            let _ = epoll::delete(&self.epoll, &sock.fd);
        }
        self.done.retain(|d| match d {
            Done::Sent(t, ..) | Done::ReadClosed(t) => *t != token,
            Done::Released(_) => true,
        });
        self.done.push(Done::Released(token));
    }

    fn stop_accepting(&mut self) {
        for listener in [self.listener.take(), self.admin.take()]
            .into_iter()
            .flatten()
        {
            let _ = epoll::delete(&self.epoll, &listener);
        }
    }

    fn pause_accepting(&mut self, paused: bool) {
        if self.accept_paused == paused {
            return;
        }
        self.accept_paused = paused;
        self.watch_listeners();
    }

    fn turn<F: FnMut(Event<'_>)>(&mut self, timeout: Duration, mut on_event: F) -> io::Result<()> {
        let now = Instant::now();
        if (!self.listener_watched && !self.accept_paused || !self.admin_watched)
            && !self.backoff.resting(now)
        {
            self.watch_listeners(); // the rest is over
        }
        let timeout = if self.done.is_empty() {
            self.backoff.cap(timeout, now)
        } else {
            Duration::ZERO
        };
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        let n = match epoll::wait(&self.epoll, &mut self.events[..], Some(&ts)) {
            Ok(n) => n,
            Err(Errno::INTR) => 0,
            Err(e) => return Err(e.into()),
        };
        self.report_done(&mut on_event);
        for i in 0..n.min(self.events.len()) {
            let EpEvent { flags, data } = self.events[i];
            match data.u64() {
                KEY_LISTENER => self.accept_batch(false, &mut on_event),
                KEY_ADMIN => self.accept_batch(true, &mut on_event),
                KEY_WAKER => {
                    self.waker.drain();
                    on_event(Event::Woken);
                }
                k => {
                    let token = unkey(k);
                    if flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
                        self.flush(token);
                    }
                    if flags.intersects(
                        EventFlags::IN | EventFlags::RDHUP | EventFlags::ERR | EventFlags::HUP,
                    ) {
                        self.read_ready(token, &mut on_event);
                    }
                }
            }
        }
        // Sends finished by EPOLLOUT above are reported now rather than a turn later.
        self.report_done(&mut on_event);
        Ok(())
    }
}
