//! The per-core event loop: it joins one driver, the connection slab, the protocol core and the
//! application.
//!
//! One loop turn: the driver submits what the last turn queued and waits for completions; each
//! completion updates connection state (input is parsed in place in the driver's buffer and replies
//! are appended to the connection's out-queue); then every connection with new output gets one send
//! (corked writes, DESIGN.md decision 5), and due deadlines fire. With `WRITE_DELAY_MS`, published
//! messages for a connection with nothing else to send are held until the delay is over.
//!
//! Admission ([`crate::admission`]) runs on `Accepted`, before anything is allocated for the
//! connection. The drain (docs/ARCHITECTURE.md has the sequence) runs after the application's flush of each
//! turn: the first turn that sees [`Shared::draining`] stops accepting and reports this worker
//! quiesced; the first turn that begins with every worker quiesced queues the close frames, behind
//! everything any worker handed over before it quiesced.

pub mod bench;
mod deadlines;
mod idle;
mod outqueue;
mod slab;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::admission::{self, PeerKey};
use crate::app::{App, ConnId, Deliver, Outbox, SendStatus};
use crate::config::BackpressurePolicy;
use crate::http::{self, Routes};
use crate::io::{Driver, Event, Token};
use crate::metrics::{WorkerStats, add, bump, tally};
use crate::proto::connection::AppClose;
use crate::proto::{
    CloseCode, Connection, Handler, HttpRequest, Limits, Message, MessageKind, Status,
};
use crate::state::Shared;
use deadlines::Deadlines;
use outqueue::OutQueue;
use slab::Slab;

/// A client that has not finished its upgrade request by then is dropped (slow-loris).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for the peer's close frame after sending its own. (While draining,
/// the wait starts once the close frame has been handed to the kernel, behind the queued data.)
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the loop sleeps without a deadline due, so a missed wake-up costs at most this.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// A connection with more than this many bytes waiting to be sent is not read from until its
/// peer catches up, so a client that sends without reading cannot make the server queue without
/// bound.
pub const READ_PAUSE_BYTES: usize = 1 << 20;

/// One connection as the worker sees it.
struct Conn {
    proto: Connection,
    /// Bytes owed to the peer, not yet handed to the driver.
    out: OutQueue,
    /// Bytes of the send in flight (0: none; the driver holds that buffer).
    sending: u32,
    /// The worker second at which the peer last sent anything.
    last_rx: u32,
    /// A liveness ping was sent since `last_rx`.
    pinged: bool,
    /// Reading is paused because too much output is waiting.
    paused: bool,
    /// Listed in `dirty` for this turn's flush.
    dirty: bool,
    /// Listed in `held`: published messages wait for the write delay.
    held: bool,
    /// Close the socket once `out` is flushed (handshake refused, close handshake done, peer gone).
    close_after_flush: bool,
    /// Close the socket at this turn's flush, whatever is pending.
    close_now: bool,
    /// The server sent a close frame and waits for the peer's.
    closing: bool,
    /// `Driver::close` was called; waiting for `Released`.
    closed: bool,
}

impl Conn {
    /// A connection in state `proto` whose peer was last heard from at worker second `now`.
    fn new(proto: Connection, now: u32) -> Self {
        Conn {
            proto,
            out: OutQueue::default(),
            sending: 0,
            last_rx: now,
            pinged: false,
            paused: false,
            dirty: false,
            held: false,
            close_after_flush: false,
            close_now: false,
            closing: false,
            closed: false,
        }
    }
}

// Connection state is per-connection memory (STYLE.md: state is a budget): 56 bytes of protocol
// state, 80 of out-queue (owned tail, shared parts and their drop flags), the in-flight length and
// flags. With the driver's socket state this stays far inside the 0.5 KiB per idle connection goal.
const _: () = assert!(size_of::<Conn>() <= 152);

/// The per-connection budget for published messages and what happens past it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes queued for one connection (in the out-queue and in flight) before `policy` applies.
    pub max_backpressure: usize,
    /// What a connection over its budget loses.
    pub policy: BackpressurePolicy,
    /// Seconds of silence before a connection is closed with 1001 (0: never).
    pub idle_timeout: u32,
    /// Ping connections silent for half of `idle_timeout`.
    pub send_pings: bool,
    /// How long published messages may wait for more to share their send (`WRITE_DELAY_MS`;
    /// zero: flushed at the end of the turn that queued them).
    pub write_delay: Duration,
}

