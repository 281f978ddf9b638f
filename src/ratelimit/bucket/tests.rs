use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn rate(cap: u32, refill: u32) -> Rate {
    Rate::new(cap, refill).expect("valid rate")
}

#[test]
fn spends_refills_and_tells_when_to_retry() {
    let r = rate(10, 2); // 10 at once, one more every 500 ms
    let mut b = Bucket::full();
    let t0 = 5 * S;
    assert_eq!(b.tokens(t0, &r), 10);
    for _ in 0..10 {
        b.try_take(1, t0, &r).expect("within capacity");
    }
    assert_eq!(b.tokens(t0, &r), 0);
    assert_eq!(b.try_take(1, t0, &r), Err(Refused::RetryAfterMs(500)));
    assert_eq!(b.try_take(3, t0, &r), Err(Refused::RetryAfterMs(1500)));
    assert_eq!(b.try_take(11, t0, &r), Err(Refused::Never));
    // A refusal takes nothing.
    assert_eq!(b.tokens(t0 + 499 * MS, &r), 0);
    assert_eq!(
        b.try_take(1, t0 + 499 * MS, &r),
        Err(Refused::RetryAfterMs(1))
    );
    b.try_take(1, t0 + 500 * MS, &r).expect("refilled one");
    // Long idle: full again, never more than the capacity.
    assert_eq!(b.tokens(t0 + 3600 * S, &r), 10);
    for _ in 0..10 {
        b.try_take(1, t0 + 3600 * S, &r).expect("full");
    }
    assert!(b.try_take(1, t0 + 3600 * S, &r).is_err());
}

#[test]
fn costs_are_integers_and_zero_is_free() {
    let r = rate(10, 1);
    let mut b = Bucket::full();
    b.try_take(5, 0, &r).expect("5 of 10");
    b.try_take(5, 0, &r).expect("10 of 10");
    b.try_take(0, 0, &r).expect("free");
    assert_eq!(b.try_take(1, 0, &r), Err(Refused::RetryAfterMs(1000)));
    assert_eq!(b.try_take(10, 0, &r), Err(Refused::RetryAfterMs(10_000)));
}

#[test]
fn concurrent_takers_never_overspend() {
    let r = rate(10_000, 1);
    let bucket = Arc::new(AtomicBucket::full());
    let now = 100 * S; // frozen: nothing refills
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let bucket = bucket.clone();
            std::thread::spawn(move || {
                let mut taken = 0u32;
                for _ in 0..5_000 {
                    if bucket.try_take(1, now, &r).is_ok() {
                        taken += 1;
                    }
                }
                taken
            })
        })
        .collect();
    let total: u32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(total, 10_000, "exactly the capacity, no more, no less");
    assert_eq!(bucket.tokens(now, &r), 0);
}

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Take(u32),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..3 * S).prop_map(Step::Wait),
            (0u32..30).prop_map(Step::Take)
        ],
        1..200,
    )
}

proptest! {
    /// Against a bucket counted the obvious way (tokens as a fraction): the same answers, and
    /// never above capacity or below zero.
    #[test]
    fn matches_a_counting_bucket(cap in 1u32..50, refill in 1u32..50, steps in steps()) {
        let r = rate(cap, refill);
        let mut b = Bucket::full();
        let a = AtomicBucket::full();
        let mut now = 7 * S;
        // The model counts nanotoken units: one token = interval_ns units, refilled 1 per ns.
        let unit = r.interval_ns();
        let mut model = u64::from(cap) * unit;
        let mut spent = 0u64;
        for step in steps {
            match step {
                Step::Wait(ns) => {
                    now += ns;
                    model = (model + ns).min(u64::from(cap) * unit);
                }
                Step::Take(cost) => {
                    let want = u64::from(cost) * unit;
                    let got = b.try_take(cost, now, &r);
                    prop_assert_eq!(got, a.try_take(cost, now, &r));
                    match got {
                        Ok(()) => {
                            prop_assert!(want <= model, "took {} with {} units", want, model);
                            model -= want;
                            spent += u64::from(cost);
                        }
                        Err(Refused::Never) => prop_assert!(cost > cap),
                        Err(Refused::RetryAfterMs(ms)) => {
                            prop_assert!(want > model);
                            let wait = want - model;
                            prop_assert_eq!(ms, wait.div_ceil(MS));
                        }
                    }
                }
            }
            let tokens = b.tokens(now, &r);
            prop_assert!(tokens <= cap);
            prop_assert_eq!(u64::from(tokens), model / unit);
        }
        let _ = spent;
    }
}
