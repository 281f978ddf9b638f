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
    let v = Json::parse(&body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"));
    let Some(Json::Arr(workers)) = v.get("workers") else {
        panic!("/health has no workers: {body}");
    };
    workers
        .iter()
        .map(|w| match w.get("sends") {
            Some(Json::Num(n)) => *n as u64,
            other => panic!("/health worker sends is {other:?}: {body}"),
        })
        .sum()
}

/// One subscriber and one publisher on a one-worker pub/sub server with `WRITE_DELAY_MS` set.
fn setup(
    backend: wsd::io::Backend,
    delay_ms: u32,
    ctx: &str,
) -> (wsd::server::Server, PsClient, PsClient) {
    let server = start(backend, |cfg| {
        cfg.app = AppKind::Pubsub;
        cfg.cluster_workers = Workers::Count(1);
        cfg.write_delay_ms = delay_ms;
    });
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
        // Give the publication time to be queued (and held) before the PING.
        std::thread::sleep(Duration::from_millis(50));
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
        let stopper = std::thread::spawn(move || server.shutdown());
        let got = sub.messages(1, Duration::from_secs(5));
        assert_eq!(got[0].data(), "\"last\"", "{ctx}");
        match sub.event(Duration::from_secs(5)) {
            Event::Close(code) => assert_eq!(code, Some(1001), "{ctx}: close code"),
            other => panic!("{ctx}: expected the drain's close, got {other:?}"),
        }
        drop(sub);
        drop(publisher);
        stopper.join().expect("the server stopped");
    }
}