/// Everything a worker owns except the driver, so driver completions can borrow it.
struct State<A> {
    id: usize,
    app: A,
    conns: Slab<Conn>,
    limits: Arc<Limits>,
    budget: Budget,
    shared: Arc<Shared>,
    dirty: Vec<Token>,
    /// Connections whose published messages wait for the write delay, and when it ends.
    held: Held,
    accepted: Vec<(Token, OwnedFd)>,
    handshakes: Deadlines,
    closings: Deadlines,
    pool: Vec<Vec<u8>>,
    /// Each connection's per-address admission key, by slab index (only with
    /// `MAX_CONNECTIONS_PER_IP` on; empty otherwise).
    peers: Vec<Option<PeerKey>>,
    /// Set when the drain begins.
    drain: Option<Drain>,
    now: Instant,
    /// Whole seconds since the worker started (the idle wheel's clock).
    second: u32,
    started: Instant,
    idle: idle::IdleWheel,
    expired: Vec<Token>,
    /// Bytes queued for this worker's peers, for `/metrics`.
    queued: tally::QueuedBytes,
    /// Other workers to wake at this turn's flush (the application handed them messages).
    wakes: Vec<crate::io::Waker>,
    /// Sends so far (published to `WorkerStats` every turn).
    sends: u64,
    /// The plain HTTP routes.
    routes: Routes,
}

/// This worker's part of the drain.
#[derive(Debug)]
struct Drain {
    /// `SHUTDOWN_TIMEOUT` after the drain began: whatever is left is dropped.
    deadline: Instant,
    /// Connections open when the drain began.
    at_start: usize,
    /// Close frames are queued on the WebSocket connections (every worker had quiesced).
    closing: bool,
    /// The deadline passed and what was left was dropped.
    cut: bool,
    /// Connections dropped at the deadline, and the bytes still queued for them.
    dropped: usize,
    unsent: u64,
}

/// A worker: its driver and its state.
pub struct Worker<D, A> {
    driver: D,
    state: State<A>,
}

impl<D: Driver, A: App> Worker<D, A> {
    /// A worker numbered `id` serving `app` on `driver`.
    pub fn new(
        id: usize,
        driver: D,
        app: A,
        limits: Arc<Limits>,
        budget: Budget,
        shared: Arc<Shared>,
    ) -> Self {
        let now = Instant::now();
        Worker {
            driver,
            state: State {
                id,
                app,
                conns: Slab::default(),
                limits,
                budget,
                shared,
                dirty: Vec::new(),
                held: Held::default(),
                accepted: Vec::new(),
                handshakes: Deadlines::new(HANDSHAKE_TIMEOUT),
                closings: Deadlines::new(CLOSE_TIMEOUT),
                pool: Vec::new(),
                peers: Vec::new(),
                drain: None,
                now,
                second: 0,
                started: now,
                idle: idle::IdleWheel::default(),
                expired: Vec::new(),
                queued: tally::QueuedBytes::default(),
                wakes: Vec::new(),
                sends: 0,
                routes: Routes::default(),
            },
        }
    }

    /// Runs until the server stops and every connection of this worker is released.
    pub fn run(mut self) -> io::Result<()> {
        let outcome = self.serve();
        if outcome.is_err() && self.state.drain.is_none() {
            // Gone: the other workers must not wait for this one's hand-offs when they drain.
            self.state.shared.worker_quiesced();
        }
        outcome
    }

    fn serve(&mut self) -> io::Result<()> {
        loop {
            let timeout = self.state.sleep_for();
            let state = &mut self.state;
            self.driver.turn(timeout, |event| state.on_event(event))?;
            self.state.now = Instant::now();
            let elapsed = self.state.now.duration_since(self.state.started).as_secs();
            self.state.second = u32::try_from(elapsed).unwrap_or(u32::MAX);
            bump(&self.state.worker_stats().loop_turns);
            self.state.publish_counters(self.driver.counters());
            // Both looked at before the application's flush, so that the flush delivers whatever
            // was handed to this worker before the state seen here: the close frames of the drain
            // go behind it.
            let draining = self.state.shared.is_draining();
            let quiet = draining && self.state.shared.all_quiesced();
            self.state.expire();
            self.state.flush_app();
            self.state.release_held(draining);
            if draining {
                self.state.drain_step(&mut self.driver, quiet);
            }
            self.state.flush(&mut self.driver);
            if self.state.drain.is_some() && self.state.conns.is_empty() {
                self.state.finish_drain();
                return Ok(());
            }
        }
    }
}

