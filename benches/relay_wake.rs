//! Criterion bench of a cross-worker wake-up round trip on the io_uring driver: worker A wakes
//! worker B (asleep in `io_uring_enter`), B wakes A back, through `Driver::wake_worker` with each
//! of the two mechanisms (`RelayWake::Eventfd`, `RelayWake::MsgRing`).
//!
//! Protects the relay's hand-off latency and the choice of `RelayWake::DEFAULT`: every turn in
//! which a worker relays messages to a sleeping worker pays one such wake-up. Skipped (no
//! measurement) where io_uring cannot be set up.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wsd::io::{Driver, Event, Waker};
use wsd::uring::{RelayWake, UringDriver, UringParams};

fn listener() -> OwnedFd {
    OwnedFd::from(TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
}

fn driver(waker: Waker, mode: RelayWake) -> Option<UringDriver> {
    let params = UringParams {
        recv_buffers: 8,
        recv_buf_size: 4096,
        relay_wake: mode,
        ..UringParams::default()
    };
    UringDriver::new(listener(), None, waker, params).ok()
}

/// Turns `d` until it reports a wake-up.
fn wait_woken(d: &mut UringDriver, stop: Option<&AtomicBool>) -> bool {
    loop {
        let mut woken = false;
        let _ = d.turn(Duration::from_millis(50), |e| {
            woken |= matches!(e, Event::Woken)
        });
        if woken {
            return true;
        }
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return false;
        }
    }
}

fn relay_wake(c: &mut Criterion) {
    if wsd::uring::probe().is_err() {
        eprintln!("relay_wake: io_uring unavailable, skipped");
        return;
    }
    let mut g = c.benchmark_group("relay_wake_round_trip");
    for (name, mode) in [
        ("eventfd", RelayWake::Eventfd),
        ("msg_ring", RelayWake::MsgRing),
    ] {
        let (wa, wb) = (
            Waker::new().expect("eventfd"),
            Waker::new().expect("eventfd"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let b = {
            let (wa, wb, stop) = (wa.clone(), wb.clone(), stop.clone());
            std::thread::spawn(move || {
                let Some(mut d) = driver(wb, mode) else {
                    let _ = ready_tx.send(false);
                    return;
                };
                let _ = ready_tx.send(true);
                while wait_woken(&mut d, Some(&stop)) {
                    d.wake_worker(&wa);
                }
            })
        };
        let ready = ready_rx.recv().unwrap_or(false);
        let a = ready.then(|| driver(wa, mode)).flatten();
        if let Some(mut a) = a {
            g.bench_function(BenchmarkId::new(name, "A->B->A"), |bench| {
                bench.iter(|| {
                    a.wake_worker(&wb);
                    wait_woken(&mut a, None)
                });
            });
        } else {
            eprintln!("relay_wake: {name}: driver setup failed, skipped");
        }
        stop.store(true, Ordering::Relaxed);
        wb.wake();
        let _ = b.join();
    }
    g.finish();
}

criterion_group!(benches, relay_wake);
criterion_main!(benches);
