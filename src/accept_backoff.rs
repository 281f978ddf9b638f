//! A rest for the listener after `accept` fails for lack of descriptors or memory (`EMFILE`,
//! `ENFILE`, `ENOBUFS`, `ENOMEM`). Retrying such a failure every loop turn spins the worker at
//! full CPU while it serves nothing new (measured before this: 0.54 s of CPU per second on epoll,
//! 0.79 on io_uring, out of descriptors) and floods the log; resting lets the kernel keep new
//! connections in the listener's backlog until descriptors free up, and the failure is logged
//! once per [`LOG_EVERY`] with a count.
//!
//! Both drivers hold one: they ask [`AcceptBackoff::resting`] before arming or watching the
//! listener and cap their wait with [`AcceptBackoff::cap`] so the rest ends on time.
#![forbid(unsafe_code)]

use std::io;
use std::time::{Duration, Instant};

use tracing::warn;

/// How long the listener rests after an exhaustion failure.
pub const REST: Duration = Duration::from_millis(100);
/// At most one log line per this long while failures go on.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether `errno` (positive) means the process or the kernel is out of descriptors or memory.
pub fn is_exhaustion(errno: i32) -> bool {
    [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].contains(&errno)
}

/// One listener's rest state.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The rest ends at this instant.
    until: Option<Instant>,
    /// When the last log line was written.
    logged: Option<Instant>,
    /// Failures since the last log line.
    unlogged: u64,
}

impl AcceptBackoff {
    /// Records an exhaustion failure at `now`: the listener rests for [`REST`].
    pub fn fail(&mut self, err: &io::Error, now: Instant) {
        self.until = Some(now + REST);
        self.unlogged += 1;
        if self
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            warn!(
                error = %err,
                failures = self.unlogged,
                rest_ms = REST.as_millis() as u64,
                "accept failed: out of descriptors or memory; new connections wait in the backlog"
            );
            self.logged = Some(now);
            self.unlogged = 0;
        }
    }

    /// Whether the listener is resting at `now`.
    pub fn resting(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// `timeout`, shortened so a wait ends when the rest does.
    pub fn cap(&self, timeout: Duration, now: Instant) -> Duration {
        match self.until {
            Some(until) if now < until => timeout.min(until - now),
            _ => timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_rests_the_listener_for_the_rest_and_caps_waits() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        assert!(!b.resting(t0));
        assert_eq!(b.cap(Duration::from_secs(1), t0), Duration::from_secs(1));
        b.fail(&io::Error::from_raw_os_error(libc::EMFILE), t0);
        assert!(b.resting(t0));
        assert!(b.resting(t0 + REST / 2));
        assert!(!b.resting(t0 + REST));
        assert_eq!(b.cap(Duration::from_secs(1), t0), REST);
        assert_eq!(
            b.cap(Duration::from_millis(10), t0),
            Duration::from_millis(10)
        );
        assert_eq!(
            b.cap(Duration::from_secs(1), t0 + REST),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn only_exhaustion_errors_rest() {
        for e in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_exhaustion(e), "{e}");
        }
        for e in [libc::EAGAIN, libc::ECONNABORTED, libc::EINTR, libc::EINVAL] {
            assert!(!is_exhaustion(e), "{e}");
        }
    }

    #[test]
    fn failures_are_logged_once_per_interval_with_a_count() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let err = io::Error::from_raw_os_error(libc::EMFILE);
        b.fail(&err, t0);
        assert_eq!((b.logged, b.unlogged), (Some(t0), 0));
        for i in 1..=5 {
            b.fail(&err, t0 + REST * i);
        }
        assert_eq!(
            (b.logged, b.unlogged),
            (Some(t0), 5),
            "no line inside LOG_EVERY"
        );
        b.fail(&err, t0 + LOG_EVERY);
        assert_eq!((b.logged, b.unlogged), (Some(t0 + LOG_EVERY), 0));
    }
}