impl<A: App> State<A> {
    fn sleep_for(&self) -> Duration {
        let drain_deadline = self
            .drain
            .as_ref()
            .and_then(|d| (!d.cut).then_some(d.deadline));
        let next = [
            self.handshakes.next(),
            self.closings.next(),
            drain_deadline,
            self.held.due,
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(at) => at.saturating_duration_since(Instant::now()).min(MAX_SLEEP),
            None => MAX_SLEEP,
        }
    }

    fn on_event(&mut self, event: Event<'_>) {
        match event {
            Event::Accepted(fd) => self.on_accepted(fd),
            Event::Data(token, bytes) => self.on_data(token, bytes),
            Event::ReadClosed(token) => {
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.close_after_flush = true;
                    mark_dirty(&mut self.dirty, conn, token);
                }
            }
            Event::Sent(token, out, result) => {
                outqueue::recycle(out, &mut self.pool);
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.sending = 0;
                    if result.is_err() {
                        conn.close_now = true;
                    }
                    let settled =
                        !conn.close_now && !conn.close_after_flush && !conn.closing && !conn.paused;
                    if settled && (conn.out.is_empty() || conn.held) {
                        // Nothing is owed now: what is left, if anything, is published messages
                        // held for the write delay, flushed when it ends.
                        self.queued.set(token, conn.out.len());
                    } else {
                        mark_dirty(&mut self.dirty, conn, token);
                    }
                }
            }
            Event::Released(token) => {
                if let Some(conn) = self.conns.remove(token) {
                    let peer = self
                        .peers
                        .get_mut(token.index as usize)
                        .and_then(Option::take);
                    // Still in the handshake phase: its handshake slot was never given back.
                    let upgrading = conn.proto.is_handshaking();
                    self.shared.admission.release(peer, upgrading);
                    self.worker_stats()
                        .connections
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
            Event::Woken => {}
        }
    }

    fn publish_counters(&self, counters: crate::io::DriverCounters) {
        let stats = self.worker_stats();
        stats
            .recv_enobufs
            .store(counters.recv_enobufs, Ordering::Relaxed);
        stats
            .cq_overflows
            .store(counters.cq_overflows, Ordering::Relaxed);
        stats.sends.store(self.sends, Ordering::Relaxed);
    }

    fn worker_stats(&self) -> &WorkerStats {
        &self.shared.workers[self.id]
    }

    fn on_accepted(&mut self, fd: OwnedFd) {
        if self.drain.is_some() {
            return; // dropping the descriptor closes it
        }
        // Admission comes first: a refused connection costs no slab entry, protocol state or
        // buffer, only this check and its static 503.
        let peer = match self.shared.admission.admit(&fd) {
            Ok(peer) => peer,
            Err(reason) => {
                self.worker_stats().count_rejected(reason);
                debug!(
                    worker = self.id,
                    limit = reason.as_str(),
                    "connection refused with 503"
                );
                admission::refuse(fd, reason);
                return;
            }
        };
        if let Err(e) = socket2::SockRef::from(&fd).set_tcp_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY failed");
        }
        let token = self.conns.insert(Conn::new(Connection::new(), self.second));
        if let Some(peer) = peer {
            let index = token.index as usize;
            if self.peers.len() <= index {
                self.peers.resize(index + 1, None);
            }
            self.peers[index] = Some(peer);
        }
        self.accepted.push((token, fd));
        self.handshakes.arm(self.now, token);
        let stats = self.worker_stats();
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn on_data(&mut self, token: Token, bytes: &mut [u8]) {
        let stats = &self.shared.workers[self.id];
        add(&stats.bytes_in, bytes.len() as u64);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed || conn.close_now || conn.close_after_flush {
            return;
        }
        conn.last_rx = self.second;
        conn.pinged = false;
        let was_handshaking = conn.proto.is_handshaking();
        conn.out.provision(&mut self.pool);
        let before = conn.out.tail().len();
        let queued_before = conn.out.len();
        let mut handler = Bridge {
            app: &mut self.app,
            routes: &mut self.routes,
            token,
            shared: &self.shared,
            stats,
            messages_in: 0,
            messages_out: 0,
        };
        let status = conn
            .proto
            .handle_bytes(bytes, &self.limits, conn.out.tail(), &mut handler);
        let (messages_in, messages_out) = (handler.messages_in, handler.messages_out);
        if messages_in > 0 {
            add(&stats.messages_in, messages_in);
        }
        if messages_out > 0 {
            add(&stats.messages_out, messages_out);
        }
        if was_handshaking && status == Status::Done {
            // A request answered without an upgrade: count the error statuses.
            match conn
                .out
                .tail()
                .get(before..)
                .and_then(tally::response_status)
            {
                Some(code) if code >= 400 => stats.count_handshake_failure(code),
                _ => {}
            }
        }
        match status {
            Status::Open => {}
            Status::Closing => {
                if !conn.closing {
                    conn.closing = true;
                    self.closings.arm(self.now, token);
                }
            }
            Status::Done => conn.close_after_flush = true,
        }
        if was_handshaking && !conn.proto.is_handshaking() {
            // Upgraded, answered or refused: the handshake slot is free.
            self.shared.admission.upgrade_done();
            if conn.proto.is_open() && self.budget.idle_timeout > 0 {
                self.idle.schedule(token, self.second + 1);
            }
        }
        // Output this input produced (or owed before it) goes now; published messages held for
        // the write delay alone keep waiting.
        let owed = conn.out.len() != queued_before || (!conn.out.is_empty() && !conn.held);
        if owed || conn.close_after_flush {
            mark_dirty(&mut self.dirty, conn, token);
        } else if conn.out.is_empty() {
            // Idle connections keep no buffer; the next input takes one from the pool.
            conn.out.release_if_empty(&mut self.pool);
        }
    }

