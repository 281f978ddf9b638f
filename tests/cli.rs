//! The `wsd` binary: configuration errors, `--help`, start-up log line, and the drain on
//! SIGTERM/SIGINT (queued data delivered before the 1001, the shutdown timeout, `/health` while
//! draining, the second signal).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pubsub::{Event, PsClient, stats, total, wait_stats};
use common::*;
use tungstenite::Message;
use wsd::io::Backend;

/// The binary with none of wsd's variables inherited from the test environment, logging in the
/// human-readable format whose lines these tests read (tests/logs.rs checks `json`).
fn wsd() -> Command {
    let mut cmd = wsd_command();
    cmd.env("LOG_FORMAT", "pretty");
    cmd
}

impl Guard {
    /// Waits up to `within` for the process to exit.
    fn wait_for(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs wsd to completion (killed after 10 s) and returns status, stdout and stderr.
fn run(mut cmd: Command) -> (ExitStatus, String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn wsd");
    let mut guard = Guard(child);
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = guard.0.stdout.take().unwrap();
    let mut err = guard.0.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = guard.wait_for(Duration::from_secs(10));
    drop(guard); // kills it if it is still running
    let (stdout, stderr) = (out_t.join().unwrap(), err_t.join().unwrap());
    let status = status.unwrap_or_else(|| {
        panic!("wsd did not exit within 10 s (killed); stdout {stdout:?}, stderr {stderr:?}")
    });
    (status, stdout, stderr)
}

#[test]
fn invalid_values_exit_2_with_one_line_naming_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PORT", "abc"),
        ("HOST", "nowhere"),
        ("HOST", "256.0.0.1"),
        ("CLUSTER_WORKERS", "0"),
        ("CLUSTER_WORKERS", "-3"),
        ("CLUSTER_WORKERS", "many"),
        ("CLUSTER_WORKERS", "1.5"),
        ("WS_PATH", "ws"),
        ("WS_PATH", "/ws?x=1"),
        ("MAX_PAYLOAD", "0"),
        ("MAX_PAYLOAD", "-5"),
        ("MAX_PAYLOAD", "1MB"),
        ("WSD_IO", "kqueue"),
        ("WSD_APP", "nope"),
        ("LOG_LEVEL", "loud"),
    ];
    let flag = |var: &str| match var {
        "CLUSTER_WORKERS" => "--workers".to_owned(),
        "WSD_IO" => "--io".to_owned(),
        "WSD_APP" => "--app".to_owned(),
        v => format!("--{}", v.to_ascii_lowercase().replace('_', "-")),
    };
    for &(var, value) in cases {
        for via in ["env", "flag"] {
            let mut cmd = wsd();
            // Everything else valid and harmless, so a value that is wrongly accepted starts a
            // server on a free loopback port (and the test fails on the timeout, not a clash).
            for (k, v) in [
                ("PORT", "0"),
                ("HOST", "127.0.0.1"),
                ("CLUSTER_WORKERS", "1"),
            ] {
                if k != var {
                    cmd.env(k, v);
                }
            }
            if via == "env" {
                cmd.env(var, value);
            } else {
                cmd.arg(format!("{}={value}", flag(var)));
            }
            let ctx = format!("{var}={value:?} via {via}");
            let (status, stdout, stderr) = run(cmd);
            assert_eq!(
                status.code(),
                Some(2),
                "{ctx}: exit status; stderr {stderr:?}"
            );
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(
                lines.len(),
                1,
                "{ctx}: stderr must be exactly one line: {stderr:?}"
            );
            assert!(
                lines[0].contains(var),
                "{ctx}: stderr must name {var}: {stderr:?}"
            );
            assert!(lines[0].starts_with("wsd: "), "{ctx}: stderr {stderr:?}");
            assert!(stdout.is_empty(), "{ctx}: nothing on stdout: {stdout:?}");
        }
    }
    // The documented example, word for word.
    let mut cmd = wsd();
    cmd.env("PORT", "70000");
    let (status, _, stderr) = run(cmd);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "wsd: invalid PORT (--port) '70000': must be a number from 0 to 65535\n"
    );
}

