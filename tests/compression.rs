//! `permessage-deflate` (RFC 7692, `COMPRESSION=shared`) against independent clients, on every
//! backend: the Python `websockets` package (tests/compression/client.py) and the Node.js `ws`
//! package (client.mjs), both with their own negotiation and zlib code; a browser-style offer by
//! hand; tungstenite, which in the version in Cargo.lock (0.30) has no permessage-deflate, as the
//! client that offers nothing and must get plain frames; a decompression bomb against the real
//! binary with its RSS measured; pub/sub fan-out to a mix of compressing and plain subscribers.
//!
//! The Python and Node.js clients come from `WSD_TEST_PYTHON` (a venv with `websockets`) and
//! `WSD_TEST_NODE_MODULES` (a `node_modules` with `ws`), which scripts/test creates; without them
//! those tests are skipped with a note, except under `WSD_REQUIRE_URING=1` (CI), where they fail.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use wsd::app::AppKind;
use wsd::config::{CompressionMode, Config, PayloadLimitPolicy, Workers};
use wsd::io::Backend;

const HERE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compression");

fn start_compressing(backend: Backend, tweak: impl FnOnce(&mut Config)) -> wsd::server::Server {
    start(backend, |c| {
        c.compression = CompressionMode::Shared;
        tweak(c);
    })
}

/// Whether a missing client fails the test (CI) or skips it.
fn required(why: String) -> Option<PathBuf> {
    if std::env::var("WSD_REQUIRE_URING").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("note: skipping: {why}");
    None
}

/// The Python interpreter with `websockets`, or `None` (with a note).
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("WSD_TEST_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"),
        PathBuf::from,
    );
    let works = Command::new(&path)
        .args(["-c", "import websockets.sync.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        Some(path)
    } else {
        required(format!(
            "no Python with websockets at {} (scripts/test creates it)",
            path.display()
        ))
    }
}

/// The `node_modules` directory holding `ws`, or `None` (with a note).
fn node_modules() -> Option<PathBuf> {
    let path = std::env::var_os("WSD_TEST_NODE_MODULES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/nodeenv/node_modules"),
        PathBuf::from,
    );
    let node = Command::new("node").arg("--version").output().is_ok();
    if node && path.join("ws/package.json").is_file() {
        Some(path)
    } else {
        required(format!(
            "no node or no ws package at {} (scripts/test installs it)",
            path.display()
        ))
    }
}

/// Runs a client to completion and returns its last stdout line, failing on a non-zero exit.
fn run_client(mut cmd: Command, ctx: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{ctx}: cannot run the client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{ctx}: client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_owned()
}

/// A number member of a one-line JSON object.
fn num(line: &str, key: &str) -> u64 {
    json_member(line, key)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {line}"))
}

/// The string member `answer` (the Sec-WebSocket-Extensions the client got).
fn answer(line: &str) -> String {
    let raw = json_member(line, "answer")
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no answer in {line}"));
    raw.trim_matches('"').to_owned()
}

const NO_TAKEOVER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn python_websockets_compresses_both_ways() {
    let Some(python) = python() else { return };
    for backend in backends() {
        let server = start_compressing(backend, |_| {});
        let port = server.local_addr().port().to_string();
        for (mode, expect) in [
            // The default offer wants context takeover; the answer forbids it both ways and the
            // client complies (five rounds of the same kind of message, each echoed exactly).
            ("echo", NO_TAKEOVER.to_owned()),
            ("takeover", NO_TAKEOVER.to_owned()),
            ("narrow", format!("{NO_TAKEOVER}; server_max_window_bits=9")),
        ] {
            let ctx = format!("[{backend}] python {mode}");
            let mut cmd = Command::new(&python);
            cmd.arg(format!("{HERE}/client.py")).args([&port, mode]);
            let line = run_client(cmd, &ctx);
            assert_eq!(answer(&line), expect, "{ctx}: {line}");
            let (sent, wire) = (num(&line, "sent"), num(&line, "wire"));
            // The replies came compressed: the JSON rounds compress about 10x, the binary ones
            // (a 256-byte pattern) too, except within a 512-byte window where they cannot.
            if mode == "narrow" {
                assert!(
                    wire * 3 < sent * 2,
                    "{ctx}: {wire} bytes on the wire for {sent}"
                );
            } else {
                assert!(
                    wire * 5 < sent,
                    "{ctx}: {wire} bytes on the wire for {sent}"
                );
            }
        }
    }
}

