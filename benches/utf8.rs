//! Criterion bench of text validation: `wsd::proto::utf8::is_valid` and the streaming `Utf8Stream::feed`.
//!
//! Protects the per-byte cost of text messages: every text payload is validated before the
//! application sees it, whole (`is_valid`) or, when it arrives in pieces, through `Utf8Stream`, whose
//! stitching of code points cut by a chunk boundary must stay a small fixed cost on top of simdutf8.
//! ASCII is the common case (JSON envelopes); multi-byte text exercises the slow paths.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsd::proto::utf8::{Utf8Stream, is_valid};

/// `len` bytes of valid text built from `unit`, cut back to a character boundary.
fn text(unit: &str, len: usize) -> Vec<u8> {
    let mut s = unit.repeat(len / unit.len() + 1);
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let ascii = r#"{"type":"PUBLISH","payload":{"topic":"room:42","data":{"n":1}}} "#;
    // 1-, 2-, 3- and 4-byte code points mixed.
    let multi = "héllo wörld — ünïcödé 日本語のテキスト 🎉🚀 ";
    let mut v = Vec::new();
    for (kind, unit) in [("ascii", ascii), ("multibyte", multi)] {
        for size in [1024usize, 64 * 1024] {
            v.push((kind, text(unit, size)));
        }
    }
    v
}

fn whole(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_is_valid");
    for (kind, data) in inputs() {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::new(kind, data.len()), &data, |b, d| {
            b.iter(|| is_valid(black_box(d)));
        });
    }
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_stream_feed");
    for (kind, data) in inputs() {
        g.throughput(Throughput::Bytes(data.len() as u64));
        // One chunk: a message that arrived in one receive buffer.
        g.bench_with_input(
            BenchmarkId::new(format!("{kind}/1 chunk"), data.len()),
            &data,
            |b, d| {
                b.iter(|| {
                    let mut s = Utf8Stream::new();
                    s.feed(black_box(d)).and_then(|()| s.finish()).is_ok()
                });
            },
        );
        // Chunks of 1000 bytes, which cut multi-byte code points and take the stitch path.
        g.bench_with_input(
            BenchmarkId::new(format!("{kind}/1000 B chunks"), data.len()),
            &data,
            |b, d| {
                b.iter(|| {
                    let mut s = Utf8Stream::new();
                    d.chunks(1000)
                        .try_for_each(|chunk| s.feed(black_box(chunk)))
                        .and_then(|()| s.finish())
                        .is_ok()
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, whole, streaming);
criterion_main!(benches);
