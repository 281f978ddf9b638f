//! Many connections at once, several workers, and clients that vanish.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use tungstenite::{Message, WebSocket};
use wsd::config::Workers;

const CLIENT_THREADS: usize = 10;
const CONNS_PER_THREAD: usize = 100;
const MESSAGES: usize = 100;

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".to_owned())
}

/// Closes a tungstenite client and waits until the server has closed TCP.
fn close_client(ws: &mut WebSocket<TcpStream>, ctx: &str) {
    ws.close(None)
        .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(Message::Pong(_)) => continue,
            Ok(other) => panic!("{ctx}: unexpected message while closing: {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("{ctx}: closing failed: {e}"),
        }
    }
}

#[test]
fn thousand_connections_echo_a_hundred_messages_each() {
    let limit = wsd::sys::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    // Client and server ends of every connection live in this process.
    assert!(
        limit >= 2 * 1000 + 256,
        "RLIMIT_NOFILE {limit} is too low for 1000 connections"
    );
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut go = Vec::new();
        let mut threads = Vec::new();
        for t in 0..CLIENT_THREADS {
            let ready_tx = ready_tx.clone();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            go.push(go_tx);
            threads.push(std::thread::spawn(move || {
                let ids: Vec<usize> = (0..CONNS_PER_THREAD)
                    .map(|k| t * CONNS_PER_THREAD + k)
                    .collect();
                let mut conns: Vec<_> = ids.iter().map(|_| ws_connect(addr)).collect();
                ready_tx.send(()).unwrap();
                for i in 0..MESSAGES {
                    for (ws, c) in conns.iter_mut().zip(&ids) {
                        ws.send(Message::text(format!("conn-{c}-msg-{i}")))
                            .unwrap_or_else(|e| panic!("[{backend}] conn {c} send {i}: {e}"));
                    }
                    for (ws, c) in conns.iter_mut().zip(&ids) {
                        match ws.read() {
                            Ok(Message::Text(t)) => assert_eq!(
                                t.as_str(),
                                format!("conn-{c}-msg-{i}"),
                                "[{backend}] conn {c} reply {i}"
                            ),
                            other => panic!("[{backend}] conn {c} reply {i}: {other:?}"),
                        }
                    }
                }
                // Stay open until the main thread has looked at /health (or gave up).
                let _ = go_rx.recv_timeout(Duration::from_secs(60));
                for (ws, c) in conns.iter_mut().zip(&ids) {
                    close_client(ws, &format!("[{backend}] conn {c}"));
                }
            }));
        }
        drop(ready_tx);
        let mut ready = 0;
        while ready < CLIENT_THREADS && ready_rx.recv_timeout(Duration::from_secs(60)).is_ok() {
            ready += 1;
        }
        let open = (ready == CLIENT_THREADS).then(|| health_info(addr));
        for tx in go {
            let _ = tx.send(());
        }
        let failures: Vec<String> = threads
            .into_iter()
            .filter_map(|t| t.join().err().map(panic_text))
            .collect();
        assert!(
            failures.is_empty(),
            "[{backend}] client threads failed:\n{}",
            failures.join("\n")
        );
        let open = open.expect("every client thread connected");
        assert_eq!(
            open.connections, 1001,
            "[{backend}] 1000 clients + /health open: {open:?}"
        );
        assert_eq!(
            open.workers[0].1, 1001,
            "[{backend}] accepted = 1000 + this /health: {open:?}"
        );

        let after = wait_connections(addr, 1, Duration::from_secs(5));
        assert_eq!(
            after.connections, 1,
            "[{backend}] every client closed again: {after:?}"
        );
        assert!(
            after.workers[0].1 >= 1002,
            "[{backend}] accepted >= 1000 + 2 /health: {after:?}"
        );
    }
}