#[test]
fn node_ws_compresses_both_ways() {
    let Some(modules) = node_modules() else {
        return;
    };
    for backend in backends() {
        let server = start_compressing(backend, |_| {});
        let ctx = format!("[{backend}] node ws");
        let mut cmd = Command::new("node");
        cmd.arg(format!("{HERE}/client.mjs"))
            .arg(server.local_addr().port().to_string())
            .env("NODE_PATH", &modules);
        let line = run_client(cmd, &ctx);
        assert_eq!(answer(&line), NO_TAKEOVER, "{ctx}: {line}");
        let (sent, wire) = (num(&line, "sent"), num(&line, "wire"));
        assert!(
            wire * 5 < sent,
            "{ctx}: {wire} bytes on the wire for {sent}"
        );
    }
}

/// Raw DEFLATE of `data` as one message: sync flush, trailer removed (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one compressed message (trailer appended, RFC 7692 §7.2.2).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 4 + 1024);
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    loop {
        let used = d.total_in() as usize;
        d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// Upgrades by hand with `extensions` offered; returns the client and the answer header.
fn offer(addr: SocketAddr, extensions: &str) -> (RawWs, Option<String>) {
    let mut stream = tcp(addr);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (head, rest) = read_head(&mut stream).unwrap();
    assert_eq!(head.status, 101, "{extensions}: {head:?}");
    let answer = head.header("sec-websocket-extensions").map(str::to_owned);
    (RawWs::new(stream, rest), answer)
}

/// A 2 KiB JSON feed payload.
fn json_2k() -> String {
    let mut s = String::from("[");
    for i in 0..40 {
        s.push_str(&format!(
            r#"{{"sym":"S{i:03}","bid":{}.{:02},"ask":{}.{:02}}},"#,
            100 + i,
            i,
            101 + i,
            99 - i
        ));
    }
    s.push_str("0]");
    s
}

#[test]
fn a_browser_offer_is_answered_and_used() {
    for backend in backends() {
        let server = start_compressing(backend, |_| {});
        let ctx = format!("[{backend}]");
        // What Chrome, Firefox and Safari send.
        let (mut ws, answer) = offer(
            server.local_addr(),
            "permessage-deflate; client_max_window_bits",
        );
        assert_eq!(answer.as_deref(), Some(NO_TAKEOVER), "{ctx}");
        let json = json_2k();
        // A compressed message, echoed compressed.
        ws.send(&frame(
            OP_TEXT,
            true,
            0b100,
            true,
            &deflate(json.as_bytes()),
        ));
        let f = ws.frame();
        assert_eq!((f.opcode, f.rsv, f.fin), (OP_TEXT, 0b100, true), "{ctx}");
        assert!(
            f.payload.len() * 3 < json.len(),
            "{ctx}: {} bytes",
            f.payload.len()
        );
        assert_eq!(inflate(&f.payload), json.as_bytes(), "{ctx}");
        // A plain message is compressed too; a short one stays plain (COMPRESSION_MIN_SIZE 128).
        ws.send(&frame(OP_BINARY, true, 0, true, json.as_bytes()));
        let f = ws.frame();
        assert_eq!((f.opcode, f.rsv), (OP_BINARY, 0b100), "{ctx}");
        assert_eq!(inflate(&f.payload), json.as_bytes(), "{ctx}");
        ws.send(&frame(OP_TEXT, true, 0b100, true, &deflate(b"short")));
        assert_eq!(ws.server_frame().payload, b"short", "{ctx}");
        // A compressed message in fragments: RSV1 on the first only.
        let c = deflate(json.as_bytes());
        let (a, b) = c.split_at(c.len() / 2);
        ws.send(
            &[
                frame(OP_TEXT, false, 0b100, true, a),
                frame(0, true, 0, true, b),
            ]
            .concat(),
        );
        assert_eq!(inflate(&ws.frame().payload), json.as_bytes(), "{ctx}");
        // RSV1 on a continuation frame: 1002.
        ws.send(
            &[
                frame(OP_TEXT, false, 0b100, true, a),
                frame(0, true, 0b100, true, b),
            ]
            .concat(),
        );
        assert_eq!(ws.expect_close(&ctx), Some(1002), "{ctx}");

        // Corrupt DEFLATE data: 1007.
        let (mut ws, _) = offer(server.local_addr(), "permessage-deflate");
        ws.send(&frame(
            OP_BINARY,
            true,
            0b100,
            true,
            &[0xff, 0xff, 0xff, 0xff],
        ));
        assert_eq!(ws.expect_close(&ctx), Some(1007), "{ctx}");

        // A client that wants context takeover and a large window gets the no-takeover answer.
        let (mut ws, answer) = offer(
            server.local_addr(),
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
        );
        assert_eq!(
            answer.as_deref(),
            Some(format!("{NO_TAKEOVER}; server_max_window_bits=15").as_str()),
            "{ctx}"
        );
        for _ in 0..3 {
            ws.send(&frame(
                OP_TEXT,
                true,
                0b100,
                true,
                &deflate(json.as_bytes()),
            ));
            assert_eq!(inflate(&ws.frame().payload), json.as_bytes(), "{ctx}");
        }
    }
}

#[test]
fn malformed_offers_are_400_and_off_ignores_offers() {
    for backend in backends() {
        let server = start_compressing(backend, |_| {});
        for bad in ["permessage-deflate;", "permessage-deflate; a=\"b c\"", ","] {
            let mut stream = tcp(server.local_addr());
            let request = format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Extensions: {bad}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).unwrap();
            let resp = read_response(&mut stream).unwrap();
            assert_eq!(resp.status, 400, "[{backend}] {bad}: {resp:?}");
            assert!(
                resp.text().contains("Sec-WebSocket-Extensions"),
                "{}",
                resp.text()
            );
        }
        // Unacceptable but well-formed offers: a plain upgrade.
        let (_, answer) = offer(
            server.local_addr(),
            "permessage-deflate; x=1, x-webkit-deflate-frame",
        );
        assert_eq!(answer, None, "[{backend}]");
        drop(server);

        // COMPRESSION=off (the default): offers are not even parsed, frames stay plain, RSV1 is 1002.
        let server = start(backend, |_| {});
        let (mut ws, answer) = offer(server.local_addr(), "permessage-deflate;;");
        assert_eq!(answer, None, "[{backend}]");
        ws.send(&client_frame(OP_TEXT, json_2k().as_bytes()));
        assert_eq!(ws.server_frame().payload, json_2k().as_bytes());
        ws.send(&frame(OP_TEXT, true, 0b100, true, &deflate(b"x")));
        assert_eq!(ws.expect_close("off"), Some(1002), "[{backend}]");
    }
}

