//! Per-worker counters: written by their worker alone with relaxed atomics, read (summed) by
//! `/health` and `/metrics` from any thread, so observing them costs the hot path nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// HTTP statuses a refused upgrade or plain request is counted under; anything else counts as
/// the last entry (`other`).
pub const HANDSHAKE_STATUSES: [u16; 13] = [
    400, 401, 403, 404, 405, 408, 411, 413, 426, 429, 431, 503, 0,
];

/// Close codes counted one by one; anything else counts as the last entry (`other`).
pub const CLOSE_CODES: [u16; 13] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1013, 0,
];

/// `wsd_auth_failures` reasons: upgrades refused by access control.
pub const AUTH_FAILURES: [&str; 5] = ["missing", "invalid", "expired", "origin", "rate"];
/// `wsd_permission_denied` operations: requests outside the connection's rights.
pub const DENIED_OPS: [&str; 3] = ["subscribe", "publish", "auth"];
/// `wsd_rate_limited` scopes: messages refused by a rate limit.
pub const RATE_SCOPES: [&str; 2] = ["connection", "identity"];
/// `wsd_policy_closes` reasons: connections closed with 1008 by access control.
pub const POLICY_CLOSES: [&str; 2] = ["rate_limit", "token_expired"];
/// `wsd_auth_refreshes` results: `AUTH` messages.
pub const REFRESHES: [&str; 2] = ["ok", "refused"];

/// Why a connection was refused before any per-connection state was allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `MAX_CONNECTIONS` reached.
    MaxConnections,
    /// `MAX_CONNECTIONS_PER_IP` reached for the peer's address.
    PerIp,
    /// `UPGRADE_MAX_CONCURRENT` handshakes already in progress.
    UpgradeConcurrent,
    /// `UPGRADE_MAX_CONCURRENT_PER_IP` handshakes already in progress from the peer's address.
    UpgradePerIp,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::MaxConnections,
        RejectReason::PerIp,
        RejectReason::UpgradeConcurrent,
        RejectReason::UpgradePerIp,
    ];

    /// The reason as a metric label and in the 503 body.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxConnections => "max_connections",
            RejectReason::PerIp => "max_connections_per_ip",
            RejectReason::UpgradeConcurrent => "upgrade_max_concurrent",
            RejectReason::UpgradePerIp => "upgrade_max_concurrent_per_ip",
        }
    }
}

/// Counters one worker publishes for the rest of the process (relaxed atomics, written by the
/// worker alone).
///
/// Aligned to 128 bytes (two cache lines, for the adjacent-line prefetcher) so that workers,
/// whose counters sit side by side in one `Vec`, never write to a line another worker writes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Connections open now (accepted and not yet released).
    pub connections: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicUsize,
    /// Receives re-armed after the buffer ring ran dry (io_uring).
    pub recv_enobufs: AtomicU64,
    /// Completion-queue overflows recovered from (io_uring).
    pub cq_overflows: AtomicU64,
    /// io_uring: submissions that found the submission queue full (flushed first; a test's
    /// witness that the path ran, not exported).
    pub sq_full: AtomicU64,
    /// Pub/sub: topics with at least one subscriber on this worker.
    pub topics: AtomicUsize,
    /// Pub/sub: subscriptions held by this worker's connections.
    pub subscriptions: AtomicUsize,
    /// Pub/sub: PUBLISH requests accepted on this worker.
    pub published: AtomicU64,
    /// Pub/sub: messages queued to this worker's subscribers.
    pub delivered: AtomicU64,
    /// Backpressure: new messages dropped for a subscriber over its budget (`drop-newest`).
    pub dropped_newest: AtomicU64,
    /// Backpressure: queued messages dropped to make room (`drop-oldest`).
    pub dropped_oldest: AtomicU64,
    /// Backpressure: connections closed with 1013 (`close`).
    pub closed_backpressure: AtomicU64,
    /// Times the policy applied because the worker was over its share of `MAX_QUEUED_BYTES`
    /// (each also counted as a drop or a close above).
    pub over_queued_bound: AtomicU64,
    /// Connections closed with 1001 after IDLE_TIMEOUT of silence.
    pub idle_closes: AtomicU64,
    /// Connections refused with 503 before allocation, indexed like [`RejectReason::ALL`].
    pub rejected: [AtomicU64; 4],
    /// Handshakes and plain requests answered with an error status, indexed like
    /// [`HANDSHAKE_STATUSES`].
    pub handshake_failures: [AtomicU64; HANDSHAKE_STATUSES.len()],
    /// Data messages received (text and binary, after reassembly).
    pub messages_in: AtomicU64,
    /// Data messages queued for sending.
    pub messages_out: AtomicU64,
    /// Bytes received from peers (wire bytes, all frames).
    pub bytes_in: AtomicU64,
    /// Bytes handed to the kernel for peers (wire bytes).
    pub bytes_out: AtomicU64,
    /// Connections closed, by the close code sent or received, indexed like [`CLOSE_CODES`].
    pub closes: [AtomicU64; CLOSE_CODES.len()],
    /// Bytes queued for peers and not yet sent, as of the end of the last loop turn.
    pub queued_bytes: AtomicU64,
    /// Event-loop turns (each one `io_uring_enter` or `epoll_wait`, plus what the turn queued).
    pub loop_turns: AtomicU64,
    /// Sends handed to the driver (one per connection with output per turn, at most one in
    /// flight each): with `delivered`, the kernel sends per delivery.
    pub sends: AtomicU64,
    /// Oversized messages discarded under `PAYLOAD_LIMIT_POLICY=send`.
    pub oversized_discarded: AtomicU64,
    /// Upgrades refused by access control, indexed like [`AUTH_FAILURES`].
    pub auth_failures: [AtomicU64; AUTH_FAILURES.len()],
    /// Requests refused with `PERMISSION_DENIED`, indexed like [`DENIED_OPS`].
    pub permission_denied: [AtomicU64; DENIED_OPS.len()],
    /// Messages refused by a rate limit, indexed like [`RATE_SCOPES`].
    pub rate_limited: [AtomicU64; RATE_SCOPES.len()],
    /// Connections closed with 1008 by access control, indexed like [`POLICY_CLOSES`].
    pub policy_closes: [AtomicU64; POLICY_CLOSES.len()],
    /// `AUTH` refreshes, indexed like [`REFRESHES`].
    pub auth_refreshes: [AtomicU64; REFRESHES.len()],
    /// Per loop turn that delivered published messages: the turn's batch time
    /// (`wsd_publish_delay_seconds`).
    pub publish_delay: super::delay::DelayHistogram,
}

