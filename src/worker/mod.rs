//! The per-core event loop: it joins one driver, the connection table, the protocol core, the
//! application and the HTTP routes.
//!
//! One loop turn: the driver submits what the last turn queued and waits for completions; each
//! completion updates connection state (input is parsed in place in the driver's buffer and
//! replies are appended to the connection's out-queue); then every connection with new output gets
//! one send (corked writes, docs/DESIGN.md decision 5), and due deadlines fire. With
//! `WRITE_DELAY_MS`, published messages for a connection with nothing else to send are held until
//! the delay is over.
//!
//! This file has the loop and the limits ([`Budget`]); the rest is one concern per file:
//! `conn.rs` a connection and its close phase, `input.rs` accept (admission first) and input,
//! `gate.rs` pausing the listener at a process-wide limit, `admin.rs` the `ADMIN_PORT` connections,
//! `backpressure.rs` the budget rule, the read pause and the write delay, `flush.rs` the end of a
//! turn, `timers.rs` deadlines and idle checks, `trim.rs` the memory a quiet worker gives back,
//! `drain.rs` this worker's part of a shutdown (docs/ARCHITECTURE.md has the whole sequence).

mod admin;
mod backpressure;
pub mod bench;
mod conn;
mod deadlines;
mod drain;
mod flush;
mod gate;
mod idle;
mod input;
mod outqueue;
mod slab;
mod timers;
mod tls;
mod trim;

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::admission::PeerKey;
use crate::app::App;
use crate::config::{BackpressurePolicy, CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT};
use crate::http::Routes;
use crate::io::{Driver, Event, Token};
use crate::metrics::{WorkerStats, bump, tally};
use crate::proto::Limits;
use crate::proto::connection::AppClose;
use crate::proto::deflate::Codec;
use crate::state::Shared;
use backpressure::Held;
pub use backpressure::{COPY_FRAME_MAX, READ_PAUSE_BYTES};
use conn::{Conn, Phase, mark_dirty};
use deadlines::Deadlines;
use drain::Drain;
use slab::Slab;

/// The longest the loop sleeps without a deadline due, so a missed wake-up costs at most this.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A worker's per-connection limits: the budget for published messages and what happens past it,
/// and how long a connection may take over each phase of its life.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes queued for one connection (in the out-queue and in flight) before `policy` applies.
    pub max_backpressure: usize,
    /// What a connection over its budget loses.
    pub policy: BackpressurePolicy,
    /// This worker's share of `MAX_QUEUED_BYTES` (`usize::MAX`: no process-wide bound): past it,
    /// `policy` applies to the connections holding more than their fair part of the share.
    pub queued_share: usize,
    /// Seconds of silence before a connection is closed with 1001 (0: never).
    pub idle_timeout: u32,
    /// Ping connections silent for half of `idle_timeout`.
    pub send_pings: bool,
    /// How long published messages may wait for more to share their send (`WRITE_DELAY_MS`;
    /// zero: flushed at the end of the turn that queued them).
    pub write_delay: Duration,
    /// How long a client may take to finish its upgrade request ([`HANDSHAKE_TIMEOUT`] unless a
    /// test shortens it through `Config::handshake_timeout`).
    pub handshake_timeout: Duration,
    /// How long the peer has to answer a close frame ([`CLOSE_TIMEOUT`] unless a test shortens
    /// it through `Config::close_timeout`).
    pub close_timeout: Duration,
}

impl Budget {
    /// The budget a server gets by default: `max_backpressure` bytes under `policy`, no idle
    /// timeout, no write delay, the default handshake and close timeouts.
    pub fn new(max_backpressure: usize, policy: BackpressurePolicy) -> Self {
        Budget {
            max_backpressure,
            policy,
            queued_share: usize::MAX,
            idle_timeout: 0,
            send_pings: false,
            write_delay: Duration::ZERO,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            close_timeout: CLOSE_TIMEOUT,
        }
    }
}

