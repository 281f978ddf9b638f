//! The floor against a real WebSocket client (tungstenite) on both of wsd's drivers: the upgrade
//! completes, every binary message comes back with its length (the payload bytes are passed through
//! still masked, by design), many messages in flight come back in order of their lengths, and
//! hostile input closes the connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::Message;

struct Floor(Child, u16);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a floor on a free port and waits for its own "listening" line on stderr. A port probe
/// by connecting is not enough: a probe can connect to itself (TCP simultaneous open, when the
/// kernel picks the probed port as the probe's own source port) or reach another test's floor,
/// and then this floor's bind fails after the probe said it was up. A floor that exits before it
/// listens is retried on a new port.
fn start(io: &str) -> Floor {
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_floor-echo"))
            .args([io, &port.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("floor-echo starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reports the listening line, then drains the rest so the floor never blocks on it.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => return Floor(child, port),
            Err(_) => {
                // Exited (its bind failed: the port was taken meanwhile) or never listened.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    panic!("floor-echo {io} did not listen in 5 attempts");
}

fn lengths_come_back(io: &str) {
    let floor = start(io);
    let url = format!("ws://127.0.0.1:{}/ws", floor.1);
    let (mut ws, response) = tungstenite::connect(url).expect("upgrade");
    assert_eq!(response.status(), 101);
    let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 300_000];
    for size in sizes {
        ws.send(Message::binary(vec![0xA5u8; size])).expect("send");
    }
    for size in sizes {
        match ws.read().expect("reply") {
            Message::Binary(b) => assert_eq!(b.len(), size, "{io}"),
            other => panic!("{io}: unexpected {other:?}"),
        }
    }
    ws.close(None).expect("close");
    // The floor passes the close frame back; the client then sees the connection end.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "{io}: no end after close");
        if ws.read().is_err() {
            break;
        }
    }
}

fn hostile_input_is_closed(io: &str) {
    let floor = start(io);
    for bad in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        vec![b'A'; 9000],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", floor.1)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(&bad).expect("write");
        let mut buf = [0u8; 64];
        // Closed without an answer: end of stream (or a reset, when unread bytes were left).
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "{io}: answered {:?}", &buf[..n]),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{io}: {e}"),
        }
    }
}

#[test]
fn uring_echoes_lengths() {
    lengths_come_back("uring");
}

#[test]
fn epoll_echoes_lengths() {
    lengths_come_back("epoll");
}

#[test]
fn uring_closes_on_hostile_input() {
    hostile_input_is_closed("uring");
}

#[test]
fn epoll_closes_on_hostile_input() {
    hostile_input_is_closed("epoll");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &[][..],
        &["uring"][..],
        &["kqueue", "9"][..],
        &["epoll", "70000"][..],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_floor-echo"))
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("runs");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