#[test]
fn tungstenite_offers_nothing_and_gets_plain_frames() {
    // tungstenite 0.30 (Cargo.lock) has no permessage-deflate feature: it sends no offer, and it
    // fails the connection on any RSV bit, so a compressed frame would not go unnoticed.
    for backend in backends() {
        let server = start_compressing(backend, |_| {});
        let mut ws = ws_connect(server.local_addr());
        let json = json_2k();
        for _ in 0..3 {
            ws.send(tungstenite::Message::text(json.clone())).unwrap();
            match ws.read().unwrap() {
                tungstenite::Message::Text(t) => assert_eq!(t.as_str(), json),
                other => panic!("[{backend}] {other:?}"),
            }
        }
    }
}

#[test]
fn fan_out_gives_each_subscriber_its_form() {
    let python = python();
    for backend in backends() {
        let server = start_compressing(backend, |c| {
            c.app = AppKind::Pubsub;
            c.cluster_workers = Workers::Count(2);
        });
        let addr = server.local_addr();
        let subscribe =
            br#"{"type":"SUBSCRIBE","payload":{"topics":["feed"]},"meta":{"correlationId":"s"}}"#;
        // Subscribers: two raw ones that negotiated (one narrow), one plain (tungstenite), and
        // the Python client when available.
        let mut raws = Vec::new();
        for ext in [
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=10",
        ] {
            let (mut ws, answer) = offer(addr, ext);
            assert!(answer.is_some(), "[{backend}] {ext}");
            ws.send(&client_frame(OP_TEXT, subscribe));
            let ack = ws.server_frame();
            assert!(ack.payload.starts_with(br#"{"type":"ACK""#), "{ack:?}");
            raws.push(ws);
        }
        let mut plain = ws_connect(addr);
        plain
            .send(tungstenite::Message::text(
                String::from_utf8_lossy(subscribe).into_owned(),
            ))
            .unwrap();
        assert!(
            matches!(plain.read().unwrap(), tungstenite::Message::Text(t) if t.contains("ACK"))
        );
        let mut py = python.as_ref().map(|python| {
            let mut child = Command::new(python)
                .arg(format!("{HERE}/client.py"))
                .args([&addr.port().to_string(), "subscribe"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python client");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let first = lines.next().expect("python says subscribed").unwrap();
            assert!(first.contains(r#""ack": "ACK""#), "{first}");
            assert_eq!(answer(&first), NO_TAKEOVER);
            (Guard(child), lines)
        });
        wait_subscriptions(addr, if py.is_some() { 4 } else { 3 });

        let json = json_2k();
        let mut publisher = ws_connect(addr);
        let publish = format!(r#"{{"type":"PUBLISH","payload":{{"topic":"feed","data":{json}}}}}"#);
        publisher.send(tungstenite::Message::text(publish)).unwrap();
        let envelope =
            format!(r#"{{"type":"MESSAGE","payload":{{"topic":"feed","data":{json}}}}}"#);
        for (i, ws) in raws.iter_mut().enumerate() {
            let f = ws.frame();
            assert_eq!(
                f.rsv, 0b100,
                "[{backend}] raw subscriber {i} got a plain frame"
            );
            assert!(f.payload.len() * 3 < envelope.len());
            assert_eq!(
                inflate(&f.payload),
                envelope.as_bytes(),
                "[{backend}] subscriber {i}"
            );
        }
        match plain.read().unwrap() {
            tungstenite::Message::Text(t) => assert_eq!(t.as_str(), envelope),
            other => panic!("[{backend}] {other:?}"),
        }
        if let Some((_guard, lines)) = py.as_mut() {
            let line = lines.next().expect("python got the message").unwrap();
            assert_eq!(num(&line, "len"), envelope.len() as u64, "{line}");
            assert!(num(&line, "wire") * 3 < envelope.len() as u64, "{line}");
        }
    }
}

/// Waits until the server counts `n` subscriptions in total.
fn wait_subscriptions(addr: SocketAddr, n: u64) {
    let ok = poll(Duration::from_secs(10), || {
        let stats = health_info(addr).stats?;
        (stats.iter().map(|w| w.subscriptions).sum::<u64>() == n).then_some(())
    });
    assert!(ok.is_some(), "{n} subscriptions never showed in /health");
}

// ---------------------------------------------------------------------------------------------
// A decompression bomb against the binary, with its memory measured
// ---------------------------------------------------------------------------------------------

/// `mib` MiB of zero bytes compressed as one message (DEFLATE's ratio is at most about 1032:1,
/// so 1 GiB takes about 1 MiB: no DEFLATE stream of 1 KiB can inflate to 1 GiB).
///
/// Each MiB is compressed with a sync flush, which ends it on a byte boundary; from the second
/// MiB on the compressor's state is the same every time (a window of zeros), so those MiBs
/// compress to the same bytes and are repeated instead of compressed again (checked below).
fn bomb(mib: usize) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let zeros = vec![0u8; 1 << 20];
    let chunk = |c: &mut Compress| {
        let mut out = Vec::with_capacity(4096);
        let start = c.total_in();
        while c.total_in() - start < zeros.len() as u64 {
            let at = (c.total_in() - start) as usize;
            out.reserve(4096);
            c.compress_vec(&zeros[at..], &mut out, FlushCompress::None)
                .unwrap();
        }
        loop {
            out.reserve(4096);
            c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
            if out.len() < out.capacity() {
                return out;
            }
        }
    };
    let first = chunk(&mut c);
    let second = chunk(&mut c);
    let third = chunk(&mut c);
    assert_eq!(
        second, third,
        "a MiB of zeros after zeros compresses the same each time"
    );
    let mut out = first;
    for _ in 1..mib {
        out.extend_from_slice(&second);
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// How many bytes `payload` inflates to, counted in 1 MiB steps (never held whole).
fn inflated_len(payload: &[u8]) -> usize {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    let input = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut total = 0;
    loop {
        out.clear();
        let used = d.total_in() as usize;
        d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .unwrap();
        total += out.len();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return total;
        }
    }
}

/// The resident set of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Starts the wsd binary (echo, compression on) and waits for it to answer.
fn spawn_wsd(backend: Backend, policy: &str) -> (Guard, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = wsd_command()
        .envs([
            ("PORT", port.to_string().as_str()),
            ("HOST", "127.0.0.1"),
            ("WSD_APP", "echo"),
            (
                "WSD_IO",
                if backend == Backend::Uring {
                    "uring"
                } else {
                    "epoll"
                },
            ),
            ("CLUSTER_WORKERS", "1"),
            ("COMPRESSION", "shared"),
            ("MAX_PAYLOAD", "2097152"),
            ("PAYLOAD_LIMIT_POLICY", policy),
            ("LOG_LEVEL", "error"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wsd");
    let guard = Guard(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = poll(Duration::from_secs(10), || {
        TcpStream::connect(addr).ok().map(|_| ())
    });
    assert!(up.is_some(), "wsd did not start");
    (guard, addr)
}

#[test]
fn a_bomb_is_stopped_at_max_payload_with_rss_unchanged() {
    let started = Instant::now();
    let bomb = bomb(1024);
    assert_eq!(inflated_len(&bomb), 1 << 30, "the bomb inflates to 1 GiB");
    eprintln!(
        "bomb: {} bytes inflating to 1 GiB (made in {:?})",
        bomb.len(),
        started.elapsed()
    );
    assert!(bomb.len() < 2 << 20, "the compressed bomb fits MAX_PAYLOAD");
    let json = json_2k();
    for backend in backends() {
        for policy in ["close", "send"] {
            let ctx = format!("[{backend}] PAYLOAD_LIMIT_POLICY={policy}");
            let (guard, addr) = spawn_wsd(backend, policy);
            let pid = guard.0.id();
            // Warm up: the worker's codec has inflated and compressed once.
            let (mut warm, _) = offer(addr, "permessage-deflate");
            warm.send(&frame(
                OP_TEXT,
                true,
                0b100,
                true,
                &deflate(json.as_bytes()),
            ));
            assert_eq!(inflate(&warm.frame().payload), json.as_bytes(), "{ctx}");
            let before = rss_kib(pid);

            let (mut ws, _) = offer(addr, "permessage-deflate");
            ws.send(&frame(OP_BINARY, true, 0b100, true, &bomb));
            if policy == "close" {
                assert_eq!(ws.expect_close(&ctx), Some(1009), "{ctx}");
            } else {
                // Discarded; the connection goes on (the echo app says nothing about it).
                ws.send(&frame(
                    OP_TEXT,
                    true,
                    0b100,
                    true,
                    &deflate(json.as_bytes()),
                ));
                assert_eq!(inflate(&ws.frame().payload), json.as_bytes(), "{ctx}");
            }
            // At most MAX_PAYLOAD (2 MiB) of inflated output and the 1 MiB compressed message
            // were ever held, and both are freed (the allocator returns freed pages after a
            // short delay); 1 GiB was never near.
            let peak = rss_kib(pid);
            // More bombs reuse what the first left: nothing accumulates.
            for _ in 0..3 {
                let (mut again, _) = offer(addr, "permessage-deflate");
                again.send(&frame(OP_BINARY, true, 0b100, true, &bomb));
                if policy == "close" {
                    assert_eq!(again.expect_close(&ctx), Some(1009), "{ctx}");
                } else {
                    again.send(&frame(
                        OP_TEXT,
                        true,
                        0b100,
                        true,
                        &deflate(json.as_bytes()),
                    ));
                    assert_eq!(inflate(&again.frame().payload), json.as_bytes(), "{ctx}");
                }
            }
            let after = rss_kib(pid);
            eprintln!(
                "{ctx}: wsd RSS {before} KiB before the bomb, {peak} KiB after it, {after} KiB \
                 after three more"
            );
            // What one bomb can make wsd hold is bounded by MAX_PAYLOAD (2 MiB here): the
            // inflate output (at most MAX_PAYLOAD + 1, grown by doubling) and the compressed
            // message (at most MAX_PAYLOAD), never the 1 GiB it inflates to. The allocator keeps
            // freed pages for reuse, so RSS does not go back down (about +7 MiB here); on
            // io_uring it also grows by about 1 MiB per connection that sent a megabyte-sized
            // message, up to a plateau, as it does for plain messages of that size.
            assert!(
                peak < before + 5 * 2048,
                "{ctx}: RSS grew from {before} to {peak} KiB"
            );
            assert!(after < before + 10 * 2048, "{ctx}: RSS grew to {after} KiB");
            // The server still serves.
            warm.send(&frame(
                OP_TEXT,
                true,
                0b100,
                true,
                &deflate(json.as_bytes()),
            ));
            assert_eq!(inflate(&warm.frame().payload), json.as_bytes(), "{ctx}");
            let mut rest = Vec::new();
            drop(ws.stream.read_to_end(&mut rest));
        }
    }
}

#[test]
fn the_payload_limit_counts_inflated_bytes() {
    for backend in backends() {
        let server = start_compressing(backend, |c| {
            c.max_payload = 4096;
            c.payload_limit_policy = PayloadLimitPolicy::Close;
        });
        let ctx = format!("[{backend}]");
        // 4096 bytes inflated: accepted. 4097: 1009, though only a few bytes compressed.
        let (mut ws, _) = offer(server.local_addr(), "permessage-deflate");
        ws.send(&frame(OP_BINARY, true, 0b100, true, &deflate(&[7; 4096])));
        let f = ws.frame();
        assert_eq!(inflate(&f.payload), vec![7; 4096], "{ctx}");
        let small = deflate(&[7; 4097]);
        assert!(small.len() < 64);
        ws.send(&frame(OP_BINARY, true, 0b100, true, &small));
        assert_eq!(ws.expect_close(&ctx), Some(1009), "{ctx}");
    }
}
