//! `WRITE_DELAY_MS`: published messages wait up to the delay so several share one send, in
//! order and complete; a reply (PONG) is never delayed and takes the held messages with it; a
//! drain flushes what is held before its 1001 close; and with no delay nothing is held.
//!
//! Observed with real clients, on every backend, through the `sends` counter of `/health`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::config::Workers;

const MESSAGES: usize = 20;

/// Sends made by the server so far, over all workers (`/health`).
fn sends(addr: SocketAddr) -> u64 {
    let body = health(addr);
    let v = parse_json(&body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"));
    let Some(Json::Array(workers)) = v.get("workers") else {
        panic!("/health has no workers: {body}");
    };
    workers
        .iter()
        .map(|w| match w.get("sends").and_then(Json::as_u64) {
            Some(n) => n,
            other => panic!("/health worker sends is {other:?}: {body}"),
        })
        .sum()
}

/// A one-worker pub/sub server with `WRITE_DELAY_MS` set; `tweak` may change any other knob.
fn server(
    backend: wsd::io::Backend,
    delay_ms: u32,
    tweak: impl FnOnce(&mut wsd::config::Config),
) -> wsd::server::Server {
    start(backend, |cfg| {
        cfg.app = AppKind::Pubsub;
        cfg.cluster_workers = Workers::Count(1);
        cfg.write_delay_ms = delay_ms;
        tweak(cfg);
    })
}

/// One subscriber and one publisher on [`server`].
fn setup(
    backend: wsd::io::Backend,
    delay_ms: u32,
    ctx: &str,
) -> (wsd::server::Server, PsClient, PsClient) {
    let server = server(backend, delay_ms, |_| {});
    let addr = server.local_addr();
    let mut sub = PsClient::connect(addr, format!("{ctx} subscriber"));
    sub.subscribe("feed");
    let publisher = PsClient::connect(addr, format!("{ctx} publisher"));
    (server, sub, publisher)
}

/// Publishes `MESSAGES` messages 10 ms apart (each in a loop turn of its own), reads them all in
/// order, and returns the server's sends meanwhile.
fn paced_run(addr: SocketAddr, sub: &mut PsClient, publisher: &mut PsClient, ctx: &str) -> u64 {
    let before = sends(addr);
    for i in 0..MESSAGES {
        publisher.publish("feed", &i.to_string());
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = sub.messages(MESSAGES, Duration::from_secs(10));
    let seqs: Vec<String> = got.iter().map(|r| r.data().to_owned()).collect();
    let want: Vec<String> = (0..MESSAGES).map(|i| i.to_string()).collect();
    assert_eq!(seqs, want, "{ctx}: every message, in order");
    // The /health request itself is answered with one send, counted by the time it returns.
    sends(addr).saturating_sub(before + 1)
}

#[test]
fn held_messages_share_sends_and_arrive_in_order() {
    for backend in backends() {
        let ctx = format!("[{backend}] WRITE_DELAY_MS=500");
        let (server, mut sub, mut publisher) = setup(backend, 500, &ctx);
        let n = paced_run(server.local_addr(), &mut sub, &mut publisher, &ctx);
        // 20 publications over ~200 ms with a 500 ms delay: one send, two if a delay ended
        // mid-run.
        assert!(
            (1..=2).contains(&n),
            "{ctx}: {n} sends for {MESSAGES} messages"
        );
    }
}

#[test]
fn without_a_delay_each_turn_sends_at_once() {
    for backend in backends() {
        let ctx = format!("[{backend}] WRITE_DELAY_MS=0");
        let (server, mut sub, mut publisher) = setup(backend, 0, &ctx);
        let n = paced_run(server.local_addr(), &mut sub, &mut publisher, &ctx);
        // Publications 10 ms apart are loop turns of their own: a send each, unless the machine
        // stalled long enough to merge a few.
        assert!(
            n >= (MESSAGES / 2) as u64,
            "{ctx}: {n} sends for {MESSAGES} messages"
        );
    }
}

#[test]
fn a_reply_is_not_delayed_and_takes_the_held_messages_along() {
    for backend in backends() {
        let ctx = format!("[{backend}] WRITE_DELAY_MS=1000");
        let (_server, mut sub, mut publisher) = setup(backend, 1000, &ctx);
        publisher.publish("feed", "\"held\"");
        // Held: nothing arrives for a while.
        let early = sub.next_within(Duration::from_millis(200));
        assert!(early.is_none(), "{ctx}: not held: {early:?}");
        let asked = Instant::now();
        sub.ping();
        let took = asked.elapsed();
        let held = sub.take_backlog();
        assert_eq!(
            held.iter().map(|r| r.data()).collect::<Vec<_>>(),
            ["\"held\""],
            "{ctx}: the held message came before the PONG"
        );
        assert!(
            took < Duration::from_millis(700),
            "{ctx}: the PONG took {took:?}, as if it had waited for the 1000 ms write delay"
        );
    }
}

#[test]
fn a_drain_flushes_held_messages_before_its_close() {
    for backend in backends() {
        let ctx = format!("[{backend}] WRITE_DELAY_MS=1000");
        let (server, mut sub, mut publisher) = setup(backend, 1000, &ctx);
        publisher.publish("feed", "\"last\"");
        std::thread::sleep(Duration::from_millis(50));
        let stopped = Instant::now();
        let stopper = std::thread::spawn(move || server.shutdown());
        let got = sub.messages(1, Duration::from_secs(5));
        assert_eq!(got[0].data(), "\"last\"", "{ctx}");
        assert!(
            stopped.elapsed() < Duration::from_millis(700),
            "{ctx}: the drain waited {:?} for the 1000 ms write delay",
            stopped.elapsed()
        );
        match sub.event(Duration::from_secs(5)) {
            Event::Close(code) => assert_eq!(code, Some(1001), "{ctx}: close code"),
            other => panic!("{ctx}: expected the drain's close, got {other:?}"),
        }
        drop(sub);
        drop(publisher);
        stopper.join().expect("the server stopped");
    }
}

/// Bytes wsd holds for its peers (`wsd_queued_bytes` of worker 0, from `/metrics`).
fn queued_bytes(addr: SocketAddr) -> u64 {
    let m = http_request(addr, "GET", "/metrics", &[], b"");
    let text = String::from_utf8_lossy(&m.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("wsd_queued_bytes{worker=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wsd_queued_bytes in /metrics: {text}"))
}

/// A reply queued while a send is still in flight (the subscriber is not reading) goes as soon as
/// that send completes, even when a publication for the same subscriber comes after it.
#[test]
fn a_reply_behind_a_send_in_flight_is_not_held_by_a_later_publication() {
    for backend in backends() {
        let ctx = format!("[{backend}] WRITE_DELAY_MS=1000");
        // Room for everything published here (no drops), under the 1 MiB read pause.
        let server = server(backend, 1000, |cfg| cfg.max_backpressure = 900 * 1024);
        let addr = server.local_addr();
        let mut sub = PsClient::connect_small_rcvbuf(addr, format!("{ctx} subscriber"), 4096);
        sub.subscribe("feed");
        let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
        // Publish in rounds until a send stays in flight: the kernel takes well over a megabyte
        // from a peer that does not read before it stops taking more. Each round is under the
        // 1 MiB read pause, so wsd still reads the subscriber's PING below.
        let data = json_str(&"x".repeat(4096));
        const ROUND: usize = 150;
        let mut published = 0;
        let mut in_flight = 0;
        for _ in 0..8 {
            for _ in 0..ROUND {
                publisher.publish("feed", &data);
            }
            published += ROUND;
            // Past the delay: the round was handed to the kernel, and what it did not take is a
            // send still in flight.
            std::thread::sleep(Duration::from_millis(1100));
            in_flight = queued_bytes(addr);
            if in_flight > 0 {
                break;
            }
        }
        assert!(in_flight > 0, "{ctx}: no send stayed in flight");
        let c = cid("ping");
        sub.send(&envelope("PING", "{}", Some(&c)));
        std::thread::sleep(Duration::from_millis(100));
        publisher.publish("feed", "\"after\"");
        std::thread::sleep(Duration::from_millis(100));
        let reading = Instant::now();
        let pong = sub.next_reply();
        let took = reading.elapsed();
        assert_eq!(pong.kind, "PONG", "{ctx}: {}", pong.text);
        assert_eq!(
            sub.take_backlog().len(),
            published,
            "{ctx}: the messages before the PONG"
        );
        assert!(
            took < Duration::from_millis(500),
            "{ctx}: the PONG came {took:?} after reading began, as if held for the write delay"
        );
        let after = sub.messages(1, Duration::from_secs(5));
        assert_eq!(after[0].data(), "\"after\"", "{ctx}");
    }
}
