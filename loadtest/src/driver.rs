//! The single-threaded epoll loop: opens and upgrades all connections, starts them together, runs warm-up and the measured window, and snapshots CPU time at its edges.

use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;
use wsd_wire::frame::Opcode;

use crate::conn::{Conn, Fail, Shared, State};
use crate::frame::{ServerFrameParser, client_frame, payload};
use crate::proc::{MachineSeconds, MachineTicks, RssSpan, cpu_seconds, machine_ticks, rss};
use crate::stats::Stats;
use crate::url::{Target, upgrade_request};

/// What to run.
pub struct Config {
    pub target: Target,
    pub connections: usize,
    pub size: usize,
    pub binary: bool,
    pub in_flight: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub connect_timeout: Duration,
    pub server_pid: Option<u32>,
    /// Poll epoll without sleeping during warm-up and measurement (this core then never idles).
    pub busy_poll: bool,
    /// The I/O interface of the warm-up and measured phases.
    pub io: Io,
    /// Offer permessage-deflate; accept and inflate compressed replies.
    pub compression: bool,
}

/// How the load generator drives its sockets once they are upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// Edge-triggered epoll, one `recv` and one `send` system call per message.
    Epoll,
    /// io_uring: every receive and send of a loop turn in one `io_uring_enter` (see `uring.rs`).
    Uring,
}

/// What a run measured.
pub struct Outcome {
    pub stats: Stats,
    /// Connections that completed the upgrade.
    pub connected: usize,
    /// Length of the measured window (zero if it never started).
    pub measured: Duration,
    /// Server CPU seconds over the measured window, with `--server-pid`.
    pub server_cpu: Option<f64>,
    /// This process's CPU seconds over the measured window.
    pub own_cpu: Option<f64>,
    /// Machine-wide CPU seconds by class over the measured window.
    pub machine: Option<MachineSeconds>,
    /// The server's resident memory from before the first connection to the end of the window.
    pub server_rss: Option<RssSpan>,
    /// Problems that did not stop the run (e.g. the server's /proc entry vanished).
    pub warnings: Vec<String>,
}

/// CPU seconds of the server (with a PID) and of this process at one instant.
pub struct CpuSnapshot {
    pub server: Option<Result<f64, String>>,
    pub own: Result<f64, String>,
    pub machine: Result<MachineTicks, String>,
}

pub fn cpu_snapshot(server_pid: Option<u32>) -> CpuSnapshot {
    CpuSnapshot {
        server: server_pid.map(|p| cpu_seconds(Some(p))),
        own: cpu_seconds(None),
        machine: machine_ticks(),
    }
}

pub fn count_fail(stats: &mut Stats, fail: &Fail, first: &mut Option<String>) {
    let msg = match fail {
        Fail::Connect(m) => {
            stats.errors.connect_failed += 1;
            m
        }
        Fail::BadFrame(m) => {
            stats.errors.bad_frames += 1;
            m
        }
        Fail::Closed(m) => {
            stats.errors.closed += 1;
            m
        }
    };
    if first.is_none() {
        *first = Some(msg.clone());
    }
}

