//! The soak event loop: connects every slot, publishes open loop while subscribers reconnect, drains and closes everything, then reads the server's descriptors and memory again.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;
use wsd_wire::frame::Opcode;

use super::pair::{Pair, PairTotals};
use super::{Config, Outcome, server};
use crate::fanout::conn::{Conn, Role};
use crate::fanout::msg::{self, Incoming, Stamp};
use crate::fanout::reader::Event;
use crate::proc::rss;
use crate::url::upgrade_request;

/// Most handshakes in flight (wsd's default `UPGRADE_MAX_CONCURRENT_PER_IP` is 256).
const MAX_HANDSHAKES: usize = 200;
/// Most publications queued on one publisher at a time.
const MAX_BATCH: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected; waiting in the open queue (or finished, with `done`).
    Idle,
    Handshaking,
    /// Upgraded, SUBSCRIBE sent, waiting for its ACK.
    Subscribing,
    Live,
    /// Waiting for every message its publishers had written when it decided to go.
    Draining,
    /// Close frame sent, waiting for the server's.
    Closing,
}

struct Slot {
    conn: Option<Conn>,
    role: Role,
    /// Incarnation, in the epoll data so that events of a closed socket are ignored.
    generation: u32,
    phase: Phase,
    /// One per publisher of the subscriber's topic, from its ACK.
    pairs: Vec<Pair>,
    /// What each pair must have received, fixed when draining starts.
    targets: Vec<u64>,
    deadline: Instant,
    got_close: bool,
    done: bool,
}

struct Soak<'a> {
    cfg: &'a Config,
    ep: OwnedFd,
    request: Vec<u8>,
    slots: Vec<Slot>,
    /// Per publisher: publications queued, and completely written.
    sent: Vec<u64>,
    written: Vec<u64>,
    pub_slot: Vec<usize>,
    to_open: VecDeque<usize>,
    handshaking: usize,
    draining: Vec<usize>,
    stopping: bool,
    t0: Instant,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    rng: u64,
    out: Outcome,
}