/// Everything a worker owns except the driver, so driver completions can borrow it.
struct State<A> {
    id: usize,
    app: A,
    conns: Slab<Conn>,
    limits: Arc<Limits>,
    /// The worker's `permessage-deflate` state, shared by all its connections in turn.
    codec: Codec,
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
    /// Each connection's address, by slab index (only with `UPGRADE_RATE_PER_IP` on; empty
    /// otherwise): the upgrade check counts upgrades per address.
    peer_ips: Vec<Option<IpAddr>>,
    /// The turn's monotonic clock for rate limits ([`crate::ratelimit::now_ns`] at `now`).
    now_ns: u64,
    /// Connections the application asked to close at the start of the turn.
    app_closes: Vec<(Token, AppClose)>,
    /// Set when the drain begins.
    drain: Option<Drain>,
    /// Pauses accepting at a process-wide admission limit (`gate.rs`).
    gate: gate::Gate,
    /// Connections from the admin listener (`admin.rs`).
    admin: admin::AdminConns,
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
    /// TLS handshake steps of this turn and handshakes waiting for a later one.
    handshakes_tls: tls::Handshakes,
    /// Plaintext of the TLS read being handled (one per worker, reused).
    plaintext: Vec<u8>,
    /// The second of the last trim of a quiet turn (`trim.rs`).
    trimmed: Option<u32>,
    /// Each TLS connection's session, by slab index (empty without TLS; see [`tls::Sessions`]).
    sessions: tls::Sessions,
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
                codec: Codec::new(),
                budget,
                shared,
                dirty: Vec::new(),
                held: Held::default(),
                accepted: Vec::new(),
                handshakes: Deadlines::new(budget.handshake_timeout),
                closings: Deadlines::new(budget.close_timeout),
                pool: Vec::new(),
                peers: Vec::new(),
                peer_ips: Vec::new(),
                now_ns: crate::ratelimit::now_ns(),
                app_closes: Vec::new(),
                drain: None,
                gate: gate::Gate::default(),
                admin: admin::AdminConns::default(),
                now,
                second: 0,
                started: now,
                idle: idle::IdleWheel::default(),
                expired: Vec::new(),
                queued: tally::QueuedBytes::default(),
                wakes: Vec::new(),
                sends: 0,
                routes: Routes::for_worker(id),
                handshakes_tls: tls::Handshakes::default(),
                plaintext: Vec::new(),
                trimmed: None,
                sessions: tls::Sessions::default(),
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
        // `wsd_publish_delay_seconds` (metrics/delay.rs): the worker's delivered count as of the
        // last turn, so a turn that delivered published messages observes its batch time.
        let mut delivered_seen = 0u64;
        loop {
            let timeout = self.state.sleep_for();
            let state = &mut self.state;
            state.handshakes_tls.new_turn();
            // When the turn's first completion was seen: its work starts there.
            let mut work_start = None;
            self.driver.turn(timeout, |event| {
                if work_start.is_none() {
                    work_start = Some(Instant::now());
                }
                state.on_event(event)
            })?;
            self.state.step_waiting_handshake();
            self.state.now = Instant::now();
            let elapsed = self.state.now.duration_since(self.state.started).as_secs();
            self.state.second = u32::try_from(elapsed).unwrap_or(u32::MAX);
            self.state.tick_app();
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
            self.state.gate_accepting(&mut self.driver);
            self.state.flush(&mut self.driver);
            let stats = self.state.worker_stats();
            let delivered = stats.delivered.load(Ordering::Relaxed);
            if delivered != delivered_seen {
                delivered_seen = delivered;
                let start = work_start.unwrap_or(self.state.now);
                stats.publish_delay.observe(start.elapsed());
            }
            if work_start.is_none() {
                self.state.trim_when_quiet(&mut self.driver);
            }
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
        if self.handshakes_tls.any_waiting() {
            return Duration::ZERO;
        }
        match next {
            Some(at) => at.saturating_duration_since(Instant::now()).min(MAX_SLEEP),
            None => MAX_SLEEP,
        }
    }

    fn on_event(&mut self, event: Event<'_>) {
        match event {
            Event::Accepted(fd) => self.on_accepted(fd),
            Event::AdminAccepted(fd) => self.on_admin_accepted(fd),
            Event::Data(token, bytes) => self.on_data(token, bytes),
            Event::ReadClosed(token) => {
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.linger();
                    mark_dirty(&mut self.dirty, conn, token);
                }
            }
            Event::Sent(token, out, result) => {
                outqueue::recycle(out, &mut self.pool);
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.sending = 0;
                    if result.is_err() {
                        conn.abort();
                    }
                    let settled = conn.phase == Phase::Open && !conn.paused;
                    let tls_owed = self.sessions.owes(token);
                    if settled && !tls_owed && (conn.out.is_empty() || conn.held) {
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
                    self.sessions.remove(token);
                    if self.admin.remove(token) {
                        return; // outside the limits and the counts
                    }
                    let peer = self
                        .peers
                        .get_mut(token.index as usize)
                        .and_then(Option::take);
                    if let Some(ip) = self.peer_ips.get_mut(token.index as usize) {
                        *ip = None;
                    }
                    // Still in the handshake phase: its handshake slot was never given back.
                    let upgrading = conn.proto.is_handshaking();
                    let waited_for = self.shared.admission.release(peer, upgrading);
                    gate::wake_waiting(&self.shared, waited_for);
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
        stats.sq_full.store(counters.sq_full, Ordering::Relaxed);
        stats.sends.store(self.sends, Ordering::Relaxed);
    }

    fn worker_stats(&self) -> &WorkerStats {
        &self.shared.workers[self.id]
    }
}
