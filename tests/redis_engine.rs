//! The Redis engine on its own (no workers): two engines ("instances") against a real
//! `redis-server`, with relays standing in for the workers.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fake_redis::SilentRedis;
use common::poll;
use common::redis::RedisServer;
use wsd::io::Waker;
use wsd::pubsub::engine::{self, Bridge, RedisSettings};
use wsd::pubsub::frame_message;
use wsd::pubsub::relay::Relay;

struct Instance {
    relay: Arc<Relay>,
    bridge: Arc<Bridge>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    fn start(url: &str, sharded: bool) -> Instance {
        let wakers = vec![
            Waker::new().expect("eventfd"),
            Waker::new().expect("eventfd"),
        ];
        let relay = Arc::new(Relay::new(wakers));
        let mut settings = RedisSettings::new(url);
        settings.sharded = sharded;
        settings.hysteresis = Duration::from_millis(300);
        settings.probe_interval = Duration::from_millis(200);
        settings.probe_timeout = Duration::from_millis(1000);
        let (bridge, thread) = engine::start(settings, relay.clone()).expect("start the engine");
        Instance {
            relay,
            bridge,
            thread: Some(thread),
        }
    }

    /// Worker `worker` gains (or loses) a local subscriber of `topic`, as the pub/sub app does.
    fn interest(&self, worker: usize, topic: &str, gained: bool) {
        self.relay
            .set_interest(Relay::bucket(topic), worker, gained);
        self.bridge.interest(topic.into(), gained);
        self.bridge.waker().wake();
    }

    fn publish(&self, topic: &str, data: &str) -> Bytes {
        let frame = frame_message(topic, data.as_bytes());
        self.bridge.publish(topic.into(), frame.clone());
        self.bridge.waker().wake();
        frame
    }

    fn wait_up(&self, within: Duration) {
        poll(within, || self.bridge.is_up().then_some(()))
            .unwrap_or_else(|| panic!("engine not up within {within:?}"));
    }