/// Adds one to a counter (relaxed: the only writer is the owning worker).
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter (relaxed, as [`bump`]).
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl WorkerStats {
    /// Counts a connection refused for `reason`.
    pub fn count_rejected(&self, reason: RejectReason) {
        bump(&self.rejected[reason as usize]);
    }

    /// Counts a handshake or request answered with `status`.
    pub fn count_handshake_failure(&self, status: u16) {
        let i = HANDSHAKE_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(HANDSHAKE_STATUSES.len() - 1);
        bump(&self.handshake_failures[i]);
    }

    /// Counts a connection closed with `code`.
    pub fn count_close(&self, code: u16) {
        let i = CLOSE_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CLOSE_CODES.len() - 1);
        bump(&self.closes[i]);
    }
}

/// The Redis link's state and counters (`REDIS_URL`), written by its thread, read by `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct RedisStats {
    /// Connected, subscribed, and the last probe came back in time.
    pub up: AtomicBool,
    /// Publications sent to Redis.
    pub published: AtomicU64,
    /// Publications from other instances handed to workers.
    pub received: AtomicU64,
    /// Publications that could not be sent to Redis (down, or the send failed): local
    /// subscribers got them, other instances did not.
    pub undeliverable: AtomicU64,
    /// Payloads from Redis refused by the envelope check (or on a channel not ours).
    pub invalid: AtomicU64,
    /// Probes that did not come back in time (each ends the connection).
    pub probe_failures: AtomicU64,
    /// Connections lost or refused, each followed by a reconnect after a backoff.
    pub reconnects: AtomicU64,
    /// Topic channels subscribed on the current connection.
    pub channels: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_statuses_and_codes_count_as_other() {
        let s = WorkerStats::default();
        s.count_handshake_failure(400);
        s.count_handshake_failure(599);
        s.count_close(1001);
        s.count_close(4000);
        s.count_rejected(RejectReason::PerIp);
        assert_eq!(s.handshake_failures[0].load(Ordering::Relaxed), 1);
        assert_eq!(
            s.handshake_failures[HANDSHAKE_STATUSES.len() - 1].load(Ordering::Relaxed),
            1
        );
        assert_eq!(s.closes[1].load(Ordering::Relaxed), 1);
        assert_eq!(s.closes[CLOSE_CODES.len() - 1].load(Ordering::Relaxed), 1);
        assert_eq!(s.rejected[1].load(Ordering::Relaxed), 1);
    }
}