#[test]
fn two_workers_both_accept_connections() {
    for backend in backends() {
        let server = start(backend, |cfg| cfg.cluster_workers = Workers::Count(2));
        let addr = server.local_addr();
        let mut conns: Vec<_> = (0..64).map(|_| ws_connect(addr)).collect();
        for (i, ws) in conns.iter_mut().enumerate() {
            ws.send(Message::text(format!("hi {i}"))).unwrap();
            assert_eq!(
                ws.read().unwrap(),
                Message::text(format!("hi {i}")),
                "[{backend}]"
            );
        }
        let h = health_info(addr);
        assert_eq!(h.workers.len(), 2, "[{backend}] two workers: {h:?}");
        assert_eq!(h.connections, 65, "[{backend}] 64 clients + /health: {h:?}");
        let sum: u64 = h.workers.iter().map(|w| w.0).sum();
        assert_eq!(
            sum, h.connections,
            "[{backend}] per-worker counts add up: {h:?}"
        );
        let accepted: u64 = h.workers.iter().map(|w| w.1).sum();
        assert_eq!(accepted, 65, "[{backend}] accepted in total: {h:?}");
        assert!(
            h.workers.iter().all(|w| w.1 > 0),
            "[{backend}] SO_REUSEPORT must spread 64 connections over both workers: {h:?}"
        );
        for ws in &mut conns {
            close_client(ws, &format!("[{backend}]"));
        }
        let h = wait_connections(addr, 1, Duration::from_secs(5));
        assert_eq!(h.connections, 1, "[{backend}] all closed: {h:?}");
    }
}

/// Clients that vanish at awkward moments must not leak connections or disturb others.
#[test]
fn vanishing_clients_leave_the_server_healthy() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let baseline = health_info(addr);
        assert_eq!(
            baseline.connections, 1,
            "[{backend}] baseline: {baseline:?}"
        );
        // A client that stays connected through all of it.
        let mut bystander = ws_connect(addr);

        type Vanish = fn(SocketAddr);
        let scenarios: [(&str, Vanish); 6] = [
            ("mid-frame: header announces 1000 bytes, 10 sent", |addr| {
                let mut ws = RawWs::connect(addr);
                let mut bytes = client_header(OP_BINARY, true, 1000);
                bytes.extend_from_slice(&[0xAA; 10]);
                ws.send(&bytes);
            }),
            ("mid-handshake", |addr| {
                let mut s = tcp(addr);
                s.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webso")
                    .unwrap();
            }),
            ("right after the upgrade", |addr| {
                drop(RawWs::connect(addr));
            }),
            ("inside a fragmented message", |addr| {
                let mut ws = RawWs::connect(addr);
                ws.send(&frame(OP_TEXT, false, 0, true, b"part one"));
            }),
            (
                "after sending close, without waiting for the reply",
                |addr| {
                    let mut ws = RawWs::connect(addr);
                    ws.send(&client_frame(OP_CLOSE, &close_payload(1000, b"")));
                },
            ),
            ("with echoes still queued (never reads)", |addr| {
                let mut ws = RawWs::connect(addr);
                ws.stream
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let msg = client_frame(OP_BINARY, &pseudo_random(512 * 1024, 7));
                for _ in 0..8 {
                    if ws.stream.write_all(&msg).is_err() {
                        break;
                    }
                }
            }),
        ];
        for (name, vanish) in scenarios {
            let ctx = format!("[{backend}] client vanishing {name}");
            for _ in 0..3 {
                vanish(addr);
            }
            // Another client is served normally.
            let mut ws = ws_connect(addr);
            ws.send(Message::text(name)).unwrap();
            assert_eq!(
                ws.read().unwrap(),
                Message::text(name),
                "{ctx}: fresh client echo"
            );
            close_client(&mut ws, &ctx);
            bystander
                .send(Message::binary(name.as_bytes().to_vec()))
                .unwrap();
            assert_eq!(
                bystander.read().unwrap(),
                Message::binary(name.as_bytes().to_vec()),
                "{ctx}: bystander echo"
            );
            // Baseline: the bystander and this /health request.
            let h = wait_connections(addr, 2, Duration::from_secs(5));
            assert_eq!(
                h.connections, 2,
                "{ctx}: connection count back to baseline: {h:?}"
            );
        }
        close_client(&mut bystander, &format!("[{backend}] bystander"));
        let h = wait_connections(addr, 1, Duration::from_secs(5));
        assert_eq!(h.connections, 1, "[{backend}] all gone: {h:?}");
    }
}

#[test]
fn shutdown_sends_1001_to_open_connections() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let mut clients: Vec<_> = (0..5).map(|_| ws_connect(addr)).collect();
        for ws in &mut clients {
            ws.send(Message::text("x")).unwrap();
            assert_eq!(ws.read().unwrap(), Message::text("x"), "[{backend}]");
        }
        let stopper = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            server.shutdown();
            t.elapsed()
        });
        for (i, ws) in clients.iter_mut().enumerate() {
            let ctx = format!("[{backend}] client {i} at shutdown");
            match ws.read() {
                Ok(Message::Close(Some(f))) => {
                    assert_eq!(u16::from(f.code), 1001, "{ctx}: close code")
                }
                other => panic!("{ctx}: expected close 1001, got {other:?}"),
            }
            // tungstenite answers the close; the server then closes TCP.
            loop {
                match ws.read() {
                    Err(tungstenite::Error::ConnectionClosed) => break,
                    Ok(_) => continue,
                    Err(e) => panic!("{ctx}: after close: {e}"),
                }
            }
        }
        let took = stopper.join().expect("shutdown");
        assert!(
            took < Duration::from_secs(4),
            "[{backend}] shutdown took {took:?} although every client answered its close"
        );
        // Nothing listens any more.
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        assert!(
            refused.is_err(),
            "[{backend}] still accepting after shutdown"
        );
    }
}

