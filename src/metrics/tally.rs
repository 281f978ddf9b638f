//! What the worker measures for `/metrics` beyond plain increments: data frames in the bytes a
//! handler wrote, the status of a refused request, and the bytes queued for peers.
//!
//! Each is computed from what the worker already has in hand (the bytes just written, the
//! connections marked dirty this turn), so the hot path pays a few instructions and one relaxed
//! add per batch, never a pass over every connection.

use crate::io::Token;

/// How many data frames (text or binary, not continuations or control frames) `bytes` holds:
/// complete, unmasked server frames, as the protocol core and the applications write them.
/// Walks the headers only; stops at anything that is not a whole frame.
pub fn data_frames(mut bytes: &[u8]) -> u64 {
    let mut count = 0;
    while let [b0, b1, rest @ ..] = bytes {
        let (len, header) = match b1 & 0x7F {
            126 => match rest {
                [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
                _ => break,
            },
            127 => match rest.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(b) => (u64::from_be_bytes(b), 10),
                None => break,
            },
            n => (u64::from(n), 2),
        };
        let masked = if b1 & 0x80 != 0 { 4 } else { 0 };
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(header + masked))
        else {
            break;
        };
        if end > bytes.len() {
            break;
        }
        if matches!(b0 & 0x0F, 0x1 | 0x2) {
            count += 1;
        }
        bytes = &bytes[end..];
    }
    count
}

/// The status code of the HTTP response at the start of `bytes` (`HTTP/1.1 404 ...`).
pub fn response_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Bytes queued for peers (in out-queues and in flight), kept as a running total.
///
/// Every change to a connection's backlog marks it dirty (or its bytes would never be sent), so
/// the worker reports each dirty connection's backlog once per turn, after its flush, and each
/// closed connection once; the total is exact at the end of every turn. (Messages held for the
/// write delay do not mark their connection dirty: the fan-out reports those backlogs itself.) The last reported value
/// of each slab slot lives here (4 bytes per slot), not in the connection state.
#[derive(Debug, Default)]
pub struct QueuedBytes {
    total: u64,
    by_slot: Vec<u32>,
}

impl QueuedBytes {
    /// Records that `token`'s connection now has `backlog` bytes queued.
    pub fn set(&mut self, token: Token, backlog: usize) {
        let backlog = u32::try_from(backlog).unwrap_or(u32::MAX);
        let i = token.index as usize;
        if i >= self.by_slot.len() {
            if backlog == 0 {
                return;
            }
            self.by_slot.resize(i + 1, 0);
        }
        let old = std::mem::replace(&mut self.by_slot[i], backlog);
        self.total = self.total - u64::from(old) + u64::from(backlog);
    }

    /// The total across the worker's connections.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Opcode;
    use crate::proto::frame::write_frame;

    #[test]
    fn counts_data_frames_of_every_length_form() {
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Text, b"hi");
        write_frame(&mut out, Opcode::Pong, b"");
        write_frame(&mut out, Opcode::Binary, &[7; 300]);
        write_frame(&mut out, Opcode::Text, &[b'a'; 70_000]);
        write_frame(&mut out, Opcode::Close, &[3, 232]);
        assert_eq!(data_frames(&out), 3);
        assert_eq!(data_frames(&[]), 0);
        // A cut frame is not counted, and nothing after it is read.
        for cut in 0..out.len().min(400) {
            assert!(data_frames(&out[..cut]) <= 2, "cut at {cut}");
        }
        assert_eq!(data_frames(&out[..out.len() - 1]), 3);
    }

    #[test]
    fn reads_response_status() {
        assert_eq!(
            response_status(b"HTTP/1.1 426 Upgrade Required\r\n"),
            Some(426)
        );
        assert_eq!(response_status(b"HTTP/1.1 101 Switching"), Some(101));
        assert_eq!(response_status(b"HTTP/1.1 4x4"), None);
        assert_eq!(response_status(b"HTTP/1.1 40"), None);
        assert_eq!(response_status(b""), None);
    }

    #[test]
    fn queued_total_follows_each_slot() {
        let t = |index| Token {
            index,
            generation: 0,
        };
        let mut q = QueuedBytes::default();
        q.set(t(3), 100);
        q.set(t(0), 20);
        assert_eq!(q.total(), 120);
        q.set(t(3), 40);
        assert_eq!(q.total(), 60);
        q.set(t(0), 0);
        q.set(t(3), 0);
        q.set(t(900), 0);
        assert_eq!(q.total(), 0);
        assert_eq!(q.by_slot.len(), 4, "a zero backlog never grows the table");
    }
}
