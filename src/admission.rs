//! Admission: the connection limits checked when a connection is accepted, before its worker
//! allocates anything for it (slab entry, protocol state, buffers).
//!
//! - `MAX_CONNECTIONS`: connections open process-wide (accepted and not yet released).
//! - `UPGRADE_MAX_CONCURRENT`: connections accepted but not yet past their HTTP request
//!   (upgraded, answered or dropped), process-wide: what a flood of slow handshakes can hold.
//! - `MAX_CONNECTIONS_PER_IP`: connections open from one peer address (0: off).
//! - `UPGRADE_MAX_CONCURRENT_PER_IP`: connections from one peer address accepted but not yet past
//!   their HTTP request (0: off; on by default, well under `UPGRADE_MAX_CONCURRENT`), so one
//!   address flooding half-sent upgrades cannot take every handshake slot from everyone else.
//!
//! At a process-wide limit the workers stop accepting (`worker/gate.rs`): new connections wait
//! in the kernel's backlog, and [`Admission::wait_for_slot`] has the next freed slot wake them.
//! A connection over a per-address limit is answered `503 Service Unavailable` with
//! `Retry-After` and a one-line reason naming the limit, written with one non-blocking `send`
//! straight after `accept` (a fresh socket's send buffer is empty, so the ~200-byte answer fits),
//! and closed.
//!
//! The two process-wide counts are atomics in one cache line of their own, touched once when a
//! connection is accepted, once when its handshake ends and once when it is released: never per
//! message. The per-address counts live in sharded tables that exist only when their limit is
//! on; with both per-address limits at 0 admission costs no `getpeername` and no lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::metrics::RejectReason;

/// Shards of the per-address table; a power of two well above any worker count, so workers
/// accepting from different addresses rarely meet on one lock.
const PER_IP_SHARDS: usize = 64;

/// The answer to a connection refused for `reason`: a complete HTTP/1.1 response.
pub fn response(reason: RejectReason) -> &'static [u8] {
    match reason {
        RejectReason::MaxConnections => MAX_CONNECTIONS_RESPONSE,
        RejectReason::PerIp => PER_IP_RESPONSE,
        RejectReason::UpgradeConcurrent => UPGRADE_RESPONSE,
        RejectReason::UpgradePerIp => UPGRADE_PER_IP_RESPONSE,
    }
}

// Static answers (no allocation when refusing under load); the unit tests check that each
// Content-Length matches its body. Retry-After: a full server or a greedy address frees slots as
// clients leave (seconds); handshakes finish in milliseconds, so an upgrade flood clears sooner.
const MAX_CONNECTIONS_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 63\r\nConnection: close\r\n\
Retry-After: 5\r\n\r\n\
MAX_CONNECTIONS reached: the server is at its connection limit\n";
const PER_IP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 71\r\nConnection: close\r\n\
Retry-After: 5\r\n\r\n\
MAX_CONNECTIONS_PER_IP reached: too many connections from your address\n";
const UPGRADE_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 64\r\nConnection: close\r\n\
Retry-After: 1\r\n\r\n\
UPGRADE_MAX_CONCURRENT reached: too many handshakes in progress\n";
const UPGRADE_PER_IP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 89\r\nConnection: close\r\n\
Retry-After: 1\r\n\r\n\
UPGRADE_MAX_CONCURRENT_PER_IP reached: too many handshakes in progress from your address\n";

/// A peer address as the per-address table keys it: IPv4 as its IPv4-mapped IPv6 form, so a
/// client counts once whether it reached an IPv4 or a dual-stack listener.
pub type PeerKey = Ipv6Addr;

/// The process-wide counts, on a cache line of their own: every worker writes them on accept and
/// release, and nothing read on the message path may share their line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counts {
    open: AtomicUsize,
    upgrading: AtomicUsize,
    /// A worker paused accepting at a process-wide limit and waits to be woken when a slot frees.
    waiting: AtomicBool,
}

