//! Pub/sub across wsd processes through a real `redis-server` (`REDIS_URL`): each test starts
//! its own Redis on a free port and two or three `wsd` processes with 2 workers each, on both
//! I/O backends.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fake_redis::SilentRedis;
use common::pubsub::{PsClient, Reply, cid};
use common::redis::{RedisServer, free_port};
use common::{Guard, backends, http_request, poll, wsd_command};
use wsd::io::Backend;

/// A `wsd` process.
struct Wsd {
    addr: SocketAddr,
    _guard: Guard,
}

fn wsd(backend: Backend, redis_url: &str, extra: &[(&str, &str)]) -> Wsd {
    let port = free_port();
    let io = match backend {
        Backend::Epoll => "epoll",
        Backend::Uring => "uring",
    };
    let mut cmd = wsd_command();
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("CLUSTER_WORKERS", "2")
        .env("WSD_IO", io)
        .env("REDIS_URL", redis_url)
        .env("LOG_LEVEL", "error")
        .env("SHUTDOWN_TIMEOUT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let guard = Guard(cmd.spawn().expect("start wsd"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    poll(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    })
    .unwrap_or_else(|| panic!("[{backend}] wsd did not listen on {addr}"));
    Wsd {
        addr,
        _guard: guard,
    }
}

fn health(addr: SocketAddr) -> (u16, String) {
    let r = http_request(addr, "GET", "/health", &[], b"");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// A sample of `/metrics` (`name` with its `_total` for counters).
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let r = http_request(addr, "GET", "/metrics", &[], b"");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
}

fn wait_redis_state(addr: SocketAddr, state: &str, within: Duration) {
    let want = format!(r#""redis":"{state}""#);
    poll(within, || {
        let (status, body) = health(addr);
        (status == 200 && body.contains(&want)).then_some(())
    })
    .unwrap_or_else(|| panic!("/health of {addr} not 200 with {want}: {:?}", health(addr)));
}

fn wait_numsub(redis: &RedisServer, channel: &str, sharded: bool, n: u64, within: Duration) {
    poll(within, || {
        (redis.numsub(channel, sharded) == n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{channel}: {} subscribers, expected {n}",
            redis.numsub(channel, sharded)
        )
    });
}

/// Checks `got` holds each publisher's messages exactly once and in order: data is
/// `"<publisher>-<n>"` and each publisher sent `0..count`.
fn assert_once_in_order(name: &str, got: &[Reply], counts: &[(&str, usize)]) {
    let mut next: HashMap<String, usize> = HashMap::new();
    for r in got {
        let data = r.data().trim_matches('"').to_owned();
        let (publisher, n) = data.rsplit_once('-').expect("publisher-n");
        let n: usize = n.parse().expect("a number");
        let expected = next.entry(publisher.to_owned()).or_insert(0);
        assert_eq!(
            n, *expected,
            "{name}: from {publisher}: got {n}, expected {expected}"
        );
        *expected += 1;
    }
    for (publisher, count) in counts {
        assert_eq!(
            next.get(*publisher).copied().unwrap_or(0),
            *count,
            "{name}: from {publisher}"
        );
    }
}

fn publications_reach_every_interested_instance(backend: Backend, sharded: bool) {
    let redis = RedisServer::start(&[]);
    let flag = if sharded { "true" } else { "false" };
    let extra = [("REDIS_SHARDED", flag)];
    let a = wsd(backend, &redis.url(), &extra);
    let b = wsd(backend, &redis.url(), &extra);
    let c = wsd(backend, &redis.url(), &extra);
    for w in [&a, &b, &c] {
        wait_redis_state(w.addr, "up", Duration::from_secs(10));
    }
    let topic = cid("room");
    let mut subs: Vec<PsClient> = Vec::new();
    for (i, w) in [&a, &a, &b, &b].iter().enumerate() {
        let mut s = PsClient::connect(w.addr, format!("sub{i}"));
        s.subscribe(&topic);
        subs.push(s);
    }
    let mut bystander = PsClient::connect(c.addr, "c-other");
    bystander.subscribe("other");
    let channel = format!("wsd:t:{topic}");
    wait_numsub(&redis, &channel, sharded, 2, Duration::from_secs(5));
    wait_numsub(&redis, "wsd:t:other", sharded, 1, Duration::from_secs(5));

    // One publisher over WebSocket on A, one over POST /publish on B, interleaved.
    let mut publisher = PsClient::connect(a.addr, "pub-a");
    let (ws_count, http_batches, per_batch) = (200, 20, 5);
    for i in 0..ws_count {
        publisher.publish(&topic, &format!("\"a-{i}\""));
        if i % 10 == 0 && i / 10 < http_batches {
            let j = i / 10;
            let items: Vec<String> = (0..per_batch)
                .map(|k| format!(r#"{{"topic":"{topic}","data":"b-{}"}}"#, j * per_batch + k))
                .collect();
            let body = format!("[{}]", items.join(","));
            let r = http_request(b.addr, "POST", "/publish", &[], body.as_bytes());
            assert_eq!(r.status, 200, "[{backend}] POST /publish: {:?}", r.body);
        }
    }
    publisher.ping(); // all of A's publications are in
    let total = ws_count + http_batches * per_batch;
    for s in &mut subs {
        let got = s.messages(total, Duration::from_secs(10));
        assert_once_in_order(
            &s.name.clone(),
            &got,
            &[("a", ws_count), ("b", http_batches * per_batch)],
        );
        s.expect_silence(
            Duration::from_millis(300),
            "nothing after the last publication",
        );
    }
    bystander.expect_silence(
        Duration::from_millis(200),
        "C has no subscriber of the topic",
    );
    assert_eq!(
        redis.numsub(&channel, sharded),
        2,
        "C never subscribed to the topic"
    );
    assert_eq!(
        metric(c.addr, "wsd_redis_received_total"),
        0,
        "C received nothing"
    );
    assert_eq!(
        metric(a.addr, "wsd_redis_received_total"),
        (http_batches * per_batch) as u64
    );
    assert_eq!(metric(a.addr, "wsd_redis_undeliverable_total"), 0);
}

#[test]
fn publications_reach_every_interested_instance_once_and_in_order() {
    for backend in backends() {
        publications_reach_every_interested_instance(backend, false);
    }
}

#[test]
fn sharded_publications_reach_every_interested_instance_once_and_in_order() {
    for backend in backends() {
        publications_reach_every_interested_instance(backend, true);
    }
}

fn redis_outage(backend: Backend) {
    let mut redis = RedisServer::start(&[]);
    let a = wsd(backend, &redis.url(), &[]);
    let b = wsd(backend, &redis.url(), &[]);
    wait_redis_state(a.addr, "up", Duration::from_secs(10));
    wait_redis_state(b.addr, "up", Duration::from_secs(10));
    let topics = [cid("k1"), cid("k2")];
    let mut on_a = PsClient::connect(a.addr, "on-a");
    let mut on_b = PsClient::connect(b.addr, "on-b");
    for t in &topics {
        on_a.subscribe(t);
        on_b.subscribe(t);
    }
    for t in &topics {
        wait_numsub(
            &redis,
            &format!("wsd:t:{t}"),
            false,
            2,
            Duration::from_secs(5),
        );
    }
    assert_eq!(metric(a.addr, "wsd_redis_up"), 1);

    redis.kill();
    wait_redis_state(a.addr, "down", Duration::from_secs(5));
    assert_eq!(metric(a.addr, "wsd_redis_up"), 0);
    let mut publisher = PsClient::connect(a.addr, "pub-a");
    publisher.publish(&topics[0], "\"while-down\"");
    publisher.ping();
    let got = on_a.messages(1, Duration::from_secs(5));
    assert_eq!(got[0].data(), "\"while-down\"", "local delivery continues");
    on_b.expect_silence(
        Duration::from_millis(300),
        "B cannot hear A while Redis is down",
    );
    poll(Duration::from_secs(5), || {
        (metric(a.addr, "wsd_redis_undeliverable_total") >= 1).then_some(())
    })
    .expect("the publication that could not cross is counted");

    redis.restart();
    let back = Instant::now();
    for t in &topics {
        wait_numsub(
            &redis,
            &format!("wsd:t:{t}"),
            false,
            2,
            Duration::from_secs(5),
        );
    }
    wait_redis_state(a.addr, "up", Duration::from_secs(5));
    wait_redis_state(b.addr, "up", Duration::from_secs(5));
    for (i, t) in topics.iter().enumerate() {
        publisher.publish(t, &format!("\"after-{i}\""));
    }
    let got = on_b.messages(2, Duration::from_secs(5));
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "[{backend}] resumed in {:?}",
        back.elapsed()
    );
    assert_eq!(
        (got[0].data(), got[1].data()),
        ("\"after-0\"", "\"after-1\"")
    );
    assert_eq!(on_a.messages(2, Duration::from_secs(5)).len(), 2);
    assert!(metric(a.addr, "wsd_redis_reconnects_total") >= 1);
}

#[test]
fn redis_down_keeps_local_delivery_and_recovery_restores_every_interest() {
    for backend in backends() {
        redis_outage(backend);
    }
}

#[test]
fn a_redis_that_accepts_but_never_delivers_is_caught_by_the_probe() {
    for backend in backends() {
        let fake = SilentRedis::start();
        let a = wsd(backend, &fake.url(), &[]);
        let mut sub = PsClient::connect(a.addr, "sub");
        sub.subscribe("t"); // SUBSCRIBE is confirmed by the fake, like a healthy Redis
        poll(Duration::from_secs(10), || {
            (metric(a.addr, "wsd_redis_probe_failures_total") >= 1).then_some(())
        })
        .unwrap_or_else(|| panic!("[{backend}] the probe never failed"));
        let (status, body) = health(a.addr);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""redis":"down""#), "[{backend}] {body}");
        assert_eq!(metric(a.addr, "wsd_redis_up"), 0);
        poll(Duration::from_secs(5), || {
            (fake.connections.load(std::sync::atomic::Ordering::Relaxed) >= 2).then_some(())
        })
        .unwrap_or_else(|| panic!("[{backend}] the link did not reconnect after the probe failed"));
    }
}

#[test]
fn no_redis_at_start_is_reported_and_local_service_works() {
    for backend in backends() {
        let port = free_port(); // nothing listens there
        let a = wsd(backend, &format!("redis://127.0.0.1:{port}"), &[]);
        wait_redis_state(a.addr, "down", Duration::from_secs(5));
        let mut sub = PsClient::connect(a.addr, "sub");
        sub.subscribe("t");
        let mut publisher = PsClient::connect(a.addr, "pub");
        publisher.publish("t", "1");
        assert_eq!(sub.messages(1, Duration::from_secs(5))[0].data(), "1");
    }
}
