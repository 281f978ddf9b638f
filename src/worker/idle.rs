//! Liveness: a per-worker coarse timer wheel (1-second slots) for idle connections.
//!
//! Each open connection sits in exactly one slot. When its slot comes round, the worker looks at
//! the last time the peer sent anything: past `IDLE_TIMEOUT` it is closed with 1001; past half of
//! it (with `SEND_PINGS`) it is pinged once, so a healthy idle client answers and stays; otherwise
//! it moves to the slot of its next check. Only bytes *received* count as activity: the server's own
//! sends never reset the clock, so a push-only server still reaps dead clients.

pub use crate::wheel::TimerWheel as IdleWheel;

/// What an idle check decides for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Silent for the whole timeout: close with 1001.
    Close,
    /// Silent for half of it: ping now, check again at the given second.
    Ping(u32),
    /// Heard from recently: check again at the given second.
    Later(u32),
}

/// Decides for a connection last heard from at second `last_rx`, pinged since then or not.
pub fn verdict(now: u32, last_rx: u32, pinged: bool, timeout: u32, send_pings: bool) -> Verdict {
    let timeout = timeout.max(1);
    let half = (timeout / 2).max(1);
    if now >= last_rx.saturating_add(timeout) {
        Verdict::Close
    } else if send_pings && !pinged && now >= last_rx.saturating_add(half) {
        Verdict::Ping(last_rx.saturating_add(timeout))
    } else if send_pings && !pinged {
        Verdict::Later(last_rx.saturating_add(half))
    } else {
        Verdict::Later(last_rx.saturating_add(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_last_received_byte() {
        // 120 s timeout, pings on.
        assert_eq!(verdict(10, 0, false, 120, true), Verdict::Later(60));
        assert_eq!(verdict(60, 0, false, 120, true), Verdict::Ping(120));
        assert_eq!(verdict(90, 0, true, 120, true), Verdict::Later(120));
        assert_eq!(verdict(120, 0, true, 120, true), Verdict::Close);
        assert_eq!(
            verdict(120, 100, false, 120, true),
            Verdict::Later(160),
            "heard from at 100"
        );
        // Pings off: only the close.
        assert_eq!(verdict(60, 0, false, 120, false), Verdict::Later(120));
        assert_eq!(verdict(121, 0, false, 120, false), Verdict::Close);
        // A 1-second timeout still works.
        assert_eq!(verdict(1, 0, false, 1, true), Verdict::Close);
    }
}
