//! The fan-out event loop: connects and subscribes every connection, publishes through warm-up and the measured window, then drains and totals loss per (publisher, subscriber) pair.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;

use super::conn::{Conn, Role, State};
use super::handler::Run;
use super::msg;
use super::reader::Event;
use super::seq::SeqTrack;
use super::stats::{Deliveries, Phase};
use super::window::Window;
use super::{Config, Counts, Outcome};
use crate::driver::{CpuSnapshot, cpu_snapshot};
use crate::proc::{RssSpan, rss};
use crate::url::upgrade_request;

/// Most handshakes in flight while connecting.
const MAX_HANDSHAKES: usize = 256;

/// Role of connection `i`: subscribers first, then publishers.
fn role_of(cfg: &Config, i: usize) -> Role {
    let t = cfg.topics;
    if i < cfg.subscribers {
        Role::Sub {
            topic: (i % t) as u32,
        }
    } else {
        let id = i - cfg.subscribers;
        Role::Pub {
            id: id as u32,
            topic: (id % t) as u32,
        }
    }
}

/// Publisher of track `k` of a connection with `role`.
fn track_publisher(cfg: &Config, role: Role, k: usize) -> usize {
    match role {
        Role::Sub { topic } => topic as usize + k * cfg.topics,
        Role::Pub { id, .. } => id as usize,
    }
}

fn tracks_of(cfg: &Config, role: Role) -> usize {
    match role {
        Role::Sub { topic } => cfg
            .publishers
            .saturating_sub(topic as usize)
            .div_ceil(cfg.topics),
        Role::Pub { .. } => usize::from(cfg.raw && cfg.raw_self),
    }
}

