//! The io_uring form of the echo loop's measured phase (`echo --io uring`): every receive and send
//! of a loop turn is submitted with one `io_uring_enter`, which also waits for the next
//! completions, instead of one `recv` and one `send` system call per message plus `epoll_wait`.
//!
//! Connections are opened and upgraded by the epoll loop in [`crate::driver`] and handed over
//! ready. Each connection has one multishot receive armed (into the shared provided-buffer ring,
//! wsd's own [`BufRing`], consumed incrementally where the kernel can; re-armed only when a
//! completion lacks the MORE flag) and at most one send (a
//! slice of the prebuilt frame batch). Accounting is [`Conn::on_bytes`] and [`Conn::wrote`], the
//! same code the epoll loop uses.
//!
//! Ownership: an operation's buffer must stay valid until its completion is reaped. The buffer
//! ring and this module's copy of the frame batch are owned here; at the end every receive is
//! cancelled and its last completion awaited, and if some never arrive both are leaked rather than
//! freed.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustix::io::Errno;
use wsd_wire::bufring::BufRing;

use crate::conn::{Conn, Fail, Shared};
use crate::driver::{CpuSnapshot, count_fail, cpu_snapshot};
use crate::stats::Stats;

const RECV: u64 = 0;
const SEND: u64 = 1;
const CANCEL: u64 = 2;
/// The buffer group of the receive ring.
const BGID: u16 = 0;
/// Largest receive buffer (an echo larger than this arrives in several completions).
const RECV_BUF_MAX: usize = 64 * 1024;

/// How the warm-up and measured phase went.
pub struct Phase {
    /// When warm-up ended, with the CPU snapshot taken then.
    pub window: Option<(Instant, CpuSnapshot)>,
    /// When the measured window ended, with the CPU snapshot taken then.
    pub stop: Instant,
    pub after: CpuSnapshot,
}

/// The io_uring side of one connection.
struct Side {
    /// A multishot receive is armed.
    recv_armed: bool,
    /// Bytes of the send in flight (0: none).
    sending: usize,
}

fn user_data(idx: usize, kind: u64) -> u64 {
    (idx as u64) << 2 | kind
}

