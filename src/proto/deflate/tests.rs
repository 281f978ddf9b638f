//! Round trips, limits and hostile input for the per-worker codec.

use flate2::{Compress, Compression, FlushCompress};

use super::{Codec, InflateError, RSV1, Window};
use crate::proto::frame::{Opcode, write_frame};

/// A 2 KiB JSON feed message, the payload of the fan-out benchmark.
fn json() -> Vec<u8> {
    let mut s = String::from(r#"{"type":"MESSAGE","payload":{"topic":"prices","data":["#);
    for i in 0..40 {
        s.push_str(&format!(
            r#"{{"sym":"S{i:03}","bid":{}.{:02},"ask":{}.{:02}}},"#,
            100 + i,
            i,
            101 + i,
            99 - i
        ));
    }
    s.push_str("0]}}");
    s.into_bytes()
}

/// `n` zero bytes compressed as one message the way a client would (sync flush, trailer cut).
fn zeros_compressed(n: usize) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let chunk = vec![0u8; 1 << 20];
    let mut out = Vec::with_capacity(n / 1000 + 1024);
    let mut left = n;
    while left > 0 {
        let take = left.min(chunk.len());
        let before = c.total_in();
        out.reserve(4096);
        c.compress_vec(&chunk[..take], &mut out, FlushCompress::None)
            .unwrap();
        left -= (c.total_in() - before) as usize;
    }
    loop {
        out.reserve(4096);
        c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
        if out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

#[test]
fn round_trips_in_both_windows() {
    let mut codec = Codec::new();
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    for data in [Vec::new(), b"a".to_vec(), json(), big] {
        for window in [Window::Wide, Window::Narrow] {
            let compressed = codec.deflate(&data, window).unwrap().to_vec();
            assert!(
                !compressed.ends_with(&[0, 0, 0xff, 0xff]),
                "trailer not stripped"
            );
            let inflated = codec.inflate(&compressed, data.len()).unwrap();
            assert_eq!(inflated, data.as_slice(), "{window:?} {}", data.len());
        }
    }
    // The JSON feed compresses well.
    let j = json();
    let c = codec.deflate(&j, Window::Wide).unwrap().len();
    assert!(c * 3 < j.len(), "{c} of {}", j.len());
}

#[test]
fn other_compressors_output_inflates() {
    // A final block (BFINAL=1), as one-shot compressors write it: the appended trailer follows
    // the end of the stream and is ignored.
    let data = json();
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(&data, &mut out, FlushCompress::Finish)
        .unwrap();
    let mut codec = Codec::new();
    assert_eq!(codec.inflate(&out, data.len()).unwrap(), data.as_slice());
    // Stored blocks only (level 0), trailer kept.
    let mut c = Compress::new(Compression::none(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(&data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert_eq!(codec.inflate(&out, data.len()).unwrap(), data.as_slice());
    // An empty message: the single byte 0x00 that many clients send, and nothing at all.
    assert_eq!(codec.inflate(&[0x00], 10).unwrap(), b"");
    assert_eq!(codec.inflate(&[], 10).unwrap(), b"");
}

#[test]
fn the_limit_is_exact() {
    let mut codec = Codec::new();
    let data = json();
    let compressed = codec.deflate(&data, Window::Wide).unwrap().to_vec();
    assert_eq!(
        codec.inflate(&compressed, data.len()).unwrap().len(),
        data.len()
    );
    assert_eq!(
        codec.inflate(&compressed, data.len() - 1),
        Err(InflateError::TooBig)
    );
    assert_eq!(codec.inflate(&compressed, 0), Err(InflateError::TooBig));
}

#[test]
fn a_bomb_stops_at_the_limit_without_growing_past_it() {
    // 64 MiB of zeros compress to about 64 KiB (DEFLATE's ratio is at most about 1032:1).
    let bomb = zeros_compressed(64 << 20);
    assert!(bomb.len() < 80 * 1024, "{}", bomb.len());
    let mut codec = Codec::new();
    let limit = 1 << 20;
    assert_eq!(codec.inflate(&bomb, limit), Err(InflateError::TooBig));
    assert!(
        codec.inflated.capacity() <= 2 * (limit + 1),
        "{}",
        codec.inflated.capacity()
    );
    codec.release();
    assert_eq!(codec.inflated.capacity(), 0);
    // The codec is usable afterwards.
    let c = codec
        .deflate(b"after the bomb", Window::Wide)
        .unwrap()
        .to_vec();
    assert_eq!(codec.inflate(&c, 100).unwrap(), b"after the bomb");
}

#[test]
fn corrupt_data_is_an_error_not_a_panic() {
    let mut codec = Codec::new();
    // BTYPE=11 is reserved.
    assert_eq!(
        codec.inflate(&[0xff, 0xff, 0xff], 1000),
        Err(InflateError::Corrupt)
    );
    // A stored block whose NLEN is not the complement of LEN.
    assert_eq!(
        codec.inflate(&[0x00, 0x05, 0x00, 0x00, 0x00, b'a'], 1000),
        Err(InflateError::Corrupt)
    );
    // A distance farther back than anything written.
    let mut bad = codec
        .deflate(b"abcabcabcabcabcabc", Window::Wide)
        .unwrap()
        .to_vec();
    bad.insert(0, 0x02);
    let _ = codec.inflate(&bad, 1000); // any answer, but no panic
    // Every prefix and every single-byte corruption of a real message.
    let good = codec.deflate(&json(), Window::Wide).unwrap().to_vec();
    for i in 0..good.len() {
        let _ = codec.inflate(&good[..i], 10_000);
        let mut flipped = good.clone();
        flipped[i] ^= 0x5a;
        let _ = codec.inflate(&flipped, 10_000);
    }
}

#[test]
fn frames_are_compressed_when_worth_it() {
    let mut codec = Codec::new();
    let data = json();
    let frame = codec
        .deflated_frame(Opcode::Text, &data, Window::Wide)
        .unwrap();
    assert_eq!(frame[0], 0x80 | RSV1 | 1);
    // Incompressible data stays plain.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    assert!(
        codec
            .deflated_frame(Opcode::Binary, &noise, Window::Wide)
            .is_none()
    );
}

#[test]
fn compress_frames_rewrites_only_what_qualifies() {
    let mut codec = Codec::new();
    let data = json();
    let mut out = b"HTTP".to_vec();
    write_frame(&mut out, Opcode::Text, b"short");
    write_frame(&mut out, Opcode::Text, &data);
    write_frame(
        &mut out,
        Opcode::Pong,
        b"ping payload that is long enough but a control frame...",
    );
    write_frame(&mut out, Opcode::Binary, &data);
    let before = out.clone();
    codec.compress_frames(&mut out, 4, 128, Window::Wide);
    assert!(out.starts_with(b"HTTP"));
    assert!(out.len() < before.len() - data.len());
    // Walk the result: short text plain, JSON compressed, pong plain, binary compressed.
    let mut pos = 4;
    let mut seen = Vec::new();
    while pos < out.len() {
        let crate::proto::frame::Decoded::Header(h, n) =
            crate::proto::frame::decode_header(&out[pos..]).unwrap()
        else {
            panic!("incomplete frame");
        };
        let payload = &out[pos + n..pos + n + h.payload_len as usize];
        let body = if h.rsv == 4 {
            codec.inflate(payload, 1 << 20).unwrap().to_vec()
        } else {
            payload.to_vec()
        };
        seen.push((h.opcode, h.rsv, body));
        pos += n + h.payload_len as usize;
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(
        (seen[0].0, seen[0].1, seen[0].2.as_slice()),
        (1, 0, b"short".as_slice())
    );
    assert_eq!((seen[1].0, seen[1].1), (1, 4));
    assert_eq!(seen[1].2, data);
    assert_eq!((seen[2].0, seen[2].1), (10, 0));
    assert_eq!((seen[3].0, seen[3].1), (2, 4));
    assert_eq!(seen[3].2, data);
    // Nothing to do: untouched.
    let mut small = Vec::new();
    write_frame(&mut small, Opcode::Text, b"tiny");
    let copy = small.clone();
    codec.compress_frames(&mut small, 0, 128, Window::Wide);
    assert_eq!(small, copy);
}