    /// Frames received by `worker` until `n` came or `within` passed.
    fn take(&self, worker: usize, n: usize, within: Duration) -> Vec<Bytes> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            match self.relay.pop(worker) {
                Some(m) => got.push(m.frame.plain_frame().clone()),
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        got
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.bridge.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

fn cross_instance_in_order(sharded: bool) {
    let redis = RedisServer::start(&[]);
    let a = Instance::start(&redis.url(), sharded);
    let b = Instance::start(&redis.url(), sharded);
    a.wait_up(Duration::from_secs(5));
    b.wait_up(Duration::from_secs(5));
    b.interest(1, "room", true);
    a.interest(0, "room", true); // the publisher's instance is interested too: its echo comes back
    wait_numsub(&redis, "wsd:t:room", sharded, 2, Duration::from_secs(5));
    assert_eq!(redis.numsub("wsd:t:other", sharded), 0);

    let sent: Vec<Bytes> = (0..500)
        .map(|i| a.publish("room", &i.to_string()))
        .collect();
    let got = b.take(1, 500, Duration::from_secs(10));
    assert_eq!(got.len(), 500, "every publication reached instance B");
    assert!(got == sent, "the same frames, in publish order");
    assert!(
        b.take(0, 1, Duration::from_millis(200)).is_empty(),
        "B's worker 0 has no interest"
    );
    assert!(
        a.take(0, 1, Duration::from_millis(300)).is_empty(),
        "the publisher's own echo is dropped (it delivered locally)"
    );
    assert_eq!(a.bridge.status.published.load(Ordering::Relaxed), 500);
    assert_eq!(b.bridge.status.received.load(Ordering::Relaxed), 500);
    assert_eq!(a.bridge.status.undeliverable.load(Ordering::Relaxed), 0);
}

#[test]
fn publications_cross_instances_once_and_in_order() {
    cross_instance_in_order(false);
}

#[test]
fn sharded_publications_cross_instances_once_and_in_order() {
    cross_instance_in_order(true);
}

#[test]
fn interest_is_withdrawn_after_the_hysteresis_not_before() {
    let redis = RedisServer::start(&[]);
    let b = Instance::start(&redis.url(), false);
    b.wait_up(Duration::from_secs(5));
    b.interest(0, "t", true);
    b.interest(1, "t", true);
    wait_numsub(&redis, "wsd:t:t", false, 1, Duration::from_secs(5));
    b.interest(0, "t", false);
    b.interest(1, "t", false);
    b.interest(1, "t", true); // flaps back within the hysteresis
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        redis.numsub("wsd:t:t", false),
        1,
        "a flap does not unsubscribe"
    );
    b.interest(1, "t", false);
    let left = Instant::now();
    wait_numsub(&redis, "wsd:t:t", false, 0, Duration::from_secs(5));
    assert!(
        left.elapsed() >= Duration::from_millis(250),
        "withdrawn after the hysteresis"
    );
}

#[test]
fn redis_down_is_counted_and_recovery_restores_interest() {
    let mut redis = RedisServer::start(&[]);
    let a = Instance::start(&redis.url(), false);
    let b = Instance::start(&redis.url(), false);
    a.wait_up(Duration::from_secs(5));
    b.wait_up(Duration::from_secs(5));
    b.interest(0, "x", true);
    wait_numsub(&redis, "wsd:t:x", false, 1, Duration::from_secs(5));

    redis.kill();
    poll(Duration::from_secs(5), || (!a.bridge.is_up()).then_some(()))
        .expect("A notices Redis is gone");
    for i in 0..10 {
        a.publish("x", &i.to_string());
    }
    poll(Duration::from_secs(5), || {
        (a.bridge.status.undeliverable.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .expect("publications while down are counted undeliverable");

    redis.restart();
    let back = Instant::now();
    wait_numsub(&redis, "wsd:t:x", false, 1, Duration::from_secs(5));
    a.wait_up(Duration::from_secs(5));
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "interest restored within 5 s"
    );
    let frame = a.publish("x", "after");
    assert_eq!(b.take(0, 1, Duration::from_secs(5)), [frame]);
}

#[test]
fn password_urls_authenticate() {
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    let bad = Instance::start(&format!("redis://:wrong@127.0.0.1:{}", redis.port), false);
    let good = Instance::start(&format!("redis://:s3cret@127.0.0.1:{}", redis.port), false);
    good.wait_up(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!bad.bridge.is_up(), "a wrong password never comes up");
    assert!(bad.bridge.status.reconnects.load(Ordering::Relaxed) > 0);
}

#[test]
fn acl_user_urls_authenticate() {
    let redis = RedisServer::start(&[]);
    redis.cli(&[
        "ACL", "SETUSER", "wsd", "on", ">pw", "+@pubsub", "+ping", "+hello", "+client", "&*",
    ]);
    let inst = Instance::start(&format!("redis://wsd:pw@127.0.0.1:{}", redis.port), false);
    inst.wait_up(Duration::from_secs(5));
    inst.interest(0, "acl", true);
    wait_numsub(&redis, "wsd:t:acl", false, 1, Duration::from_secs(5));
}

#[test]
fn a_link_that_accepts_but_never_delivers_is_detected_by_the_probe() {
    let fake = SilentRedis::start();
    let inst = Instance::start(&fake.url(), false);
    // Connected, subscribed, publishes acknowledged, PING answered: and yet never up.
    poll(Duration::from_secs(5), || {
        (inst.bridge.status.probe_failures.load(Ordering::Relaxed) >= 1).then_some(())
    })
    .expect("the probe notices nothing comes back");
    assert!(
        fake.publishes.load(Ordering::Relaxed) >= 1,
        "the probe was published"
    );
    poll(Duration::from_secs(5), || {
        (fake.connections.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .expect("the link reconnects after the probe failed");
    assert!(
        !inst.bridge.is_up(),
        "a link that never delivered is never reported up"
    );
}