#[test]
fn help_lists_every_knob_with_its_default() {
    let mut cmd = wsd();
    cmd.arg("--help");
    let (status, stdout, stderr) = run(cmd);
    assert!(
        status.success(),
        "--help exit status {status:?}; stderr {stderr:?}"
    );
    let defaults = [
        ("PORT", "3000"),
        ("HOST", "0.0.0.0"),
        ("CLUSTER_WORKERS", "auto"),
        ("WS_PATH", "/ws"),
        ("MAX_PAYLOAD", "1048576"),
        ("WSD_IO", "auto"),
        ("WSD_APP", "pubsub"),
        ("LOG_LEVEL", "info"),
    ];
    for (var, default) in defaults {
        // Each option's block runs from its `env:` mention to the next option's.
        let env_at = stdout
            .find(&format!("[env: {var}="))
            .unwrap_or_else(|| panic!("--help does not mention env {var}:\n{stdout}"));
        let block_start = stdout[..env_at].rfind("\n  -").map_or(0, |i| i + 1);
        let block_end = stdout[env_at..]
            .find("\n  -")
            .map_or(stdout.len(), |i| env_at + i);
        let block = &stdout[block_start..block_end];
        assert!(
            block.contains(&format!("[default: {default}]")),
            "--help: {var} should show default {default}:\n{block}"
        );
    }
}

/// A running wsd binary whose stderr is forwarded line by line.
struct Running {
    guard: Guard,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wsd");
        let stderr = child.stderr.take().unwrap();
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

    /// Waits for a stderr line containing `needle`.
    fn line_with(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if strip_ansi(&line).contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {needle:?} in {within:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the start-up line and returns it (as printed) and the address it names.
    fn listening(&mut self) -> (String, SocketAddr) {
        let line = self.line_with("wsd listening", Duration::from_secs(10));
        let plain = strip_ansi(&line);
        let addr = plain
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {plain:?}"));
        let addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("addr {addr:?} in {plain:?}: {e}"));
        (line, addr)
    }

    fn signal(&self, sig: &str) {
        use rustix::process::{Pid, Signal, kill_process};
        let signal = match sig {
            "TERM" => Signal::TERM,
            "INT" => Signal::INT,
            other => panic!("no such signal in these tests: {other}"),
        };
        kill_process(Pid::from_child(&self.guard.0), signal)
            .unwrap_or_else(|e| panic!("kill -{sig}: {e}"));
    }

    /// Waits up to `within` for the process to exit and returns its status and how long after
    /// `since` it exited.
    fn exit_within(
        &mut self,
        since: Instant,
        within: Duration,
        ctx: &str,
    ) -> (ExitStatus, Duration) {
        let status = self
            .guard
            .wait_for(within.saturating_sub(since.elapsed()))
            .unwrap_or_else(|| {
                panic!(
                    "{ctx}: wsd still running {within:?} after the signal; stderr {:?}",
                    self.seen
                )
            });
        (status, since.elapsed())
    }

    /// The end-of-drain log line, as `(closed, dropped_at_timeout)`.
    fn drained(&mut self) -> (u64, u64) {
        let line = strip_ansi(&self.line_with("drained", Duration::from_secs(5)));
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        };
        (field("closed"), field("dropped_at_timeout"))
    }
}

/// The `WSD_IO` value for `backend`.
fn io_env(backend: Backend) -> &'static str {
    match backend {
        Backend::Epoll => "epoll",
        Backend::Uring => "uring",
    }
}

/// Removes ANSI escape sequences (colours) from a log line.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn base_cmd() -> Command {
    let mut cmd = wsd();
    cmd.env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("CLUSTER_WORKERS", "2")
        .env("WSD_IO", "epoll")
        .env("WSD_APP", "echo");
    cmd
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    for sig in ["TERM", "INT"] {
        let mut wsd = Running::spawn(base_cmd());
        let (_, addr) = wsd.listening();
        assert_eq!(
            addr.ip().to_string(),
            "127.0.0.1",
            "SIG{sig}: listening address"
        );
        let mut clients: Vec<_> = (0..4).map(|_| ws_connect(addr)).collect();
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send(Message::text(format!("hello {i}"))).unwrap();
            assert_eq!(
                ws.read().unwrap(),
                Message::text(format!("hello {i}")),
                "SIG{sig}"
            );
        }
        let h = health_info(addr);
        assert_eq!(
            (h.io.as_str(), h.workers.len()),
            ("epoll", 2),
            "SIG{sig}: {h:?}"
        );
        let sent = Instant::now();
        wsd.signal(sig);
        for (i, ws) in clients.iter_mut().enumerate() {
            match ws.read() {
                Ok(Message::Close(Some(f))) => {
                    assert_eq!(u16::from(f.code), 1001, "SIG{sig} client {i}: close code")
                }
                other => panic!("SIG{sig} client {i}: expected close 1001, got {other:?}"),
            }
            loop {
                match ws.read() {
                    Err(tungstenite::Error::ConnectionClosed) => break,
                    Ok(_) => continue,
                    Err(e) => panic!("SIG{sig} client {i}: after close: {e}"),
                }
            }
        }
        let status = wsd
            .guard
            .wait_for(Duration::from_secs(10).saturating_sub(sent.elapsed()));
        let status = status.unwrap_or_else(|| panic!("wsd still running 10 s after SIG{sig}"));
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{sig}: exit status; stderr {:?}",
            wsd.seen
        );
    }
}

