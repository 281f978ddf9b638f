//! Liveness: a per-worker coarse timer wheel (1-second slots) for idle connections.
//!
//! Each open connection sits in exactly one slot. When its slot comes round, the worker looks at
//! the last time the peer sent anything: past `IDLE_TIMEOUT` it is closed with 1001; past half of
//! it (with `SEND_PINGS`) it is pinged once, so a healthy idle client answers and stays; otherwise
//! it moves to the slot of its next check. Only bytes *received* count as activity: the server's own
//! sends never reset the clock, so a push-only server still reaps dead clients.

use crate::io::Token;

/// Slots in the wheel; a check further ahead than this waits in the last slot and is re-filed.
const SLOTS: u32 = 512;

/// A timer wheel of connection tokens, one-second resolution.
#[derive(Debug)]
pub struct IdleWheel {
    slots: Vec<Vec<Token>>,
    /// The second (since the worker started) whose slot was processed last.
    cursor: u32,
}

impl Default for IdleWheel {
    fn default() -> Self {
        IdleWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
        }
    }
}

impl IdleWheel {
    /// Files `token` for a check at second `due` (at least the next second).
    pub fn schedule(&mut self, token: Token, due: u32) {
        let due = due.clamp(self.cursor + 1, self.cursor + SLOTS);
        self.slots[(due % SLOTS) as usize].push(token);
    }

    /// Moves the cursor to second `now`, handing every token filed in the passed slots to `out`.
    pub fn advance(&mut self, now: u32, out: &mut Vec<Token>) {
        while self.cursor < now {
            self.cursor += 1;
            out.append(&mut self.slots[(self.cursor % SLOTS) as usize]);
        }
    }
}

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

    #[test]
    fn the_wheel_hands_back_tokens_when_due_and_files_far_ones_at_the_end() {
        let mut wheel = IdleWheel::default();
        let a = Token {
            index: 1,
            generation: 0,
        };
        let b = Token {
            index: 2,
            generation: 0,
        };
        wheel.schedule(a, 5);
        wheel.schedule(b, 10_000);
        let mut out = Vec::new();
        wheel.advance(4, &mut out);
        assert!(out.is_empty());
        wheel.advance(5, &mut out);
        assert_eq!(out, [a]);
        out.clear();
        wheel.advance(SLOTS, &mut out);
        assert_eq!(
            out,
            [b],
            "a far deadline comes back for re-filing within one revolution"
        );
        out.clear();
        wheel.schedule(a, 0);
        wheel.advance(SLOTS + 1, &mut out);
        assert_eq!(out, [a], "a past deadline fires on the next second");
    }
}