/// Runs warm-up and the measured window over `conns` (all upgraded), until `end`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    conns: &mut [Option<Conn>],
    sh: &Shared<'_>,
    stats: &mut Stats,
    first_error: &mut Option<String>,
    start: Instant,
    warmup_end: Instant,
    end: Instant,
    server_pid: Option<u32>,
) -> Result<Phase, String> {
    let n = conns.len();
    let entries = u32::try_from((2 * n + 64).next_power_of_two())
        .map_err(|_| "too many connections for one ring".to_string())?;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries.saturating_mul(2))
        .build(entries)
        .map_err(|e| format!("io_uring_setup: {e}"))?;
    // Owned here so that it can be leaked with the receive buffers if a send never completes.
    let batch: Box<[u8]> = sh.batch.into();
    // One buffer per completion; a turn reaps at most one receive per connection before they are
    // all handed back, so 2 per connection leaves room.
    let buffers = u16::try_from((2 * n).next_power_of_two().clamp(64, 32768)).unwrap_or(32768);
    let buf_size = (sh.frame_len * sh.in_flight.max(1)).clamp(2048, RECV_BUF_MAX);
    let buf_size = u32::try_from(buf_size).unwrap_or(65536);
    let mut bufring = BufRing::new(buffers, buf_size).map_err(|e| format!("buffer ring: {e}"))?;
    // SAFETY: `bufring` is dropped only after the ring (end of `run`), and leaked instead when a
    // receive's last completion did not arrive.
    unsafe { bufring.register(&ring.submitter(), BGID) }
        .map_err(|e| format!("IORING_REGISTER_PBUF_RING: {e}"))?;
    let mut sides: Vec<Side> = (0..n)
        .map(|_| Side {
            recv_armed: false,
            sending: 0,
        })
        .collect();
    let mut dirty: Vec<usize> = Vec::with_capacity(n);
    for (i, slot) in conns.iter_mut().enumerate() {
        if let Some(conn) = slot.as_mut() {
            conn.start(sh.in_flight, start);
            dirty.push(i);
        }
    }
    let mut alive = dirty.len();
    let mut in_flight = 0usize;
    let mut window: Option<(Instant, CpuSnapshot)> = None;
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(entries as usize * 2);
    let mut result = Ok(());
    'turns: loop {
        let now = Instant::now();
        if window.is_none() && now >= warmup_end {
            window = Some((now, cpu_snapshot(server_pid)));
            stats.start_measuring();
        }
        if now >= end || alive == 0 {
            break;
        }
        for idx in dirty.drain(..) {
            let (Some(Some(conn)), Some(side)) = (conns.get(idx), sides.get_mut(idx)) else {
                continue;
            };
            let fd = types::Fd(conn.fd().as_raw_fd());
            if !side.recv_armed {
                let sqe = opcode::RecvMulti::new(fd, BGID)
                    .build()
                    .user_data(user_data(idx, RECV));
                // SAFETY: the receive writes only into the registered buffer ring, which is
                // freed only after the ring is dropped with nothing in flight (or leaked, see the
                // end of `run`).
                if let Err(e) = unsafe { push(&mut ring, &sqe) } {
                    result = Err(e);
                    break 'turns;
                }
                side.recv_armed = true;
                in_flight += 1;
            }
            let unsent = conn.unsent(&batch, sh.frame_len);
            if side.sending == 0 && !unsent.is_empty() {
                let len = u32::try_from(unsent.len()).unwrap_or(u32::MAX);
                let sqe = opcode::Send::new(fd, unsent.as_ptr(), len)
                    .flags(libc_msg_nosignal())
                    .build()
                    .user_data(user_data(idx, SEND));
                // SAFETY: the bytes are inside `batch`, owned by this function, never written,
                // and freed only once every operation has completed (or leaked, see below).
                if let Err(e) = unsafe { push(&mut ring, &sqe) } {
                    result = Err(e);
                    break 'turns;
                }
                side.sending = unsent.len();
                in_flight += 1;
            }
        }
        let timeout = types::Timespec::from(
            (if window.is_none() { warmup_end } else { end })
                .saturating_duration_since(now)
                .min(Duration::from_millis(100)),
        );
        let args = types::SubmitArgs::new().timespec(&timeout);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                result = Err(format!("io_uring_enter: {e}"));
                break 'turns;
            }
        }
        cqes.clear();
        cqes.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let now = Instant::now();
        for &(ud, res, flags) in &cqes {
            let idx = (ud >> 2) as usize;
            let kind = ud & 3;
            if kind == CANCEL {
                continue;
            }
            let ended = kind != RECV || !cqueue::more(flags);
            if ended {
                in_flight = in_flight.saturating_sub(1);
            }
            let bid = cqueue::buffer_select(flags);
            // In incremental mode the kernel goes on filling this buffer: hand it back only once
            // a completion says it is finished with it. Every completion that took bytes is
            // accounted in the ring (`filled`), even one nobody reads, so the next one in the same
            // buffer starts at the right offset.
            let buf_more = bufring.is_incremental() && cqueue::buffer_more(flags);
            let data: &[u8] = match bid {
                Some(bid) => bufring.filled(bid, res.max(0) as usize, buf_more),
                None => &[],
            };
            let (Some(slot), Some(side)) = (conns.get_mut(idx), sides.get_mut(idx)) else {
                if let Some(bid) = bid
                    && !buf_more
                {
                    bufring.recycle(bid);
                }
                continue;
            };
            let outcome = match kind {
                RECV => {
                    if ended {
                        side.recv_armed = false;
                    }
                    let transient = [Errno::INTR, Errno::NOBUFS].map(|e| -e.raw_os_error());
                    let outcome = match slot.as_mut() {
                        None => Ok(()),
                        Some(_) if transient.contains(&res) => Ok(()),
                        Some(_) if res < 0 => Err(Fail::Closed(format!(
                            "recv: {}",
                            Errno::from_raw_os_error(-res)
                        ))),
                        Some(_) if res == 0 => {
                            Err(Fail::Closed("server closed the connection".into()))
                        }
                        Some(_) if bid.is_none() => {
                            Err(Fail::BadFrame("a receive without a buffer".into()))
                        }
                        Some(conn) => conn.on_bytes(data, stats, now).map(|_| ()),
                    };
                    if let Some(bid) = bid
                        && !buf_more
                    {
                        bufring.recycle(bid);
                    }
                    outcome
                }
                _ => {
                    side.sending = 0;
                    match slot.as_mut() {
                        None => Ok(()),
                        Some(_) if res < 0 => Err(Fail::Closed(format!(
                            "send: {}",
                            Errno::from_raw_os_error(-res)
                        ))),
                        Some(conn) => {
                            conn.wrote(res as usize, sh.frame_len);
                            Ok(())
                        }
                    }
                }
            };
            match outcome {
                Ok(()) if slot.is_some() => dirty.push(idx),
                Ok(()) => {}
                Err(f) => {
                    count_fail(stats, &f, first_error);
                    // The kernel holds its own reference to the socket for an operation still
                    // in flight; that operation is cancelled at the end.
                    *slot = None;
                    alive -= 1;
                }
            }
        }
        bufring.publish();
        dirty.sort_unstable();
        dirty.dedup();
    }
    stats.stop_measuring();
    let stop = Instant::now();
    let after = cpu_snapshot(server_pid);
    let drained = drain(&mut ring, &sides, in_flight);
    // The ring goes first, so that the kernel lets go of the buffer ring before it is freed.
    drop(ring);
    if !drained {
        // Some operation may still use its buffer: never free it.
        std::mem::forget(bufring);
        std::mem::forget(batch);
    }
    result.map(|()| Phase {
        window,
        stop,
        after,
    })
}

