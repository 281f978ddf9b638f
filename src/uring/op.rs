//! What an io_uring completion belongs to: the operation kind, slot index and generation packed
//! into the 64-bit `user_data` the kernel hands back.

use crate::io::Token;

/// The kind of operation a submission carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// Multishot accept on the worker's listener.
    Accept = 1,
    /// Multishot receive on a connection, into the provided-buffer ring.
    Recv = 2,
    /// A send of the connection's in-flight buffer.
    Send = 3,
    /// Multishot poll on the worker's wake-up eventfd.
    Wake = 4,
    /// An async cancel of a connection's receive (its completion carries nothing we need).
    Cancel = 5,
    /// A completion another worker posted to this ring with MSG_RING: a wake-up.
    RingWake = 6,
    /// This worker's MSG_RING to another worker (completes only on failure).
    MsgRing = 7,
}

const GENERATION_BITS: u32 = 24;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;

/// Generations are compared modulo 2^24, the width `user_data` has room for.
pub fn generation24(generation: u32) -> u32 {
    (u64::from(generation) & GENERATION_MASK) as u32
}

/// Packs an operation for `user_data`: kind in the top byte, then 24 bits of generation, then the
/// 32-bit slot index.
pub fn pack(kind: OpKind, token: Token) -> u64 {
    (kind as u64) << 56
        | (u64::from(token.generation) & GENERATION_MASK) << 32
        | u64::from(token.index)
}

/// Unpacks `user_data`; `None` for a value wsd never submitted.
pub fn unpack(user_data: u64) -> Option<(OpKind, Token)> {
    let kind = match user_data >> 56 {
        1 => OpKind::Accept,
        2 => OpKind::Recv,
        3 => OpKind::Send,
        4 => OpKind::Wake,
        5 => OpKind::Cancel,
        6 => OpKind::RingWake,
        7 => OpKind::MsgRing,
        _ => return None,
    };
    let token = Token {
        index: user_data as u32,
        generation: ((user_data >> 32) & GENERATION_MASK) as u32,
    };
    Some((kind, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_truncates_generation() {
        for kind in [
            OpKind::Accept,
            OpKind::Recv,
            OpKind::Send,
            OpKind::Wake,
            OpKind::Cancel,
            OpKind::RingWake,
            OpKind::MsgRing,
        ] {
            for (index, generation) in [(0, 0), (7, 1), (u32::MAX, 0xFF_FFFF), (42, 0x1_000_005)] {
                let token = Token { index, generation };
                let (k, t) = unpack(pack(kind, token)).expect("packed value unpacks");
                assert_eq!(k, kind);
                assert_eq!(t.index, index);
                assert_eq!(t.generation, generation24(generation));
            }
        }
        assert!(unpack(0).is_none());
        assert!(unpack(9 << 56).is_none());
    }
}
