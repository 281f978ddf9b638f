//! Fault injection: each fault hits some connections (or the whole worker's ring) while a healthy
//! client keeps talking, and afterwards the healthy client's echo, a fresh client's echo and
//! `/health` must all still work.
//!
//! - Rings far too small (io_uring, `Server::start_tuned`: the test-only way to size a worker's
//!   ring; no flag, variable or file key): a 4-buffer provided-buffer ring of 256 bytes (ENOBUFS on
//!   every burst), a 4-entry submission queue (full on every turn) and an 8-entry completion queue
//!   (overflow into the kernel's list). Each path is proved taken by the worker's counters.
//! - Clients reset (RST, `SO_LINGER` 0) mid-handshake, mid-frame, and with an echo on its way to
//!   them, on both backends; every one of those connections must be released.
//! - EMFILE at accept, and no spinning while it lasts: the `wsd` binary started under
//!   `prlimit --nofile=64:64` with `MAX_CONNECTIONS=1000` (so admission does not refuse first) runs
//!   out of descriptors; the
//!   connection it already serves keeps being served, and once the flood goes, new clients are
//!   accepted again. Both backends.
//!
//! tests/uring_recovery.rs checks that the small-ring paths lose, duplicate and reorder nothing.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;
use wsd::config::{Config, Workers};
use wsd::io::Backend;
use wsd::server::Server;
use wsd::uring::UringParams;

/// One echo round trip on `ws`, checked byte for byte.
fn echo_ok<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>, n: u64, ctx: &str) {
    let payload = pseudo_random(1 + (n % 300) as usize, n);
    ws.send(Message::Binary(payload.clone().into()))
        .unwrap_or_else(|e| panic!("{ctx}: healthy client send {n}: {e}"));
    loop {
        match ws.read() {
            Ok(Message::Binary(got)) => {
                assert_eq!(got.as_ref(), payload.as_slice(), "{ctx}: echo {n}");
                return;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("{ctx}: healthy client echo {n}: {other:?}"),
        }
    }
}

/// After a fault: the healthy client, a fresh client and /health are all served.
fn everyone_served<S: Read + Write>(
    addr: SocketAddr,
    healthy: &mut tungstenite::WebSocket<S>,
    ctx: &str,
) {
    echo_ok(healthy, 7_777, ctx);
    let mut fresh = ws_connect(addr);
    echo_ok(&mut fresh, 8_888, &format!("{ctx}, a fresh client"));
    let _ = fresh.close(None);
    let h = health_info(addr);
    assert_eq!(h.status, "ok", "{ctx}: /health {h:?}");
}

/// A TCP connection closed with RST instead of FIN (`SO_LINGER` 0).
fn reset(stream: TcpStream) {
    let sock = socket2::Socket::from(stream);
    sock.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
    drop(sock);
}

#[test]
fn tiny_rings_and_a_full_submission_queue_leave_every_client_served() {
    if !backends().contains(&Backend::Uring) {
        return; // `backends()` already said why (and panics in CI where io_uring is required)
    }
    wsd::sys::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let config = Config {
        host: "127.0.0.1".parse().expect("address"),
        port: 0,
        cluster_workers: Workers::Count(1),
        io: wsd::io::IoMode::Uring,
        app: wsd::app::AppKind::Echo,
        shutdown_timeout: 5,
        ..Config::default()
    };
    let tiny = UringParams {
        recv_buffers: 4,
        recv_buf_size: 256,
        sq_entries: 4,
        cq_entries: 8,
        ..UringParams::default()
    };
    let server = off_thread(move || Server::start_tuned(&config, tiny)).expect("server starts");
    let addr = server.local_addr();
    let mut healthy = ws_connect(addr);
    echo_ok(&mut healthy, 0, "before the flood");

    // 3 threads × 30 connections, each with 4 messages of up to ~2 KiB in flight per round.
    let flood: Vec<_> = (0..3u64)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<_> = (0..30).map(|_| ws_connect(addr)).collect();
                for round in 0..15u64 {
                    let seed = |c: usize, k: u64| (t << 40) | ((c as u64) << 20) | (round << 4) | k;
                    let len = |s: u64| 1 + (s.wrapping_mul(2_654_435_761) % 2_000) as usize;
                    for (c, ws) in conns.iter_mut().enumerate() {
                        for k in 0..4 {
                            let s = seed(c, k);
                            ws.send(Message::Binary(pseudo_random(len(s), s).into()))
                                .expect("flood send");
                        }
                    }
                    for (c, ws) in conns.iter_mut().enumerate() {
                        for k in 0..4 {
                            let s = seed(c, k);
                            let got = ws.read().expect("flood echo");
                            assert_eq!(got.into_data().as_ref(), pseudo_random(len(s), s));
                        }
                    }
                }
                for mut ws in conns {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                }
            })
        })
        .collect();
    // The healthy client is served all along.
    let mut n = 1;
    while flood.iter().any(|f| !f.is_finished()) {
        echo_ok(&mut healthy, n, "during the flood");
        n += 1;
    }
    for f in flood {
        f.join().expect("flood thread");
    }
    everyone_served(addr, &mut healthy, "after the flood");
    let stats = &server.worker_stats()[0];
    let (enobufs, overflows, sq_full) = (
        stats.recv_enobufs.load(Ordering::Relaxed),
        stats.cq_overflows.load(Ordering::Relaxed),
        stats.sq_full.load(Ordering::Relaxed),
    );
    eprintln!(
        "{n} healthy echoes during the flood; ENOBUFS re-arms {enobufs}, CQ overflows {overflows}, \
         SQ full {sq_full}"
    );
    assert!(enobufs > 0, "the 4-buffer ring never ran dry");
    assert!(overflows > 0, "the 8-entry CQ never overflowed");
    assert!(sq_full > 0, "the 4-entry SQ was never full");
    let _ = healthy.close(None);
}

