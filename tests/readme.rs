//! The README's "Try it" example, run as a reader would run it, so that the README cannot drift
//! from the code.
//!
//! The blocks marked `<!-- readme-test: NAME -->` in README.md are run with bash, as written, on
//! every backend: `server` (`cargo run --release`, so the release build of this tree) in the
//! background, then `subscriber` in the background, then `requests`. Their output is compared
//! with the blocks the README shows for it: `subscriber-output` and `requests-output` line by
//! line (`...` stands for any text), and `server-log` line by line on the level, target, message
//! and field names of each log line (timestamps and values differ from run to run), as is the
//! example log of docs/OPERATIONS.md (`operations-log`). The server is stopped as the README
//! says, with Ctrl-C (SIGINT to its process group), and must exit 0.
//!
//! Three things differ from a reader's terminal, each through something the README documents:
//! the server gets `PORT=0` (a free port, so that the test cannot collide with a wsd already on
//! 3000) and `HOST=127.0.0.1` in its environment, and the client blocks get that port in place
//! of `3000`; `WSD_IO` picks the backend; `LOG_FORMAT=pretty` makes the log read as on a
//! terminal. The client blocks' venv `/tmp/wsd-try` becomes `target/readme-venv` in this tree,
//! which scripts/test fills with `websockets` beforehand (the block's own `pip install` then finds
//! it installed and needs no network).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::{Pid, Signal, kill_process_group};
use wsd::io::Backend;

const README: &str = include_str!("../README.md");
/// docs/OPERATIONS.md's example log, checked against the same run's log as the README's.
const OPERATIONS: &str = include_str!("../docs/OPERATIONS.md");
const MARK: &str = "<!-- readme-test: ";

/// How long `cargo run --release` may take to build and start wsd: a release build from scratch
/// (fat LTO) takes minutes on a small, busy machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The fenced block after each `<!-- readme-test: NAME -->` line, as (name, text).
fn marked_blocks(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(MARK) else {
            continue;
        };
        let name = rest
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("README: marker without `-->`: {line}"))
            .trim()
            .to_string();
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "README: the line after {line:?} must open a fenced block, found {fence:?}"
        );
        let mut body = String::new();
        loop {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("README: block {name:?} is never closed"));
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        blocks.push((name, body));
    }
    blocks
}

/// The block named `name`; exactly one must exist.
fn block<'a>(blocks: &'a [(String, String)], name: &str) -> &'a str {
    let found: Vec<_> = blocks.iter().filter(|(n, _)| n == name).collect();
    assert_eq!(
        found.len(),
        1,
        "README.md (or docs/OPERATIONS.md) must have exactly one block marked `{MARK}{name} -->`"
    );
    &found[0].1
}