/// The admission limits and counts, shared by every worker of a server.
#[derive(Debug)]
pub struct Admission {
    counts: Counts,
    max_connections: usize,
    upgrade_max_concurrent: usize,
    per_ip: Option<PerIp>,
    /// Unfinished handshakes per address (`UPGRADE_MAX_CONCURRENT_PER_IP`).
    upgrading_per_ip: Option<PerIp>,
}

impl Admission {
    /// Limits of `max_connections` open connections, `upgrade_max_concurrent` unfinished
    /// handshakes and `max_per_ip` connections per address (0: no per-address limit), without a
    /// per-address handshake limit.
    pub fn new(max_connections: usize, upgrade_max_concurrent: usize, max_per_ip: usize) -> Self {
        Admission::with_upgrade_per_ip(max_connections, upgrade_max_concurrent, max_per_ip, 0)
    }

    /// As [`Admission::new`], with at most `upgrade_per_ip` unfinished handshakes per address
    /// (0: no such limit).
    pub fn with_upgrade_per_ip(
        max_connections: usize,
        upgrade_max_concurrent: usize,
        max_per_ip: usize,
        upgrade_per_ip: usize,
    ) -> Self {
        Admission {
            counts: Counts::default(),
            max_connections: max_connections.max(1),
            upgrade_max_concurrent: upgrade_max_concurrent.max(1),
            per_ip: (max_per_ip > 0).then(|| PerIp::new(max_per_ip)),
            upgrading_per_ip: (upgrade_per_ip > 0).then(|| PerIp::new(upgrade_per_ip)),
        }
    }

    /// The process-wide connection limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections open now, process-wide.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::Relaxed)
    }

    /// Connections accepted and not yet past their HTTP request, process-wide.
    pub fn upgrading(&self) -> usize {
        self.counts.upgrading.load(Ordering::Relaxed)
    }

    /// Whether a process-wide limit (`MAX_CONNECTIONS` or `UPGRADE_MAX_CONCURRENT`) is reached:
    /// workers stop accepting, and new connections wait in the kernel's backlog.
    pub fn full(&self) -> bool {
        self.counts.open.load(Ordering::SeqCst) >= self.max_connections
            || self.counts.upgrading.load(Ordering::SeqCst) >= self.upgrade_max_concurrent
    }

    /// A worker pauses accepting at a process-wide limit: the next slot to free asks for the
    /// workers to be woken ([`Admission::upgrade_done`] and [`Admission::release`] return
    /// `true`). Returns whether the limit is still reached: `false` means a slot freed meanwhile
    /// (the flag is set before the counts are read again, so no release goes unseen).
    pub fn wait_for_slot(&self) -> bool {
        self.counts.waiting.store(true, Ordering::SeqCst);
        self.full()
    }

    /// After freeing a slot: whether a paused worker waits for one (then the caller wakes the
    /// workers). Clears the request.
    fn slot_freed(&self) -> bool {
        self.counts.waiting.load(Ordering::SeqCst)
            && self.counts.waiting.swap(false, Ordering::SeqCst)
    }

    /// Whether connections are counted per peer address.
    pub fn per_ip_enabled(&self) -> bool {
        self.per_ip.is_some()
    }

    /// Admits the connection on `fd` or says which limit refuses it. An admitted connection
    /// holds one slot of each limit until [`Admission::upgrade_done`] (the handshake slots) and
    /// [`Admission::release`] (the others, and the handshake slots if still held); the returned
    /// key (only with a per-address limit on) must be handed back to both.
    pub fn admit(&self, fd: &OwnedFd) -> Result<Option<PeerKey>, RejectReason> {
        if !acquire(&self.counts.open, self.max_connections) {
            return Err(RejectReason::MaxConnections);
        }
        if !acquire(&self.counts.upgrading, self.upgrade_max_concurrent) {
            self.counts.open.fetch_sub(1, Ordering::Relaxed);
            return Err(RejectReason::UpgradeConcurrent);
        }
        if self.per_ip.is_none() && self.upgrading_per_ip.is_none() {
            return Ok(None);
        }
        // A socket whose peer is already gone has no address; it fails on its first read, so it
        // is admitted uncounted rather than answered.
        let Some(key) = peer_key(fd) else {
            return Ok(None);
        };
        let undo = |per_ip_taken: bool| {
            if per_ip_taken && let Some(per_ip) = &self.per_ip {
                per_ip.release(key);
            }
            self.counts.upgrading.fetch_sub(1, Ordering::Relaxed);
            self.counts.open.fetch_sub(1, Ordering::Relaxed);
        };
        if let Some(per_ip) = &self.per_ip
            && !per_ip.acquire(key)
        {
            undo(false);
            return Err(RejectReason::PerIp);
        }
        if let Some(upgrading) = &self.upgrading_per_ip
            && !upgrading.acquire(key)
        {
            undo(true);
            return Err(RejectReason::UpgradePerIp);
        }
        Ok(Some(key))
    }

    /// An admitted connection finished its HTTP request (upgraded, answered or dropped): its
    /// handshake slots are free. Call at most once per connection, with the key `admit` gave.
    /// Returns whether a worker paused at a limit waits for this slot (wake the workers then).
    #[must_use]
    pub fn upgrade_done(&self, peer: Option<PeerKey>) -> bool {
        if let (Some(upgrading), Some(key)) = (&self.upgrading_per_ip, peer) {
            upgrading.release(key);
        }
        self.counts.upgrading.fetch_sub(1, Ordering::SeqCst);
        self.slot_freed()
    }

    /// An admitted connection is gone: frees its slots. `upgrading` says whether it still held
    /// its handshake slots; `peer` is what [`Admission::admit`] returned. Returns whether a
    /// worker paused at a limit waits for this slot (wake the workers then).
    #[must_use]
    pub fn release(&self, peer: Option<PeerKey>, upgrading: bool) -> bool {
        if upgrading {
            if let (Some(upgrading), Some(key)) = (&self.upgrading_per_ip, peer) {
                upgrading.release(key);
            }
            self.counts.upgrading.fetch_sub(1, Ordering::SeqCst);
        }
        if let (Some(per_ip), Some(key)) = (&self.per_ip, peer) {
            per_ip.release(key);
        }
        self.counts.open.fetch_sub(1, Ordering::SeqCst);
        self.slot_freed()
    }
}

