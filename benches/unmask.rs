//! Criterion bench of client payload unmasking (`wsd::proto::mask::apply_mask`) from 16 B to 1 MiB.
//!
//! Protects the one pass every received byte takes: unmasking runs in place over each client
//! payload, so its bytes/s bounds large-message echo (the 16 KiB scenario) and must stay word-wide
//! (vectorized) rather than byte by byte. The `offset 3` case is the resume-in-the-middle-of-a-frame
//! path taken when a payload spans receive buffers.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsd::proto::mask::apply_mask;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_mask");
    for size in [16usize, 128, 1024, 16 * 1024, 1 << 20] {
        let mut buf: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("offset 0", size), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 0));
        });
        if size == 16 * 1024 {
            g.bench_function(BenchmarkId::new("offset 3", size), |b| {
                b.iter(|| apply_mask(black_box(&mut buf), KEY, 3));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, unmask);
criterion_main!(benches);