/// `text` with every `from` replaced by `to`; `from` must occur, so a substitution cannot
/// silently do nothing when the README changes.
fn substitute(text: &str, from: &str, to: &str, what: &str) -> String {
    assert!(
        text.contains(from),
        "README block {what} no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// Whether `actual` matches `pattern`, where each `...` in the pattern stands for any text.
fn glob_match(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Checks `actual` lines against the README's `expected` lines (`...` = any text).
fn assert_lines(expected: &str, actual: &[String], ctx: &str) {
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(
        want.len(),
        actual.len(),
        "{ctx}: README shows {want:#?}, the commands printed {actual:#?}"
    );
    for (w, a) in want.iter().zip(actual) {
        assert!(
            glob_match(w, a),
            "{ctx}: README shows\n  {w}\nthe commands printed\n  {a}"
        );
    }
}

/// A pretty log line reduced to what must not drift: `LEVEL target: message` and the field
/// names, without the timestamp and the values.
fn log_shape(line: &str) -> Option<(String, Vec<String>)> {
    let mut words = line.split_whitespace();
    let stamp = words.next()?;
    if !stamp.ends_with('Z') || !stamp.contains('T') {
        return None;
    }
    let mut head = Vec::new();
    let mut keys = Vec::new();
    for word in words {
        match word.split_once('=') {
            Some((key, _))
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                keys.push(key.to_string())
            }
            // A value with spaces in quotes: its later words are not part of the message.
            _ if !keys.is_empty() => {}
            _ => head.push(word),
        }
    }
    Some((head.join(" "), keys))
}

/// Checks that every line the README shows for terminal 1 was logged (one real line each), and
/// that the lines shown after `^C` (if `ctrl_c`, there must be one) were logged after those shown
/// before it.
fn assert_log(expected: &str, logged: &[String], ctrl_c: bool, ctx: &str) {
    let mut used = vec![false; logged.len()];
    let mut last_before = 0;
    let mut after_ctrl_c = false;
    for want in expected.lines() {
        if want.trim() == "^C" {
            after_ctrl_c = true;
            continue;
        }
        // cargo's own lines (`     Running ...`) are compared whole; wsd's by their shape.
        let matches: Box<dyn Fn(&str) -> bool> = if want.starts_with(' ') {
            Box::new(|l: &str| l.trim() == want.trim())
        } else {
            let shape = log_shape(want)
                .unwrap_or_else(|| panic!("{ctx}: README log line without a timestamp: {want}"));
            Box::new(move |l: &str| log_shape(l).as_ref() == Some(&shape))
        };
        let found = logged
            .iter()
            .enumerate()
            .position(|(i, l)| !used[i] && matches(l))
            .unwrap_or_else(|| {
                panic!(
                    "{ctx}: the log line shown\n  {want}\nis not in what wsd logged: {logged:#?}"
                )
            });
        used[found] = true;
        if after_ctrl_c {
            assert!(
                found > last_before,
                "{ctx}: README shows {want:?} after ^C, but wsd logged it before the stop"
            );
        } else {
            last_before = last_before.max(found);
        }
    }
    assert_eq!(after_ctrl_c, ctrl_c, "{ctx}: a ^C line in the log shown");
}

/// A bash process running one README block in its own process group; dropping it kills the
/// group, so a failing test leaves nothing behind (cargo, wsd, python).
struct Shell {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Shell {
    /// Starts `bash -c script` in `dir`; the lines of `read` (stdout or stderr) arrive through
    /// a channel, the other stream goes to this test's stderr.
    fn spawn(script: &str, dir: &Path, env: &[(&str, &str)], read_stderr: bool) -> Self {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(script).current_dir(dir);
        for k in KNOB_VARS {
            cmd.env_remove(k);
        }
        cmd.env_remove("NO_COLOR");
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null());
        if read_stderr {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
        let stream: Box<dyn Read + Send> = if read_stderr {
            Box::new(child.stderr.take().expect("piped stderr"))
        } else {
            Box::new(child.stdout.take().expect("piped stdout"))
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Shell {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32).expect("a child's pid is positive")
    }

    /// Reads lines until one satisfies `f`, failing after `within` or if the stream ends.
    fn line_where(&mut self, within: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {what} within {within:?}; output so far: {:#?}",
                        self.seen
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!("no {what}: it ended ({status:?}); output: {:#?}", self.seen)
                }
            }
        }
    }

    /// Waits for the process to end within `within`, then returns its status and every line it
    /// wrote to the read stream.
    fn finish(&mut self, within: Duration, what: &str) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for a child") {
                // The reader thread ends with the stream: collect what it still holds.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return (status, self.seen.clone());
            }
            assert!(
                Instant::now() < deadline,
                "{what} still running after {within:?}; output: {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill_process_group(self.pgid(), Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

/// The port from wsd's start line (`... wsd listening addr=127.0.0.1:PORT ...`).
fn listening_port(line: &str) -> u16 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no addr=HOST:PORT in the start line {line:?}"))
}

fn run_example(backend: Backend, blocks: &[(String, String)]) {
    let ctx = format!("[{backend}]");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/readme-venv");
    let io = match backend {
        Backend::Uring => "uring",
        Backend::Epoll => "epoll",
    };

    // Terminal 1: the server.
    let server_env = [
        ("PORT", "0"),
        ("HOST", "127.0.0.1"),
        ("WSD_IO", io),
        ("LOG_FORMAT", "pretty"),
    ];
    let mut server = Shell::spawn(block(blocks, "server"), &root, &server_env, true);
    let start = server.line_where(BUILD_TIMEOUT, "`wsd listening` line", |l| {
        l.contains(" wsd listening ")
    });
    let port = listening_port(&start).to_string();
    let local = format!("localhost:{port}");

    // Terminal 2: the subscriber, which installs the client and waits for a message.
    let script = substitute(
        block(blocks, "subscriber"),
        "localhost:3000",
        &local,
        "subscriber",
    );
    let script = substitute(
        &script,
        "/tmp/wsd-try",
        venv.to_str().expect("a UTF-8 path"),
        "subscriber",
    );
    let mut subscriber = Shell::spawn(&script, &root, &[], false);
    let shown = block(blocks, "subscriber-output");
    let first = subscriber.line_where(Duration::from_secs(300), "subscriber output", |_| true);
    assert_lines(
        shown.lines().next().unwrap_or_default(),
        &[first],
        &format!("{ctx} subscriber, before the publish"),
    );

    // Terminal 3: the requests.
    let requests = substitute(
        block(blocks, "requests"),
        "localhost:3000",
        &local,
        "requests",
    );
    let (status, printed) =
        Shell::spawn(&requests, &root, &[], false).finish(Duration::from_secs(60), "requests");
    assert!(status.success(), "{ctx} requests block: {status}");
    let mut shown_requests = block(blocks, "requests-output").to_string();
    if backend == Backend::Epoll {
        shown_requests = substitute(
            &shown_requests,
            "\"io\":\"io_uring\"",
            "\"io\":\"epoll\"",
            "requests-output",
        );
    }
    assert_lines(&shown_requests, &printed, &format!("{ctx} requests"));

    // The subscriber got the message and ended by itself.
    let (status, lines) = subscriber.finish(Duration::from_secs(10), "subscriber");
    assert!(status.success(), "{ctx} subscriber block: {status}");
    assert_lines(shown, &lines, &format!("{ctx} subscriber"));

    // Ctrl-C in terminal 1: wsd drains and exits 0.
    kill_process_group(server.pgid(), Signal::INT).expect("SIGINT to the server's group");
    let (status, log) = server.finish(Duration::from_secs(40), "wsd after Ctrl-C");
    assert!(
        status.success(),
        "{ctx} wsd after Ctrl-C: {status}; log {log:#?}"
    );
    assert_log(
        block(blocks, "server-log"),
        &log,
        true,
        &format!("{ctx} README log"),
    );
    let operations = marked_blocks(OPERATIONS);
    assert_log(
        block(&operations, "operations-log"),
        &log,
        false,
        &format!("{ctx} docs/OPERATIONS.md log"),
    );
}

#[test]
fn readme_example_runs_as_written() {
    let blocks = marked_blocks(README);
    for backend in backends() {
        run_example(backend, &blocks);
    }
}

#[test]
fn glob_and_log_shape_rules() {
    assert!(glob_match("{\"a\":1,...}", "{\"a\":1,\"b\":2}"));
    assert!(glob_match("a...b...c", "aXbYc"));
    assert!(!glob_match("a...b...c", "aXcYb"));
    assert!(!glob_match("ab...ba", "aba"));
    assert!(!glob_match("{\"a\":1}", "{\"a\":2}"));
    let shown = "2026-01-01T00:00:00.000000Z  INFO wsd::server: drained closed=0 took_ms=4";
    let real = "2026-12-03T09:26:44.737869Z  INFO wsd::server: drained closed=3 took_ms=1";
    assert_eq!(log_shape(shown), log_shape(real));
    let other = "2026-12-03T09:26:44.737869Z  INFO wsd::server: drained closed=3";
    assert_ne!(log_shape(shown), log_shape(other));
    let quoted = "2026-12-03T09:26:44Z  WARN wsd: x error=\"a b c\" n=1";
    assert_eq!(
        log_shape(quoted),
        Some(("WARN wsd: x".to_string(), vec!["error".into(), "n".into()]))
    );
}
