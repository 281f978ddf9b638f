//! Memory under subscribers that never read: every queued byte counts, in each connection's
//! budget and in `wsd_queued_bytes`, whether the message was copied into the subscriber's queue
//! (small frames) or shared; on both backends.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::io::Backend;
use wsd::worker::READ_PAUSE_BYTES;

/// `wsd_queued_bytes` summed over the workers, from `/metrics`.
fn queued_bytes(addr: SocketAddr) -> u64 {
    let resp = http_request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    let text = resp.text();
    let values: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("wsd_queued_bytes{"))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("bad sample {l:?}"))
        })
        .collect();
    assert!(!values.is_empty(), "no wsd_queued_bytes in /metrics");
    values.iter().sum()
}

/// A `POST /publish` body of `n` messages on `topic`, each a ~200-byte JSON string.
fn small_batch(topic: &str, n: usize, round: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"topic":"{topic}","data":"r{round:04}m{i:04}{}"}}"#,
                "s".repeat(180)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[test]
fn small_messages_to_subscribers_that_never_read_are_counted_within_the_budget() {
    const BUDGET: usize = 64 << 10;
    const SUBSCRIBERS: usize = 200;
    for backend in backends() {
        off_thread(move || {
            let ctx = format!("[{backend}]");
            let server = start(backend, |c| {
                c.app = AppKind::Pubsub;
                c.max_backpressure = BUDGET;
                // A small kernel buffer, so the backlog builds in wsd after a few messages.
                c.send_buffer = 4096;
            });
            let addr = server.local_addr();
            let mut subs: Vec<PsClient> = (0..SUBSCRIBERS)
                .map(|i| PsClient::connect_small_rcvbuf(addr, format!("{ctx} sub {i}"), 4096))
                .collect();
            for s in &mut subs {
                s.subscribe("small");
            }
            let mut max_seen = 0;
            let mut dropped = 0;
            let mut rounds = 0;
            for round in 0..60 {
                rounds = round + 1;
                let body = small_batch("small", 1000, round);
                let resp = http_request(addr, "POST", "/publish", &[], body.as_bytes());
                assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
                let q = queued_bytes(addr);
                max_seen = max_seen.max(q);
                // Each subscriber holds at most its budget plus one message (~240 B framed).
                assert!(
                    q <= (SUBSCRIBERS * (BUDGET + 512)) as u64,
                    "{ctx}: round {round}: wsd_queued_bytes {q} is over the budget × subscribers"
                );
                dropped = total(&stats(addr), |w| w.dropped_newest);
                if dropped > 0 && max_seen > 0 {
                    break;
                }
            }
            assert!(dropped > 0, "{ctx}: no subscriber ever reached its budget");
            assert!(
                max_seen > 0,
                "{ctx}: {dropped} messages dropped over budget while wsd_queued_bytes read 0: \
                 copied small frames are not counted"
            );
            // SEND_BUFFER: the kernel holds ~8 KiB per subscriber (4 KiB doubled) on top of the
            // client's small receive buffer, so the first 1,000 messages (~240 KB each) overflow
            // the 64 KiB budget at once. With the kernel's autotuning it takes megabytes.
            assert_eq!(
                rounds, 1,
                "{ctx}: SEND_BUFFER=4096 did not bound the kernel's share of the backlog"
            );
            eprintln!("{ctx}: wsd_queued_bytes {max_seen}, dropped {dropped}");
            drop(subs);
            let drained = poll(Duration::from_secs(20), || {
                (queued_bytes(addr) == 0).then_some(())
            });
            assert!(
                drained.is_some(),
                "{ctx}: queued bytes stay after the close"
            );
        });
    }
}