/// Takes one slot of `counter` if it is below `limit` (exact under concurrency: a compare and
/// swap, never a transient overshoot that would refuse a neighbour).
fn acquire(counter: &AtomicUsize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// The per-address key of the peer of `fd`.
fn peer_key(fd: &OwnedFd) -> Option<PeerKey> {
    let addr = socket2::SockRef::from(fd).peer_addr().ok()?.as_socket()?;
    Some(match addr.ip().to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    })
}

/// Connections per peer address, shared by every worker.
///
/// Design: a fixed array of `Mutex<HashMap>` shards, chosen by a hash of the address. The table
/// is touched only when a connection is accepted or released, and only when the limit is on;
/// each touch holds one shard's lock for one hash-map update (tens of nanoseconds), so workers
/// accepting at full rate rarely contend, and a lock-free map would buy nothing measurable for
/// a dependency. Entries are removed when their count drops to zero, so the table holds at most
/// one entry per open connection, however many addresses have come and gone. The hash is
/// SipHash with a per-process random key, so clients cannot aim their addresses at one shard
/// or one bucket chain.
#[derive(Debug)]
struct PerIp {
    limit: usize,
    hasher: std::hash::RandomState,
    shards: Box<[Mutex<HashMap<PeerKey, usize>>]>,
}