    /// Starts a server-initiated close of one connection.
    fn close_with(&mut self, token: Token, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed {
            return;
        }
        if conn.proto.is_handshaking() {
            // Nothing to close politely; the protocol state is left as it is, so the connection
            // still counts as handshaking until it is released.
            conn.close_after_flush = true;
            mark_dirty(&mut self.dirty, conn, token);
            return;
        }
        if conn.proto.is_open() {
            self.shared.workers[self.id].count_close(code.0);
        }
        match conn.proto.close(code, reason, conn.out.tail()) {
            Status::Open => {}
            Status::Closing => {
                if !conn.closing {
                    conn.closing = true;
                    self.closings.arm(self.now, token);
                }
            }
            Status::Done => conn.close_after_flush = true,
        }
        mark_dirty(&mut self.dirty, conn, token);
    }

    /// One step of the drain, once per loop turn after the application's flush. `quiet`: every
    /// worker had quiesced before that flush.
    fn drain_step<D: Driver>(&mut self, driver: &mut D, quiet: bool) {
        let Some(drain) = self.drain.as_mut() else {
            self.begin_drain(driver);
            // This turn's flush handed over everything this worker accepted so far.
            self.shared.worker_quiesced();
            return;
        };
        if quiet && !drain.closing {
            drain.closing = true;
            for token in self.conns.tokens() {
                self.drain_close(token);
            }
            return; // the close frames get one flush before any deadline cuts them off
        }
        self.check_drain_deadline();
    }