/// The upgrade request, cut after `at` bytes.
fn partial_upgrade(addr: SocketAddr, at: usize) -> TcpStream {
    let mut s = tcp(addr);
    let req = upgrade_request("/ws");
    s.write_all(&req.as_bytes()[..at.min(req.len())])
        .expect("send part of the upgrade");
    s
}

#[test]
fn clients_reset_mid_handshake_and_mid_frame_leave_every_other_client_served() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let ctx = format!("[{backend}]");
        let mut healthy = ws_connect(addr);
        echo_ok(&mut healthy, 0, &ctx);
        for i in 0..60u64 {
            // Mid-handshake: part of the request line or of the headers.
            reset(partial_upgrade(addr, 5 + (i as usize * 7) % 120));
            // Mid-frame: upgraded, then a header announcing 64 KiB and only part of it.
            let (mut c, _) = raw_handshake(addr, &[]);
            let mut partial = client_header(OP_BINARY, true, 65_536);
            partial.extend(vec![0x55; 1_000 + (i as usize % 5) * 3_000]);
            c.write_all(&partial).expect("send part of a frame");
            reset(c);
            // With an echo on its way: a 256 KiB message, reset without reading its echo.
            let (mut c, _) = raw_handshake(addr, &[]);
            c.write_all(&client_frame(OP_BINARY, &pseudo_random(256 * 1024, i)))
                .expect("send a message");
            thread::sleep(Duration::from_millis(1));
            reset(c);
            echo_ok(&mut healthy, i + 1, &ctx);
        }
        everyone_served(addr, &mut healthy, &ctx);
        // Every reset connection is released: the healthy client and the /health request remain.
        let h = wait_connections(addr, 2, Duration::from_secs(20));
        assert_eq!(h.connections, 2, "{ctx}: connections left behind: {h:?}");
        let _ = healthy.close(None);
    }
}

/// Starts the `wsd` binary under `prlimit --nofile=N:N`; returns it, its address and its log.
fn spawn_limited(backend: Backend, nofile: u32) -> (Guard, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_wsd"));
    let probe = wsd_command();
    for (k, v) in probe.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("WSD_APP", "echo")
        .env("CLUSTER_WORKERS", "1")
        .env("MAX_CONNECTIONS", "1000")
        .env("LOG_FORMAT", "json")
        .env(
            "WSD_IO",
            match backend {
                Backend::Epoll => "epoll",
                Backend::Uring => "uring",
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit wsd");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("log").push(line);
        }
    });
    let guard = Guard(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let up = poll(Duration::from_secs(10), || {
        log.lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("wsd listening"))
            .then_some(())
    });
    assert!(
        up.is_some(),
        "[{backend}] wsd under prlimit did not start: {:#?}",
        log.lock().expect("log")
    );
    (guard, addr, log)
}

#[test]
fn emfile_at_accept_keeps_serving_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for the EMFILE test");
    }
    for backend in backends() {
        let ctx = format!("[{backend}] EMFILE");
        let (mut wsd, addr, log) = spawn_limited(backend, 64);
        let mut healthy = ws_connect(addr);
        echo_ok(&mut healthy, 0, &ctx);
        // 100 connections against 64 descriptors: the kernel completes them all (backlog), the
        // server's accept runs out of descriptors.
        let flood: Vec<TcpStream> = (0..100).map(|_| tcp(addr)).collect();
        let hit = poll(Duration::from_secs(20), || {
            log.lock()
                .expect("log")
                .iter()
                .any(|l| l.contains("accept") && l.contains("Too many open files"))
                .then_some(())
        });
        assert!(
            hit.is_some(),
            "{ctx}: accept never failed with EMFILE: {:#?}",
            log.lock().expect("log")
        );
        // Out of descriptors, the server still serves what it has.
        let cpu_before = cpu_seconds(wsd.0.id());
        let t = Instant::now();
        for n in 1..=20 {
            echo_ok(&mut healthy, n, &ctx);
            thread::sleep(Duration::from_millis(50));
        }
        let spent = cpu_seconds(wsd.0.id()) - cpu_before;
        let elapsed = t.elapsed().as_secs_f64();
        eprintln!("{ctx}: server CPU while out of descriptors: {spent:.2} s over {elapsed:.2} s");
        // The listener rests between failed accepts (`accept_backoff.rs`) instead of retrying every
        // turn: before that, 0.54 (epoll) and 0.79 (io_uring) s of CPU per second here.
        assert!(
            spent < 0.25 * elapsed,
            "{ctx}: the server spins while out of descriptors: {spent:.2} s of CPU in {elapsed:.2} s"
        );
        drop(flood);
        // The flood gone, new clients are accepted again (the kernel's backlog drains first).
        let served = poll(Duration::from_secs(20), || {
            let mut s = TcpStream::connect(addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            let resp = read_response(&mut s).ok()?;
            (resp.status == 200).then_some(())
        });
        assert!(served.is_some(), "{ctx}: /health never answered again");
        everyone_served(addr, &mut healthy, &ctx);
        assert!(
            matches!(wsd.0.try_wait(), Ok(None)),
            "{ctx}: wsd exited: {:#?}",
            log.lock().expect("log")
        );
        let _ = healthy.close(None);
        let _ = wsd.0.kill();
    }
}

/// utime + stime of process `pid`, in seconds (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}