impl PerIp {
    fn new(limit: usize) -> Self {
        PerIp {
            limit,
            hasher: std::hash::RandomState::new(),
            shards: (0..PER_IP_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(&self, key: &PeerKey) -> std::sync::MutexGuard<'_, HashMap<PeerKey, usize>> {
        let i = self.hasher.hash_one(key) as usize % PER_IP_SHARDS;
        // A worker that panicked while holding the lock left the counts consistent (every update
        // is a single insert or remove), so a poisoned lock is still usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn acquire(&self, key: PeerKey) -> bool {
        let mut shard = self.shard(&key);
        let count = shard.entry(key).or_insert(0);
        if *count >= self.limit {
            return false; // `limit >= 1`, so the entry existed before and stays meaningful
        }
        *count += 1;
        true
    }

    fn release(&self, key: PeerKey) {
        let mut shard = self.shard(&key);
        if let Some(count) = shard.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Answers a refused connection with its 503 and closes it, without blocking and without
/// allocating: one non-blocking `send` of the static response, a write shutdown (the FIN follows
/// the response), and a non-blocking read of whatever the client already sent, so that the
/// close sends a FIN rather than a reset that could make the client drop the answer unread.
/// Best effort: a client that has not read its answer before sending more may still see a reset.
pub fn refuse(fd: OwnedFd, reason: RejectReason) {
    answer_and_close(fd, response(reason));
}

/// A fatal `internal_error` alert in a plaintext TLS record: what a refused connection gets when
/// every listener speaks TLS. A 503 would need a handshake first, the CPU a full server should not
/// spend on a connection it refuses; clients report the alert as a TLS error.
pub const TLS_REFUSAL_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80];

/// [`refuse`] for a TLS listener: the alert instead of the 503.
pub fn refuse_tls(fd: OwnedFd) {
    answer_and_close(fd, &TLS_REFUSAL_ALERT);
}

fn answer_and_close(fd: OwnedFd, answer: &[u8]) {
    use rustix::net::{RecvFlags, SendFlags, Shutdown};
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let _ = rustix::net::send(&fd, answer, flags);
    let _ = rustix::net::shutdown(&fd, Shutdown::Write);
    let mut sink = [0u8; 2048];
    for _ in 0..4 {
        match rustix::net::recv(&fd, &mut sink, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n == sink.len() => continue,
            _ => break,
        }
    }
    drop(fd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    #[test]
    fn responses_are_complete_http_with_retry_after_and_the_limit_named() {
        for reason in RejectReason::ALL {
            let text = std::str::from_utf8(response(reason)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
            assert!(
                head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{text}"
            );
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("Content-Length")
                .parse()
                .unwrap();
            assert_eq!(length, body.len(), "{reason:?}: Content-Length of {body:?}");
            let retry: u32 = head
                .lines()
                .find_map(|l| l.strip_prefix("Retry-After: "))
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=5).contains(&retry), "{reason:?}: Retry-After {retry}");
            assert!(head.contains("\r\nConnection: close"), "{text}");
            let name = reason.as_str().to_ascii_uppercase();
            assert!(
                body.starts_with(&name),
                "{reason:?}: body names {name}: {body:?}"
            );
            assert!(
                text.len() < 512,
                "fits a fresh socket's send buffer at once"
            );
        }
    }

    #[test]
    fn counters_are_exact_at_the_limits() {
        let a = AtomicUsize::new(0);
        assert!(acquire(&a, 2) && acquire(&a, 2));
        assert!(!acquire(&a, 2));
        assert_eq!(a.load(Ordering::Relaxed), 2, "a refusal leaves no trace");
        a.fetch_sub(1, Ordering::Relaxed);
        assert!(acquire(&a, 2));
    }

    #[test]
    fn per_ip_counts_each_address_and_forgets_it_at_zero() {
        let t = PerIp::new(2);
        let x = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped();
        let y = Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped();
        assert!(t.acquire(x) && t.acquire(x));
        assert!(!t.acquire(x), "third from x refused");
        assert!(t.acquire(y), "y has its own count");
        t.release(x);
        assert!(t.acquire(x), "a slot of x freed");
        for _ in 0..2 {
            t.release(x);
        }
        t.release(y);
        assert_eq!(
            t.entries(),
            0,
            "no entry left for addresses without connections"
        );
    }

    #[test]
    fn a_worker_waiting_for_a_slot_is_woken_by_the_next_one_freed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let s: OwnedFd = listener.accept().unwrap().0.into();
        let adm = Admission::new(1, 5, 0);
        let first = adm.admit(&s).unwrap();
        assert!(adm.full());
        assert!(!adm.upgrade_done(first), "nobody waits: no wake-up");
        assert!(adm.wait_for_slot(), "still full: the worker pauses");
        assert!(
            adm.release(first, false),
            "the freed slot wakes the waiting worker"
        );
        assert!(!adm.full());
        let second = adm.admit(&s).unwrap();
        assert!(
            !adm.release(second, true),
            "the request was cleared by the first wake-up"
        );
        assert!(!adm.wait_for_slot(), "not full: the worker does not pause");
    }

    #[test]
    fn admit_and_release_balance_every_count() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let adm = Admission::new(3, 2, 1);
        let _c1 = TcpStream::connect(addr).unwrap();
        let s1: OwnedFd = listener.accept().unwrap().0.into();
        let _c2 = TcpStream::connect(addr).unwrap();
        let s2: OwnedFd = listener.accept().unwrap().0.into();
        let key = adm.admit(&s1).expect("first admitted");
        assert_eq!(key, Some(Ipv4Addr::LOCALHOST.to_ipv6_mapped()));
        assert_eq!(adm.admit(&s2), Err(RejectReason::PerIp), "one per address");
        assert_eq!(
            (adm.open(), adm.upgrading()),
            (1, 1),
            "the refusal is undone"
        );
        let _ = adm.upgrade_done(key);
        let _ = adm.release(key, false);
        assert_eq!((adm.open(), adm.upgrading()), (0, 0));

        let adm = Admission::new(3, 1, 0);
        let first = adm.admit(&s1).unwrap();
        assert_eq!(first, None, "no address looked up with the limit off");
        assert_eq!(adm.admit(&s2), Err(RejectReason::UpgradeConcurrent));
        let _ = adm.upgrade_done(None);
        let second = adm.admit(&s2).unwrap();
        assert_eq!(adm.admit(&s2), Err(RejectReason::UpgradeConcurrent));
        let _ = adm.release(second, true);
        let _ = adm.release(first, false);
        assert_eq!((adm.open(), adm.upgrading()), (0, 0));

        let adm = Admission::new(1, 5, 0);
        let first = adm.admit(&s1).unwrap();
        assert_eq!(adm.admit(&s2), Err(RejectReason::MaxConnections));
        let _ = adm.release(first, true);
        assert!(adm.admit(&s2).is_ok());

        // One handshake per address: the second waits for the first to finish, and a refusal
        // leaves the connection limits as they were.
        let adm = Admission::with_upgrade_per_ip(4, 4, 0, 1);
        let first = adm.admit(&s1).unwrap();
        assert_eq!(first, Some(Ipv4Addr::LOCALHOST.to_ipv6_mapped()));
        assert_eq!(adm.admit(&s2), Err(RejectReason::UpgradePerIp));
        assert_eq!((adm.open(), adm.upgrading()), (1, 1));
        let _ = adm.upgrade_done(first);
        let second = adm.admit(&s2).unwrap();
        assert_eq!(adm.admit(&s2), Err(RejectReason::UpgradePerIp));
        let _ = adm.release(second, true);
        let _ = adm.release(first, false);
        assert_eq!((adm.open(), adm.upgrading()), (0, 0));
        assert_eq!(adm.upgrading_per_ip.as_ref().map(PerIp::entries), Some(0));

        // Both per-address limits: a handshake refusal gives the connection slot back.
        let adm = Admission::with_upgrade_per_ip(4, 4, 2, 1);
        let first = adm.admit(&s1).unwrap();
        assert_eq!(adm.admit(&s2), Err(RejectReason::UpgradePerIp));
        let _ = adm.release(first, true);
        assert_eq!(adm.per_ip.as_ref().map(PerIp::entries), Some(0));
        assert_eq!(adm.upgrading_per_ip.as_ref().map(PerIp::entries), Some(0));
    }
}