/// Runs the scenario described by `cfg`.
pub fn run(cfg: &Config) -> Result<Outcome, String> {
    cfg.validate()?;
    let pid = cfg.server_pid;
    let mut out = Outcome {
        fds_before: server::open_fds(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?,
        rss_before_kib: rss(pid)?.now_kib,
        ..Outcome::default()
    };
    let drops_before = server::declared_drops(cfg.target.addr, &cfg.target.host)?;
    let ep =
        epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
    let subs = cfg.subscribers();
    let now = Instant::now();
    let slots = (0..cfg.connections)
        .map(|i| Slot {
            conn: None,
            role: if i < subs {
                Role::Sub {
                    topic: (i % cfg.topics) as u32,
                }
            } else {
                let id = (i - subs) as u32;
                Role::Pub {
                    id,
                    topic: id % cfg.topics as u32,
                }
            },
            generation: 0,
            phase: Phase::Idle,
            pairs: Vec::new(),
            targets: Vec::new(),
            deadline: now,
            got_close: false,
            done: false,
        })
        .collect();
    out.connected = 0;
    let mut s = Soak {
        cfg,
        ep,
        request: upgrade_request(&cfg.target, false),
        slots,
        sent: vec![0; cfg.publishers],
        written: vec![0; cfg.publishers],
        pub_slot: (subs..cfg.connections).collect(),
        to_open: (0..cfg.connections).collect(),
        handshaking: 0,
        draining: Vec::new(),
        stopping: false,
        t0: now,
        buf: vec![0; 256 * 1024],
        scratch: Vec::with_capacity(256 + cfg.size),
        rng: 0x9e37_79b9_7f4a_7c15,
        out,
    };
    let mut events = Vec::with_capacity(1024);

    // Connect and subscribe everyone.
    let bound = now + cfg.connect_timeout;
    while s.live() < cfg.connections && Instant::now() < bound && s.out.errors == 0 {
        s.turn(&mut events, Duration::from_millis(20))?;
    }
    s.out.connect_took = now.elapsed();
    s.out.connected = s.live();
    if s.out.connected < cfg.connections {
        s.error(format!(
            "{} of {} connections not up within {:.0} s",
            cfg.connections - s.out.connected,
            cfg.connections,
            cfg.connect_timeout.as_secs_f64()
        ));
    }
    s.out.fds_connected = server::open_fds(pid).unwrap_or(0);

    // Publish, churn and sample until the duration is over.
    let start = Instant::now();
    let end = start + cfg.duration;
    let (mut next_sample, mut next_progress) = (start, start + Duration::from_secs(5));
    let mut churned = 0u64;
    while s.out.connected == cfg.connections && Instant::now() < end {
        let now = Instant::now();
        s.publish(start, now);
        let due = (cfg.churn * now.duration_since(start).as_secs_f64()) as u64;
        while churned < due {
            churned += 1;
            s.churn_one(now);
        }
        s.turn(&mut events, Duration::from_millis(1))?;
        if now >= next_sample {
            let kib = rss(pid)?;
            s.out
                .rss_samples
                .push((now.duration_since(start).as_secs_f64(), kib.now_kib));
            next_sample += Duration::from_secs(1);
        }
        if cfg.progress && now >= next_progress {
            eprintln!(
                "soak: {:.0} s, {} published, {} reconnects, {} errors, server RSS {} KiB",
                now.duration_since(start).as_secs_f64(),
                s.sent.iter().sum::<u64>(),
                s.out.reconnects,
                s.out.errors,
                s.out.rss_samples.last().map_or(0, |r| r.1)
            );
            next_progress += Duration::from_secs(5);
        }
    }
    s.out.ran = start.elapsed();

    // Stop publishing; drain and close every subscriber, then every publisher.
    s.stopping = true;
    let now = Instant::now();
    for i in 0..subs {
        if s.slots[i].phase == Phase::Live {
            s.start_drain(i, now);
        }
    }
    let bound = Instant::now() + cfg.drain + cfg.connect_timeout * 2;
    while (0..subs).any(|i| !s.slots[i].done) && Instant::now() < bound {
        s.flush_publishers();
        s.turn(&mut events, Duration::from_millis(5))?;
    }
    let now = Instant::now();
    for p in 0..cfg.publishers {
        let i = s.pub_slot[p];
        if s.slots[i].phase == Phase::Live {
            s.close(i, now);
        }
    }
    let bound = Instant::now() + cfg.connect_timeout;
    while s.slots.iter().any(|sl| !sl.done) && Instant::now() < bound {
        s.turn(&mut events, Duration::from_millis(5))?;
    }
    for i in 0..s.slots.len() {
        if !s.slots[i].done {
            s.fail(i, "still open when the run ended".into());
        }
    }
    s.out.published = s.sent.iter().sum();
    drop(s.slots.drain(..));

    // Every client is gone: the server's descriptors must come back to the baseline.
    let settle = Instant::now() + cfg.settle;
    loop {
        s.out.fds_after = server::open_fds(pid)?;
        if s.out.fds_after <= s.out.fds_before || Instant::now() >= settle {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = rss(pid)?;
    (s.out.rss_after_kib, s.out.rss_peak_kib) = (after.now_kib, after.peak_kib);
    let warm = cfg.warmup.as_secs_f64();
    let steady: Vec<(f64, u64)> = s
        .out
        .rss_samples
        .iter()
        .copied()
        .filter(|&(t, _)| t >= warm)
        .collect();
    s.out.rss_slope = server::slope_kib_per_min(&steady);
    let drops_after = server::declared_drops(cfg.target.addr, &cfg.target.host)?;
    s.out.declared_drops = drops_after.saturating_sub(drops_before);
    Ok(s.out)
}

impl Soak<'_> {
    fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.phase == Phase::Live).count()
    }

    fn error(&mut self, e: String) {
        self.out.errors += 1;
        self.out.first_error.get_or_insert(e);
    }

    /// Opens what waits to be opened, waits for events, handles them, and checks deadlines.
    fn turn(&mut self, events: &mut Vec<epoll::Event>, timeout: Duration) -> Result<(), String> {
        while self.handshaking < MAX_HANDSHAKES
            && let Some(i) = self.to_open.pop_front()
        {
            self.open(i);
        }
        wait(&self.ep, events, timeout)?;
        for ev in events.iter() {
            let data = ev.data.u64();
            self.on_io((data >> 32) as usize, data as u32);
        }
        self.check_deadlines(Instant::now());
        Ok(())
    }

    fn open(&mut self, i: usize) {
        let role = self.slots[i].role;
        let generation = self.slots[i].generation;
        let conn = Conn::open(&self.cfg.target, role, 0).and_then(|c| {
            epoll::add(
                &self.ep,
                c.fd.fd(),
                epoll::EventData::new_u64(((i as u64) << 32) | u64::from(generation)),
                epoll::EventFlags::IN
                    | epoll::EventFlags::OUT
                    | epoll::EventFlags::RDHUP
                    | epoll::EventFlags::ET,
            )
            .map(|()| c)
            .map_err(|e| format!("epoll_ctl: {e}"))
        });
        match conn {
            Ok(c) => {
                let slot = &mut self.slots[i];
                slot.conn = Some(c);
                slot.phase = Phase::Handshaking;
                slot.deadline = Instant::now() + self.cfg.connect_timeout;
                slot.got_close = false;
                self.handshaking += 1;
            }
            Err(e) => {
                self.slots[i].done = true;
                self.error(e);
            }
        }
    }

    fn on_io(&mut self, i: usize, generation: u32) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        if slot.generation != generation || slot.conn.is_none() {
            return;
        }
        let r = self.read(i);
        let slot = &mut self.slots[i];
        let r = r.and_then(|()| slot.conn.as_mut().map_or(Ok(()), Conn::flush));
        if let Role::Pub { id, .. } = slot.role
            && let Some(c) = &slot.conn
        {
            let p = id as usize;
            self.written[p] = self.sent[p] - c.unwritten_publications() as u64;
        }
        match r {
            _ if slot.got_close && slot.phase == Phase::Closing => self.finish_close(i),
            Ok(()) => {
                if slot.phase == Phase::Live
                    && self.stopping
                    && matches!(slot.role, Role::Sub { .. })
                {
                    self.start_drain(i, Instant::now());
                }
            }
            Err(e) => self.fail(i, e),
        }
    }

    /// Finishes the handshake if it is under way and reads everything available.
    fn read(&mut self, i: usize) -> Result<(), String> {
        let Soak {
            cfg,
            slots,
            sent,
            written,
            buf,
            scratch,
            handshaking,
            request,
            out,
            ..
        } = self;
        let slot = &mut slots[i];
        let Slot {
            conn: Some(conn),
            role,
            phase,
            pairs,
            got_close,
            ..
        } = slot
        else {
            return Ok(());
        };
        let mut rest = Vec::new();
        if *phase == Phase::Handshaking {
            let Some(r) = conn.handshake(request, buf)? else {
                return Ok(());
            };
            rest = r.to_vec();
            *handshaking -= 1;
            match *role {
                Role::Sub { topic } => {
                    msg::subscribe(scratch, topic, i as u64);
                    conn.push_text(scratch);
                    *phase = Phase::Subscribing;
                }
                Role::Pub { .. } => *phase = Phase::Live,
            }
        }
        let mut f = |_: &mut [crate::fanout::seq::SeqTrack], o: &mut Vec<u8>, ev: Event<'_>| {
            let text = match ev {
                Event::Text(t) => t,
                Event::Binary(_) => return Err("unexpected binary message".into()),
                Event::Ping(p) => {
                    out.pings += 1;
                    crate::frame::push_client_frame(o, Opcode::Pong, p);
                    return Ok(());
                }
                Event::Close => {
                    *got_close = true;
                    return if *phase == Phase::Closing {
                        Ok(())
                    } else {
                        Err("the server sent a close frame".into())
                    };
                }
            };
            let Role::Sub { topic } = *role else {
                return match msg::scan(text) {
                    Incoming::Error => Err(format!(
                        "server ERROR to a publisher: {}",
                        String::from_utf8_lossy(&text[..text.len().min(200)])
                    )),
                    _ => Ok(()),
                };
            };
            let topic = topic as usize;
            match msg::scan(text) {
                Incoming::Message(Stamp { publisher, seq, .. }) => {
                    let p = publisher as usize;
                    if p >= cfg.publishers || p % cfg.topics != topic {
                        return Err(format!("delivery from publisher {p} on another topic"));
                    }
                    if seq >= sent[p] {
                        return Err(format!("publisher {p}'s message {seq} was never sent"));
                    }
                    match pairs.get_mut(p / cfg.topics) {
                        Some(pair) => {
                            pair.on(seq);
                            Ok(())
                        }
                        None => Err("a delivery before the subscription's ACK".into()),
                    }
                }
                Incoming::Ack(Some(id)) if id == i as u64 && *phase == Phase::Subscribing => {
                    *pairs = (topic..cfg.publishers)
                        .step_by(cfg.topics)
                        .map(|p| Pair::new(written[p]))
                        .collect();
                    *phase = Phase::Live;
                    Ok(())
                }
                Incoming::Error => Err(format!(
                    "server ERROR: {}",
                    String::from_utf8_lossy(&text[..text.len().min(200)])
                )),
                Incoming::Ack(_) | Incoming::Other => Ok(()),
            }
        };
        if !rest.is_empty() {
            conn.feed(&rest, &mut f)?;
        }
        conn.read_all(buf, &mut f)
    }

    /// Queues what each publisher is due (open loop), on publishers whose last batch is written.
    fn publish(&mut self, start: Instant, now: Instant) {
        let per = self.cfg.rate / self.cfg.publishers as f64;
        let due = (per * now.duration_since(start).as_secs_f64()) as u64;
        let ts_ns = u64::try_from(now.duration_since(self.t0).as_nanos()).unwrap_or(u64::MAX);
        for p in 0..self.cfg.publishers {
            let slot = &mut self.slots[self.pub_slot[p]];
            let (Phase::Live, Some(conn), Role::Pub { id, topic }) =
                (slot.phase, slot.conn.as_mut(), slot.role)
            else {
                continue;
            };
            if !conn.flushed() || due <= self.sent[p] {
                continue;
            }
            conn.new_batch();
            for _ in 0..(due - self.sent[p]).min(MAX_BATCH) {
                let stamp = Stamp {
                    publisher: id,
                    seq: self.sent[p],
                    ts_ns,
                };
                msg::publish(&mut self.scratch, Some(topic), stamp, self.cfg.size, false);
                conn.push_publication(&self.scratch);
                self.sent[p] += 1;
            }
            let r = conn.flush();
            self.written[p] = self.sent[p] - conn.unwritten_publications() as u64;
            if let Err(e) = r {
                let i = self.pub_slot[p];
                self.fail(i, e);
            }
        }
    }

    fn flush_publishers(&mut self) {
        for p in 0..self.cfg.publishers {
            let i = self.pub_slot[p];
            if let Some(conn) = self.slots[i].conn.as_mut() {
                let r = conn.flush();
                self.written[p] = self.sent[p] - conn.unwritten_publications() as u64;
                if let Err(e) = r {
                    self.fail(i, e);
                }
            }
        }
    }

    /// Starts the reconnect of a random live subscriber.
    fn churn_one(&mut self, now: Instant) {
        let subs = self.cfg.subscribers() as u64;
        for _ in 0..16 {
            self.rng = self
                .rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let i = ((self.rng >> 33) % subs) as usize;
            if self.slots[i].phase == Phase::Live {
                self.start_drain(i, now);
                return;
            }
        }
    }

    fn start_drain(&mut self, i: usize, now: Instant) {
        let Role::Sub { topic } = self.slots[i].role else {
            return;
        };
        let targets = (topic as usize..self.cfg.publishers)
            .step_by(self.cfg.topics)
            .map(|p| self.written[p])
            .collect();
        let slot = &mut self.slots[i];
        slot.targets = targets;
        slot.phase = Phase::Draining;
        slot.deadline = now + self.cfg.drain;
        self.draining.push(i);
    }

    /// Sends the close frame; the slot ends when the server's comes back.
    fn close(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        conn.push_close();
        slot.phase = Phase::Closing;
        slot.deadline = now + self.cfg.connect_timeout;
        if let Err(e) = conn.flush() {
            self.fail(i, e);
        }
    }

    fn check_deadlines(&mut self, now: Instant) {
        let draining = std::mem::take(&mut self.draining);
        for i in draining {
            let slot = &self.slots[i];
            if slot.phase != Phase::Draining {
                continue;
            }
            let complete = slot
                .pairs
                .iter()
                .zip(&slot.targets)
                .all(|(p, &t)| p.complete(t));
            if complete || now >= slot.deadline {
                // What is still missing at the deadline is counted as lost when the slot ends.
                self.close(i, now);
            } else {
                self.draining.push(i);
            }
        }
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.conn.is_some()
                && now >= slot.deadline
                && matches!(
                    slot.phase,
                    Phase::Handshaking | Phase::Subscribing | Phase::Closing
                )
            {
                let what = match slot.phase {
                    Phase::Handshaking => "upgrade",
                    Phase::Subscribing => "subscription ACK",
                    _ => "close frame",
                };
                self.fail(i, format!("no {what} from the server in time"));
            }
        }
    }

    /// The close handshake is over: account for the subscription and connect again.
    fn finish_close(&mut self, i: usize) {
        self.end_slot(i, None);
    }

    /// A connection failed: what it was owed is lost.
    fn fail(&mut self, i: usize, e: String) {
        self.error(e);
        self.end_slot(i, Some(()));
    }

    fn end_slot(&mut self, i: usize, failed: Option<()>) {
        let slot = &mut self.slots[i];
        if slot.phase == Phase::Handshaking {
            self.handshaking -= 1;
        }
        if let Role::Sub { topic } = slot.role
            && !slot.pairs.is_empty()
        {
            let targets: Vec<u64> = if slot.targets.len() == slot.pairs.len() {
                slot.targets.clone()
            } else {
                (topic as usize..self.cfg.publishers)
                    .step_by(self.cfg.topics)
                    .map(|p| self.written[p])
                    .collect()
            };
            let mut t = PairTotals::default();
            for (p, &target) in slot.pairs.iter().zip(&targets) {
                t += p.finish(target);
            }
            self.out.pairs += t;
        }
        slot.conn = None;
        slot.pairs.clear();
        slot.targets.clear();
        slot.phase = Phase::Idle;
        slot.generation = slot.generation.wrapping_add(1);
        let again = failed.is_none() && !self.stopping && matches!(slot.role, Role::Sub { .. });
        if again {
            self.out.reconnects += 1;
            self.to_open.push_back(i);
        } else {
            slot.done = true;
        }
    }
}

fn wait(ep: &OwnedFd, events: &mut Vec<epoll::Event>, timeout: Duration) -> Result<(), String> {
    events.clear();
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match epoll::wait(ep, spare_capacity(events), Some(&ts)) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(format!("epoll_wait: {e}")),
    }
}
