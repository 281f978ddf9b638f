//! Restart after a crash: a wsd killed with SIGKILL under live connections is restarted at once
//! on the same port (as a supervisor does), and the new process must start, stay up and answer
//! `/health` — on both backends. On io_uring the dead process's listeners linger for a moment
//! (and still complete TCP handshakes), so a successful connect proves nothing: the test checks
//! the new process's start-up line, that it is still running, and `/health` answered by it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;
use wsd::io::Backend;

/// A running wsd binary whose stderr lines are collected on a thread.
struct Running {
    guard: Guard,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(backend: Backend, port: u16) -> Running {
        let mut cmd: Command = wsd_command();
        cmd.env("LOG_FORMAT", "json")
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("CLUSTER_WORKERS", "2")
            .env("WSD_APP", "echo")
            .env(
                "WSD_IO",
                match backend {
                    Backend::Epoll => "epoll",
                    Backend::Uring => "uring",
                },
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wsd");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            guard: Guard(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for `wsd listening` and returns the address it names; panics (with every line seen
    /// and the exit status) if the process exits or stays silent for `within`.
    fn listening(&mut self, within: Duration, ctx: &str) -> SocketAddr {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains("wsd listening") {
                        let v = parse_json(&line).unwrap_or_else(|e| {
                            panic!("{ctx}: log line is not JSON ({e}): {line}")
                        });
                        let addr = match v
                            .get("addr")
                            .or_else(|| v.get("fields").and_then(|f| f.get("addr")))
                        {
                            Some(Json::String(a)) => a.clone(),
                            other => panic!("{ctx}: no fields.addr ({other:?}) in {line}"),
                        };
                        return addr
                            .parse()
                            .unwrap_or_else(|e| panic!("{ctx}: addr {addr:?}: {e}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => {
                    let status = self.guard.0.try_wait().ok().flatten();
                    panic!(
                        "{ctx}: no `wsd listening` within {within:?} (exit status {status:?}); \
                         stderr {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.guard.0.try_wait(), Ok(None))
    }

    fn sigkill(&mut self) {
        self.guard.0.kill().expect("SIGKILL wsd");
        self.guard.0.wait().expect("reap the killed wsd");
    }
}

/// Echo clients with a message in each direction, so the killed process dies with established,
/// active WebSocket connections.
fn live_clients(addr: SocketAddr, n: usize) -> Vec<tungstenite::WebSocket<std::net::TcpStream>> {
    (0..n)
        .map(|i| {
            let mut ws = ws_connect(addr);
            ws.send(Message::text(format!("hello {i}"))).expect("send");
            match ws.read() {
                Ok(Message::Text(t)) => assert_eq!(t.as_str(), format!("hello {i}")),
                other => panic!("echo of client {i}: {other:?}"),
            }
            ws
        })
        .collect()
}

#[test]
fn a_wsd_killed_under_live_connections_restarts_at_once_on_the_same_port() {
    for backend in backends() {
        let mut wsd = Running::spawn(backend, 0);
        let addr = wsd.listening(Duration::from_secs(10), &format!("[{backend}] first start"));
        for round in 0..3 {
            let ctx = format!("[{backend}] restart {round}");
            let clients = live_clients(addr, 64);
            wsd.sigkill();
            // The supervisor's immediate restart, on the same port.
            let killed = Instant::now();
            wsd = Running::spawn(backend, addr.port());
            let again = wsd.listening(Duration::from_secs(10), &ctx);
            assert_eq!(again, addr, "{ctx}: restarted on another address");
            let started_after = killed.elapsed();
            drop(clients);
            // It stays up: not a start that fails a moment later, nor a process sharing the port
            // with a dying one. Every /health is answered 200 by the new process.
            for i in 0..10 {
                assert!(
                    wsd.running(),
                    "{ctx}: the restarted wsd exited; stderr {:#?}",
                    wsd.seen
                );
                let h = health_info(addr);
                assert_eq!(h.status, "ok", "{ctx}: /health {i}: {h:?}");
                assert_eq!(
                    h.io,
                    backend.to_string(),
                    "{ctx}: /health {i} from another backend: {h:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // A WebSocket client is served by the new process too.
            let mut ws = ws_connect(addr);
            ws.send(Message::text("after restart")).expect("send");
            match ws.read() {
                Ok(Message::Text(t)) => assert_eq!(t.as_str(), "after restart", "{ctx}"),
                other => panic!("{ctx}: echo after restart: {other:?}"),
            }
            eprintln!("{ctx}: listening again {started_after:?} after SIGKILL");
        }
    }
}
