//! The drain (graceful shutdown) through the library API, on each backend: `/health` answers 503
//! draining, WebSocket clients get 1001, silent connections are closed, requests already begun
//! are answered, the server stops as soon as its connections are gone, and a client that never
//! reads is dropped at `shutdown_timeout` and counted. (tests/cli.rs drives the same sequence
//! through the `wsd` binary and its signals.)

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// Reads until the server's close frame and returns its code; answers it (tungstenite queues the
/// reply) and reads on until the connection is closed.
fn close_code_then_finish(ws: &mut tungstenite::WebSocket<std::net::TcpStream>, ctx: &str) -> u16 {
    let code = loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => break u16::from(f.code),
            Ok(Message::Close(None)) => panic!("{ctx}: close without a code"),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("{ctx}: expected a close frame, got {other:?}"),
        }
    };
    loop {
        match ws.read() {
            Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => continue,
            Err(e) => panic!("{ctx}: after the close frame: {e}"),
        }
    }
    code
}

#[test]
fn health_answers_503_draining_and_the_server_stops_once_clients_are_gone() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start(backend, |c| c.shutdown_timeout = 10);
        let addr = server.local_addr();
        let shared = server.shared().clone();
        let mut ws = ws_connect(addr);
        // Requests begun before the drain (HTTP clients mid-request), and a connection that has
        // sent nothing (a browser's pre-opened connection).
        let mut begun = tcp(addr);
        begun
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        let mut begun_upgrade = tcp(addr);
        let request = upgrade_request("/ws");
        begun_upgrade
            .write_all(request.trim_end_matches("\r\n").as_bytes())
            .unwrap();
        let mut silent = tcp(addr);
        // A request answered after those bytes were sent shows the worker has read them.
        let (resp, _) = http_exchange(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(resp.status, 404, "{ctx}");
        assert!(!server.is_draining(), "{ctx}");

        let stop = server.stop_handle();
        stop.stop();
        assert!(server.is_draining() && stop.is_draining(), "{ctx}");
        let signalled = Instant::now();
        let waiter = std::thread::spawn(move || {
            server.wait();
            signalled.elapsed()
        });

        // The silent connection is closed; the begun request is answered, and says draining.
        expect_eof(
            &mut silent,
            Duration::from_secs(3),
            &format!("{ctx} silent"),
        );
        begun.write_all(b"\r\n").unwrap();
        let resp = read_response(&mut begun).expect("answer to the begun request");
        assert_eq!(resp.status, 503, "{ctx}: /health while draining: {resp:?}");
        let h = parse_health(&resp.text());
        assert_eq!(h.status, "draining", "{ctx}: {resp:?}");
        assert_eq!(h.io, backend.to_string(), "{ctx}");
        // An upgrade finished during the drain is refused, with a hint to come back.
        begun_upgrade.write_all(b"\r\n\r\n").unwrap();
        let resp = read_response(&mut begun_upgrade).expect("answer to the begun upgrade");
        assert_eq!(resp.status, 503, "{ctx}: upgrade while draining: {resp:?}");
        assert_eq!(resp.header("retry-after"), Some("1"), "{ctx}: {resp:?}");
        // The WebSocket client gets 1001 and closes; then nothing holds the server.
        let code = close_code_then_finish(&mut ws, &ctx);
        assert_eq!(code, 1001, "{ctx}: close code");
        let closed_at = signalled.elapsed();
        let took = waiter.join().unwrap();
        assert!(
            took < closed_at + Duration::from_secs(2),
            "{ctx}: server stopped {took:?} after stop(), its last client closed at {closed_at:?}: \
             it must not wait for shutdown_timeout (10 s)"
        );
        // No new connection is accepted any more.
        if let Ok(mut late) = std::net::TcpStream::connect(addr) {
            late.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = late.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut late, &mut buf).unwrap_or(0);
            assert_eq!(n, 0, "{ctx}: a stopped server answered a new connection");
        }
        let drain = &shared.drain;
        assert!(
            drain.closed.load(Ordering::Relaxed) >= 4,
            "{ctx}: {drain:?}"
        );
        assert_eq!(drain.dropped.load(Ordering::Relaxed), 0, "{ctx}: {drain:?}");
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_shutdown_timeout() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start(backend, |c| c.shutdown_timeout = 2);
        let addr = server.local_addr();
        let shared = server.shared().clone();
        let mut polite = ws_connect(addr);
        let stuck = StalledWriter::start(addr, &ctx);

        let signalled = Instant::now();
        server.stop_handle().stop();
        let waiter = std::thread::spawn(move || {
            server.wait();
            signalled.elapsed()
        });
        assert_eq!(close_code_then_finish(&mut polite, &ctx), 1001, "{ctx}");
        let took = waiter.join().unwrap();
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
            "{ctx}: stopped {took:?} after stop(); shutdown_timeout is 2 s"
        );
        let drain = &shared.drain;
        assert_eq!(drain.dropped.load(Ordering::Relaxed), 1, "{ctx}: {drain:?}");
        assert_eq!(drain.closed.load(Ordering::Relaxed), 1, "{ctx}: {drain:?}");
        assert!(
            drain.unsent_bytes.load(Ordering::Relaxed) > 64 * 1024,
            "{ctx}: the dropped client had data queued: {drain:?}"
        );
        stuck.finish();
    }
}

