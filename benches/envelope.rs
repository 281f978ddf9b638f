//! Criterion bench of envelope parsing (`wsd::envelope::parse`) for a typical SUBSCRIBE and
//! PUBLISH.
//!
//! Protects the per-request cost of the pub/sub protocol: every client message is parsed once
//! (simd-json tape, then the envelope fields), and a publisher's PUBLISH rate is bounded by it.
//! A regression here shows first in publish-heavy loads, before fan-out does.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsd::envelope::{Request, Scratch, parse};

const SUBSCRIBE: &[u8] =
    br#"{"type":"SUBSCRIBE","payload":{"topic":"room:42"},"meta":{"correlationId":"c-17"}}"#;
const PUBLISH_SMALL: &[u8] = br#"{"type":"PUBLISH","payload":{"topic":"room:42","data":{"seq":123456,"ts":1763900000000000000,"pub":0}}}"#;

fn publish_1k() -> Vec<u8> {
    let pad = "x".repeat(900);
    format!(
        r#"{{"type":"PUBLISH","payload":{{"topic":"room:42","data":{{"user":"alice","text":"{pad}","tags":["a","b"],"n":1.5}}}},"meta":{{"correlationId":"c-18"}}}}"#
    )
    .into_bytes()
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope_parse");
    let big = publish_1k();
    let cases: [(&str, &[u8]); 3] = [
        ("SUBSCRIBE", SUBSCRIBE),
        ("PUBLISH small", PUBLISH_SMALL),
        ("PUBLISH 1 KiB", &big),
    ];
    let mut scratch = Scratch::default();
    for (name, msg) in cases {
        // Each case must parse to the request it names.
        match parse(msg, &mut scratch).map(|e| e.request) {
            Ok(Request::Subscribe { .. }) if name.starts_with("SUB") => {}
            Ok(Request::Publish { .. }) if name.starts_with("PUB") => {}
            other => panic!("{name}: unexpected parse result {other:?}"),
        }
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(BenchmarkId::new(name, msg.len()), |b| {
            b.iter(|| {
                let envelope = parse(black_box(msg), &mut scratch);
                black_box(envelope.is_ok())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