    /// Begins this worker's drain: stop accepting, close connections that have not sent
    /// anything, and let requests already begun finish. WebSocket connections get their 1001
    /// once every worker has begun (`drain_step`).
    fn begin_drain<D: Driver>(&mut self, driver: &mut D) {
        driver.stop_accepting();
        let mut open = 0;
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.closed {
                continue;
            }
            open += 1;
            // Connected but silent (a pre-opened or idle connection): nothing is owed to it. A
            // request begun is answered when it is complete (`/health` says draining).
            if conn.proto.is_handshaking() && !conn.proto.has_partial_request() {
                conn.close_now = true;
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        self.drain = Some(Drain {
            deadline: self.now + self.shared.shutdown_timeout,
            at_start: open,
            closing: false,
            cut: false,
            dropped: 0,
            unsent: 0,
        });
        debug!(worker = self.id, connections = open, "worker draining");
    }

    /// Queues close 1001 on an upgraded connection behind what is already queued for it (nothing
    /// for one still in its handshake or already closed). Unlike [`State::close_with`] it arms
    /// no close deadline now: the peer gets `CLOSE_TIMEOUT` to answer once the close frame is
    /// actually sent (see `flush`), however long the queued data takes, up to the drain's deadline.
    fn drain_close(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed || conn.proto.is_handshaking() {
            return;
        }
        if conn.proto.is_open() {
            self.shared.workers[self.id].count_close(CloseCode::GOING_AWAY.0);
        }
        conn.out.provision(&mut self.pool);
        match conn.proto.close(
            CloseCode::GOING_AWAY,
            "server shutting down",
            conn.out.tail(),
        ) {
            Status::Open => {}
            Status::Closing => conn.closing = true,
            Status::Done => conn.close_after_flush = true,
        }
        mark_dirty(&mut self.dirty, conn, token);
    }

    /// At the drain's deadline: drops every connection left, whatever is still queued for it.
    fn check_drain_deadline(&mut self) {
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        if drain.cut || self.now < drain.deadline {
            return;
        }
        drain.cut = true;
        for token in self.conns.tokens() {
            if let Some(conn) = self.conns.get_mut(token)
                && !conn.closed
            {
                drain.dropped += 1;
                drain.unsent += (conn.sending as usize + conn.out.len()) as u64;
                conn.close_now = true;
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        if drain.dropped > 0 {
            debug!(
                worker = self.id,
                dropped = drain.dropped,
                unsent_bytes = drain.unsent,
                "shutdown timeout: dropping the connections left"
            );
        }
    }

    /// Adds this worker's drain outcome to the server's.
    fn finish_drain(&mut self) {
        let Some(drain) = &self.drain else { return };
        let totals = &self.shared.drain;
        totals.closed.fetch_add(
            drain.at_start.saturating_sub(drain.dropped),
            Ordering::Relaxed,
        );
        totals.dropped.fetch_add(drain.dropped, Ordering::Relaxed);
        totals
            .unsent_bytes
            .fetch_add(drain.unsent, Ordering::Relaxed);
        debug!(worker = self.id, "worker stopped");
    }

    /// Drops connections whose handshake or close handshake ran out of time.
    fn expire(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.handshakes.expired(self.now, &mut expired);
        for &token in &expired {
            if let Some(conn) = self.conns.get_mut(token)
                && conn.proto.is_handshaking()
                && !conn.closed
            {
                debug!(worker = self.id, "handshake timed out");
                self.shared.workers[self.id].count_handshake_failure(408);
                conn.close_now = true;
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        expired.clear();
        self.closings.expired(self.now, &mut expired);
        for &token in &expired {
            if let Some(conn) = self.conns.get_mut(token)
                && !conn.closed
            {
                conn.close_now = true;
                mark_dirty(&mut self.dirty, conn, token);
            }
        }
        expired.clear();
        self.idle.advance(self.second, &mut expired);
        for &token in &expired {
            self.check_idle(token);
        }
        expired.clear();
        self.expired = expired;
    }

    /// Pings or closes one connection from the idle wheel, or files it for its next check.
    fn check_idle(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed || conn.closing || !conn.proto.is_open() {
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
                crate::proto::frame::write_frame(conn.out.tail(), crate::proto::Opcode::Ping, b"");
                mark_dirty(&mut self.dirty, conn, token);
                self.idle.schedule(token, next);
            }
            idle::Verdict::Later(next) => self.idle.schedule(token, next),
        }
    }

    /// Lists the connections whose write delay is over (all of them while draining) for this
    /// turn's flush.
    fn release_held(&mut self, draining: bool) {
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

    /// Lets the application deliver what it deferred this turn.
    fn flush_app(&mut self) {
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
        };
        self.app.flush(&mut deliver);
        let queued = deliver.queued;
        if queued > 0 {
            add(&self.shared.workers[self.id].messages_out, queued);
        }
    }

    /// Hands this turn's work to the driver: new sockets, one send per dirty connection with
    /// output (held connections are dirty once their write delay is over), and closes.
    fn flush<D: Driver>(&mut self, driver: &mut D) {
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
            if conn.closed {
                continue;
            }
            let drained = conn.sending == 0 && conn.out.is_empty();
            if conn.close_now || (drained && conn.close_after_flush) {
                if conn.proto.is_open() {
                    // Upgraded, and no close frame either way: the connection just ended.
                    stats.count_close(CloseCode::ABNORMAL.0);
                }
                self.queued.set(token, 0);
                conn.closed = true;
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
            if conn.sending == 0 && !conn.out.is_empty() {
                conn.sending = u32::try_from(conn.out.len()).unwrap_or(u32::MAX);
                add(&stats.bytes_out, conn.out.len() as u64);
                driver.send(token, conn.out.take());
                self.sends += 1;
            } else if drained && conn.closing && self.drain.is_some() {
                // Draining: the close frame (behind the queued data) is sent; now the peer has
                // CLOSE_TIMEOUT to answer it. (Arming twice is harmless: the first entry wins.)
                self.closings.arm(self.now, token);
            }
            if conn.close_after_flush && !conn.closing {
                // Done (the peer closed or half-closed) but output is still owed: a peer that no
                // longer reads gets CLOSE_TIMEOUT to take it, not forever.
                conn.closing = true;
                self.closings.arm(self.now, token);
            }
            let backlog = conn.sending as usize + conn.out.len();
            self.queued.set(token, backlog);
            let pause = backlog > READ_PAUSE_BYTES;
            if pause != conn.paused {
                conn.paused = pause;
                driver.set_reading(token, !pause);
            }
        }
        debug_assert!(
            self.dirty.is_empty(),
            "nothing marks a connection dirty while flushing"
        );
        dirty.clear();
        self.dirty = dirty;
        self.pool.truncate(outqueue::POOL_SMALL_BUFFERS);
        stats
            .queued_bytes
            .store(self.queued.total(), Ordering::Relaxed);
    }
}

/// The worker's connections as the application's [`Deliver`] sink, applying each connection's
/// backpressure budget.
struct SlabDeliver<'a> {
    conns: &'a mut Slab<Conn>,
    dirty: &'a mut Vec<Token>,
    held: &'a mut Held,
    /// The queued-bytes tally, for connections whose messages are held.
    queued_bytes: &'a mut tally::QueuedBytes,
    closings: &'a mut Deadlines,
    now: Instant,
    budget: Budget,
    stats: &'a WorkerStats,
    /// Frames queued this turn (added to `messages_out` once, after the application's flush).
    queued: u64,
    pool: &'a mut Vec<Vec<u8>>,
    wakes: &'a mut Vec<crate::io::Waker>,
}

/// Published frames up to this size are copied into each subscriber's owned tail instead of being
/// shared: a copy of a small frame costs less than the reference count, the iovec and the
/// `sendmsg` bookkeeping of a shared segment, and a connection's messages of one turn become one
/// contiguous buffer (a plain send).
pub const COPY_FRAME_MAX: usize = 256;

impl SlabDeliver<'_> {
    /// Whether `frame` is queued by copy (see [`COPY_FRAME_MAX`]). Not under `drop-oldest`, which
    /// must be able to drop each queued message on its own.
    fn copies(&self, frame: &[u8]) -> bool {
        frame.len() <= COPY_FRAME_MAX && self.budget.policy != BackpressurePolicy::DropOldest
    }

    /// Queues `frame` on `conn` by copy (`copy`) or by reference, applying the budget.
    #[inline(always)]
    fn queue(&mut self, conn: ConnId, frame: &bytes::Bytes, copy: bool) -> SendStatus {
        let Some(c) = self.conns.get_mut(conn) else {
            return SendStatus::Gone;
        };
        if c.closed || c.close_now || c.close_after_flush || c.closing || !c.proto.is_open() {
            return SendStatus::Gone;
        }
        let budget = self.budget.max_backpressure;
        // The policy applies once the backlog (queued and in flight) has reached the budget, as
        // uWebSockets' maxBackpressure does: a connection holds at most the budget plus one
        // message, and a message larger than the budget still reaches a client that keeps up.
        let backlog = c.sending as usize + c.out.len();
        if backlog >= budget {
            match self.budget.policy {
                BackpressurePolicy::DropNewest => {
                    self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    return SendStatus::Dropped;
                }
                BackpressurePolicy::DropOldest => {
                    // Make the backlog fall below the budget again, oldest messages first, and an
                    // eighth of the budget further: each drop is one pass over the queue, so for
                    // a subscriber that stays full it happens once per eighth of a budget of new
                    // messages, not once per message (O(1) per delivery, amortized).
                    let room = budget.saturating_sub(c.sending as usize + 1 + budget / 8);
                    let dropped = c.out.drop_oldest_shared(0, room);
                    self.stats
                        .dropped_oldest
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    if c.sending as usize + c.out.len() >= budget {
                        // Owned bytes or the send in flight alone fill the budget.
                        self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                        return SendStatus::Dropped;
                    }
                }
                BackpressurePolicy::Close => {
                    self.stats
                        .closed_backpressure
                        .fetch_add(1, Ordering::Relaxed);
                    self.stats.count_close(CloseCode::TRY_AGAIN.0);
                    let status =
                        c.proto
                            .close(CloseCode::TRY_AGAIN, "too slow to receive", c.out.tail());
                    if status == Status::Closing {
                        c.closing = true;
                        self.closings.arm(self.now, conn);
                    } else {
                        c.close_after_flush = true;
                    }
                    mark_dirty(self.dirty, c, conn);
                    return SendStatus::Dropped;
                }
            }
        }
        // Something not held is already queued (a reply behind a send in flight, say): this
        // message goes with it, not after a write delay.
        let owed = !c.out.is_empty() && !c.held;
        if copy {
            c.out.push_copied(frame, self.pool);
        } else {
            c.out.push_shared(frame.clone());
        }
        if self.budget.write_delay.is_zero() || owed {
            mark_dirty(self.dirty, c, conn);
        } else if !c.dirty {
            if !c.held {
                // Flushed when the write delay that the first held message started is over, or
                // earlier with anything else the connection sends (same queue, same order).
                c.held = true;
                self.held.conns.push(conn);
                self.held
                    .due
                    .get_or_insert(self.now + self.budget.write_delay);
            }
            // Held bytes are queued bytes too (`/metrics`), though no flush reports them yet.
            self.queued_bytes
                .set(conn, c.sending as usize + c.out.len());
        }
        self.queued += 1;
        SendStatus::Queued
    }
}

impl Deliver for SlabDeliver<'_> {
    fn send_shared(&mut self, conn: ConnId, frame: &bytes::Bytes) -> SendStatus {
        let copy = self.copies(frame);
        self.queue(conn, frame, copy)
    }

    fn send_to_all(
        &mut self,
        conns: &[ConnId],
        exclude: Option<ConnId>,
        frame: &bytes::Bytes,
    ) -> u64 {
        let copy = self.copies(frame);
        let mut queued = 0;
        for &conn in conns {
            if Some(conn) != exclude && self.queue(conn, frame, copy) == SendStatus::Queued {
                queued += 1;
            }
        }
        queued
    }

    fn wake(&mut self, waker: &crate::io::Waker) {
        self.wakes.push(waker.clone());
    }
}

/// Connections holding published messages back for the write delay (`WRITE_DELAY_MS`).
#[derive(Default)]
struct Held {
    conns: Vec<Token>,
    /// When the oldest held message has waited the write delay (`None`: nothing held).
    due: Option<Instant>,
}

#[inline(always)]
fn mark_dirty(dirty: &mut Vec<Token>, conn: &mut Conn, token: Token) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(token);
    }
}