/// The resident set of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A counter or gauge summed over its samples, from `/metrics`.
fn metric(addr: SocketAddr, family: &str) -> u64 {
    let resp = http_request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    let prefix = format!("{family}{{");
    resp.text()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Starts the wsd binary (pub/sub, two workers) with `envs` and waits until it answers.
fn spawn_wsd(backend: Backend, envs: &[(&str, &str)]) -> (Guard, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("port")
        .port();
    let io = if backend == Backend::Uring {
        "uring"
    } else {
        "epoll"
    };
    let child = wsd_command()
        .envs([
            ("PORT", port.to_string().as_str()),
            ("HOST", "127.0.0.1"),
            ("WSD_APP", "pubsub"),
            ("WSD_IO", io),
            ("CLUSTER_WORKERS", "2"),
            ("LOG_LEVEL", "error"),
        ])
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wsd");
    let guard = Guard(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let up = poll(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    assert!(up.is_some(), "wsd did not start");
    (guard, addr)
}

/// A `POST /publish` body of `n` messages of ~`size` bytes on `topic`.
fn batch(topic: &str, n: usize, size: usize, round: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"topic":"{topic}","data":"r{round:04}m{i:04}{}"}}"#,
                "x".repeat(size)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// `MAX_QUEUED_BYTES` bounds the whole process: 200 subscribers that never read, each allowed
/// 1 MiB by `MAX_BACKPRESSURE`, are flooded with shared (1 KiB) and copied (200 B) messages; wsd's
/// RSS grows by at most the bound plus a documented overhead instead of 200 × 1 MiB, the
/// bound's drops are counted, two reading subscribers of another topic get every message, and
/// the memory comes back to the system once the flood's clients are gone.
#[test]
fn max_queued_bytes_bounds_rss_while_readers_are_served() {
    const BOUND: u64 = 8 << 20;
    const SUBSCRIBERS: usize = 200;
    for backend in backends() {
        off_thread(move || {
            let ctx = format!("[{backend}]");
            // RSS over the start allowed once the flood's clients are gone (docs/OPERATIONS.md):
            // io_uring also keeps what its provided-buffer rings (256 × 32 KiB a worker, up to
            // 16 MiB for two workers) touched, so its bound has room for them; epoll's is the one
            // that fails without the trim (+13 to +22 MiB stayed).
            // epoll: +6 to +8 MiB measured when the trim landed (21c6a6c), +7.2 to +8.3 MiB with
            // main's wsd at d17a95d; with the idle-state merge (09ff062: boxed pending sends and
            // shared parts, block-freed deadlines) +8.4 to +11.2 MiB (seven runs, debug and
            // release wsd, 2026-12-03). The cause of that 1-3 MiB shift is not found yet (see
            // BENCHMARKS.md). Without the trim +13 to +22 MiB stayed, so 13 MiB still tells.
            let returned_kib: u64 = match backend {
                Backend::Epoll => 13 << 10,
                Backend::Uring => 22 << 10,
            };
            let bound = BOUND.to_string();
            let (guard, addr) = spawn_wsd(
                backend,
                &[("MAX_QUEUED_BYTES", &bound), ("SEND_BUFFER", "4096")],
            );
            let pid = guard.0.id();
            let mut subs: Vec<PsClient> = (0..SUBSCRIBERS)
                .map(|i| PsClient::connect_small_rcvbuf(addr, format!("{ctx} sub {i}"), 4096))
                .collect();
            for s in &mut subs {
                s.subscribe("flood");
            }
            let mut readers: Vec<PsClient> = (0..2)
                .map(|i| PsClient::connect(addr, format!("{ctx} reader {i}")))
                .collect();
            for r in &mut readers {
                r.subscribe("live");
            }
            let before = rss_kib(pid);
            let mut peak = before;
            for round in 0..12 {
                // Mostly copied frames (200 B: each subscriber's copy is real memory), some
                // shared ones (1 KiB: one copy for all).
                let size = if round % 4 == 3 { 1000 } else { 180 };
                let body = batch("flood", 1000, size, round);
                let resp = http_request(addr, "POST", "/publish", &[], body.as_bytes());
                assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
                peak = peak.max(rss_kib(pid));
                let queued = metric(addr, "wsd_queued_bytes");
                // Each worker passes its share by at most what its connections below their
                // fair part may still take (one share) plus a message each.
                assert!(
                    queued <= 2 * BOUND + (SUBSCRIBERS as u64 + 2) * 1100,
                    "{ctx}: round {round}: wsd_queued_bytes {queued} is far over MAX_QUEUED_BYTES"
                );
            }
            let applied = metric(addr, "wsd_queued_bound_applied_total");
            assert!(applied > 0, "{ctx}: the bound never applied");
            let dropped = metric(addr, "wsd_dropped_messages_total");
            assert!(
                dropped >= applied,
                "{ctx}: {applied} applications, {dropped} drops"
            );
            // Readers of another topic are served in full, in order, while the flood's queues
            // stay full.
            for i in 0..50 {
                let body = format!(r#"[{{"topic":"live","data":"live{i:03}"}}]"#);
                let resp = http_request(addr, "POST", "/publish", &[], body.as_bytes());
                assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
            }
            for r in &mut readers {
                for i in 0..50 {
                    let m = r.next();
                    assert!(m.is_message(), "{ctx}: {}: {}", r.name, m.text);
                    assert!(
                        m.text.contains(&format!("live{i:03}")),
                        "{ctx}: {}: message {i} missing or out of order: {}",
                        r.name,
                        m.text
                    );
                }
            }
            let grown = peak.saturating_sub(before);
            eprintln!(
                "{ctx}: RSS {before} KiB before the flood, peak {peak} KiB (+{grown} KiB), \
                 bound applied {applied} times, {dropped} drops"
            );
            // The bound (8 MiB) plus the overhead docs/OPERATIONS.md documents: each worker's
            // buffer pool, tails grown by doubling, the publish request and its parse.
            assert!(
                grown <= (BOUND >> 10) * 2 + 48 * 1024,
                "{ctx}: RSS grew by {grown} KiB under an {} KiB bound",
                BOUND >> 10
            );
            drop(subs);
            let drained = poll(Duration::from_secs(20), || {
                (metric(addr, "wsd_queued_bytes") == 0).then_some(())
            });
            assert!(
                drained.is_some(),
                "{ctx}: queued bytes stay after the close"
            );
            // The memory comes back to the system once the subscribers are gone: a quiet worker
            // drops its buffer pool and parse scratch and lets the allocator purge what was freed
            // (worker/trim.rs). Measured a few seconds later: +6 to +8 MiB (epoll) and +11 to
            // +15 MiB (io_uring) over the start, of +21 to +33 MiB at the peak; before the trim,
            // +13 to +22 MiB (epoll) and +18 to +32 MiB (io_uring) stayed.
            let mut after = rss_kib(pid);
            let returned = poll(Duration::from_secs(10), || {
                after = rss_kib(pid);
                (after.saturating_sub(before) <= returned_kib).then_some(())
            });
            eprintln!(
                "{ctx}: RSS {after} KiB (+{} KiB) after the subscribers left, peak +{grown} KiB",
                after.saturating_sub(before)
            );
            assert!(
                returned.is_some(),
                "{ctx}: RSS stayed at {after} KiB (+{} KiB over the start, peak +{grown} KiB) \
                 10 s after the subscribers left; at most +{returned_kib} KiB expected",
                after.saturating_sub(before)
            );
            // A second flood with new subscribers stays within the same bound counted from the
            // start: what the first left resident (allocator pages, docs/OPERATIONS.md) is
            // partly reused, not added to without bound.
            let mut subs: Vec<PsClient> = (0..SUBSCRIBERS)
                .map(|i| PsClient::connect_small_rcvbuf(addr, format!("{ctx} sub2 {i}"), 4096))
                .collect();
            for s in &mut subs {
                s.subscribe("flood");
            }
            let mut peak2 = after;
            for round in 0..12 {
                let size = if round % 4 == 3 { 1000 } else { 180 };
                let body = batch("flood", 1000, size, round);
                let resp = http_request(addr, "POST", "/publish", &[], body.as_bytes());
                assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
                peak2 = peak2.max(rss_kib(pid));
            }
            eprintln!(
                "{ctx}: RSS {after} KiB once the subscribers are gone, {peak2} KiB at the \
                 second flood's peak"
            );
            assert!(
                peak2.saturating_sub(before) <= (BOUND >> 10) * 2 + 48 * 1024,
                "{ctx}: the second flood took RSS to {peak2} KiB, the first to {peak} KiB"
            );
            drop(subs);
        });
    }
}

/// io_uring's receive ring comes back once the worker is quiet: 32 clients of a one-worker echo
/// server send 16 KiB messages until 12 MiB went through the ring, more than its 8 MiB (the
/// kernel takes ring buffers in order, so all of them were written), then stay connected and
/// idle. RSS falls back to within 4 MiB of where it was before the traffic, and echoes after that
/// still come back intact. When nothing gave the ring's pages back, all 8 MiB of it stayed
/// resident: the test fails on the commit before, +8,092 KiB once quiet (+420 KiB with it).
#[test]
fn io_uring_gives_its_receive_ring_back_when_quiet() {
    if !backends().contains(&Backend::Uring) {
        return;
    }
    off_thread(|| {
        const RETURNED_KIB: u64 = 4 << 10;
        let (guard, addr) = spawn_wsd(
            Backend::Uring,
            &[("WSD_APP", "echo"), ("CLUSTER_WORKERS", "1")],
        );
        let pid = guard.0.id();
        let mut clients: Vec<_> = (0..32).map(|_| ws_connect(addr)).collect();
        let payload = pseudo_random(16 << 10, 15);
        let round = |clients: &mut Vec<tungstenite::WebSocket<std::net::TcpStream>>| {
            for c in clients.iter_mut() {
                c.send(tungstenite::Message::binary(payload.clone()))
                    .expect("send");
            }
            for (i, c) in clients.iter_mut().enumerate() {
                let echo = c.read().expect("echo");
                assert!(
                    echo.is_binary() && echo.into_data() == payload,
                    "client {i}: the echo differs from what was sent"
                );
            }
        };
        // One round first, so the echo path's one-time allocations are made before `before`.
        round(&mut clients);
        std::thread::sleep(Duration::from_millis(2500));
        let before = rss_kib(pid);
        let mut through = 0;
        while through < 12 << 20 {
            round(&mut clients);
            through += clients.len() * payload.len();
        }
        let peak = rss_kib(pid);
        let mut after = peak;
        let returned = poll(Duration::from_secs(10), || {
            after = rss_kib(pid);
            (after.saturating_sub(before) <= RETURNED_KIB).then_some(())
        });
        eprintln!(
            "[io_uring] RSS {before} KiB idle, {peak} KiB (+{} KiB) after {} MiB of echoes, \
             {after} KiB (+{} KiB) once quiet",
            peak.saturating_sub(before),
            through >> 20,
            after.saturating_sub(before)
        );
        assert!(
            returned.is_some(),
            "RSS stayed at {after} KiB (+{} KiB over the idle start, +{} KiB after the echoes) \
             10 s after the clients went quiet; at most +{RETURNED_KIB} KiB expected",
            after.saturating_sub(before),
            peak.saturating_sub(before)
        );
        // The released pages are the ring's: receiving into them again works.
        for _ in 0..4 {
            round(&mut clients);
        }
    });
}

/// A client that floods pings and never reads the pongs: the pongs count as queued bytes, the
/// read pause stops reading it at `READ_PAUSE_BYTES`, and pings that arrive while it is over
/// get one pong per run (the last ping's), so wsd's queue for it stays near that bound on both
/// backends instead of growing with what the receive ring holds; another client is served.
#[test]
fn a_ping_flood_whose_pongs_are_never_read_stays_near_the_read_pause() {
    use std::io::Write;
    for backend in backends() {
        off_thread(move || {
            let ctx = format!("[{backend}]");
            let server = start(backend, |c| {
                c.app = AppKind::Echo;
                c.send_buffer = 4096;
            });
            let addr = server.local_addr();
            let (mut stream, _) = raw_handshake(addr, b"");
            let _ = socket2::SockRef::from(&stream).set_recv_buffer_size(4096);
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let ping = client_frame(OP_PING, &[b'p'; 125]);
            let chunk: Vec<u8> = ping
                .iter()
                .copied()
                .cycle()
                .take(ping.len() * 500)
                .collect();
            let flood = std::thread::spawn(move || {
                let mut sent = 0usize;
                // Until wsd stops reading (a write blocks for 2 s) or 64 MB went.
                while sent < 64 << 20 {
                    match stream.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                (stream, sent)
            });
            let mut max_seen = 0;
            while !flood.is_finished() {
                max_seen = max_seen.max(queued_bytes(addr));
                std::thread::sleep(Duration::from_millis(20));
            }
            let (stream, sent) = flood.join().expect("flood thread");
            for _ in 0..5 {
                max_seen = max_seen.max(queued_bytes(addr));
            }
            eprintln!("{ctx}: {sent} bytes of pings sent, wsd_queued_bytes at most {max_seen}");
            assert!(
                sent > 4 << 20,
                "{ctx}: only {sent} bytes of pings went out: no flood"
            );
            assert!(
                max_seen > 0,
                "{ctx}: the pongs never counted in wsd_queued_bytes"
            );
            assert!(
                max_seen <= (READ_PAUSE_BYTES + (256 << 10)) as u64,
                "{ctx}: {max_seen} bytes queued for a ping flood, read pause at {READ_PAUSE_BYTES}"
            );
            let mut other = ws_connect(addr);
            other
                .send(tungstenite::Message::text("still here"))
                .expect("send");
            let echo = other.read().expect("echo");
            assert_eq!(
                echo.into_text().expect("text").as_str(),
                "still here",
                "{ctx}"
            );
            drop(stream);
        });
    }
}
