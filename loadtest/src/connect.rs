//! The `connect` scenario: opens N connections with at most K handshakes in flight, times each handshake, then holds them idle and measures the server's resident memory per connection.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;

use crate::proc::{cpu_seconds, rss};
use crate::sock::Sock;
use crate::stats::ns_histogram;
use crate::upgrade::{Upgrade, connect_result};
use crate::url::{Target, upgrade_request};

/// What to run.
pub struct Config {
    pub target: Target,
    pub connections: usize,
    /// Most handshakes (TCP connect + upgrade) in flight at once.
    pub concurrency: usize,
    /// Hard bound on the connect phase.
    pub timeout: Duration,
    /// Idle hold before the second memory reading.
    pub settle: Duration,
    pub server_pid: u32,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Offer permessage-deflate (the idle memory of compressing connections).
    pub compression: bool,
}

/// What a run measured.
pub struct Outcome {
    pub connected: usize,
    pub failed: usize,
    /// Connections the server closed while they were held idle.
    pub dropped: usize,
    pub first_error: Option<String>,
    /// From the first connect to the last completed upgrade.
    pub connect_time: Duration,
    /// TCP connect + upgrade, per connection, in ns.
    pub handshake_ns: Histogram<u64>,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// The server's VmHWM after the hold: its peak resident memory since it started.
    pub rss_peak_kib: u64,
    /// Server CPU seconds over the connect phase.
    pub server_cpu_s: Option<f64>,
    /// This process's CPU seconds over the connect phase.
    pub own_cpu_s: Option<f64>,
}

enum Slot {
    Pending {
        fd: Sock,
        upgrade: Upgrade,
        started: Instant,
        tcp_done: bool,
    },
    Open(Sock),
    Gone,
}

/// Runs the scenario described by `cfg`.
pub fn run(cfg: &Config) -> Result<Outcome, String> {
    let pid = cfg.server_pid;
    let request = upgrade_request(&cfg.target, cfg.compression);
    let ep =
        epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
    let flags = epoll::EventFlags::IN
        | epoll::EventFlags::OUT
        | epoll::EventFlags::RDHUP
        | epoll::EventFlags::ET;
    let mut slots: Vec<Slot> = Vec::with_capacity(cfg.connections);
    let mut buf = vec![0u8; 64 * 1024];
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1024);
    let mut out = Outcome {
        connected: 0,
        failed: 0,
        dropped: 0,
        first_error: None,
        connect_time: Duration::ZERO,
        handshake_ns: ns_histogram(),
        rss_before_kib: rss(pid)?.now_kib,
        rss_after_kib: 0,
        rss_peak_kib: 0,
        server_cpu_s: None,
        own_cpu_s: None,
    };
    let cpu0 = (cpu_seconds(Some(pid)), cpu_seconds(None));
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let mut last_ready = start;
    let mut in_flight = 0usize;
    let mut next_report = start + Duration::from_secs(1);
    let fail = |out: &mut Outcome, e: String| {
        out.failed += 1;
        out.first_error.get_or_insert(e);
    };
    loop {
        while slots.len() < cfg.connections && in_flight < cfg.concurrency {
            let idx = slots.len() as u64;
            let opened = Sock::open(&cfg.target).and_then(|fd| {
                epoll::add(&ep, fd.fd(), epoll::EventData::new_u64(idx), flags)
                    .map(|()| fd)
                    .map_err(|e| format!("epoll_ctl: {e}"))
            });
            match opened {
                Ok(fd) => {
                    slots.push(Slot::Pending {
                        fd,
                        upgrade: Upgrade::default(),
                        started: Instant::now(),
                        tcp_done: false,
                    });
                    in_flight += 1;
                }
                Err(e) => {
                    slots.push(Slot::Gone);
                    fail(&mut out, e);
                }
            }
        }
        let now = Instant::now();
        if in_flight == 0 || now >= deadline {
            break;
        }
        if cfg.progress && now >= next_report {
            eprintln!(
                "connect: {} upgraded, {} failed, {in_flight} in flight",
                out.connected, out.failed
            );
            next_report += Duration::from_secs(1);
        }
        wait(&ep, &mut events, Duration::from_millis(100))?;
        for ev in &events {
            let idx = ev.data.u64() as usize;
            let Some(slot) = slots.get_mut(idx) else {
                continue;
            };
            match step(slot, &request, &mut buf) {
                Ok(Some(latency)) => {
                    last_ready = Instant::now();
                    out.connected += 1;
                    in_flight -= 1;
                    out.handshake_ns.saturating_record(
                        u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    if matches!(slot, Slot::Pending { .. }) {
                        in_flight -= 1;
                        fail(&mut out, e);
                    } else {
                        out.dropped += 1;
                        out.first_error.get_or_insert(e);
                    }
                    *slot = Slot::Gone;
                }
            }
        }
    }
    for slot in slots
        .iter_mut()
        .filter(|s| matches!(s, Slot::Pending { .. }))
    {
        *slot = Slot::Gone;
        fail(&mut out, "connect/upgrade timed out".into());
    }
    out.failed += cfg.connections - slots.len();
    out.connect_time = last_ready.saturating_duration_since(start);
    let cpu1 = (cpu_seconds(Some(pid)), cpu_seconds(None));
    out.server_cpu_s = delta(&cpu0.0, &cpu1.0);
    out.own_cpu_s = delta(&cpu0.1, &cpu1.1);

    // Hold every connection idle, noticing any the server closes, then read the server's memory.
    let hold_end = Instant::now() + cfg.settle;
    while Instant::now() < hold_end {
        wait(
            &ep,
            &mut events,
            hold_end
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        )?;
        for ev in &events {
            let Some(slot) = slots.get_mut(ev.data.u64() as usize) else {
                continue;
            };
            if let Err(e) = step(slot, &request, &mut buf) {
                out.dropped += 1;
                out.first_error.get_or_insert(e);
                *slot = Slot::Gone;
            }
        }
    }
    let after = rss(pid)?;
    out.rss_after_kib = after.now_kib;
    out.rss_peak_kib = after.peak_kib;
    Ok(out)
}