/// Connects the protocol core's callbacks to the application and the built-in HTTP routes.
struct Bridge<'a, A> {
    app: &'a mut A,
    routes: &'a mut Routes,
    token: Token,
    shared: &'a Arc<Shared>,
    stats: &'a WorkerStats,
    /// Data messages received in this call, added to the counters once by the caller.
    messages_in: u64,
    /// Data frames the application queued in this call, likewise.
    messages_out: u64,
}

impl<A: App> Handler for Bridge<'_, A> {
    fn opened(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        self.app.on_open(self.token, &mut Outbox::new(out));
        self.messages_out += tally::data_frames(out.get(start..).unwrap_or_default());
    }

    fn message(&mut self, msg: Message<'_>, out: &mut Vec<u8>) -> Result<(), AppClose> {
        self.messages_in += 1;
        let start = out.len();
        let result = self.app.on_message(self.token, msg, &mut Outbox::new(out));
        self.messages_out += tally::data_frames(out.get(start..).unwrap_or_default());
        result
    }

    fn close_started(&mut self, code: CloseCode) {
        self.stats.count_close(code.0);
    }

    fn oversized(&mut self, kind: MessageKind, out: &mut Vec<u8>) -> Result<(), AppClose> {
        bump(&self.stats.oversized_discarded);
        let start = out.len();
        let result = self
            .app
            .on_oversized(self.token, kind, &mut Outbox::new(out));
        self.messages_out += tally::data_frames(out.get(start..).unwrap_or_default());
        result
    }

    fn http_request(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) {
        self.routes.respond(req, self.shared, self.app, out);
    }

    fn accepts_upgrades(&self) -> bool {
        http::upgrade::accepts(self.shared)
    }
}