/// Runs the scenario described by `cfg`.
pub fn run(cfg: &Config) -> Result<Outcome, String> {
    cfg.validate()?;
    let rss_start = match cfg.server_pid {
        Some(pid) => Some(rss(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?),
        None => None,
    };
    let n = cfg.subscribers + cfg.publishers;
    let request = upgrade_request(&cfg.target, cfg.compression);
    let ep =
        epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
    let mut run = Run {
        cfg,
        t0: Instant::now(),
        windows: (0..cfg.publishers)
            .map(|p| {
                Window::new(
                    cfg.window,
                    u32::try_from(cfg.recipients(p)).unwrap_or(u32::MAX),
                )
            })
            .collect(),
        pub_conn: (cfg.subscribers..n).collect(),
        deliveries: Deliveries::default(),
        counts: Counts::default(),
        scratch: Vec::with_capacity(256 + cfg.size),
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(n);
    let mut buf = vec![0u8; 256 * 1024];
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1024);
    let mut warnings = Vec::new();

    // Phase 1: connect, upgrade and subscribe everyone, with at most MAX_HANDSHAKES in flight.
    let deadline = Instant::now() + cfg.connect_timeout;
    let (mut handshaking, mut ready) = (0usize, 0usize);
    let mut failed = false;
    while ready < n && !failed {
        while conns.len() < n && handshaking < MAX_HANDSHAKES {
            let i = conns.len();
            let role = role_of(cfg, i);
            let target = match &cfg.sub_target {
                Some(other) if i < cfg.subscribers && i % 2 == 1 => other,
                _ => &cfg.target,
            };
            let conn = Conn::open(target, role, tracks_of(cfg, role)).and_then(|c| {
                epoll::add(&ep, c.fd.fd(), epoll::EventData::new_u64(i as u64), flags())
                    .map(|()| c)
                    .map_err(|e| format!("epoll_ctl: {e}"))
            });
            match conn {
                Ok(c) => conns.push(Some(c)),
                Err(e) => {
                    run.counts.connect_failed += 1;
                    run.fail(e);
                    failed = true;
                    break;
                }
            }
            handshaking += 1;
        }
        if Instant::now() >= deadline {
            run.counts.connect_failed += (n - ready) as u64;
            run.fail(format!(
                "{} of {n} connections not upgraded and subscribed within the connect timeout",
                n - ready
            ));
            failed = true;
            break;
        }
        wait(&ep, &mut events, Duration::from_millis(100))?;
        for ev in &events {
            let i = ev.data.u64() as usize;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let before = conn.state;
            if let Err(e) = setup_step(&mut run, i, conn, &request, &mut buf) {
                run.counts.connect_failed += 1;
                run.fail(e);
                failed = true;
            }
            if matches!(before, State::Connecting | State::Upgrading)
                && !matches!(conn.state, State::Connecting | State::Upgrading)
            {
                handshaking -= 1;
            }
            if before != State::Ready && conn.state == State::Ready {
                ready += 1;
            }
        }
    }
    let connected = ready;

    // Phase 2: publish through warm-up and the measured window.
    let pub_start = Instant::now();
    let warmup_end = pub_start + cfg.warmup;
    let end = warmup_end + cfg.duration;
    let extra_cpu = || -> f64 {
        cfg.extra_pids
            .iter()
            .map(|p| crate::proc::cpu_seconds(Some(*p)).unwrap_or(0.0))
            .sum()
    };
    let mut extra_start = 0.0;
    let mut window_start: Option<(Instant, CpuSnapshot, u64)> = None;
    let mut next_progress = pub_start + Duration::from_secs(1);
    let mut last_total = 0u64;
    while !failed {
        let now = Instant::now();
        if window_start.is_none() && now >= warmup_end {
            extra_start = extra_cpu();
            window_start = Some((now, cpu_snapshot(cfg.server_pid), sent(&run)));
            run.deliveries.phase = Phase::Measured;
        }
        if now >= end {
            break;
        }
        if cfg.progress && now >= next_progress {
            let total = run.deliveries.total();
            eprintln!(
                "fanout: {:.0} s, {} deliveries/s, {} published",
                (now - pub_start).as_secs_f64(),
                total - last_total,
                sent(&run)
            );
            last_total = total;
            next_progress += Duration::from_secs(1);
        }
        for p in 0..cfg.publishers {
            let Some(conn) = conns.get_mut(run.pub_conn[p]).and_then(Option::as_mut) else {
                continue;
            };
            run.publish(p, conn, pub_start, now);
            if let Err(e) = conn.flush() {
                run.counts.closed += 1;
                run.fail(e);
                failed = true;
            }
        }
        let timeout = if cfg.rate.is_some() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(50)
        };
        wait(&ep, &mut events, timeout)?;
        failed |= handle_events(&mut run, &mut conns, &events, &mut buf);
    }
    let stop_at = Instant::now();
    let after = cpu_snapshot(cfg.server_pid);
    let extra_used = extra_cpu() - extra_start;
    let server_rss = RssSpan::finish(cfg.server_pid, rss_start, &mut warnings);
    run.deliveries.phase = Phase::Drain;
    let published_end = sent(&run);

    // Phase 3: drain until every recipient has everything that was sent, or the drain bound passes.
    let drain_end = Instant::now() + cfg.drain;
    let mut totals = account(cfg, &conns, &run);
    while !failed && totals.lost > 0 && Instant::now() < drain_end {
        for conn in conns.iter_mut().flatten() {
            if let Err(e) = conn.flush() {
                run.counts.closed += 1;
                run.fail(e);
                failed = true;
            }
        }
        wait(&ep, &mut events, Duration::from_millis(20))?;
        failed |= handle_events(&mut run, &mut conns, &events, &mut buf);
        totals = account(cfg, &conns, &run);
    }
    let drain_took = stop_at.elapsed();
    if totals.lost > 0 && !failed {
        warnings.push(format!(
            "{} deliveries still missing after the {:.1} s drain",
            totals.lost,
            cfg.drain.as_secs_f64()
        ));
    }

    let (measured, server_cpu, own_cpu, published_measured, busy) = match window_start {
        Some((t, before, sent_then)) => (
            stop_at.saturating_duration_since(t),
            delta(before.server, after.server, &mut warnings),
            delta(Some(before.own), Some(after.own), &mut warnings),
            published_end - sent_then,
            match (before.machine, after.machine) {
                (Ok(a), Ok(b)) => {
                    let m = a.seconds_until(&b);
                    Some(m.tasks + m.irq + m.softirq)
                }
                _ => None,
            },
        ),
        None => (Duration::ZERO, None, None, 0, None),
    };
    let server_cpu = server_cpu.map(|s| s + extra_used);
    // Non-idle machine CPU not charged to the server or to this process: other load spoils the numbers.
    let other_cpu = busy
        .zip(own_cpu)
        .map(|(b, o)| (b - o - server_cpu.unwrap_or(0.0)).max(0.0));
    Ok(Outcome {
        deliveries: run.deliveries,
        counts: run.counts,
        connected,
        published: totals.published,
        published_measured,
        expected: totals.expected,
        lost: totals.lost,
        duplicates: totals.duplicates,
        reordered: totals.reordered,
        incomplete_recipients: totals.incomplete,
        measured,
        drain_took,
        server_cpu,
        own_cpu,
        other_cpu,
        server_rss,
        wire_bytes: conns.iter().flatten().map(|c| c.reader.wire_bytes).sum(),
        deflate_agreed: conns.iter().flatten().filter(|c| c.reader.deflate).count(),
        warnings,
    })
}

