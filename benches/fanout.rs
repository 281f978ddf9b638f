//! Criterion bench of fan-out enqueueing: one published frame queued on 1,000 subscribers of one
//! topic through the worker's real path (`TopicTable` lookup, `Deliver::send_to_all` over the
//! worker's connection slab with its budget checks, out-queues and buffer pool), then the turn's
//! flush (each queue taken as the driver would get it, its buffer back in the pool).
//!
//! Protects the user-space cost per delivery, the part of fan-out wsd controls (the rest is the
//! kernel's TCP send): it must stay free of allocation and reference counting per delivery for
//! small frames (copied) and free of copies for large ones (shared).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsd::config::BackpressurePolicy;
use wsd::pubsub::topics::TopicTable;
use wsd::worker::Budget;
use wsd::worker::bench::{DeliverBench, frame, frame_compressed};

const SUBSCRIBERS: usize = 1000;

fn fanout(c: &mut Criterion) {
    let budget = Budget::new(1 << 20, BackpressurePolicy::DropNewest);
    let mut g = c.benchmark_group("fanout_1000");
    for (label, data_len, per_turn) in [
        ("20 B data, 1 msg/turn", 20usize, 1usize),
        ("20 B data, 16 msgs/turn", 20, 16),
        ("1 KiB data (shared), 1 msg/turn", 1024, 1),
    ] {
        let mut conns = DeliverBench::new(SUBSCRIBERS, budget);
        let mut topics = TopicTable::default();
        for &conn in conns.conns() {
            topics.subscribe(conn, "room:42", 16).expect("subscribe");
        }
        let data = format!("\"{}\"", "x".repeat(data_len - 2));
        let message = frame("room:42", data.as_bytes());
        g.throughput(Throughput::Elements((SUBSCRIBERS * per_turn) as u64));
        g.bench_function(BenchmarkId::new(label, message.plain_frame().len()), |b| {
            b.iter(|| {
                let mut queued = 0;
                for _ in 0..per_turn {
                    let key = topics.key(black_box("room:42")).expect("topic");
                    queued += conns
                        .with_deliver(|d| d.send_to_all(topics.subscribers(key), None, &message));
                }
                assert_eq!(queued, (SUBSCRIBERS * per_turn) as u64);
                black_box(conns.complete_sends())
            });
        });
    }
    g.finish();
    compressed(c, budget);
}

/// A 2 KiB JSON message to 1,000 subscribers that all negotiated `permessage-deflate`: the cost
/// per delivery of choosing the compressed form and compressing it once per message, against the
/// same message with compression off.
fn compressed(c: &mut Criterion, budget: Budget) {
    let mut g = c.benchmark_group("fanout_1000_json_2k");
    let mut data = String::from("[");
    for i in 0..40 {
        data.push_str(&format!(
            r#"{{"sym":"S{i:03}","bid":{}.{:02},"ask":{}.{:02}}},"#,
            100 + i,
            i,
            101 + i,
            99 - i
        ));
    }
    data.push_str("0]");
    for (label, deflate) in [("compression off", false), ("compression shared", true)] {
        let mut conns = DeliverBench::with_compression(SUBSCRIBERS, budget, deflate);
        let mut topics = TopicTable::default();
        for &conn in conns.conns() {
            topics.subscribe(conn, "prices", 16).expect("subscribe");
        }
        g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        g.bench_function(BenchmarkId::new(label, data.len()), |b| {
            b.iter(|| {
                // A new message each time: its compression is part of the cost.
                let message = if deflate {
                    frame_compressed("prices", data.as_bytes())
                } else {
                    frame("prices", data.as_bytes())
                };
                let key = topics.key(black_box("prices")).expect("topic");
                let queued =
                    conns.with_deliver(|d| d.send_to_all(topics.subscribers(key), None, &message));
                assert_eq!(queued, SUBSCRIBERS as u64);
                black_box(conns.complete_sends())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
