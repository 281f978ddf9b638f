//! Criterion bench of RFC 6455 frame headers: `decode_header` on every length form and `write_frame` encode.
//!
//! Protects the per-frame fixed cost: every received frame goes through `decode_header` and every
//! echoed or published message through `write_frame`. A regression here shows up directly in server
//! CPU µs per message for small messages (the 20-byte echo scenario), where framing is most of the
//! work the server does outside the kernel.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsd::proto::Opcode;
use wsd::proto::frame::{Decoded, MAX_HEADER, decode_header, encode_header, write_frame};

/// A header for a payload of `len` bytes, masked (as clients send) or not, plus a few payload bytes after it.
fn header(len: u64, mask: Option<[u8; 4]>) -> (Vec<u8>, usize) {
    let mut buf = [0u8; MAX_HEADER];
    let n = encode_header(&mut buf, true, Opcode::Binary, mask, len);
    let mut v = buf[..n].to_vec();
    v.extend_from_slice(&[0xab; 16]);
    (v, n)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_header");
    // Payload lengths that select the 7-bit, 16-bit and 64-bit length forms.
    for (form, len) in [("len7", 20u64), ("len16", 16_384), ("len64", 1 << 20)] {
        for (kind, mask) in [("unmasked", None), ("masked", Some([1, 2, 3, 4]))] {
            let (bytes, n) = header(len, mask);
            let id = BenchmarkId::new(kind, format!("{form} ({n} B)"));
            g.throughput(Throughput::Bytes(n as u64));
            g.bench_with_input(id, &bytes, |b, bytes| {
                b.iter(|| match decode_header(black_box(bytes)) {
                    Ok(Decoded::Header(h, used)) => (h.payload_len, used),
                    _ => (0, 0),
                });
            });
        }
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("write_frame");
    for size in [20usize, 1024, 16 * 1024, 64 * 1024] {
        let payload = vec![b'x'; size];
        let mut out = Vec::with_capacity(size + MAX_HEADER);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                write_frame(&mut out, Opcode::Text, black_box(p));
                black_box(out.len())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