#[test]
fn sigterm_with_a_client_that_never_answers_the_close_exits_after_the_close_timeout() {
    let mut wsd = Running::spawn(base_cmd());
    let (_, addr) = wsd.listening();
    // A raw client that reads the server's close but never answers it: once the close frame is
    // sent it has the close timeout (5 s), well inside SHUTDOWN_TIMEOUT (30 s by default).
    let mut raw = RawWs::connect(addr);
    let sent = Instant::now();
    wsd.signal("TERM");
    assert_eq!(raw.expect_close("SIGTERM, silent client"), Some(1001));
    let status = wsd.guard.wait_for(Duration::from_secs(10));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| panic!("wsd still running 10 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "exit status; stderr {:?}", wsd.seen);
    assert!(
        took >= Duration::from_secs(4),
        "exited after {took:?}: did not wait for the client"
    );
}

#[test]
fn startup_line_has_a_plain_addr_field() {
    let mut wsd = Running::spawn(base_cmd());
    let (line, addr) = wsd.listening();
    // Logs go to a pipe here: the line must be greppable as documented, without colour codes.
    assert!(
        line.contains(&format!("addr={addr}")),
        "start-up line must contain `addr={addr}` literally: {line:?}"
    );
}

#[test]
fn flags_override_the_environment() {
    let mut cmd = base_cmd();
    cmd.env("WS_PATH", "/from-env")
        .env("MAX_PAYLOAD", "10")
        .arg("--ws-path=/from-flag");
    let mut wsd = Running::spawn(cmd);
    let (_, addr) = wsd.listening();
    let mut ws = ws_connect_with(addr, "/from-flag", None);
    // MAX_PAYLOAD=10 from the environment applies: 10 bytes echo, 11 close with 1009.
    ws.send(Message::text("0123456789")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("0123456789"));
    ws.send(Message::text("0123456789a")).unwrap();
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1009),
        other => panic!("expected close 1009 for 11 bytes with MAX_PAYLOAD=10, got {other:?}"),
    }
    let (resp, _) = http_exchange(addr, upgrade_request("/from-env").as_bytes());
    assert_eq!(
        resp.status, 404,
        "the env WS_PATH is overridden by --ws-path: {resp:?}"
    );
}

#[test]
fn a_second_wsd_on_a_port_in_use_fails_to_start() {
    let mut first = Running::spawn(base_cmd());
    let (_, addr) = first.listening();
    let mut cmd = base_cmd();
    cmd.env("PORT", addr.port().to_string());
    let mut second = Running::spawn(cmd);
    let status = second.guard.wait_for(Duration::from_secs(5));
    let started = second
        .seen
        .iter()
        .any(|l| strip_ansi(l).contains("wsd listening"))
        || second
            .lines
            .try_iter()
            .any(|l| strip_ansi(&l).contains("wsd listening"));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second wsd on port {} (in use by the first) must exit with an error; it is still \
         running after 5 s (status {status:?}, logged `wsd listening`: {started}) and shares the \
         port with the first through SO_REUSEPORT",
        addr.port()
    );
}

/// Bytes of `data` in each published message of the drain test.
const PAD: usize = 64 * 1024;