/// Advances one connection; returns its handshake time when the upgrade completes.
fn step(slot: &mut Slot, request: &[u8], buf: &mut [u8]) -> Result<Option<Duration>, String> {
    match slot {
        Slot::Pending {
            fd,
            upgrade,
            started,
            tcp_done,
        } => {
            if !*tcp_done {
                connect_result(fd.fd())?;
                *tcp_done = true;
            }
            upgrade.send_request(fd, request)?;
            loop {
                let n = read(fd, buf)?;
                if n == 0 {
                    return Ok(None);
                }
                if let Some(at) = upgrade.on_response(&buf[..n])? {
                    if at < n {
                        return Err("server sent frames right after the upgrade".into());
                    }
                    let took = started.elapsed();
                    let Slot::Pending { fd, .. } = std::mem::replace(slot, Slot::Gone) else {
                        return Ok(None);
                    };
                    *slot = Slot::Open(fd);
                    return Ok(Some(took));
                }
            }
        }
        Slot::Open(fd) => match read(fd, buf)? {
            0 => Ok(None),
            _ => Err("server sent data to an idle connection".into()),
        },
        Slot::Gone => Ok(None),
    }
}

/// Reads once: `Ok(0)` when nothing is available, an error on EOF or failure.
fn read(fd: &mut Sock, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        return match fd.recv(&mut *buf) {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => Ok(n),
            Err(Errno::AGAIN) => Ok(0),
            Err(Errno::INTR) => continue,
            Err(e) => Err(format!("recv: {e}")),
        };
    }
}

fn delta(a: &Result<f64, String>, b: &Result<f64, String>) -> Option<f64> {
    match (a, b) {
        (Ok(a), Ok(b)) => Some((b - a).max(0.0)),
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
