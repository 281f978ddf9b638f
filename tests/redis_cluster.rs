//! `REDIS_SHARDED=true` against a real 3-node Redis Cluster started by the test: two wsd
//! processes (2 workers each) that know only one node reach subscribers on topics whose
//! channels live on every shard, on both I/O backends.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::pubsub::{PsClient, Reply, cid};
use common::redis::{RedisCluster, free_port};
use common::{Guard, backends, http_request, poll, wsd_command};
use wsd::io::Backend;

struct Wsd {
    addr: SocketAddr,
    _guard: Guard,
}

fn wsd(backend: Backend, redis_url: &str) -> Wsd {
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
        .env("REDIS_SHARDED", "true")
        .env("LOG_LEVEL", "error")
        .env("SHUTDOWN_TIMEOUT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let r = http_request(addr, "GET", "/metrics", &[], b"");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
}

/// Each publisher's messages exactly once and in order: data is `"<publisher>-<n>"`.
fn assert_once_in_order(name: &str, got: &[Reply], counts: &[(&str, usize)]) {
    let mut next: HashMap<String, usize> = HashMap::new();
    for r in got {
        let data = r.data().trim_matches('"').to_owned();
        let (publisher, n) = data.rsplit_once('-').expect("publisher-n");
        let n: usize = n.parse().expect("a number");
        let expected = next.entry(publisher.to_owned()).or_insert(0);
        assert_eq!(n, *expected, "{name}: from {publisher}");
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

/// Topics whose channels (`wsd:t:<topic>`) cover every node, two per node.
fn topics_on_every_node(cluster: &RedisCluster) -> Vec<(String, u16)> {
    let mut per_node: HashMap<u16, usize> = HashMap::new();
    let mut topics = Vec::new();
    for _ in 0..200 {
        let topic = cid("shard");
        let port = cluster.owner(&format!("wsd:t:{topic}")).port;
        let n = per_node.entry(port).or_insert(0);
        if *n < 2 {
            *n += 1;
            topics.push((topic, port));
        }
        if topics.len() == 2 * cluster.nodes.len() {
            return topics;
        }
    }
    panic!("no topics on every node: {per_node:?}");
}

fn sharded_over_cluster(backend: Backend, cluster: &RedisCluster) {
    let url = cluster.nodes[0].url();
    let a = wsd(backend, &url);
    let b = wsd(backend, &url);
    for w in [&a, &b] {
        poll(Duration::from_secs(15), || {
            let (status, body) = health(w.addr);
            (status == 200 && body.contains(r#""redis":"up""#)).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "[{backend}] /health of {} not up: {:?}",
                w.addr,
                health(w.addr)
            )
        });
    }
    let topics = topics_on_every_node(cluster);
    let mut subs: Vec<(usize, PsClient)> = Vec::new();
    for (i, (topic, _)) in topics.iter().enumerate() {
        for (side, w) in [("a", &a), ("b", &b)] {
            let mut s = PsClient::connect(w.addr, format!("{side}-{topic}"));
            s.subscribe(topic);
            subs.push((i, s));
        }
    }
    // Both instances hold each channel on the node that owns its slot.
    for (topic, port) in &topics {
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.port == *port)
            .expect("owner is a node");
        let channel = format!("wsd:t:{topic}");
        poll(Duration::from_secs(10), || {
            (node.numsub(&channel, true) == 2).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "[{backend}] {channel} on node {port}: {} subscribers, expected 2",
                node.numsub(&channel, true)
            )
        });
    }

    // A publishes over WebSocket, B over POST /publish, interleaved over every topic.
    let mut publisher = PsClient::connect(a.addr, "pub-a");
    let per_topic = 40;
    for n in 0..per_topic {
        let mut items = Vec::new();
        for (topic, _) in &topics {
            publisher.publish(topic, &format!("\"a-{n}\""));
            items.push(format!(r#"{{"topic":"{topic}","data":"b-{n}"}}"#));
        }
        let body = format!("[{}]", items.join(","));
        let r = http_request(b.addr, "POST", "/publish", &[], body.as_bytes());
        assert_eq!(r.status, 200, "[{backend}] POST /publish: {:?}", r.body);
    }
    publisher.ping();
    for (i, s) in &mut subs {
        let got = s.messages(2 * per_topic, Duration::from_secs(10));
        for r in &got {
            assert_eq!(r.topic(), topics[*i].0, "[{backend}] {}", s.name);
        }
        assert_once_in_order(
            &format!("[{backend}] {}", s.name),
            &got,
            &[("a", per_topic), ("b", per_topic)],
        );
        s.expect_silence(
            Duration::from_millis(200),
            "nothing after the last publication",
        );
    }
    let sent = (per_topic * topics.len()) as u64;
    assert_eq!(
        metric(a.addr, "wsd_redis_received_total"),
        sent,
        "[{backend}] A got B's"
    );
    assert_eq!(
        metric(b.addr, "wsd_redis_received_total"),
        sent,
        "[{backend}] B got A's"
    );
    for w in [&a, &b] {
        assert_eq!(
            metric(w.addr, "wsd_redis_undeliverable_total"),
            0,
            "[{backend}]"
        );
        assert_eq!(metric(w.addr, "wsd_redis_up"), 1, "[{backend}]");
    }
}

#[test]
fn sharded_mode_routes_every_topic_to_its_shard_in_a_three_node_cluster() {
    let cluster = RedisCluster::start();
    for backend in backends() {
        sharded_over_cluster(backend, &cluster);
    }
}