fn timeout_until(deadline: Instant, now: Instant) -> Timespec {
    let d = deadline
        .saturating_duration_since(now)
        .min(Duration::from_millis(100));
    Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Runs the echo load described by `cfg`.
pub fn run(cfg: &Config) -> Result<Outcome, String> {
    if let Some(pid) = cfg.server_pid {
        cpu_seconds(Some(pid)).map_err(|e| format!("--server-pid {pid}: {e}"))?;
    }
    let rss_start = match cfg.server_pid {
        Some(pid) => Some(rss(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?),
        None => None,
    };
    let opcode = if cfg.binary {
        Opcode::Binary
    } else {
        Opcode::Text
    };
    let frame = client_frame(opcode, &payload(cfg.size));
    let batch = frame.repeat(cfg.in_flight);
    let request = upgrade_request(&cfg.target, cfg.compression);
    let mut read_buf = vec![0u8; 256 * 1024];
    let mut sh = Shared {
        request: &request,
        batch: &batch,
        frame_len: frame.len(),
        in_flight: cfg.in_flight,
        read_buf: &mut read_buf,
    };
    let mut stats = Stats::new();
    let mut first_error: Option<String> = None;
    let mut warnings = Vec::new();

    let ep =
        epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
    let flags = epoll::EventFlags::IN
        | epoll::EventFlags::OUT
        | epoll::EventFlags::RDHUP
        | epoll::EventFlags::ET;
    let parser = ServerFrameParser::new(opcode, cfg.size as u64).with_deflate(cfg.compression);
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let conn = Conn::open(&cfg.target, parser.clone(), cfg.in_flight).and_then(|c| {
            epoll::add(&ep, c.fd(), epoll::EventData::new_u64(i as u64), flags)
                .map(|()| c)
                .map_err(|e| Fail::Connect(format!("epoll_ctl: {e}")))
        });
        match conn {
            Ok(c) => conns.push(Some(c)),
            Err(f) => {
                count_fail(&mut stats, &f, &mut first_error);
                conns.push(None);
            }
        }
    }
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1024);

    // Phase 1: connect and upgrade every connection, up to the connect timeout.
    let connect_deadline = Instant::now() + cfg.connect_timeout;
    let mut pending = conns.iter().flatten().count();
    while pending > 0 {
        let now = Instant::now();
        if now >= connect_deadline {
            break;
        }
        wait(&ep, &mut events, &timeout_until(connect_deadline, now))?;
        for ev in &events {
            let (idx, readable, writable) = decode(ev);
            let Some(slot) = conns.get_mut(idx) else {
                continue;
            };
            let Some(conn) = slot.as_mut() else { continue };
            let was_pending = matches!(conn.state(), State::Connecting | State::Upgrading);
            let result = conn.on_event(readable, writable, &mut sh, &mut stats);
            let done = result.is_err() || conn.state() == State::Ready;
            if was_pending && done {
                pending -= 1;
            }
            if let Err(f) = result {
                count_fail(&mut stats, &f, &mut first_error);
                *slot = None;
            }
        }
    }
    for slot in conns.iter_mut() {
        if slot.as_ref().is_some_and(|c| c.state() != State::Ready) {
            count_fail(
                &mut stats,
                &Fail::Connect("connect/upgrade timed out".into()),
                &mut first_error,
            );
            *slot = None;
        }
    }
    let connected = conns.iter().flatten().count();
    if connected == 0 {
        if let Some(e) = first_error {
            warnings.push(format!("first error: {e}"));
        }
        return Ok(Outcome {
            stats,
            connected,
            measured: Duration::ZERO,
            server_cpu: None,
            own_cpu: None,
            machine: None,
            server_rss: RssSpan::finish(cfg.server_pid, rss_start, &mut warnings),
            warnings,
        });
    }

    // Phase 2: start all connections at once, warm up, then measure.
    let start = Instant::now();
    let warmup_end = start + cfg.warmup;
    let end = warmup_end + cfg.duration;
    let phase = match cfg.io {
        Io::Uring => crate::uring::run(
            &mut conns,
            &sh,
            &mut stats,
            &mut first_error,
            start,
            warmup_end,
            end,
            cfg.server_pid,
        )?,
        Io::Epoll => epoll_phase(
            cfg,
            &ep,
            &mut conns,
            &mut sh,
            &mut stats,
            &mut first_error,
            &mut events,
            start,
        )?,
    };
    let crate::uring::Phase {
        window,
        stop,
        after,
    } = phase;
    let server_rss = RssSpan::finish(cfg.server_pid, rss_start, &mut warnings);
    drop(conns);
    if let Some(e) = first_error {
        warnings.push(format!("first error: {e}"));
    }
    let Some((measure_start, before)) = window else {
        warnings.push("every connection failed before the measured window".into());
        return Ok(Outcome {
            stats,
            connected,
            measured: Duration::ZERO,
            server_cpu: None,
            own_cpu: None,
            machine: None,
            server_rss: RssSpan::finish(cfg.server_pid, rss_start, &mut warnings),
            warnings,
        });
    };
    let mut delta = |a: Option<Result<f64, String>>, b: Option<Result<f64, String>>| match (a, b) {
        (Some(Ok(a)), Some(Ok(b))) => Some((b - a).max(0.0)),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            warnings.push(e);
            None
        }
        _ => None,
    };
    let server_cpu = delta(before.server, after.server);
    let own_cpu = delta(Some(before.own), Some(after.own));
    let machine = match (before.machine, after.machine) {
        (Ok(a), Ok(b)) => Some(a.seconds_until(&b)),
        (Err(e), _) | (_, Err(e)) => {
            warnings.push(e);
            None
        }
    };
    Ok(Outcome {
        stats,
        connected,
        measured: stop.saturating_duration_since(measure_start),
        server_cpu,
        own_cpu,
        machine,
        server_rss,
        warnings,
    })
}

