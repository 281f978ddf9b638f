//! The pub/sub application driven by hostile sequences of client messages from four
//! connections: SUBSCRIBE, UNSUBSCRIBE, PUBLISH (with and without excludeSelf), PING, arbitrary
//! bytes, and disconnects, flushed through the worker's real fan-out sink. It must never panic,
//! and once every connection is gone no topic or subscription may be left behind.
//!
//! Input: a list of operations, one byte each (bits 0-1: which connection; bits 2-4: what;
//! bits 5-7: which of eight topics), an arbitrary-bytes operation taking a length byte and that
//! many bytes after it.

#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use wsd::app::{App, Outbox};
use wsd::config::BackpressurePolicy;
use wsd::proto::{Message, MessageKind};
use wsd::worker::Budget;
use wsd::worker::bench::{DeliverBench, pubsub_app};

const CONNS: usize = 4;
const TOPICS: [&str; 8] = ["a", "b", "room:1", "room:2", "x/y", "é", "a ", "t"];

fn envelope(kind: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"type":"{kind}","payload":{payload},"meta":{{"correlationId":"c"}}}}"#)
        .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Ok((mut app, shared)) = pubsub_app(3) else {
        return;
    };
    let budget = Budget::new(4096, BackpressurePolicy::DropOldest);
    let mut conns = DeliverBench::new(CONNS, budget);
    let ids = conns.conns().to_vec();
    let mut open = [true; CONNS];
    let mut ops = data.iter().copied();
    while let Some(op) = ops.next() {
        let who = usize::from(op & 3);
        let topic = TOPICS[usize::from(op >> 5)];
        let msg = match (op >> 2) & 7 {
            0 => envelope("SUBSCRIBE", &format!(r#"{{"topic":"{topic}"}}"#)),
            1 => envelope("UNSUBSCRIBE", &format!(r#"{{"topic":"{topic}"}}"#)),
            2 => envelope(
                "PUBLISH",
                &format!(r#"{{"topic":"{topic}","data":[{op}]}}"#),
            ),
            3 => envelope(
                "PUBLISH",
                &format!(r#"{{"topic":"{topic}","data":"x","excludeSelf":true}}"#),
            ),
            4 => envelope("SUBSCRIBE", &format!(r#"{{"topics":["{topic}","a","b"]}}"#)),
            5 => envelope("PING", "{}"),
            6 => {
                if open[who] {
                    app.on_close(ids[who]);
                    open[who] = false;
                }
                continue;
            }
            _ => {
                let len = usize::from(ops.next().unwrap_or(0));
                ops.by_ref().take(len).collect()
            }
        };
        if !open[who] {
            continue;
        }
        let kind = match std::str::from_utf8(&msg) {
            Ok(_) => MessageKind::Text,
            Err(_) => MessageKind::Binary,
        };
        let mut out = Vec::new();
        let result = app.on_message(
            ids[who],
            Message { kind, data: &msg },
            &mut Outbox::new(&mut out),
        );
        if result.is_err() {
            app.on_close(ids[who]);
            open[who] = false;
        }
        conns.with_deliver(|d| app.flush(d));
        conns.complete_sends();
    }
    for (who, id) in ids.iter().enumerate() {
        if open[who] {
            app.on_close(*id);
        }
    }
    conns.with_deliver(|d| app.flush(d));
    let stats = &shared.workers[0];
    assert_eq!(
        stats.topics.load(Ordering::Relaxed),
        0,
        "topics left behind"
    );
    assert_eq!(
        stats.subscriptions.load(Ordering::Relaxed),
        0,
        "subscriptions left behind"
    );
});
