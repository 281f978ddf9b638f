//! Criterion bench of the one-shot compression of a published message (compressed once per
//! publish for all subscribers that negotiated permessage-deflate): `flate2` on the zlib-rs
//! backend (raw DEFLATE, sync flush, what `proto::deflate::Codec` uses) against `libdeflater`
//! (libdeflate, one-shot, a final block), at the fast and the default level, on a 2 KiB JSON
//! feed message and a 16 KiB one. The figures are in BENCHMARKS.md ("Compression") and at
//! `proto::deflate::LEVEL`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flate2::{Compress, FlushCompress};
use libdeflater::{CompressionLvl, Compressor};
use wsd::proto::deflate::{Codec, Window};

fn json(rows: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"type":"MESSAGE","payload":{"topic":"prices","data":["#);
    for i in 0..rows {
        s.push_str(&format!(
            r#"{{"sym":"S{i:03}","bid":{}.{:02},"ask":{}.{:02},"ts":{}}},"#,
            100 + i % 97,
            i % 100,
            101 + i % 89,
            99 - i % 100,
            1_733_200_000_000u64 + i as u64 * 17
        ));
    }
    s.push_str("0]}}");
    s.into_bytes()
}

fn deflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate_one_shot");
    for data in [json(30), json(240)] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        for level in [1u32, 6] {
            let mut z = Compress::new(flate2::Compression::new(level), false);
            let mut out = Vec::with_capacity(data.len() + 64);
            g.bench_function(
                BenchmarkId::new(format!("flate2-zlib-rs-{level}"), data.len()),
                |b| {
                    b.iter(|| {
                        z.reset();
                        out.clear();
                        z.compress_vec(black_box(&data), &mut out, FlushCompress::Sync)
                            .expect("compress");
                        black_box(out.len())
                    });
                },
            );
            let mut d = Compressor::new(CompressionLvl::new(level as i32).expect("level"));
            let mut out = vec![0u8; d.deflate_compress_bound(data.len())];
            g.bench_function(
                BenchmarkId::new(format!("libdeflater-{level}"), data.len()),
                |b| {
                    b.iter(|| {
                        black_box(
                            d.deflate_compress(black_box(&data), &mut out)
                                .expect("compress"),
                        )
                    });
                },
            );
        }
        let mut codec = Codec::new();
        g.bench_function(
            BenchmarkId::new("Codec::deflate (as used)", data.len()),
            |b| {
                b.iter(|| {
                    black_box(
                        codec
                            .deflate(black_box(&data), Window::Wide)
                            .map(<[u8]>::len),
                    )
                });
            },
        );
    }
    g.finish();
    // Sizes, for the record.
    for data in [json(30), json(240)] {
        for level in [1u32, 6] {
            let mut z = Compress::new(flate2::Compression::new(level), false);
            let mut out = Vec::with_capacity(data.len() + 64);
            z.compress_vec(&data, &mut out, FlushCompress::Sync)
                .expect("compress");
            let mut d = Compressor::new(CompressionLvl::new(level as i32).expect("level"));
            let mut buf = vec![0u8; d.deflate_compress_bound(data.len())];
            let n = d.deflate_compress(&data, &mut buf).expect("compress");
            println!(
                "{} bytes, level {level}: flate2/zlib-rs {} bytes (-4 trailer), libdeflater {n} bytes",
                data.len(),
                out.len()
            );
        }
    }
}

criterion_group!(benches, deflate);
criterion_main!(benches);