#[test]
fn a_publish_finished_during_the_drain_is_refused() {
    // Its subscribers are being closed: accepting it would deliver it to nobody, silently.
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start(backend, |c| c.app = wsd::app::AppKind::Pubsub);
        let addr = server.local_addr();
        let body = br#"{"topic":"news","data":1}"#;
        let mut begun = tcp(addr);
        let head = format!(
            "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        begun.write_all(head.as_bytes()).unwrap();
        let (resp, _) = http_exchange(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(resp.status, 404, "{ctx}");
        server.stop_handle().stop();
        begun.write_all(body).unwrap();
        let resp = read_response(&mut begun).expect("answer to the begun publish");
        assert_eq!(resp.status, 503, "{ctx}: {resp:?}");
        assert_eq!(resp.header("retry-after"), Some("1"), "{ctx}: {resp:?}");
        server.wait();
    }
}

#[test]
fn every_publish_acknowledged_before_the_drain_reaches_subscribers_on_other_cores() {
    use common::pubsub::{Event, client_on_worker};
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;
    // A publisher on worker 0 floods PUBLISHes with correlationIds while the drain begins; a
    // subscriber on worker 1 must receive every one that was acknowledged, before its 1001.
    // Publishes the server no longer accepts are answered UNAVAILABLE, never acknowledged.
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start(backend, |c| {
            c.app = wsd::app::AppKind::Pubsub;
            c.cluster_workers = wsd::config::Workers::Count(2);
            c.max_backpressure = 256 << 20;
        });
        let addr = server.local_addr();
        let mut sub = client_on_worker(addr, 1, "subscriber");
        sub.subscribe("race");
        let publisher = client_on_worker(addr, 0, "publisher");
        let stream = publisher.ws.into_inner();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = stream;
        reader
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();

        let closed = Arc::new(AtomicBool::new(false));
        let stop_writing = closed.clone();
        let writer = std::thread::spawn(move || {
            for i in 0..1_000_000u64 {
                if stop_writing.load(Ordering::Relaxed) {
                    break;
                }
                let text = format!(
                    r#"{{"type":"PUBLISH","payload":{{"topic":"race","data":{i}}},"meta":{{"correlationId":"p{i}"}}}}"#
                );
                if writer
                    .write_all(&client_frame(OP_TEXT, text.as_bytes()))
                    .is_err()
                {
                    return;
                }
            }
            let _ = writer.write_all(&client_frame(OP_CLOSE, &close_payload(1000, b"")));
        });
        let publisher_ctx = ctx.clone();
        let replies = std::thread::spawn(move || {
            let (mut acked, mut refused) = (Vec::new(), 0u64);
            loop {
                let f = read_frame(&mut reader)
                    .unwrap_or_else(|e| panic!("{publisher_ctx} publisher: {e}"));
                match f.opcode {
                    OP_TEXT => {
                        let text = String::from_utf8(f.payload).unwrap();
                        let reply = common::pubsub::Reply::parse(text).unwrap();
                        let cid = reply.correlation_id.clone().unwrap_or_default();
                        let n: u64 = cid.trim_start_matches('p').parse().unwrap();
                        match reply.kind.as_str() {
                            "ACK" => {
                                assert_eq!(refused, 0, "{publisher_ctx}: ACK after a refusal");
                                acked.push(n)
                            }
                            "ERROR" => {
                                assert_eq!(reply.code(), "UNAVAILABLE", "{publisher_ctx}");
                                refused += 1;
                            }
                            _ => panic!("{publisher_ctx}: unexpected reply {}", reply.text),
                        }
                    }
                    OP_CLOSE => {
                        closed.store(true, Ordering::Relaxed);
                        return (acked, refused);
                    }
                    _ => {}
                }
            }
        });
        let subscriber_ctx = ctx.clone();
        let received = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match sub.event(Duration::from_secs(20)) {
                    Event::Reply(r) if r.is_message() => got.push(r.data().parse::<u64>().unwrap()),
                    Event::Close(code) => {
                        assert_eq!(code, Some(1001), "{subscriber_ctx} subscriber");
                        return got;
                    }
                    other => panic!("{subscriber_ctx} subscriber: {other:?}"),
                }
            }
        });
        // Let the flood run, then drain in the middle of it.
        let _ = poll(Duration::from_secs(5), || {
            let delivered: u64 = server
                .worker_stats()
                .iter()
                .map(|w| w.delivered.load(Ordering::Relaxed))
                .sum();
            (delivered > 1000).then_some(())
        });
        server.stop_handle().stop();
        let (acked, refused) = replies
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        let got = received
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        writer.join().unwrap();
        let dropped: u64 = server
            .worker_stats()
            .iter()
            .map(|w| w.dropped_newest.load(Ordering::Relaxed))
            .sum();
        assert_eq!(dropped, 0, "{ctx}: nothing dropped for backpressure");
        server.wait();
        let got_set: BTreeSet<u64> = got.iter().copied().collect();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|n| !got_set.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "{ctx}: {} of {} acknowledged publishes never reached the subscriber (first {:?}); \
             {refused} refused",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{ctx}: in order");
        assert!(
            acked.len() > 100,
            "{ctx}: the flood ran ({} acked)",
            acked.len()
        );
        eprintln!(
            "{ctx}: {} acknowledged and delivered, {refused} refused",
            acked.len()
        );
    }
}
