//! Criterion bench of the rate-limit buckets on the message path: a connection's own bucket, the
//! identity's shared atomic bucket alone, and the shared bucket while another thread takes from it
//! too (two workers serving one identity: the case that decides between one shared atomic bucket
//! and per-worker shares of the budget). Also the topic-pattern check a SUBSCRIBE or PUBLISH pays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wsd::access::pattern::TemplateList;
use wsd::ratelimit::{AtomicBucket, Bucket, Rate};

fn rate() -> Rate {
    // Never refuses at these rates: every take does the full update.
    Rate::new(1_000_000, 1_000_000).expect("rate")
}

fn buckets(c: &mut Criterion) {
    let r = rate();
    let mut g = c.benchmark_group("ratelimit");
    g.bench_function("connection bucket", |b| {
        let mut bucket = Bucket::full();
        let mut now = 0u64;
        b.iter(|| {
            now += 1_000;
            std::hint::black_box(bucket.try_take(1, std::hint::black_box(now), &r))
        });
    });
    g.bench_function("shared bucket, one thread", |b| {
        let bucket = AtomicBucket::full();
        let mut now = 0u64;
        b.iter(|| {
            now += 1_000;
            std::hint::black_box(bucket.try_take(1, std::hint::black_box(now), &r))
        });
    });
    g.bench_function("shared bucket, another thread taking too", |b| {
        let bucket = Arc::new(AtomicBucket::full());
        let stop = Arc::new(AtomicBool::new(false));
        let other = {
            let (bucket, stop) = (bucket.clone(), stop.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = start.elapsed().as_nanos() as u64;
                    let _ = bucket.try_take(1, now, &r);
                }
            })
        };
        let start = Instant::now();
        b.iter(|| {
            let now = start.elapsed().as_nanos() as u64;
            std::hint::black_box(bucket.try_take(1, now, &r))
        });
        stop.store(true, Ordering::Relaxed);
        let _ = other.join();
    });
    g.finish();

    let mut g = c.benchmark_group("rights");
    let list = TemplateList::parse_comma("news:>,user:{sub}:>,chat:*").expect("list");
    let set = list.bind(Some("alice"));
    let everything = TemplateList::parse_comma(">").expect("list").bind(None);
    g.bench_function("3 patterns, third matches", |b| {
        b.iter(|| std::hint::black_box(set.allows(std::hint::black_box("chat:room-17"))))
    });
    g.bench_function("3 patterns, none matches", |b| {
        b.iter(|| std::hint::black_box(set.allows(std::hint::black_box("secret:room-17"))))
    });
    g.bench_function("`>` (everything)", |b| {
        b.iter(|| std::hint::black_box(everything.allows(std::hint::black_box("chat:room-17"))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = buckets
}
criterion_main!(benches);
