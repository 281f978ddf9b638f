//! A coarse timer wheel of connection tokens (one-second slots), owned by one thread: the
//! worker's idle checks and the pub/sub application's token expiries each keep one.
//!
//! A token filed for a second comes back when the wheel is advanced past it; the owner then
//! looks at the connection and files it again if its deadline moved. A token may be filed more
//! than once; owners check that the deadline has really passed.
//!
//! Every open connection has a token in the idle wheel, so its slots are per-connection memory: a
//! slot's allocation goes with the tokens it hands back, so that a slot once filled by a burst of
//! connections does not keep that capacity for good (each check moves the tokens to another slot,
//! and a wheel that kept every slot's largest size would hold several copies of the table).

use crate::io::Token;

/// Slots in the wheel; a check further ahead than this waits in the last slot and is re-filed.
const SLOTS: u32 = 512;

/// A timer wheel of connection tokens, one-second resolution.
#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<Token>>,
    /// The second (since the worker started) whose slot was processed last.
    cursor: u32,
}

impl Default for TimerWheel {
    fn default() -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
        }
    }
}

impl TimerWheel {
    /// Files `token` for a check at second `due` (at least the next second).
    pub fn schedule(&mut self, token: Token, due: u32) {
        let due = due.clamp(self.cursor + 1, self.cursor + SLOTS);
        self.slots[(due % SLOTS) as usize].push(token);
    }

    /// Moves the cursor to second `now`, handing every token filed in the passed slots to `out`.
    pub fn advance(&mut self, now: u32, out: &mut Vec<Token>) {
        while self.cursor < now {
            self.cursor += 1;
            let slot = &mut self.slots[(self.cursor % SLOTS) as usize];
            if out.is_empty() && out.capacity() <= slot.capacity() {
                // The slot's allocation moves to `out` (no copy); the slot keeps `out`'s, empty
                // and no larger.
                std::mem::swap(out, slot);
            } else {
                out.append(slot);
                *slot = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_hands_back_tokens_when_due_and_files_far_ones_at_the_end() {
        let mut wheel = TimerWheel::default();
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

    #[test]
    fn a_drained_slot_keeps_no_large_allocation() {
        let mut wheel = TimerWheel::default();
        for index in 0..1000 {
            wheel.schedule(
                Token {
                    index,
                    generation: 0,
                },
                3,
            );
        }
        let mut out = Vec::new();
        wheel.advance(3, &mut out);
        assert_eq!(out.len(), 1000);
        assert_eq!(
            wheel.slots[3].capacity(),
            0,
            "the slot's allocation went to `out`"
        );
        // Handed back again into a non-empty `out`: the slot's allocation is freed.
        for index in 0..1000 {
            wheel.schedule(
                Token {
                    index,
                    generation: 0,
                },
                5,
            );
        }
        wheel.advance(5, &mut out);
        assert_eq!(out.len(), 2000);
        assert_eq!(wheel.slots[5].capacity(), 0);
        assert!(wheel.slots.iter().all(|s| s.capacity() == 0));
    }
}
