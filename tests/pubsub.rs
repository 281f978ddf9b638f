//! The pub/sub application (`WSD_APP=pubsub`; docs/PROTOCOL.md) with
//! real clients on two workers, on every backend: fan-out to subscribers on both workers,
//! per-publisher order, byte-for-byte `data`, UNSUBSCRIBE and disconnect clean-up, `excludeSelf`,
//! every malformed envelope, the subscription limit, the three backpressure policies, the read
//! pause for a client that does not read, and `POST /publish`.
//!
//! Every read has a timeout (tests/common/pubsub.rs), so a silent server fails a test instead of
//! hanging it.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::config::{BackpressurePolicy, Config, Workers};
use wsd::io::Backend;
use wsd::server::Server;
use wsd::uring::RelayWake;

/// A pub/sub server on two workers; `tweak` may change any knob.
fn start_pubsub(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
    start(backend, |cfg| {
        cfg.app = AppKind::Pubsub;
        cfg.cluster_workers = Workers::Count(2);
        tweak(cfg);
    })
}

/// Opens `n` clients subscribed to `topics`, waits for every ACK, and checks that /health shows
/// subscribers on both workers.
fn subscribers(addr: SocketAddr, n: usize, topics: &[&str], ctx: &str) -> Vec<PsClient> {
    let mut subs: Vec<PsClient> = (0..n)
        .map(|i| PsClient::connect(addr, format!("{ctx} sub{i}")))
        .collect();
    for (i, s) in subs.iter_mut().enumerate() {
        let c = format!("{ctx}-sub{i}");
        let list: Vec<String> = topics.iter().map(|t| json_str(t)).collect();
        let payload = if topics.len() == 1 {
            format!(r#"{{"topic":{}}}"#, list[0])
        } else {
            format!(r#"{{"topics":[{}]}}"#, list.join(","))
        };
        s.expect_ack(&envelope("SUBSCRIBE", &payload, Some(&c)), &c, "SUBSCRIBE");
    }
    let st = stats(addr);
    assert_eq!(st.len(), 2, "{ctx}: two workers: {st:?}");
    assert!(
        st.iter().all(|w| w.subscriptions > 0),
        "{ctx}: {n} subscribers should be spread over both workers: {st:?}"
    );
    subs
}

/// The `seq` field of a JSON object (raw text).
fn seq_of(data: &str) -> u64 {
    match parse_json(data).map(|d| d.get("seq").and_then(Json::as_u64)) {
        Ok(Some(n)) => n,
        other => panic!("data without a numeric seq ({other:?}): {}", preview(data)),
    }
}

/// Data with odd but valid JSON spelling: whitespace of every kind, escapes, non-ASCII, numbers
/// in exponent form. The server must forward it byte for byte.
fn odd_data(i: usize) -> String {
    let pad = "x".repeat(40 + i % 17);
    match i % 3 {
        0 => format!(r#"{{"seq":{i},"pad":"{pad}"}}"#),
        1 => format!(
            "{{ \"seq\" :\t{i} ,\r\n \"pad\" : \"{pad}\\u00e9\\\"q\\\\ \\/\" , \"n\":-1.50E+3,\
             \"a\":[ 1 ,{{}} , [ ] ,null,true ]\n}}"
        ),
        _ => format!(r#"{{"pad":"{pad} é ✓ 𝄞","seq":{i},"f":false,"e":1e-7}}"#),
    }
}

/// A PUBLISH of `data` to `topic`, spelled three ways (key order, whitespace around `data`).
fn odd_publish(i: usize, topic: &str, data: &str, cid: Option<&str>) -> String {
    let meta = cid
        .map(|c| format!(r#","meta":{{"correlationId":{}}}"#, json_str(c)))
        .unwrap_or_default();
    let topic = json_str(topic);
    match i % 3 {
        0 => format!(r#"{{"type":"PUBLISH","payload":{{"topic":{topic},"data":{data}}}{meta}}}"#),
        1 => format!(
            "{{ \"payload\" : {{ \"data\" :  \n{data}\t , \"topic\":{topic} }} {meta}, \"type\" : \"PUBLISH\" }}"
        ),
        _ => format!(
            r#"{{"type":"PUBLISH"{meta},"payload":{{"excludeSelf":false,"topic":{topic},"data":{data} }}}}"#
        ),
    }
}

fn assert_error(r: &Reply, code: &str, cid: Option<&str>, ctx: &str) {
    assert_eq!(r.kind, "ERROR", "{ctx}: expected ERROR, got {}", r.text);
    assert_eq!(r.code(), code, "{ctx}: error code in {}", r.text);
    let message = r.str_field("message");
    assert!(
        !message.trim().is_empty(),
        "{ctx}: ERROR needs a message saying what was wrong: {}",
        r.text
    );
    assert_eq!(
        r.field("retryable"),
        Some(Json::Bool(false)),
        "{ctx}: retryable in {}",
        r.text
    );
    if let Some(c) = cid {
        assert_eq!(
            r.correlation_id.as_deref(),
            Some(c),
            "{ctx}: ERROR must echo the correlationId: {}",
            r.text
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Fan-out
// ---------------------------------------------------------------------------------------------

#[test]
fn every_subscriber_on_both_workers_gets_every_message_in_order_byte_for_byte() {
    const SUBS: usize = 24;
    const MESSAGES: usize = 300;
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let idle = stats(addr);
        assert!(
            idle.iter().all(|w| w.topics == 0 && w.subscriptions == 0),
            "{ctx}: fresh server: {idle:?}"
        );
        let mut subs = subscribers(addr, SUBS, &["room"], &ctx);
        // Topics that a sloppy matcher would confuse with "room".
        let mut other = PsClient::connect(addr, format!("{ctx} other"));
        for t in ["roo", "room:", "Room", "room ", "rooms", "other"] {
            other.subscribe(t);
        }
        let st = stats(addr);
        assert_eq!(
            total(&st, |w| w.subscriptions),
            SUBS as u64 + 6,
            "{ctx}: subscriptions in /health: {st:?}"
        );

        let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
        let mut sent = Vec::with_capacity(MESSAGES);
        let mut acks = Vec::new();
        for i in 0..MESSAGES {
            let data = odd_data(i);
            let c = (i % 50 == 7).then(|| format!("pub-{i}"));
            publisher.send(&odd_publish(i, "room", &data, c.as_deref()));
            acks.extend(c);
            sent.push(data);
        }
        for c in &acks {
            let r = publisher.next();
            assert_eq!(
                (r.kind.as_str(), r.correlation_id.as_deref()),
                ("ACK", Some(c.as_str())),
                "{ctx}: ACKs of the PUBLISHes with a correlationId, in order: {}",
                r.text
            );
            assert_eq!(r.str_field("of"), "PUBLISH", "{ctx}: {}", r.text);
        }

        for s in &mut subs {
            let got = s.messages(MESSAGES, Duration::from_secs(10));
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.topic(), "room", "{ctx} {}: message {i}", s.name);
                assert_eq!(
                    seq_of(r.data()),
                    i as u64,
                    "{ctx} {}: messages out of order: {}",
                    s.name,
                    preview(&r.text)
                );
                assert_eq!(
                    r.data(),
                    sent[i],
                    "{ctx} {}: data of message {i} not byte for byte",
                    s.name
                );
                assert_eq!(
                    r.correlation_id, None,
                    "{ctx}: MESSAGE with meta: {}",
                    r.text
                );
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        for s in &mut subs {
            s.expect_silence(Duration::from_millis(5), "after the 300 messages");
        }
        other.expect_silence(Duration::from_millis(5), "subscribed to other topics");
        publisher.expect_silence(Duration::from_millis(5), "publisher not subscribed");

        let st = stats(addr);
        assert_eq!(
            total(&st, |w| w.published),
            MESSAGES as u64,
            "{ctx}: published: {st:?}"
        );
        assert_eq!(
            total(&st, |w| w.delivered),
            (MESSAGES * SUBS) as u64,
            "{ctx}: delivered: {st:?}"
        );
        assert!(
            st.iter().all(|w| w.dropped_newest == 0
                && w.dropped_oldest == 0
                && w.closed_backpressure == 0),
            "{ctx}: nothing dropped: {st:?}"
        );
    }
}

#[test]
fn every_kind_of_json_data_is_forwarded_verbatim() {
    let datas = [
        "null",
        "true",
        "false",
        "0",
        "-0.0",
        "-12.5e+300",
        "123456789012345678901234567890",
        "\"\"",
        r#""plain""#,
        r#""esc \" \\ \/ \b \f \n \r \t \u0000 \ud83d\ude00 \u00E9""#,
        "\"raw é ✓ 𝄞\"",
        "[]",
        "{}",
        "[ ]",
        "{ }",
        r#"[1,"two",{"three":[3]},null,true,false,-1E-2]"#,
        "{\"a\" : { \"b\" : [ { } ] } ,\n\"c\"\t:\r\n\"}]{[\" }",
        r#"{"type":"PUBLISH","payload":{"topic":"x","data":1},"meta":{"correlationId":"no"}}"#,
    ];
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut subs = subscribers(addr, 12, &["kinds"], &ctx);
        let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
        for (i, data) in datas.iter().enumerate() {
            let c = format!("kind-{i}");
            publisher.expect_ack(&odd_publish(i, "kinds", data, Some(&c)), &c, "PUBLISH");
        }
        for s in &mut subs {
            let got = s.messages(datas.len(), Duration::from_secs(10));
            for (r, data) in got.iter().zip(datas) {
                assert_eq!(r.data(), data, "{ctx} {}: {}", s.name, r.text);
                assert_eq!(r.topic(), "kinds", "{ctx} {}", s.name);
            }
        }
    }
}

#[test]
fn acks_come_only_with_a_correlation_id() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut c = PsClient::connect(addr, format!("{ctx} client"));
        c.send(&envelope("SUBSCRIBE", r#"{"topic":"quiet"}"#, None));
        c.send(&envelope("SUBSCRIBE", r#"{"topics":["q2","q3"]}"#, None));
        c.send(&envelope("UNSUBSCRIBE", r#"{"topic":"q3"}"#, None));
        c.send(&envelope("PUBLISH", r#"{"topic":"nobody","data":1}"#, None));
        c.send(&envelope("PING", "{}", None));
        let r = c.next();
        assert_eq!(
            (
                r.kind.as_str(),
                r.correlation_id.as_deref(),
                r.payload.as_str()
            ),
            ("PONG", None, "{}"),
            "{ctx}: no ACK without a correlationId; PONG always: {}",
            r.text
        );
        let id = cid("pong");
        let r = c.request(&envelope("PING", "{}", Some(&id)), &id);
        assert_eq!(r.kind, "PONG", "{ctx}: {}", r.text);
        let st = stats(addr);
        assert_eq!(
            total(&st, |w| w.subscriptions),
            2,
            "{ctx}: quiet + q2: {st:?}"
        );
        // Subscribing twice is one subscription (docs/PROTOCOL.md) and delivers once.
        c.subscribe("q2");
        let st = stats(addr);
        assert_eq!(
            total(&st, |w| w.subscriptions),
            2,
            "{ctx}: q2 twice: {st:?}"
        );
        let id = cid("pub");
        c.expect_ack(&publish_envelope("q2", "7", Some(&id)), &id, "PUBLISH");
        let m = c.next();
        assert_eq!(
            (m.kind.as_str(), m.topic().as_str(), m.data()),
            ("MESSAGE", "q2", "7")
        );
        c.expect_silence(Duration::from_millis(200), "one subscription, one delivery");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Order across workers
// ---------------------------------------------------------------------------------------------

#[test]
fn two_publishers_on_different_workers_each_keep_their_order() {
    const SUBS: usize = 24;
    const EACH: usize = 300;
    // On io_uring, both ways of waking the other worker (WSD_RELAY_WAKE) are exercised.
    let runs = backends().into_iter().flat_map(|backend| {
        let wakes: &[RelayWake] = match backend {
            Backend::Uring => &[RelayWake::Eventfd, RelayWake::MsgRing],
            Backend::Epoll => &[RelayWake::Eventfd],
        };
        wakes.iter().map(move |&wake| (backend, wake))
    });
    for (backend, wake) in runs {
        let ctx = format!("[{backend} {wake:?}]");
        let server = start_pubsub(backend, |cfg| cfg.relay_wake = wake);
        let addr = server.local_addr();
        let mut pub_a = client_on_worker(addr, 0, &format!("{ctx} publisher A"));
        let mut pub_b = client_on_worker(addr, 1, &format!("{ctx} publisher B"));
        // The publishers listen too: each gets its own messages and the other's.
        pub_a.subscribe("mix");
        pub_b.subscribe("mix");
        let mut subs = subscribers(addr, SUBS, &["mix"], &ctx);

        std::thread::scope(|s| {
            for (p, name) in [(&mut pub_a, "A"), (&mut pub_b, "B")] {
                s.spawn(move || {
                    for i in 0..EACH {
                        p.publish("mix", &format!(r#"{{"p":"{name}","seq":{i}}}"#));
                    }
                });
            }
        });

        for s in subs.iter_mut().chain([&mut pub_a, &mut pub_b]) {
            let got = s.messages(2 * EACH, Duration::from_secs(10));
            let mut next: HashMap<String, u64> = HashMap::new();
            for r in &got {
                let data = parse_json(r.data()).expect("data is JSON");
                let Some(Json::String(p)) = data.get("p") else {
                    panic!("{ctx} {}: bad data {}", s.name, r.text)
                };
                let want = next.entry(p.clone()).or_insert(0);
                assert_eq!(
                    seq_of(r.data()),
                    *want,
                    "{ctx} {}: publisher {p}'s messages out of order or lost",
                    s.name
                );
                *want += 1;
            }
            assert_eq!(
                (next.get("A"), next.get("B")),
                (Some(&(EACH as u64)), Some(&(EACH as u64))),
                "{ctx} {}: messages per publisher",
                s.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. UNSUBSCRIBE and disconnect
// ---------------------------------------------------------------------------------------------

#[test]
fn unsubscribe_stops_delivery_and_disconnect_leaves_no_entry() {
    const SUBS: usize = 16;
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut subs = subscribers(addr, SUBS, &["news", "fence"], &ctx);
        for (k, s) in subs.iter_mut().enumerate() {
            s.subscribe(&format!("own-{k}"));
        }
        let st = stats(addr);
        assert_eq!(
            (
                total(&st, |w| w.subscriptions),
                st.iter().all(|w| w.topics >= 2)
            ),
            (3 * SUBS as u64, true),
            "{ctx}: {st:?}"
        );
        let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
        publisher.publish("news", r#"{"seq":0}"#);
        for s in &mut subs {
            let r = s.messages(1, IO_TIMEOUT).remove(0);
            assert_eq!((r.topic().as_str(), r.data()), ("news", r#"{"seq":0}"#));
        }

        // Even ones unsubscribe (both payload forms), after the ACK nothing more may arrive.
        for (k, s) in subs.iter_mut().enumerate().filter(|(k, _)| k % 2 == 0) {
            let c = format!("unsub-{k}");
            let payload = if k % 4 == 0 {
                r#"{"topic":"news"}"#
            } else {
                r#"{"topics":["news"]}"#
            };
            s.expect_ack(
                &envelope("UNSUBSCRIBE", payload, Some(&c)),
                &c,
                "UNSUBSCRIBE",
            );
        }
        let st = stats(addr);
        assert_eq!(
            total(&st, |w| w.subscriptions),
            3 * SUBS as u64 - SUBS as u64 / 2,
            "{ctx}: after UNSUBSCRIBE: {st:?}"
        );
        for i in 1..=20 {
            publisher.publish("news", &format!(r#"{{"seq":{i}}}"#));
        }
        publisher.publish("fence", r#""fence""#);
        for (k, s) in subs.iter_mut().enumerate() {
            let expected = if k % 2 == 0 { 1 } else { 21 };
            let got = s.messages(expected, IO_TIMEOUT);
            for (i, r) in got[..expected - 1].iter().enumerate() {
                assert_eq!(
                    (r.topic().as_str(), r.data()),
                    ("news", format!(r#"{{"seq":{}}}"#, i + 1).as_str()),
                    "{ctx} {}",
                    s.name
                );
            }
            let last = got.last().unwrap();
            assert_eq!(
                (last.topic().as_str(), last.data()),
                ("fence", r#""fence""#),
                "{ctx} {}: {} (unsubscribed: {})",
                s.name,
                last.text,
                k % 2 == 0
            );
        }

        // A second subscription after an UNSUBSCRIBE delivers again.
        subs[0].subscribe("news");
        publisher.publish("news", r#"{"seq":21}"#);
        for (k, s) in subs
            .iter_mut()
            .enumerate()
            .filter(|(k, _)| k % 2 == 1 || *k == 0)
        {
            let r = s.messages(1, IO_TIMEOUT).remove(0);
            assert_eq!(r.data(), r#"{"seq":21}"#, "{ctx} sub{k}");
        }

        // Disconnect: half close cleanly, half just drop TCP.
        for (k, mut s) in subs.into_iter().enumerate() {
            if k % 2 == 0 {
                let _ = s.ws.close(None);
                let deadline = Instant::now() + IO_TIMEOUT;
                while Instant::now() < deadline {
                    match s.event(Duration::from_millis(100)) {
                        Event::Ended(_) | Event::Close(_) => break,
                        _ => continue,
                    }
                }
            }
        }
        let (st, ok) = wait_stats(addr, Duration::from_secs(5), |st| {
            st.iter().all(|w| w.topics == 0 && w.subscriptions == 0)
        });
        assert!(
            ok,
            "{ctx}: every subscription and topic must go with its connection: {st:?}"
        );
        let h = wait_connections(addr, 2, Duration::from_secs(5));
        assert_eq!(h.connections, 2, "{ctx}: publisher + /health remain: {h:?}");
        // Publishing to topics nobody holds any more is fine.
        let c = cid("after");
        publisher.expect_ack(&publish_envelope("news", "1", Some(&c)), &c, "PUBLISH");
        publisher.expect_silence(Duration::from_millis(100), "not subscribed");
    }
}

/// Subscribing and unsubscribing while two publishers (one per worker) keep publishing: from
/// each publisher a subscriber sees a gap-free run of seqs (every message published after the
/// SUBSCRIBE's ACK, in order), and nothing after the UNSUBSCRIBE's ACK.
#[test]
fn subscribe_and_unsubscribe_mid_stream_cut_the_stream_cleanly() {
    const EACH: usize = 1500;
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut publishers = [
            client_on_worker(addr, 0, &format!("{ctx} publisher 0")),
            client_on_worker(addr, 1, &format!("{ctx} publisher 1")),
        ];
        let mut subs: Vec<PsClient> = (0..8)
            .map(|i| client_on_worker(addr, i % 2, &format!("{ctx} sub{i} (worker {})", i % 2)))
            .collect();
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for (p, publisher) in publishers.iter_mut().enumerate() {
                let done = &done;
                s.spawn(move || {
                    for i in 0..EACH {
                        publisher.publish("live", &format!(r#"{{"p":{p},"seq":{i}}}"#));
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    done.fetch_add(1, Ordering::Release);
                });
            }
            for (k, sub) in subs.iter_mut().enumerate() {
                let (ctx, done) = (&ctx, &done);
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(20 * k as u64));
                    sub.subscribe("live");
                    let mut seqs: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
                    let take = |r: Reply, seqs: &mut [Vec<u64>; 2]| {
                        let d = parse_json(r.data()).expect("data");
                        let Some(p) = d.get("p").and_then(Json::as_u64) else {
                            panic!("{ctx}: data without p: {}", r.text)
                        };
                        seqs[p as usize].push(seq_of(r.data()));
                    };
                    // Read 150 messages (or whatever comes before the publishers finish).
                    let mut n = 0;
                    while n < 150 && done.load(Ordering::Acquire) < 2 {
                        if let Some(r) = sub.next_within(Duration::from_millis(50)) {
                            assert!(r.is_message(), "{ctx} {}: {}", sub.name, r.text);
                            take(r, &mut seqs);
                            n += 1;
                        }
                    }
                    let c = format!("live-unsub-{k}");
                    let unsub = envelope("UNSUBSCRIBE", r#"{"topic":"live"}"#, Some(&c));
                    sub.expect_ack(&unsub, &c, "UNSUBSCRIBE");
                    for r in sub.take_backlog() {
                        take(r, &mut seqs);
                    }
                    sub.expect_silence(Duration::from_millis(300), "after the UNSUBSCRIBE ACK");
                    assert!(
                        seqs.iter().any(|got| !got.is_empty()),
                        "{ctx} {}: subscribed mid-stream but got nothing",
                        sub.name
                    );
                    for (p, got) in seqs.iter().enumerate() {
                        assert!(
                            got.windows(2).all(|w| w[1] == w[0] + 1),
                            "{ctx} {}: publisher {p}'s messages have a gap or are out of order: \
                             {got:?}",
                            sub.name
                        );
                    }
                });
            }
        });
        let (st, ok) = wait_stats(addr, Duration::from_secs(2), |st| {
            st.iter().all(|w| w.topics == 0 && w.subscriptions == 0)
        });
        assert!(ok, "{ctx}: all unsubscribed: {st:?}");
    }
}

/// A publisher that sends its messages and vanishes at once: everything it sent before its
/// connection ended is still delivered, in order.
#[test]
fn messages_sent_right_before_the_publisher_vanishes_are_delivered() {
    const N: usize = 200;
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut subs = subscribers(addr, 12, &["last-words"], &ctx);
        for (round, clean) in [(0, false), (1, true)] {
            let mut publisher = RawWs::connect(addr);
            let mut burst = Vec::new();
            for i in 0..N {
                let data = format!(r#"{{"round":{round},"seq":{i}}}"#);
                burst.extend(client_frame(
                    OP_TEXT,
                    publish_envelope("last-words", &data, None).as_bytes(),
                ));
            }
            if clean {
                burst.extend(client_frame(OP_CLOSE, &close_payload(1000, b"")));
            }
            publisher.send(&burst);
            drop(publisher); // TCP closes right behind the data
            for s in &mut subs {
                let got = s.messages(N, IO_TIMEOUT);
                for (i, r) in got.iter().enumerate() {
                    assert_eq!(
                        r.data(),
                        format!(r#"{{"round":{round},"seq":{i}}}"#),
                        "{ctx} {} (close frame sent: {clean})",
                        s.name
                    );
                }
            }
        }
    }
}

/// MESSAGE frames whose payload is exactly at the 7-bit/16-bit/64-bit length boundaries arrive
/// intact with the minimal length encoding (RFC 6455 section 5.2).
#[test]
fn message_frames_at_length_boundaries_are_encoded_minimally() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut raws: Vec<RawWs> = (0..2).map(|_| RawWs::connect(addr)).collect();
        for raw in &mut raws {
            raw.send(&client_frame(
                OP_TEXT,
                envelope("SUBSCRIBE", r#"{"topic":"len"}"#, Some("s")).as_bytes(),
            ));
            let ack = raw.server_frame();
            assert_eq!(ack.opcode, OP_TEXT, "{ctx}: the ACK: {ack:?}");
        }
        let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
        // Calibrate: how long is the envelope around a 1-byte data?
        publisher.publish("len", "0");
        let base = raws[0].server_frame().payload.len() - 1;
        let _ = raws[1].server_frame();
        for total in [125usize, 126, 127, 65535, 65536, 65537, 70000] {
            let n = total - base;
            let data = format!("\"{}\"", "z".repeat(n - 2));
            publisher.publish("len", &data);
            for raw in &mut raws {
                let mut head = [0u8; 2];
                std::io::Read::read_exact(raw, &mut head).expect("frame head");
                let (code, ext) = match head[1] & 0x7f {
                    126 => (126, 2),
                    127 => (127, 8),
                    n => (n, 0),
                };
                let mut len_bytes = vec![0u8; ext];
                std::io::Read::read_exact(raw, &mut len_bytes).expect("length");
                let len = len_bytes
                    .iter()
                    .fold(if ext == 0 { code as u64 } else { 0 }, |a, b| {
                        (a << 8) | *b as u64
                    });
                assert_eq!(len, total as u64, "{ctx}: announced length");
                let minimal = match total {
                    0..=125 => 0,
                    126..=65535 => 2,
                    _ => 8,
                };
                assert_eq!(
                    ext, minimal,
                    "{ctx}: length of {total} not minimally encoded"
                );
                assert_eq!(head[0], 0x81, "{ctx}: FIN + text");
                let mut payload = vec![0u8; total];
                std::io::Read::read_exact(raw, &mut payload).expect("payload");
                let r = Reply::parse(String::from_utf8(payload).expect("UTF-8"))
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert!(r.data() == data, "{ctx}: data of the {total}-byte message");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. excludeSelf
// ---------------------------------------------------------------------------------------------

#[test]
fn exclude_self_skips_only_the_publisher() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut me = client_on_worker(addr, 0, &format!("{ctx} publisher"));
        let mut near = client_on_worker(addr, 0, &format!("{ctx} same-worker subscriber"));
        let mut far = client_on_worker(addr, 1, &format!("{ctx} other-worker subscriber"));
        for c in [&mut me, &mut near, &mut far] {
            c.subscribe("self");
        }
        let flags = [
            Some("true"),
            Some("false"),
            None,
            Some("true"),
            Some(" true "),
            Some("false"),
        ];
        for (i, flag) in flags.iter().enumerate() {
            let c = format!("x-{i}");
            let extra = flag
                .map(|f| format!(r#","excludeSelf":{f}"#))
                .unwrap_or_default();
            let payload = format!(r#"{{"topic":"self","data":{{"seq":{i}}}{extra}}}"#);
            me.expect_ack(&envelope("PUBLISH", &payload, Some(&c)), &c, "PUBLISH");
        }
        let mine: Vec<u64> = me
            .messages(3, IO_TIMEOUT)
            .iter()
            .map(|r| seq_of(r.data()))
            .collect();
        assert_eq!(
            mine,
            [1, 2, 5],
            "{ctx}: the publisher gets its messages unless excludeSelf is true"
        );
        me.expect_silence(Duration::from_millis(200), "excludeSelf:true");
        for s in [&mut near, &mut far] {
            let all: Vec<u64> = s
                .messages(6, IO_TIMEOUT)
                .iter()
                .map(|r| seq_of(r.data()))
                .collect();
            assert_eq!(all, [0, 1, 2, 3, 4, 5], "{ctx} {}: everything", s.name);
        }
        // The only subscriber publishing with excludeSelf gets nothing, and nothing breaks.
        me.subscribe("alone");
        let c = cid("alone");
        let payload = r#"{"topic":"alone","data":1,"excludeSelf":true}"#;
        me.expect_ack(&envelope("PUBLISH", payload, Some(&c)), &c, "PUBLISH");
        me.expect_silence(Duration::from_millis(200), "alone with excludeSelf");
        me.ping();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Malformed envelopes
// ---------------------------------------------------------------------------------------------

/// Sends `text`, expects ERROR INVALID_ARGUMENT (with `cid` echoed when given) and a PONG
/// afterwards (the connection stays usable); returns the error message.
fn expect_invalid(client: &mut PsClient, text: &str, cid: Option<&str>, ctx: &str) -> String {
    client.send(text);
    let r = client.next_reply();
    assert_error(&r, "INVALID_ARGUMENT", cid, ctx);
    client.ping();
    r.str_field("message")
}

#[test]
fn every_malformed_envelope_gets_invalid_argument_and_the_connection_stays() {
    let long_topic = "t".repeat(257);
    let long_utf8_topic = format!("{}a", "é".repeat(128));
    let unbalanced = format!(
        r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":{}}},"meta":{{"correlationId":"deep"}}}}"#,
        "[".repeat(10_000)
    );
    let long_cid = "c".repeat(65);
    // (what, text, whether the correlationId "m-N" is inside a valid-JSON envelope)
    let mut cases: Vec<(&str, String, bool)> = vec![
        ("not JSON", "hello".into(), false),
        ("empty text", String::new(), false),
        ("JSON but not an object", r#"["PING",{}]"#.into(), false),
        ("no type", r#"{"payload":{},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("unknown type", r#"{"type":"JUMP","payload":{},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("type not a string", r#"{"type":42,"payload":{},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("type null", r#"{"type":null,"payload":{},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("payload missing", r#"{"type":"SUBSCRIBE","meta":{"correlationId":"CID"}}"#.into(), true),
        ("payload not an object", r#"{"type":"SUBSCRIBE","payload":"room","meta":{"correlationId":"CID"}}"#.into(), true),
        ("payload an array", r#"{"type":"PUBLISH","payload":[],"meta":{"correlationId":"CID"}}"#.into(), true),
        ("topic missing", r#"{"type":"SUBSCRIBE","payload":{},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("topic not a string", r#"{"type":"SUBSCRIBE","payload":{"topic":7},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("empty topic", r#"{"type":"SUBSCRIBE","payload":{"topic":""},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("257-byte topic", format!(r#"{{"type":"SUBSCRIBE","payload":{{"topic":"{long_topic}"}},"meta":{{"correlationId":"CID"}}}}"#), true),
        ("257-byte topic of 2-byte chars", format!(r#"{{"type":"SUBSCRIBE","payload":{{"topic":"{long_utf8_topic}"}},"meta":{{"correlationId":"CID"}}}}"#), true),
        ("257-byte topic in PUBLISH", format!(r#"{{"type":"PUBLISH","payload":{{"topic":"{long_topic}","data":1}},"meta":{{"correlationId":"CID"}}}}"#), true),
        ("NUL in topic", r#"{"type":"SUBSCRIBE","payload":{"topic":"a\u0000b"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("U+0001 in topic", r#"{"type":"SUBSCRIBE","payload":{"topic":"a\u0001b"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("newline in topic", r#"{"type":"SUBSCRIBE","payload":{"topic":"a\nb"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("U+001F in topic", r#"{"type":"PUBLISH","payload":{"topic":"a\u001f","data":1},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("DEL in topic", r#"{"type":"SUBSCRIBE","payload":{"topic":"a\u007fb"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("control char in topics list", r#"{"type":"SUBSCRIBE","payload":{"topics":["ok","a\tb"]},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("topic and topics", r#"{"type":"SUBSCRIBE","payload":{"topic":"a","topics":["b"]},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("topics empty", r#"{"type":"SUBSCRIBE","payload":{"topics":[]},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("513 topics", format!(r#"{{"type":"SUBSCRIBE","payload":{{"topics":[{}]}},"meta":{{"correlationId":"CID"}}}}"#, (0..513).map(|i| format!("\"t{i}\"")).collect::<Vec<_>>().join(",")), true),
        ("topics not an array", r#"{"type":"SUBSCRIBE","payload":{"topics":"a"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("topics with a number", r#"{"type":"UNSUBSCRIBE","payload":{"topics":["a",1]},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("UNSUBSCRIBE empty topic", r#"{"type":"UNSUBSCRIBE","payload":{"topic":""},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("PUBLISH data missing", r#"{"type":"PUBLISH","payload":{"topic":"t"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("PUBLISH topic missing", r#"{"type":"PUBLISH","payload":{"data":1},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("PUBLISH with topics", r#"{"type":"PUBLISH","payload":{"topics":["t"],"data":1},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("excludeSelf not a bool", r#"{"type":"PUBLISH","payload":{"topic":"t","data":1,"excludeSelf":"yes"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("10,000 unclosed [ in data", unbalanced, false),
        ("bad JSON inside data", r#"{"type":"PUBLISH","payload":{"topic":"t","data":{"a":}},"meta":{"correlationId":"CID"}}"#.into(), false),
        ("bare word in data", r#"{"type":"PUBLISH","payload":{"topic":"t","data":nope},"meta":{"correlationId":"CID"}}"#.into(), false),
        ("duplicate type", r#"{"type":"PING","type":"PING","payload":{},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("duplicate payload", r#"{"type":"SUBSCRIBE","payload":{"topic":"a"},"payload":{"topic":"b"},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("duplicate topic", r#"{"type":"PUBLISH","payload":{"topic":"a","topic":"b","data":1},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("duplicate data", r#"{"type":"PUBLISH","payload":{"topic":"a","data":1,"data":2},"meta":{"correlationId":"CID"}}"#.into(), true),
        ("trailing garbage", r#"{"type":"PING","payload":{},"meta":{"correlationId":"CID"}} x"#.into(), false),
        ("two documents", r#"{"type":"PING","payload":{},"meta":{"correlationId":"CID"}}{}"#.into(), false),
        ("meta not an object", r#"{"type":"PING","payload":{},"meta":"CID"}"#.into(), false),
        ("correlationId not a string", r#"{"type":"PING","payload":{},"meta":{"correlationId":5}}"#.into(), false),
        ("correlationId over 64 bytes", format!(r#"{{"type":"PING","payload":{{}},"meta":{{"correlationId":"{long_cid}"}}}}"#), false),
    ];
    for backend in backends() {
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut client = PsClient::connect(addr, format!("[{backend}] malformed"));
        let mut messages = Vec::new();
        for (n, (what, text, echoes)) in cases.iter_mut().enumerate() {
            let ctx = format!("[{backend}] {what}");
            let c = format!("m-{n}");
            let text = text.replace("CID", &c);
            let m = expect_invalid(&mut client, &text, echoes.then_some(c.as_str()), &ctx);
            messages.push(format!("{what}: {m}"));
        }
        // Binary frames are not part of the protocol.
        client.send_binary(br#"{"type":"PING","payload":{}}"#);
        let r = client.next_reply();
        assert_error(
            &r,
            "INVALID_ARGUMENT",
            None,
            &format!("[{backend}] binary frame"),
        );
        client.ping();
        // None of the bad SUBSCRIBEs left anything behind.
        let st = stats(addr);
        assert!(
            st.iter().all(|w| w.topics == 0 && w.subscriptions == 0),
            "[{backend}] malformed requests subscribed something: {st:?}"
        );
        if backend == Backend::Epoll {
            eprintln!("error messages seen:\n  {}", messages.join("\n  "));
        }
    }
}

#[test]
fn topic_name_edges_that_are_valid() {
    let edges = [
        "t".repeat(256),
        "é".repeat(128),
        "a".into(),
        "room:42/ü ✓ 𝄞 * # > .".into(),
        " ".into(),
    ];
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut sub = client_on_worker(addr, 1, &format!("{ctx} subscriber"));
        let mut publisher = client_on_worker(addr, 0, &format!("{ctx} publisher"));
        for t in &edges {
            sub.subscribe(t);
        }
        // Escaped spelling of the same topic is the same topic.
        publisher.publish(r#"room:42/ü ✓ 𝄞 * # > ."#, "1");
        publisher.send(&envelope(
            "PUBLISH",
            r#"{"topic":"room:42\/\u00fc \u2713 \ud834\udd1e * # > .","data":2}"#,
            None,
        ));
        for (i, t) in edges.iter().enumerate() {
            publisher.publish(t, &format!("{{\"i\":{i}}}"));
        }
        let got = sub.messages(2 + edges.len(), IO_TIMEOUT);
        assert_eq!(got[0].data(), "1", "{ctx}");
        assert_eq!(
            (got[1].topic().as_str(), got[1].data()),
            ("room:42/ü ✓ 𝄞 * # > .", "2"),
            "{ctx}: escaped topic"
        );
        for (i, t) in edges.iter().enumerate() {
            let r = &got[2 + i];
            assert_eq!(
                (&r.topic(), r.data()),
                (t, format!("{{\"i\":{i}}}").as_str()),
                "{ctx}"
            );
        }
    }
}

#[test]
fn a_one_mib_data_string_is_delivered_intact() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| cfg.max_payload = 4 << 20);
        let addr = server.local_addr();
        let mut sub = client_on_worker(addr, 1, &format!("{ctx} subscriber"));
        let mut publisher = client_on_worker(addr, 0, &format!("{ctx} publisher"));
        sub.subscribe("big");
        publisher.subscribe("big");
        let body: String = pseudo_random(1 << 20, 42)
            .iter()
            .map(|b| (b'a' + b % 26) as char)
            .collect();
        let data = format!("\"{body}\"");
        let c = cid("big");
        publisher.expect_ack(&publish_envelope("big", &data, Some(&c)), &c, "PUBLISH");
        for s in [&mut sub, &mut publisher] {
            let r = s.messages(1, IO_TIMEOUT).remove(0);
            assert_eq!(r.topic(), "big", "{ctx} {}", s.name);
            assert!(r.data() == data, "{ctx} {}: 1 MiB string altered", s.name);
        }
    }
}

/// Hostile but syntactically valid data. Numbers out of f64 range are JSON like any other and are
/// forwarded verbatim (docs/PROTOCOL.md: `data` is any JSON, byte for byte). Nesting is limited:
/// "the whole envelope may nest at most 64 levels deep", so data 62 levels deep (envelope and
/// payload are the first two) is delivered, 63 and 10,000 levels get INVALID_ARGUMENT.
#[test]
fn hostile_but_valid_data_is_forwarded_or_refused_as_documented() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let mut sub = client_on_worker(addr, 1, &format!("{ctx} subscriber"));
        let mut publisher = client_on_worker(addr, 0, &format!("{ctx} publisher"));
        sub.subscribe("hostile");
        let deepest = nested(62);
        let objects = format!("{}1{}", r#"{"a":"#.repeat(62), "}".repeat(62));
        // Numbers of any size are valid JSON and forwarded as written (docs/PROTOCOL.md).
        let digits = format!("9{}", "1234567890".repeat(10_000));
        for data in [
            "1e999",
            "-1e999",
            "1e999999",
            &digits,
            "[1e999,{\"n\":123456789e123456789},-0.0000000000000000000000000001e-999]",
            "18446744073709551616123",
            &deepest,
            &objects,
        ] {
            let c = cid("hostile");
            let r = publisher.request(&publish_envelope("hostile", data, Some(&c)), &c);
            assert_eq!(
                (r.kind.as_str(), r.str_field("of").as_str()),
                ("ACK", "PUBLISH"),
                "{ctx}: {} is valid JSON within the limits: {}",
                preview(data),
                r.text
            );
            let m = sub.messages(1, IO_TIMEOUT).remove(0);
            assert_eq!(m.data(), data, "{ctx}: not forwarded verbatim");
        }
        for depth in [63, 64, 10_000] {
            let what = format!("{ctx} data {depth} levels deep");
            // meta first, then meta last: the correlationId is echoed "when known".
            let c = cid("deep");
            let meta_first = format!(
                r#"{{"meta":{{"correlationId":"{c}"}},"type":"PUBLISH","payload":{{"topic":"hostile","data":{}}}}}"#,
                nested(depth)
            );
            let c2 = cid("deep");
            let meta_last = publish_envelope("hostile", &nested(depth), Some(&c2));
            for (text, c) in [(meta_first, c), (meta_last, c2)] {
                publisher.send(&text);
                let r = publisher.next_reply();
                assert_error(&r, "INVALID_ARGUMENT", None, &what);
                if let Some(got) = r.correlation_id.as_deref() {
                    assert_eq!(got, c, "{what}: wrong correlationId: {}", r.text);
                } else if backend == Backend::Epoll {
                    eprintln!("{what}: ERROR without the correlationId: {}", r.text);
                }
                publisher.ping();
            }
        }
        sub.expect_silence(Duration::from_millis(200), "refused deep data");
        sub.ping();
    }
}

/// The parser's contract (src/envelope/parse.rs, `parse`): "The error carries the correlation id
/// whenever the message is valid JSON with a valid `meta.correlationId`". A message over the
/// nesting limit is still valid JSON, wherever `meta` sits in it.
#[test]
fn an_error_for_too_deep_valid_json_echoes_the_correlation_id() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |_| {});
        let mut client = PsClient::connect(server.local_addr(), format!("{ctx} client"));
        for depth in [63, 1000] {
            let c = format!("deep-first-{depth}");
            let meta_first = format!(
                r#"{{"meta":{{"correlationId":"{c}"}},"type":"PUBLISH","payload":{{"topic":"t","data":{}}}}}"#,
                nested(depth)
            );
            expect_invalid(
                &mut client,
                &meta_first,
                Some(&c),
                &format!("{ctx} {depth} deep, meta first"),
            );
            let c = format!("deep-last-{depth}");
            let meta_last = publish_envelope("t", &nested(depth), Some(&c));
            expect_invalid(
                &mut client,
                &meta_last,
                Some(&c),
                &format!("{ctx} {depth} deep, meta last"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. MAX_SUBSCRIPTIONS
// ---------------------------------------------------------------------------------------------

#[test]
fn the_fourth_topic_over_max_subscriptions_is_resource_exhausted() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| cfg.max_subscriptions = 3);
        let addr = server.local_addr();
        let mut sub = client_on_worker(addr, 0, &format!("{ctx} subscriber"));
        let mut publisher = client_on_worker(addr, 1, &format!("{ctx} publisher"));
        for t in ["t1", "t2", "t3"] {
            sub.subscribe(t);
        }
        for (n, payload) in [r#"{"topic":"t4"}"#, r#"{"topics":["t4","t5"]}"#]
            .iter()
            .enumerate()
        {
            let c = format!("over-{n}");
            let r = sub.request(&envelope("SUBSCRIBE", payload, Some(&c)), &c);
            assert_error(
                &r,
                "RESOURCE_EXHAUSTED",
                Some(&c),
                &format!("{ctx} {payload}"),
            );
        }
        // Without a correlationId the error still comes.
        sub.send(&envelope("SUBSCRIBE", r#"{"topic":"t6"}"#, None));
        let r = sub.next_reply();
        assert_error(&r, "RESOURCE_EXHAUSTED", None, &format!("{ctx} no cid"));
        sub.ping();
        let st = stats(addr);
        assert_eq!(total(&st, |w| w.subscriptions), 3, "{ctx}: {st:?}");

        for t in ["t4", "t5", "t6", "t1", "t2", "t3"] {
            publisher.publish(t, &json_str(t));
        }
        let got: Vec<String> = sub
            .messages(3, IO_TIMEOUT)
            .iter()
            .map(|r| format!("{}={}", r.topic(), r.data()))
            .collect();
        assert_eq!(got, [r#"t1="t1""#, r#"t2="t2""#, r#"t3="t3""#], "{ctx}");
        sub.expect_silence(Duration::from_millis(200), "refused topics");

        // Room again after an UNSUBSCRIBE.
        sub.unsubscribe("t1");
        sub.subscribe("t4");
        publisher.publish("t4", "4");
        assert_eq!(sub.messages(1, IO_TIMEOUT)[0].data(), "4", "{ctx}");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Backpressure
// ---------------------------------------------------------------------------------------------

const BP_BUDGET: usize = 64 << 10;
const BP_MESSAGES: usize = 4000;
/// Messages a healthy subscriber may lag behind the publisher: well under the budget.
const BP_WINDOW: usize = 6;

fn bp_data(i: usize) -> String {
    format!(r#"{{"seq":{i},"pad":"{}"}}"#, "p".repeat(4000))
}

struct StuckRead {
    seqs: Vec<u64>,
    pong: bool,
    /// How the connection ended, if it did.
    end: Option<Event>,
}

/// Reads everything a subscriber that never read before finds, until 1 s of silence or the end.
fn drain_stuck(stuck: &mut PsClient, ctx: &str) -> StuckRead {
    let mut out = StuckRead {
        seqs: Vec::new(),
        pong: false,
        end: None,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "{ctx}: stuck client still reading after 15 s"
        );
        match stuck.event(Duration::from_secs(1)) {
            Event::Reply(r) if r.is_message() => {
                assert_eq!(r.data(), bp_data(seq_of(r.data()) as usize), "{ctx}: data");
                out.seqs.push(seq_of(r.data()));
            }
            Event::Reply(r) if r.kind == "PONG" => out.pong = true,
            Event::Reply(r) => panic!("{ctx}: unexpected reply {}", r.text),
            Event::Timeout => return out,
            end => {
                out.end = Some(end);
                return out;
            }
        }
    }
}

/// One stuck subscriber (never reads, small receive buffer) and two healthy ones (one on each
/// worker, the stuck one's worker included) of topic "feed"; 4,000 messages of 4 KiB. Returns
/// what the stuck client finds when it finally reads and the counters after.
fn backpressure_run(
    backend: Backend,
    policy: BackpressurePolicy,
    ping_stuck: bool,
) -> (StuckRead, Vec<WorkerStats>) {
    let ctx = format!("[{backend}] {policy:?}");
    let started = Instant::now();
    let server = start_pubsub(backend, |cfg| {
        cfg.max_backpressure = BP_BUDGET;
        cfg.backpressure_policy = policy;
    });
    let addr = server.local_addr();
    let mut stuck = PsClient::connect_small_rcvbuf(addr, format!("{ctx} stuck"), 4096);
    let w = worker_of(addr, &mut stuck);
    let mut healthy = [
        client_on_worker(addr, w, &format!("{ctx} healthy (stuck's worker)")),
        client_on_worker(addr, 1 - w, &format!("{ctx} healthy (other worker)")),
    ];
    let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
    stuck.subscribe("feed");
    for h in &mut healthy {
        h.subscribe("feed");
    }
    let received = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let deadline = started + Duration::from_secs(25);
    std::thread::scope(|s| {
        for (h, count) in healthy.iter_mut().zip(&received) {
            let ctx = &ctx;
            s.spawn(move || {
                for i in 0..BP_MESSAGES {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Some(r) = h.next_within(left) else {
                        panic!(
                            "{ctx} {}: got {i} of {BP_MESSAGES} messages in time",
                            h.name
                        )
                    };
                    assert!(r.is_message(), "{ctx} {}: {}", h.name, preview(&r.text));
                    assert_eq!(
                        seq_of(r.data()),
                        i as u64,
                        "{ctx} {}: lost or reordered",
                        h.name
                    );
                    assert!(r.data() == bp_data(i), "{ctx} {}: data altered", h.name);
                    count.store(i + 1, Ordering::Release);
                }
            });
        }
        for i in 0..BP_MESSAGES {
            // Pace the publisher by the healthy readers so only the stuck one falls behind.
            while received
                .iter()
                .any(|r| r.load(Ordering::Acquire) + BP_WINDOW < i)
            {
                assert!(
                    Instant::now() < deadline,
                    "{ctx}: healthy subscribers stalled at {:?} of {i}",
                    received
                );
                std::thread::sleep(Duration::from_micros(50));
            }
            publisher.publish("feed", &bp_data(i));
        }
    });
    let c = cid("done");
    publisher.expect_ack(&publish_envelope("other", "0", Some(&c)), &c, "PUBLISH");
    if ping_stuck {
        // A protocol reply queued behind the backlog is never dropped.
        stuck.send(&envelope("PING", "{}", None));
    }
    let counters = stats(addr);
    let read = drain_stuck(&mut stuck, &ctx);
    eprintln!(
        "{ctx}: stuck client got {} messages (last {:?}), pong {}, end {:?}; counters {counters:?}; {:?}",
        read.seqs.len(),
        read.seqs.last(),
        read.pong,
        read.end,
        started.elapsed()
    );
    assert!(
        read.seqs.windows(2).all(|w| w[0] < w[1]),
        "{ctx}: the stuck client's messages must be a strictly increasing subsequence: {:?}",
        read.seqs
    );
    assert!(
        read.seqs.len() < BP_MESSAGES,
        "{ctx}: the stuck client got all {BP_MESSAGES} messages: never over budget?"
    );
    drop(healthy);
    drop(publisher);
    drop(stuck);
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{ctx}: took {:?}",
        started.elapsed()
    );
    (read, counters)
}

/// What both dropping policies promise: the policy's own counter (`own`) moves and neither the
/// other dropping policy's (`other`) nor `close`'s does; the slow subscriber stays open and still
/// gets the PONG queued behind its backlog; and every message is either delivered to it or counted
/// as dropped.
fn assert_drops_accounted(
    ctx: &str,
    read: &StuckRead,
    st: &[WorkerStats],
    own: fn(&WorkerStats) -> u64,
    other: fn(&WorkerStats) -> u64,
) {
    let dropped = total(st, own);
    assert!(dropped > 0, "{ctx}: the policy's drops are counted: {st:?}");
    assert_eq!(
        (total(st, other), total(st, |w| w.closed_backpressure)),
        (0, 0),
        "{ctx}: other policies' counters: {st:?}"
    );
    assert!(
        read.end.is_none(),
        "{ctx}: connection ended: {:?}",
        read.end
    );
    assert!(read.pong, "{ctx}: the PONG behind the backlog was dropped");
    assert_eq!(
        read.seqs.len() as u64 + dropped,
        BP_MESSAGES as u64,
        "{ctx}: every message is either delivered to the stuck client or counted as dropped"
    );
}

#[test]
fn backpressure_drop_newest_drops_new_messages_for_the_slow_subscriber_only() {
    for backend in backends() {
        let ctx = format!("[{backend}] drop-newest");
        let (read, st) = backpressure_run(backend, BackpressurePolicy::DropNewest, true);
        assert_drops_accounted(&ctx, &read, &st, |w| w.dropped_newest, |w| w.dropped_oldest);
        assert_ne!(
            read.seqs.last(),
            Some(&(BP_MESSAGES as u64 - 1)),
            "{ctx}: the newest message should have been dropped"
        );
        assert_eq!(
            read.seqs.first(),
            Some(&0),
            "{ctx}: the oldest messages are kept"
        );
    }
}

#[test]
fn backpressure_drop_oldest_keeps_the_newest_messages() {
    for backend in backends() {
        let ctx = format!("[{backend}] drop-oldest");
        let (read, st) = backpressure_run(backend, BackpressurePolicy::DropOldest, true);
        assert_drops_accounted(&ctx, &read, &st, |w| w.dropped_oldest, |w| w.dropped_newest);
        assert_eq!(
            read.seqs.last(),
            Some(&(BP_MESSAGES as u64 - 1)),
            "{ctx}: the newest message must survive drop-oldest"
        );
    }
}

#[test]
fn backpressure_close_closes_the_slow_subscriber_with_1013() {
    for backend in backends() {
        let ctx = format!("[{backend}] close");
        let (read, st) = backpressure_run(backend, BackpressurePolicy::Close, false);
        assert_eq!(
            total(&st, |w| w.closed_backpressure),
            1,
            "{ctx}: exactly the stuck connection closed: {st:?}"
        );
        assert_eq!(
            (
                total(&st, |w| w.dropped_newest),
                total(&st, |w| w.dropped_oldest)
            ),
            (0, 0),
            "{ctx}: other policies' counters: {st:?}"
        );
        match &read.end {
            Some(Event::Close(code)) => {
                assert_eq!(*code, Some(1013), "{ctx}: close code");
            }
            Some(Event::Ended(e)) => {
                eprintln!("{ctx}: connection ended without a close frame: {e}")
            }
            other => panic!("{ctx}: the stuck connection is still open: {other:?}"),
        }
    }
}

/// "The server stops READING from a connection whose unsent output exceeds 1 MiB": a client that
/// sends PINGs and never reads makes PONGs pile up; the server must pause it (its writes block)
/// instead of buffering without bound, serve others meanwhile, and lose nothing once it reads.
#[test]
fn a_client_that_never_reads_is_paused_and_loses_nothing() {
    use std::io::{BufReader, ErrorKind, Write};
    const CAP: usize = 200 << 20;
    let ping = br#"{"type":"PING","payload":{},"meta":{"correlationId":"p"}}"#;
    let frame_len = client_frame(OP_TEXT, ping).len();
    let batch: Vec<u8> = (0..10_000)
        .flat_map(|_| client_frame(OP_TEXT, ping))
        .collect();
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let started = Instant::now();
        let server = start_pubsub(backend, |_| {});
        let addr = server.local_addr();
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.connect(&addr.into()).expect("connect");
        let mut stream: std::net::TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.write_all(upgrade_request("/ws").as_bytes()).unwrap();
        let (head, rest) = read_head(&mut stream).expect("upgrade response");
        assert_eq!(head.status, 101, "{ctx}: {head:?}");

        // Flood until a write makes no progress for 2 s (reading paused) or CAP bytes went in.
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut written = 0usize;
        let paused = loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{ctx}: flooding for 20 s"
            );
            if written >= CAP {
                break false;
            }
            let at = written % batch.len();
            match stream.write(&batch[at..]) {
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("{ctx}: write failed after {written} bytes: {e}"),
            }
        };
        assert!(
            paused,
            "{ctx}: the server kept reading {written} bytes of PINGs from a client that never \
             reads its PONGs"
        );
        eprintln!(
            "{ctx}: paused after {} PINGs ({written} bytes)",
            written / frame_len
        );

        // Others are served meanwhile, on both workers.
        for w in 0..2 {
            let mut other = client_on_worker(addr, w, &format!("{ctx} other on worker {w}"));
            other.ping();
        }

        // Read every PONG while finishing the partial frame: one PONG per PING, none lost.
        let frames = written.div_ceil(frame_len);
        let reader_stream = stream.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, RawWs::new(reader_stream, rest));
            let first = read_frame(&mut r).expect("first PONG");
            let text = String::from_utf8(first.payload.clone()).expect("UTF-8");
            let pong = Reply::parse(text).expect("PONG envelope");
            assert_eq!(
                (pong.kind.as_str(), pong.correlation_id.as_deref()),
                ("PONG", Some("p"))
            );
            for i in 1..frames {
                let f = read_frame(&mut r).unwrap_or_else(|e| panic!("PONG {i} of {frames}: {e}"));
                assert_eq!(f, first, "PONG {i} differs");
            }
            frames
        });
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let at = written % batch.len();
        let tail = (frame_len - at % frame_len) % frame_len;
        stream
            .write_all(&batch[at..at + tail])
            .expect("finish the last frame");
        let got = reader.join().expect("reader");
        assert_eq!(got, frames, "{ctx}");
        let mut probe = RawWs::new(stream, Vec::new());
        probe.send(&client_frame(OP_TEXT, br#"{"type":"PING","payload":{}}"#));
        let f = probe.server_frame();
        assert_eq!(
            f.payload, br#"{"type":"PONG","payload":{}}"#,
            "{ctx}: still served"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. POST /publish
// ---------------------------------------------------------------------------------------------

const KEY: &str = "s3cret-Key_42";

fn post_publish(addr: SocketAddr, auth: Option<&str>, body: &[u8]) -> HttpResponse {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    http_request(addr, "POST", "/publish", &headers, body)
}

fn accepted(resp: &HttpResponse, ctx: &str) -> u64 {
    assert_eq!(resp.status, 200, "{ctx}: {resp:?} {}", resp.text());
    let body = parse_json(&resp.text()).unwrap_or_else(|e| panic!("{ctx}: body not JSON ({e})"));
    match body.get("accepted").and_then(Json::as_u64) {
        Some(n) => n,
        other => panic!("{ctx}: accepted is {other:?}: {}", resp.text()),
    }
}

#[test]
fn post_publish_reaches_websocket_subscribers() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| cfg.max_payload = 4096);
        let addr = server.local_addr();
        let mut subs = subscribers(addr, 12, &["hook", "hook2"], &ctx);

        let one = br#"{"topic":"hook","data":{ "n" : 1 }}"#;
        assert_eq!(
            accepted(&post_publish(addr, None, one), &ctx),
            1,
            "{ctx}: one"
        );
        let many = br#"[{"topic":"hook","data":2},{"topic":"hook2","data":"three"},{"topic":"hook","data":[4]}]"#;
        assert_eq!(
            accepted(&post_publish(addr, None, many), &ctx),
            3,
            "{ctx}: array"
        );
        for s in &mut subs {
            let got: Vec<(String, String)> = s
                .messages(4, IO_TIMEOUT)
                .iter()
                .map(|r| (r.topic(), r.data().to_owned()))
                .collect();
            let want = [
                ("hook", r#"{ "n" : 1 }"#),
                ("hook", "2"),
                ("hook2", r#""three""#),
                ("hook", "[4]"),
            ];
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(t, d)| (t.to_string(), d.to_string()))
                .collect();
            assert_eq!(got, want, "{ctx} {}", s.name);
        }

        for (what, body) in [
            ("not JSON", &b"nope"[..]),
            ("truncated", br#"{"topic":"hook","data":"#),
            ("no topic", br#"{"data":1}"#),
            ("no data", br#"{"topic":"hook"}"#),
            ("empty topic", br#"{"topic":"","data":1}"#),
            (
                "bad item in array",
                br#"[{"topic":"hook","data":1},{"topic":5,"data":1}]"#,
            ),
            ("empty body", b""),
        ] {
            let resp = post_publish(addr, None, body);
            assert_eq!(resp.status, 400, "{ctx} {what}: {resp:?} {}", resp.text());
            assert!(
                !resp.text().trim().is_empty(),
                "{ctx} {what}: 400 needs a reason"
            );
        }
        let big = format!(r#"{{"topic":"hook","data":"{}"}}"#, "b".repeat(5000));
        let resp = post_publish(addr, None, big.as_bytes());
        assert_eq!(resp.status, 413, "{ctx}: body over MAX_PAYLOAD: {resp:?}");
        for s in &mut subs {
            s.expect_silence(Duration::from_millis(20), "refused POSTs delivered nothing");
        }
        // The WebSocket side is unaffected.
        subs[0].ping();
    }
}

#[test]
fn post_publish_checks_the_bearer_key() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| {
            cfg.publish_key = Some(KEY.parse().expect("valid key"));
        });
        let addr = server.local_addr();
        let mut sub = PsClient::connect(addr, format!("{ctx} subscriber"));
        sub.subscribe("keyed");
        let body = br#"{"topic":"keyed","data":1}"#;
        let wrong_len = format!("Bearer {KEY}x");
        let wrong_case = format!("Bearer {}", KEY.to_uppercase());
        let prefix = format!("Bearer {}", &KEY[..KEY.len() - 1]);
        let basic = format!("Basic {KEY}");
        for (what, auth) in [
            ("no Authorization", None),
            ("empty", Some("")),
            ("Bearer without a key", Some("Bearer ")),
            ("wrong key", Some("Bearer nope")),
            ("key plus a byte", Some(wrong_len.as_str())),
            ("key minus a byte", Some(prefix.as_str())),
            ("wrong case", Some(wrong_case.as_str())),
            ("Basic scheme", Some(basic.as_str())),
        ] {
            let resp = post_publish(addr, auth, body);
            assert_eq!(resp.status, 401, "{ctx} {what}: {resp:?} {}", resp.text());
        }
        sub.expect_silence(Duration::from_millis(100), "unauthorized POSTs");
        let good = format!("Bearer {KEY}");
        assert_eq!(
            accepted(&post_publish(addr, Some(&good), body), &ctx),
            1,
            "{ctx}: right key"
        );
        let r = sub.messages(1, IO_TIMEOUT).remove(0);
        assert_eq!((r.topic().as_str(), r.data()), ("keyed", "1"), "{ctx}");
    }
}

#[test]
fn post_publish_http_edges() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| cfg.max_payload = 4096);
        let addr = server.local_addr();
        let mut sub = PsClient::connect(addr, format!("{ctx} subscriber"));
        sub.subscribe("edge");

        // A body of exactly MAX_PAYLOAD is accepted; one byte more is 413.
        let fill = |n: usize| {
            let base = r#"{"topic":"edge","data":""}"#.len();
            format!(r#"{{"topic":"edge","data":"{}"}}"#, "e".repeat(n - base))
        };
        let exact = fill(4096);
        assert_eq!(
            accepted(&post_publish(addr, None, exact.as_bytes()), &ctx),
            1
        );
        let r = sub.messages(1, IO_TIMEOUT).remove(0);
        assert_eq!(
            r.data().len(),
            4096 - r#"{"topic":"edge","data":}"#.len(),
            "{ctx}"
        );
        let resp = post_publish(addr, None, fill(4097).as_bytes());
        assert_eq!(resp.status, 413, "{ctx}: one byte over: {resp:?}");

        // A huge Content-Length is refused from the head, without waiting for the body.
        let mut stream = tcp(addr);
        stream
            .write_all(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut stream).expect("413 before the body");
        assert_eq!(resp.status, 413, "{ctx}: {resp:?}");

        // No chunked bodies: a length is required.
        let mut stream = tcp(addr);
        stream
            .write_all(
                b"POST /publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                  1b\r\n{\"topic\":\"edge\",\"data\":1}\r\n0\r\n\r\n",
            )
            .unwrap();
        let resp = read_response(&mut stream).expect("answer to a chunked POST");
        assert!(
            matches!(resp.status, 400 | 411 | 501),
            "{ctx}: chunked POST: {resp:?}"
        );

        // Other methods on /publish.
        let resp = http_request(addr, "GET", "/publish", &[], b"");
        assert_eq!(resp.status, 405, "{ctx}: GET /publish: {resp:?}");
        sub.expect_silence(Duration::from_millis(100), "refused requests");
    }
}

#[test]
fn post_publish_takes_at_most_max_batch_items_and_says_so() {
    let max = wsd::envelope::MAX_BATCH;
    assert_eq!(max, 1000, "docs/OPERATIONS.md and the 400 message say 1000");
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| cfg.max_payload = 1 << 20);
        let addr = server.local_addr();
        let mut sub = PsClient::connect(addr, format!("{ctx} subscriber"));
        sub.subscribe("batch");
        let body = |n: usize| {
            let items: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"topic":"batch","data":{i}}}"#))
                .collect();
            format!("[{}]", items.join(","))
        };
        let resp = post_publish(addr, None, body(max + 1).as_bytes());
        assert_eq!(resp.status, 400, "{ctx}: {} items: {resp:?}", max + 1);
        let text = resp.text();
        assert!(
            text.contains(&format!("holds {} publish objects", max + 1))
                && text.contains(&format!("at most {max} per request")),
            "{ctx}: the 400 must name the batch limit: {text}"
        );
        sub.expect_silence(
            Duration::from_millis(100),
            "a refused batch publishes nothing",
        );
        assert_eq!(
            accepted(&post_publish(addr, None, body(max).as_bytes()), &ctx),
            max as u64
        );
        let got = sub.messages(max, IO_TIMEOUT);
        assert_eq!(
            got.last().map(|r| r.data().to_owned()),
            Some((max - 1).to_string())
        );
    }
}

/// RFC 7235 section 2.1: the authentication scheme is a case-insensitive token, so
/// `bearer <key>` is the same credential as `Bearer <key>`.
#[test]
fn post_publish_bearer_scheme_is_case_insensitive() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_pubsub(backend, |cfg| {
            cfg.publish_key = Some(KEY.parse().expect("valid key"));
        });
        let addr = server.local_addr();
        let body = br#"{"topic":"keyed","data":1}"#;
        for scheme in ["bearer", "BEARER"] {
            let auth = format!("{scheme} {KEY}");
            let resp = post_publish(addr, Some(&auth), body);
            assert_eq!(resp.status, 200, "{ctx} {auth:?}: {resp:?} {}", resp.text());
        }
    }
}

/// A subscriber that stops reading with messages still owed, then closes (or half-closes) its
/// side, is dropped CLOSE_TIMEOUT later instead of holding its slot and queue forever. (The close
/// timeout is shortened to 1 s for the test, `Config::close_timeout`; 5 s in production.)
#[test]
fn a_peer_that_closes_without_reading_what_it_is_owed_is_dropped() {
    for backend in backends() {
        for half_close in [false, true] {
            let ctx = format!("[{backend}] half_close={half_close}");
            let server = start_pubsub(backend, |cfg| {
                cfg.cluster_workers = Workers::Count(1);
                // Under READ_PAUSE_BYTES, so wsd still reads the peer's close; enough that the
                // kernel's send buffer fills and the rest stays in wsd's queue.
                cfg.max_backpressure = 512 * 1024;
                cfg.close_timeout = Duration::from_secs(1);
                // A small kernel send buffer, so the kernel cannot absorb (by autotuning) what
                // wsd holds for the stuck peer before it closes: else nothing is owed any more
                // and closing at once is right (seen as a flake on io_uring).
                cfg.send_buffer = 4096;
            });
            let addr = server.local_addr();
            let mut stuck = PsClient::connect_small_rcvbuf(addr, format!("{ctx} stuck"), 4096);
            stuck.subscribe("owed");
            let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));
            let data = json_str(&"x".repeat(4096));
            // Far more than the kernel's socket buffers take: the rest waits in wsd's queue.
            for _ in 0..3000 {
                publisher.publish("owed", &data);
            }
            let (_, queued) = wait_stats(addr, Duration::from_secs(20), |s| {
                total(s, |w| w.delivered) + total(s, |w| w.dropped_newest) >= 3000
            });
            assert!(queued, "{ctx}: the publishes reached the stuck subscriber");
            let owed = poll(Duration::from_secs(10), || {
                let m = http_request(addr, "GET", "/metrics", &[], b"");
                let text = String::from_utf8_lossy(&m.body).into_owned();
                text.lines()
                    .filter_map(|l| l.strip_prefix("wsd_queued_bytes{worker=\"0\"} "))
                    .filter_map(|v| v.trim().parse::<u64>().ok())
                    .find(|&v| v > 0)
            });
            assert!(
                owed.is_some(),
                "{ctx}: wsd holds queued bytes for the stuck subscriber"
            );
            // Open while the stuck peer is: the stuck peer, the publisher and the /health request
            // asking. Wait for exactly that, so an earlier HTTP request's connection still closing
            // cannot be taken for the stuck peer going.
            let open = 3;
            let h = wait_connections(addr, open, Duration::from_secs(10));
            assert_eq!(h.connections, open, "{ctx}: open before the close: {h:?}");
            let started = Instant::now();
            let stream = stuck.ws.get_mut();
            if half_close {
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            } else {
                // A masked close frame, code 1000 (mask 0).
                stream
                    .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
                    .expect("write close");
            }
            let h = wait_connections(addr, open - 1, Duration::from_secs(20));
            assert_eq!(
                h.connections,
                open - 1,
                "{ctx}: the stuck peer was not dropped within 20 s: {h:?}"
            );
            // It was given the close timeout to take what it was owed, not dropped at once.
            assert!(
                started.elapsed() >= Duration::from_millis(800),
                "{ctx}: dropped after {:?}",
                started.elapsed()
            );
            drop(stuck);
        }
    }
}