/// `MSG_NOSIGNAL` as the `flags` of a send SQE.
fn libc_msg_nosignal() -> i32 {
    rustix::net::SendFlags::NOSIGNAL.bits() as i32
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == Errno::TIME.raw_os_error() || c == Errno::INTR.raw_os_error() || c == Errno::BUSY.raw_os_error()
    )
}

/// Pushes one SQE, submitting first if the queue is full.
///
/// # Safety
///
/// Every buffer and descriptor `sqe` refers to must stay valid until its completion is reaped.
unsafe fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> Result<(), String> {
    for _ in 0..2 {
        // SAFETY: the caller guarantees the entry's buffers outlive the operation.
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        match ring.submit() {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(format!("io_uring_enter: {e}")),
        }
    }
    Err("submission queue full".into())
}

/// Cancels every receive still armed and waits (at most 1 s) until `in_flight` operations have
/// completed. Returns whether they all did.
fn drain(ring: &mut IoUring, sides: &[Side], mut in_flight: usize) -> bool {
    for (idx, side) in sides.iter().enumerate() {
        if side.recv_armed {
            let sqe = opcode::AsyncCancel::new(user_data(idx, RECV))
                .build()
                .user_data(user_data(idx, CANCEL));
            // SAFETY: a cancel refers to no buffer or descriptor.
            if unsafe { push(ring, &sqe) }.is_err() {
                return false;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while in_flight > 0 {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let timeout = types::Timespec::from(deadline - now);
        let args = types::SubmitArgs::new().timespec(&timeout);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(_) => return false,
        }
        for cqe in ring.completion() {
            let kind = cqe.user_data() & 3;
            if kind == SEND || (kind == RECV && !cqueue::more(cqe.flags())) {
                in_flight = in_flight.saturating_sub(1);
            }
        }
    }
    true
}
