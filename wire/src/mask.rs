//! Client-to-server payload masking (RFC 6455 §5.3), applied in place.
//!
//! Masking is a XOR with a 4-byte key that repeats over the payload. Because a frame's payload may
//! reach us in several receive buffers, [`apply_mask`] takes the slice's `offset` within the payload
//! so that unmasking can resume in the middle of a frame. The work is done eight bytes at a time in
//! safe code, which LLVM turns into vector instructions.

/// XORs `buf` in place with the mask `key`, where `buf[0]` is byte number `offset` of the frame payload.
///
/// Applying the same mask twice restores the original bytes.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that `k[0]` is the key byte for `buf[0]`.
    let mut k = key;
    k.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);

    let (words, tail) = buf.as_chunks_mut::<8>();
    for chunk in words {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    // Every full chunk is a multiple of 4 bytes long, so the tail starts at key byte k[0] again.
    for (byte, m) in tail.iter_mut().zip(k.iter().cycle()) {
        *byte ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::apply_mask;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn matches_naive_for_every_length_offset_and_alignment() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=64 {
            for offset in 0..4 {
                for start in 0..8 {
                    let mut a = pattern(start + len + 8);
                    let mut b = a.clone();
                    apply_mask(&mut a[start..start + len], key, offset);
                    naive(&mut b[start..start + len], key, offset);
                    assert_eq!(a, b, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn large_offsets_wrap() {
        let key = [1, 2, 3, 4];
        for offset in [4, 5, 1_000_001, usize::MAX] {
            let mut a = pattern(37);
            let mut b = a.clone();
            apply_mask(&mut a, key, offset);
            naive(&mut b, key, offset % 4);
            assert_eq!(a, b, "offset {offset}");
        }
    }

    #[test]
    fn twice_is_identity() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..=64 {
            for offset in 0..4 {
                let orig = pattern(len);
                let mut buf = orig.clone();
                apply_mask(&mut buf, key, offset);
                if len > 0 {
                    assert_ne!(buf, orig);
                }
                apply_mask(&mut buf, key, offset);
                assert_eq!(buf, orig);
            }
        }
    }

    #[test]
    fn resumes_mid_payload() {
        let key = [9, 8, 7, 6];
        let orig = pattern(100);
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..=100 {
            let mut parts = orig.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(parts, whole, "split {split}");
        }
    }
}
