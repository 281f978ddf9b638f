//! IDLE_TIMEOUT and SEND_PINGS: a silent client is pinged at half the timeout and closed with 1001
//! at the timeout; a client that answers pings stays open; with pings off only the close comes.

mod common;

use std::io::{ErrorKind, Read};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    OP_CLOSE, OP_PING, backends, close_code, expect_eof, raw_handshake, read_frame, start,
    ws_connect,
};
use tungstenite::Message;

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let handles: Vec<_> = backends()
        .into_iter()
        .map(|backend| {
            thread::spawn(move || {
                // The close timeout (5 s in production) is shortened to 1 s: this client never
                // answers the close, so it waits the close timeout out.
                let server = start(backend, |c| {
                    c.idle_timeout = 2;
                    c.close_timeout = Duration::from_secs(1);
                });
                let (mut stream, rest) = raw_handshake(server.local_addr(), b"");
                assert!(rest.is_empty());
                let t0 = Instant::now();
                let ping = read_frame(&mut stream).expect("a ping arrives");
                assert_eq!(ping.opcode, OP_PING, "[{backend}] first the ping");
                let pinged_at = t0.elapsed();
                let close = read_frame(&mut stream).expect("then a close");
                let closed_at = t0.elapsed();
                assert_eq!(close.opcode, OP_CLOSE, "[{backend}]");
                assert_eq!(
                    close_code(&close.payload, "idle close"),
                    Some(1001),
                    "[{backend}]"
                );
                assert!(pinged_at < closed_at, "[{backend}] ping before close");
                assert!(
                    closed_at >= Duration::from_millis(1000) && closed_at <= Duration::from_secs(4),
                    "[{backend}] closed after {closed_at:?} with a 2 s timeout"
                );
                // The server waits for our close answer (up to its close timeout) or drops us.
                expect_eof(&mut stream, Duration::from_secs(4), "after the idle close");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("backend thread");
    }
}

#[test]
fn a_client_that_answers_pings_stays_open() {
    for backend in backends() {
        let server = start(backend, |c| c.idle_timeout = 2);
        let mut ws = ws_connect(server.local_addr());
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let t0 = Instant::now();
        let mut pings = 0;
        // Five seconds of silence from the application, with tungstenite answering pings.
        while t0.elapsed() < Duration::from_secs(5) {
            match ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(other) => panic!("[{backend}] unexpected {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    let _ = ws.flush(); // sends the queued pong, if any
                }
                Err(e) => panic!("[{backend}] connection lost after {:?}: {e}", t0.elapsed()),
            }
        }
        assert!(pings >= 1, "[{backend}] the server pinged the idle client");
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        ws.send(Message::text("still here")).expect("send");
        loop {
            match ws.read().expect("echo") {
                Message::Text(t) => {
                    assert_eq!(t.as_str(), "still here", "[{backend}]");
                    break;
                }
                Message::Ping(_) => {}
                other => panic!("[{backend}] unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn without_pings_only_the_close_comes() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.idle_timeout = 1;
            c.send_pings = false;
        });
        let (mut stream, _) = raw_handshake(server.local_addr(), b"");
        let frame = read_frame(&mut stream).expect("a close arrives");
        assert_eq!(frame.opcode, OP_CLOSE, "[{backend}] no ping first");
        assert_eq!(
            close_code(&frame.payload, "idle close"),
            Some(1001),
            "[{backend}]"
        );
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
}