fn flags() -> epoll::EventFlags {
    epoll::EventFlags::IN
        | epoll::EventFlags::OUT
        | epoll::EventFlags::RDHUP
        | epoll::EventFlags::ET
}

/// Publications sent so far over all publishers.
fn sent(run: &Run<'_>) -> u64 {
    run.windows.iter().map(Window::sent).sum()
}

/// One setup event: finish the handshake, send SUBSCRIBE, read ACKs.
fn setup_step(
    run: &mut Run<'_>,
    i: usize,
    conn: &mut Conn,
    request: &[u8],
    buf: &mut [u8],
) -> Result<(), String> {
    if matches!(conn.state, State::Connecting | State::Upgrading) {
        let Some(rest) = conn.handshake(request, buf)? else {
            return Ok(());
        };
        let rest = rest.to_vec();
        match conn.role {
            Role::Sub { topic } if !run.cfg.raw => {
                msg::subscribe(&mut run.scratch, topic, i as u64);
                conn.push_text(&run.scratch);
                conn.state = State::Subscribing;
            }
            _ => conn.state = State::Ready,
        }
        read_into(run, i, conn, Some(&rest), buf)?;
    } else {
        read_into(run, i, conn, None, buf)?;
    }
    conn.flush()
}

/// Feeds `first` (bytes already read), then everything readable, to the handler.
fn read_into(
    run: &mut Run<'_>,
    i: usize,
    conn: &mut Conn,
    first: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<(), String> {
    let role = conn.role;
    let mut st = conn.state;
    let mut f = |tracks: &mut [SeqTrack], out: &mut Vec<u8>, ev: Event<'_>| {
        run.on_event(i, role, &mut st, tracks, out, ev)
    };
    let r = match first {
        Some(data) if !data.is_empty() => conn
            .feed(data, &mut f)
            .and_then(|()| conn.read_all(buf, &mut f)),
        _ => conn.read_all(buf, &mut f),
    };
    conn.state = st;
    r
}

/// Handles a batch of events during the run; returns true if a connection failed.
fn handle_events(
    run: &mut Run<'_>,
    conns: &mut [Option<Conn>],
    events: &[epoll::Event],
    buf: &mut [u8],
) -> bool {
    let mut failed = false;
    for ev in events {
        let i = ev.data.u64() as usize;
        let Some(slot) = conns.get_mut(i) else {
            continue;
        };
        let Some(conn) = slot.as_mut() else { continue };
        let r = read_into(run, i, conn, None, buf).and_then(|()| conn.flush());
        if let Err(e) = r {
            run.counts.closed += 1;
            run.fail(e);
            *slot = None;
            failed = true;
        }
    }
    failed
}

/// Loss accounting over every (publisher, recipient) pair against what each publisher wrote.
struct Totals {
    published: u64,
    expected: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    incomplete: usize,
}

fn account(cfg: &Config, conns: &[Option<Conn>], run: &Run<'_>) -> Totals {
    // Publications completely written, per publisher.
    let written: Vec<u64> = (0..cfg.publishers)
        .map(|p| {
            let unwritten = conns
                .get(run.pub_conn[p])
                .and_then(Option::as_ref)
                .map_or(0, Conn::unwritten_publications);
            run.windows[p].sent() - unwritten as u64
        })
        .collect();
    let mut t = Totals {
        published: written.iter().sum(),
        expected: 0,
        lost: 0,
        duplicates: 0,
        reordered: 0,
        incomplete: 0,
    };
    for (i, slot) in conns.iter().enumerate() {
        let role = role_of(cfg, i);
        let Some(conn) = slot else {
            // A connection that failed: everything it should have received counts as lost.
            let exp: u64 = (0..tracks_of(cfg, role))
                .map(|k| written[track_publisher(cfg, role, k)])
                .sum();
            t.expected += exp;
            t.lost += exp;
            t.incomplete += usize::from(exp > 0);
            continue;
        };
        let mut missing = false;
        for (k, track) in conn.tracks.iter().enumerate() {
            let exp = written[track_publisher(cfg, role, k)];
            t.expected += exp;
            t.lost += track.lost(exp);
            t.duplicates += track.duplicates;
            t.reordered += track.reordered;
            missing |= !track.complete(exp);
        }
        t.incomplete += usize::from(missing);
    }
    t
}

fn delta(
    a: Option<Result<f64, String>>,
    b: Option<Result<f64, String>>,
    warnings: &mut Vec<String>,
) -> Option<f64> {
    match (a, b) {
        (Some(Ok(a)), Some(Ok(b))) => Some((b - a).max(0.0)),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            warnings.push(e);
            None
        }
        _ => None,
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