#[test]
fn sigterm_delivers_queued_data_before_the_1001_and_exits_0() {
    const SUBSCRIBERS: usize = 3;
    // 12 MiB per subscriber: several times what the kernel buffers between wsd and a client that
    // does not read, so most of it is queued inside wsd when the signal comes.
    const MESSAGES: usize = 192;
    const PER_POST: usize = 8;
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let mut cmd = base_cmd();
        cmd.env("WSD_IO", io_env(backend))
            .env("WSD_APP", "pubsub")
            .env("MAX_PAYLOAD", (4 << 20).to_string())
            .env("MAX_BACKPRESSURE", (64 << 20).to_string())
            .env("SHUTDOWN_TIMEOUT", "20");
        let mut wsd = Running::spawn(cmd);
        let (_, addr) = wsd.listening();
        let mut subs: Vec<PsClient> = (0..SUBSCRIBERS)
            .map(|i| {
                let mut c = PsClient::connect(addr, format!("{ctx} subscriber {i}"));
                c.subscribe(&format!("t{i}"));
                c
            })
            .collect();
        // Publish everything over HTTP while nobody reads.
        let pad = "x".repeat(PAD);
        for i in 0..SUBSCRIBERS {
            for first in (0..MESSAGES).step_by(PER_POST) {
                let items: Vec<String> = (first..first + PER_POST)
                    .map(|seq| format!(r#"{{"topic":"t{i}","data":"{i}:{seq}:{pad}"}}"#))
                    .collect();
                let body = format!("[{}]", items.join(","));
                let resp = http_request(addr, "POST", "/publish", &[], body.as_bytes());
                assert_eq!(resp.status, 200, "{ctx}: publish: {}", resp.text());
            }
        }
        // Every message is queued for its subscriber (on whichever worker) before the signal.
        let (last, ok) = wait_stats(addr, Duration::from_secs(10), |s| {
            total(s, |w| w.delivered) == (SUBSCRIBERS * MESSAGES) as u64
        });
        assert!(
            ok,
            "{ctx}: not every message queued before the signal: {last:?}"
        );
        assert_eq!(total(&stats(addr), |w| w.dropped_newest), 0, "{ctx}");

        let signalled = Instant::now();
        wsd.signal("TERM");
        // Each subscriber reads slowly and must get every message, in order, then 1001.
        let readers: Vec<_> = subs
            .drain(..)
            .enumerate()
            .map(|(i, mut c)| {
                std::thread::spawn(move || {
                    for seq in 0..MESSAGES {
                        if seq % 16 == 0 {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        match c.event(IO_TIMEOUT) {
                            Event::Reply(r) if r.is_message() => {
                                let want = format!("\"{i}:{seq}:");
                                assert!(
                                    r.data().starts_with(&want)
                                        && r.data().len() == PAD + want.len() + 1,
                                    "{}: message {seq} of {MESSAGES}: got {}",
                                    c.name,
                                    preview(r.data())
                                );
                            }
                            other => panic!(
                                "{}: message {seq} of {MESSAGES} lost: got {other:?}",
                                c.name
                            ),
                        }
                    }
                    match c.event(IO_TIMEOUT) {
                        Event::Close(code) => {
                            assert_eq!(code, Some(1001), "{}: close after the data", c.name)
                        }
                        other => panic!(
                            "{}: expected close 1001 after the data, got {other:?}",
                            c.name
                        ),
                    }
                    loop {
                        match c.ws.read() {
                            Err(tungstenite::Error::ConnectionClosed) => break,
                            Ok(_) => continue,
                            Err(e) => panic!("{}: after the close: {e}", c.name),
                        }
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        let (status, took) = wsd.exit_within(signalled, Duration::from_secs(20), &ctx);
        assert_eq!(
            status.code(),
            Some(0),
            "{ctx}: exit status; stderr {:?}",
            wsd.seen
        );
        assert!(
            took < Duration::from_secs(10),
            "{ctx}: exited {took:?} after SIGTERM: it must exit once its clients are gone, not \
             at SHUTDOWN_TIMEOUT (20 s)"
        );
        let (closed, dropped) = wsd.drained();
        assert_eq!(dropped, 0, "{ctx}: nothing dropped; stderr {:?}", wsd.seen);
        assert!(closed >= SUBSCRIBERS as u64, "{ctx}: closed={closed}");
    }
}

#[test]
fn sigterm_drops_a_client_that_never_reads_at_the_shutdown_timeout() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let mut cmd = base_cmd();
        cmd.env("WSD_IO", io_env(backend))
            .env("CLUSTER_WORKERS", "1")
            .env("SHUTDOWN_TIMEOUT", "2");
        let mut wsd = Running::spawn(cmd);
        let (_, addr) = wsd.listening();
        let mut polite = ws_connect(addr);
        let stuck = StalledWriter::start(addr, &ctx);

        let signalled = Instant::now();
        wsd.signal("TERM");
        match polite.read() {
            Ok(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1001, "{ctx}"),
            other => panic!("{ctx}: expected close 1001, got {other:?}"),
        }
        while !matches!(polite.read(), Err(tungstenite::Error::ConnectionClosed)) {}
        let (status, took) = wsd.exit_within(signalled, Duration::from_secs(10), &ctx);
        assert_eq!(
            status.code(),
            Some(0),
            "{ctx}: exit status; stderr {:?}",
            wsd.seen
        );
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
            "{ctx}: exited {took:?} after SIGTERM with SHUTDOWN_TIMEOUT=2"
        );
        assert_eq!(wsd.drained(), (1, 1), "{ctx}: closed, dropped_at_timeout");
        stuck.finish();
    }
}

#[test]
fn health_answers_503_draining_after_sigterm() {
    let mut cmd = base_cmd();
    cmd.env("CLUSTER_WORKERS", "1");
    let mut wsd = Running::spawn(cmd);
    let (_, addr) = wsd.listening();
    let mut ws = RawWs::connect(addr);
    // An HTTP client mid-request when the signal comes (e.g. a load balancer's health check).
    let mut begun = tcp(addr);
    begun
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // Answered after those bytes were sent: the one worker has read them.
    let (resp, _) = http_exchange(addr, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(resp.status, 404);
    let signalled = Instant::now();
    wsd.signal("TERM");
    // The close frame shows the drain has begun; the client does not answer it yet.
    assert_eq!(ws.expect_close("SIGTERM"), Some(1001));
    begun.write_all(b"\r\n").unwrap();
    let resp = read_response(&mut begun).expect("answer to the begun request");
    assert_eq!(resp.status, 503, "/health while draining: {resp:?}");
    assert_eq!(parse_health(&resp.text()).status, "draining", "{resp:?}");
    // The client answers the close; nothing holds wsd any more.
    ws.send(&client_frame(OP_CLOSE, &close_payload(1001, b"")));
    ws.expect_eof(Duration::from_secs(3), "after the close handshake");
    let answered = signalled.elapsed();
    let (status, took) = wsd.exit_within(signalled, Duration::from_secs(10), "health");
    assert_eq!(status.code(), Some(0), "stderr {:?}", wsd.seen);
    assert!(
        took < answered + Duration::from_secs(2),
        "exited {took:?} after SIGTERM, its last client closed at {answered:?}"
    );
}

#[test]
fn a_second_signal_exits_at_once_with_128_plus_the_signal() {
    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        let mut cmd = base_cmd();
        cmd.env("SHUTDOWN_TIMEOUT", "30");
        let mut wsd = Running::spawn(cmd);
        let (_, addr) = wsd.listening();
        // Holds the drain: never answers the close.
        let mut raw = RawWs::connect(addr);
        let first = Instant::now();
        wsd.signal(sig);
        assert_eq!(raw.expect_close(sig), Some(1001));
        wsd.signal(sig);
        let (status, took) = wsd.exit_within(first, Duration::from_secs(4), sig);
        assert_eq!(
            status.code(),
            Some(code),
            "SIG{sig} twice: exit status; stderr {:?}",
            wsd.seen
        );
        assert!(
            took < Duration::from_secs(4),
            "SIG{sig} twice: took {took:?}"
        );
    }
}

#[test]
fn max_connections_above_the_open_file_limit_is_logged() {
    let mut cmd = base_cmd();
    cmd.env("MAX_CONNECTIONS", "10000000");
    let mut wsd = Running::spawn(cmd);
    let line = strip_ansi(&wsd.line_with("open file limit", Duration::from_secs(10)));
    let limit: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("limit="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no limit= in {line:?}"));
    if limit >= 10_000_000 + wsd::config::FD_MARGIN as u64 {
        eprintln!("RLIMIT_NOFILE {limit} is above 10 million here: nothing to warn about");
        return;
    }
    let warning = strip_ansi(&wsd.line_with("MAX_CONNECTIONS needs", Duration::from_secs(10)));
    assert!(warning.contains("WARN"), "{warning:?}");
    assert!(warning.contains(&format!("nofile={limit}")), "{warning:?}");
    wsd.listening();

    // Within the limit: no warning before the start-up line.
    let mut cmd = base_cmd();
    cmd.env("MAX_CONNECTIONS", "100");
    let mut wsd = Running::spawn(cmd);
    wsd.listening();
    assert!(
        !wsd.seen.iter().any(|l| l.contains("MAX_CONNECTIONS needs")),
        "{:?}",
        wsd.seen
    );
}