/// Phase 2 on epoll: starts every connection, runs warm-up and the measured window.
#[allow(clippy::too_many_arguments)]
fn epoll_phase(
    cfg: &Config,
    ep: &std::os::fd::OwnedFd,
    conns: &mut [Option<Conn>],
    sh: &mut Shared<'_>,
    stats: &mut Stats,
    first_error: &mut Option<String>,
    events: &mut Vec<epoll::Event>,
    start: Instant,
) -> Result<crate::uring::Phase, String> {
    for slot in conns.iter_mut() {
        if let Some(conn) = slot.as_mut()
            && let Err(f) = conn.begin(sh, start)
        {
            count_fail(stats, &f, first_error);
            *slot = None;
        }
    }
    let warmup_end = start + cfg.warmup;
    let end = warmup_end + cfg.duration;
    let mut alive = conns.iter().flatten().count();
    let mut window: Option<(Instant, CpuSnapshot)> = None;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= warmup_end {
            window = Some((now, cpu_snapshot(cfg.server_pid)));
            stats.start_measuring();
        }
        if now >= end || alive == 0 {
            break;
        }
        let next = if window.is_none() { warmup_end } else { end };
        let timeout = if cfg.busy_poll {
            Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
        } else {
            timeout_until(next, now)
        };
        wait(ep, events, &timeout)?;
        for ev in events.iter() {
            let (idx, readable, writable) = decode(ev);
            let Some(slot) = conns.get_mut(idx) else {
                continue;
            };
            let Some(conn) = slot.as_mut() else { continue };
            if let Err(f) = conn.on_event(readable, writable, sh, stats) {
                count_fail(stats, &f, first_error);
                *slot = None;
                alive -= 1;
            }
        }
    }
    stats.stop_measuring();
    Ok(crate::uring::Phase {
        window,
        stop: Instant::now(),
        after: cpu_snapshot(cfg.server_pid),
    })
}

fn wait(
    ep: &std::os::fd::OwnedFd,
    events: &mut Vec<epoll::Event>,
    timeout: &Timespec,
) -> Result<(), String> {
    events.clear();
    match epoll::wait(ep, spare_capacity(events), Some(timeout)) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(format!("epoll_wait: {e}")),
    }
}

/// Connection index and whether to try reading / writing (errors and hang-ups count as both).
fn decode(ev: &epoll::Event) -> (usize, bool, bool) {
    let flags = ev.flags;
    let data = ev.data;
    let broken = flags.intersects(epoll::EventFlags::ERR | epoll::EventFlags::HUP);
    let readable = broken || flags.intersects(epoll::EventFlags::IN | epoll::EventFlags::RDHUP);
    let writable = broken || flags.contains(epoll::EventFlags::OUT);
    (data.u64() as usize, readable, writable)
}