#[test]
fn a_client_that_never_reads_is_throttled() {
    // The server stops reading a connection whose echoes pile up: a client that sends without
    // reading is blocked after a few socket buffers, instead of making the server buffer it all.
    for backend in backends() {
        let server = start(backend, |_| {});
        let mut ws = RawWs::connect(server.local_addr());
        ws.stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let msg = client_frame(OP_BINARY, &vec![0x55; 1 << 20]);
        let mut written = 0usize;
        for _ in 0..128 {
            match ws.stream.write(&msg) {
                Ok(n) if n == msg.len() => written += n,
                Ok(n) => {
                    written += n;
                    break;
                }
                Err(_) => break, // the 2 s write timeout: blocked
            }
        }
        assert!(
            written < 48 << 20,
            "[{backend}] a client that never reads pushed {} MiB into the server",
            written >> 20
        );
        // Other clients are unaffected.
        let mut other = ws_connect(server.local_addr());
        other.send(Message::text("still served")).unwrap();
        assert_eq!(
            other.read().unwrap(),
            Message::text("still served"),
            "[{backend}]"
        );
    }
}

#[test]
fn shutdown_drops_clients_still_in_their_handshake_without_frames() {
    // A client that has not upgraded is not a WebSocket: it must get no close frame at the stop.
    // One that has sent nothing is closed at once; one with a request begun may still finish it
    // (tests/drain.rs), and is dropped at the shutdown timeout (2 s here) when it does not.
    for backend in backends() {
        let server = start(backend, |c| c.shutdown_timeout = 2);
        let addr = server.local_addr();
        let mut half = tcp(addr);
        half.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut silent = tcp(addr);
        let h = wait_connections(addr, 3, Duration::from_secs(3));
        assert_eq!(h.connections, 3, "[{backend}] both accepted: {h:?}");
        let stopper = std::thread::spawn(move || server.shutdown());
        expect_eof(
            &mut silent,
            Duration::from_secs(1),
            &format!("[{backend}] client that sent nothing, at shutdown"),
        );
        expect_eof(
            &mut half,
            Duration::from_secs(4),
            &format!("[{backend}] client that sent half a request, at the shutdown timeout"),
        );
        stopper.join().expect("shutdown");
    }
}

#[test]
fn bursts_larger_than_the_receive_buffer_pool_are_echoed() {
    // 300 connections each send 256 KiB at once: ~75 MiB arrives together, far more than an
    // io_uring worker's provided receive buffers (2048 x 4 KiB), so the ENOBUFS / re-arm path runs.
    const THREADS: usize = 4;
    const CONNS: usize = 75;
    const SIZE: usize = 256 * 1024;
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut conns: Vec<_> = (0..CONNS).map(|_| RawWs::connect(addr)).collect();
                    for round in 0..2u64 {
                        let seed = |c: usize| (t * CONNS + c) as u64 * 1000 + round + 1;
                        for (c, ws) in conns.iter_mut().enumerate() {
                            ws.send(&client_frame(OP_BINARY, &pseudo_random(SIZE, seed(c))));
                        }
                        for (c, ws) in conns.iter_mut().enumerate() {
                            let f = ws.server_frame();
                            assert_eq!(
                                (f.opcode, f.payload.len()),
                                (OP_BINARY, SIZE),
                                "[{backend}] thread {t} conn {c} round {round}"
                            );
                            assert!(
                                f.payload == pseudo_random(SIZE, seed(c)),
                                "[{backend}] thread {t} conn {c} round {round}: payload differs"
                            );
                        }
                    }
                })
            })
            .collect();
        let failures: Vec<String> = threads
            .into_iter()
            .filter_map(|t| t.join().err().map(panic_text))
            .collect();
        assert!(
            failures.is_empty(),
            "[{backend}] burst clients failed:\n{}",
            failures.join("\n")
        );
    }
}
