//! Helpers shared by the integration tests: which backends to run, starting a server, clients
//! (tungstenite and raw TCP), hand-built frames, and reading `/health`.
//!
//! Every blocking read and write has a timeout, so no test can hang on a silent server.
#![allow(dead_code)]

pub mod auth;
pub mod fake_redis;
pub mod pubsub;
pub mod redis;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::coding::OpCode;
use tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};
use tungstenite::{Bytes, WebSocket};
use wsd::app::AppKind;
use wsd::config::{Config, Workers};
use wsd::io::{Backend, IoMode};
use wsd::server::Server;

/// Read/write timeout of every client socket: long enough for any server answer, short enough
/// that a silent server fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

// ---------------------------------------------------------------------------------------------
// Backends and servers
// ---------------------------------------------------------------------------------------------

/// The backends to test: always epoll; io_uring when it can be set up here. With
/// `WSD_REQUIRE_URING=1` (CI) a failing probe panics, so io_uring coverage cannot silently vanish.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Epoll];
    match wsd::uring::probe() {
        Ok(()) => list.push(Backend::Uring),
        Err(e) => {
            if std::env::var("WSD_REQUIRE_URING").as_deref() == Ok("1") {
                panic!("WSD_REQUIRE_URING=1 but io_uring cannot be set up here: {e}");
            }
            eprintln!("note: io_uring unavailable ({e}); testing epoll only");
        }
    }
    list
}

/// Runs `f` on a fresh, short-lived thread and returns its result (re-raising its panic).
pub fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The `WSD_IO` mode that selects `backend`.
pub fn io_mode(backend: Backend) -> IoMode {
    match backend {
        Backend::Epoll => IoMode::Epoll,
        Backend::Uring => IoMode::Uring,
    }
}

/// Starts an echo server on 127.0.0.1:0 with one worker on `backend`; `tweak` may change any knob.
///
/// Dropping the server stops it (drains). Declare clients after it so they are dropped first: a
/// client that is still open at the stop gets close 1001, and the server waits up to 5 s for its
/// answer (`shutdown_timeout` 5 here, so a test's client that never reads cannot hold a test for
/// the default 30 s).
pub fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = Config {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        cluster_workers: Workers::Count(1),
        io: io_mode(backend),
        app: AppKind::Echo,
        shutdown_timeout: 5,
        ..Config::default()
    };
    tweak(&mut cfg);
    let server =
        Server::start(&cfg).unwrap_or_else(|e| panic!("[{backend}] server failed to start: {e}"));
    assert_eq!(
        server.backend(),
        backend,
        "[{backend}] server runs on another backend"
    );
    assert_ne!(
        server.local_addr().port(),
        0,
        "[{backend}] local_addr has no real port"
    );
    server
}

/// Polls `f` every 10 ms until it returns `Some` or `within` has passed.
pub fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A TCP connection to `addr` with read/write timeouts and Nagle off.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A tungstenite client on `ws://addr/ws`.
pub fn ws_connect(addr: SocketAddr) -> WebSocket<TcpStream> {
    ws_connect_with(addr, "/ws", None)
}

/// A tungstenite client on `ws://addr<path>` with an optional config.
pub fn ws_connect_with(
    addr: SocketAddr,
    path: &str,
    config: Option<WebSocketConfig>,
) -> WebSocket<TcpStream> {
    let stream = tcp(addr);
    let url = format!("ws://{addr}{path}");
    match tungstenite::client::client_with_config(url.as_str(), stream, config) {
        Ok((ws, response)) => {
            assert_eq!(response.status().as_u16(), 101, "upgrade of {url}");
            ws
        }
        Err(e) => panic!("WebSocket handshake with {url} failed: {e}"),
    }
}

/// The RFC 6455 sample key and the accept value it must produce.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Performs the upgrade by hand on `/ws`, with `extra` sent in the same write right after the
/// request. Returns the stream and whatever bytes followed the 101 header.
pub fn raw_handshake(addr: SocketAddr, extra: &[u8]) -> (TcpStream, Vec<u8>) {
    raw_handshake_path(addr, "/ws", extra)
}

/// [`raw_handshake`] on any path.
pub fn raw_handshake_path(addr: SocketAddr, path: &str, extra: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut stream = tcp(addr);
    let mut request = upgrade_request(path).into_bytes();
    request.extend_from_slice(extra);
    stream.write_all(&request).expect("send upgrade request");
    let (head, rest) = read_head(&mut stream).expect("read upgrade response");
    assert_eq!(head.status, 101, "upgrade response: {head:?}");
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(SAMPLE_ACCEPT),
        "Sec-WebSocket-Accept in {head:?}"
    );
    (stream, rest)
}

/// A raw WebSocket client: the stream plus bytes already read past the 101 header.
pub struct RawWs {
    pub stream: TcpStream,
    pending: Vec<u8>,
    pos: usize,
}

impl Read for RawWs {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.pos);
            buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl RawWs {
    /// Wraps a stream and the bytes already read from it.
    pub fn new(stream: TcpStream, pending: Vec<u8>) -> Self {
        RawWs {
            stream,
            pending,
            pos: 0,
        }
    }

    /// Connects and upgrades on `/ws`.
    pub fn connect(addr: SocketAddr) -> Self {
        let (stream, rest) = raw_handshake(addr, &[]);
        RawWs::new(stream, rest)
    }

    /// Connects and upgrades on `/ws`, sending `extra` in the same write as the request.
    pub fn connect_with(addr: SocketAddr, extra: &[u8]) -> Self {
        let (stream, rest) = raw_handshake(addr, extra);
        RawWs::new(stream, rest)
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Reads one frame; panics on error or timeout.
    pub fn frame(&mut self) -> Frame {
        read_frame(self).unwrap_or_else(|e| panic!("reading a frame from the server: {e}"))
    }

    /// Reads one frame and checks that it is a server frame (unmasked, no RSV bits).
    pub fn server_frame(&mut self) -> Frame {
        let f = self.frame();
        assert!(!f.masked, "server frames must not be masked: {f:?}");
        assert_eq!(f.rsv, 0, "server frame has RSV bits set: {f:?}");
        f
    }

    /// Reads frames until a close frame and returns its code (`None` for an empty payload).
    /// Data frames before it fail the test; pongs are skipped.
    pub fn expect_close(&mut self, ctx: &str) -> Option<u16> {
        loop {
            let f = self.server_frame();
            match f.opcode {
                OP_CLOSE => {
                    assert!(f.fin, "{ctx}: close frame must be final");
                    return close_code(&f.payload, ctx);
                }
                OP_PONG => continue,
                _ => panic!("{ctx}: expected a close frame, got {f:?}"),
            }
        }
    }

    /// Waits until the server closes TCP (read returns 0 or a reset) and returns how long it took.
    /// Fails if data arrives or the connection stays open for `within`.
    pub fn expect_eof(&mut self, within: Duration, ctx: &str) -> Duration {
        let rest = self.pending.len() - self.pos;
        assert_eq!(
            rest,
            0,
            "{ctx}: unread bytes before EOF: {:?}",
            &self.pending[self.pos..]
        );
        expect_eof(&mut self.stream, within, ctx)
    }
}

/// Waits until the peer closes `stream` (read returns 0 or a reset) and returns how long it took.
pub fn expect_eof(stream: &mut TcpStream, within: Duration, ctx: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("{ctx}: connection still open after {within:?}");
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(n) => panic!(
                "{ctx}: expected EOF, got {n} bytes: {:?}",
                &buf[..n.min(64)]
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return started.elapsed();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{ctx}: connection still open after {within:?}")
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("{ctx}: unexpected read error: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// One frame as read from the wire (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

static MASK_SEED: AtomicU32 = AtomicU32::new(0x9e37_79b9);

fn next_mask() -> [u8; 4] {
    // A different key per frame, so a server that ignores the key cannot pass by luck.
    let mut x = MASK_SEED.fetch_add(0x6d2b_79f5, Ordering::Relaxed);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^= x >> 12;
    let key = x.to_be_bytes();
    if key == [0; 4] { [1, 2, 3, 4] } else { key }
}

/// The tungstenite header of a frame: any opcode (low 4 bits), fin, rsv bits (low 3 bits), mask.
fn ws_header(opcode: u8, fin: bool, rsv: u8, mask: Option<[u8; 4]>) -> FrameHeader {
    FrameHeader {
        is_final: fin,
        rsv1: rsv & 4 != 0,
        rsv2: rsv & 2 != 0,
        rsv3: rsv & 1 != 0,
        opcode: OpCode::from(opcode & 0xF),
        mask,
    }
}

/// Builds one frame, well-formed or not, with tungstenite's encoder (an implementation
/// independent of wsd's): any opcode (low 4 bits), fin, rsv bits (low 3 bits), mask on or off
/// (a fresh key per frame).
pub fn frame(opcode: u8, fin: bool, rsv: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let header = ws_header(opcode, fin, rsv, masked.then(next_mask));
    let mut out = Vec::with_capacity(payload.len() + 14);
    WsFrame::from_payload(header, Bytes::copy_from_slice(payload))
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// A final, masked client frame with no RSV bits.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, true, 0, true, payload)
}

/// A masked frame header only, announcing `len` payload bytes (followed by the 4-byte mask key).
pub fn client_header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    ws_header(opcode, fin, 0, Some([0x11, 0x22, 0x33, 0x44]))
        .format(len, &mut out)
        .expect("writing to a Vec cannot fail");
    out
}

/// A close payload: code then reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// The code of a close payload (`None` if empty). Also checks the reason is UTF-8.
pub fn close_code(payload: &[u8], ctx: &str) -> Option<u16> {
    match payload.len() {
        0 => None,
        1 => panic!("{ctx}: server sent a 1-byte close payload"),
        _ => {
            assert!(
                std::str::from_utf8(&payload[2..]).is_ok(),
                "{ctx}: server close reason is not UTF-8: {payload:?}"
            );
            Some(u16::from_be_bytes([payload[0], payload[1]]))
        }
    }
}

/// Reads one frame from `r` (unmasking it if it is masked), its header decoded by tungstenite.
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Frame> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    // Two bytes, then one at a time until the header is complete: nothing past it is consumed.
    let mut head = vec![0u8; 2];
    r.read_exact(&mut head)?;
    let (header, len) = loop {
        match FrameHeader::parse(&mut io::Cursor::new(&head)) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) if head.len() < 14 => {
                let mut byte = [0u8];
                r.read_exact(&mut byte)?;
                head.push(byte[0]);
            }
            Ok(None) => return Err(invalid(format!("no header in {head:?}"))),
            Err(e) => return Err(invalid(format!("bad frame header {head:?}: {e}"))),
        }
    };
    if len > 1 << 30 {
        return Err(invalid(format!("frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if let Some(key) = header.mask {
        payload
            .iter_mut()
            .zip(key.iter().cycle())
            .for_each(|(b, k)| *b ^= k);
    }
    Ok(Frame {
        fin: header.is_final,
        rsv: (u8::from(header.rsv1) << 2) | (u8::from(header.rsv2) << 1) | u8::from(header.rsv3),
        opcode: u8::from(header.opcode),
        masked: header.mask.is_some(),
        payload,
    })
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP response head (and body, when read).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads an HTTP response head; returns it and the bytes read past it.
pub fn read_head(stream: &mut TcpStream) -> io::Result<(HttpResponse, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF before the end of the response head; got {:?}",
                    lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let rest = buf[end + 4..].to_vec();
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_owned();
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        )
    })?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad header line {line:?}"),
            )
        })?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok((
        HttpResponse {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        },
        rest,
    ))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads a whole response (head and a `Content-Length` body) from `stream`.
pub fn read_response(stream: &mut TcpStream) -> io::Result<HttpResponse> {
    let (mut resp, mut body) = read_head(stream)?;
    let len: usize = match resp.header("content-length") {
        Some(v) => v.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad Content-Length {v:?}"),
            )
        })?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no Content-Length",
            ));
        }
    };
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside the body",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if body.len() > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} bytes past Content-Length {len}: {:?}",
                body.len() - len,
                lossy(&body)
            ),
        ));
    }
    resp.body = body;
    Ok(resp)
}

/// Sends `request` on a new connection and reads the response; returns it and the stream.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> (HttpResponse, TcpStream) {
    let mut stream = tcp(addr);
    stream.write_all(request).expect("send HTTP request");
    let resp = read_response(&mut stream)
        .unwrap_or_else(|e| panic!("reading the response to {:?}: {e}", lossy(request)));
    (resp, stream)
}

/// `GET /health` and returns the JSON body (after checking status 200 and JSON content type).
pub fn health(addr: SocketAddr) -> String {
    let (resp, _) = http_exchange(addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(resp.status, 200, "/health status: {resp:?}");
    String::from_utf8(resp.body).expect("/health body is UTF-8")
}

/// `/health` parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub status: String,
    pub io: String,
    pub connections: u64,
    /// `(connections, accepted)` per worker.
    pub workers: Vec<(u64, u64)>,
    /// The pub/sub counters of every worker, when the server reports them (`None` when no worker
    /// has a `topics` field; a worker with some but not all of them fails the parse).
    pub stats: Option<Vec<WorkerStats>>,
}

/// The pub/sub counters of one worker in `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerStats {
    pub connections: u64,
    pub accepted: u64,
    pub topics: u64,
    pub subscriptions: u64,
    pub published: u64,
    pub delivered: u64,
    pub dropped_newest: u64,
    pub dropped_oldest: u64,
    pub closed_backpressure: u64,
}

/// The per-worker fields of [`WorkerStats`] beyond `connections` and `accepted`.
pub const PUBSUB_HEALTH_FIELDS: [&str; 7] = [
    "topics",
    "subscriptions",
    "published",
    "delivered",
    "dropped_newest",
    "dropped_oldest",
    "closed_backpressure",
];

/// `GET /health`, parsed; panics if the JSON does not have the documented shape.
pub fn health_info(addr: SocketAddr) -> Health {
    let body = health(addr);
    parse_health(&body)
}

/// Parses a `/health` body.
pub fn parse_health(body: &str) -> Health {
    let v = parse_json(body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"));
    let s = |k: &str| match v.get(k) {
        Some(Json::String(s)) => s.clone(),
        other => panic!("/health field {k} is {other:?}: {body}"),
    };
    let n = |j: Option<&Json>, k: &str| match j.and_then(Json::as_u64) {
        Some(n) => n,
        None => panic!("/health field {k} is {j:?}: {body}"),
    };
    let workers = match v.get("workers") {
        Some(Json::Array(items)) => items
            .iter()
            .map(|w| {
                (
                    n(w.get("connections"), "connections"),
                    n(w.get("accepted"), "accepted"),
                )
            })
            .collect(),
        other => panic!("/health field workers is {other:?}: {body}"),
    };
    let stats = match v.get("workers") {
        Some(Json::Array(items)) if items.iter().any(|w| w.get("topics").is_some()) => Some(
            items
                .iter()
                .map(|w| {
                    let f: Vec<u64> = PUBSUB_HEALTH_FIELDS
                        .iter()
                        .map(|k| n(w.get(k), k))
                        .collect();
                    WorkerStats {
                        connections: n(w.get("connections"), "connections"),
                        accepted: n(w.get("accepted"), "accepted"),
                        topics: f[0],
                        subscriptions: f[1],
                        published: f[2],
                        delivered: f[3],
                        dropped_newest: f[4],
                        dropped_oldest: f[5],
                        closed_backpressure: f[6],
                    }
                })
                .collect(),
        ),
        _ => None,
    };
    Health {
        status: s("status"),
        io: s("io"),
        connections: n(v.get("connections"), "connections"),
        workers,
        stats,
    }
}

/// Polls `/health` until its `connections` equals `expected`; returns the last reading either way.
pub fn wait_connections(addr: SocketAddr, expected: u64, within: Duration) -> Health {
    let mut last = None;
    let hit = poll(within, || {
        let h = health_info(addr);
        let ok = h.connections == expected;
        last = Some(h.clone());
        ok.then_some(h)
    });
    hit.unwrap_or_else(|| last.expect("at least one /health reading"))
}

// ---------------------------------------------------------------------------------------------
// JSON (serde_json; values kept as their exact text where the server must forward bytes)
// ---------------------------------------------------------------------------------------------

/// A parsed JSON value.
pub type Json = serde_json::Value;

/// Parses a whole JSON document.
pub fn parse_json(s: &str) -> Result<Json, String> {
    serde_json::from_str(s).map_err(|e| e.to_string())
}

/// The members of a JSON object in order, each value as its exact text. Duplicate keys are an
/// error (a server must not send them). Values are checked but not built, so any nesting depth
/// is fine and numbers out of `f64` range are kept as written.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    if members.iter().any(|(seen, _)| *seen == key) {
                        return Err(A::Error::custom(format!("duplicate key {key:?}")));
                    }
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// The members of the JSON object `doc` (top level only), each value's text exactly as it
/// appears in `doc`. `Err` when `doc` is not one valid JSON object or repeats a key.
pub fn json_members(doc: &str) -> Result<Vec<(String, &str)>, String> {
    let members: Members<'_> =
        serde_json::from_str(doc).map_err(|e| format!("{e}: {}", preview(doc)))?;
    Ok(members.0.into_iter().map(|(k, v)| (k, v.get())).collect())
}

/// The raw text of the value of `key` in the JSON object `doc` (top level only), exactly as it
/// appears in `doc`. `Ok(None)` when the key is absent; `Err` as for [`json_members`].
pub fn json_member<'a>(doc: &'a str, key: &str) -> Result<Option<&'a str>, String> {
    Ok(json_members(doc)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// The first 200 bytes of `s` (on a char boundary), for messages.
pub fn preview(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_owned();
    }
    let mut end = 200;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// Sends one HTTP/1.1 request on a new connection and reads the whole response.
/// `headers` are added after `Host`; a `Content-Length` is added for `body`.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let mut stream = tcp(addr);
    stream.write_all(&bytes).expect("send HTTP request");
    read_response(&mut stream)
        .unwrap_or_else(|e| panic!("reading the response to {method} {path}: {e}"))
}

/// A client that sends 64 KiB echo requests and never reads (nor closes): the server's queue for
/// it fills until the server stops reading from it, and then the writer blocks.
pub struct StalledWriter {
    pub ws: RawWs,
    writer: std::thread::JoinHandle<()>,
}

impl StalledWriter {
    /// Connects and writes until the writer has stalled: everything between it and the server is
    /// full.
    pub fn start(addr: SocketAddr, ctx: &str) -> Self {
        let ws = RawWs::connect(addr);
        let mut stream = ws.stream.try_clone().expect("clone the stream");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("write timeout");
        let written = Arc::new(AtomicUsize::new(0));
        let progress = written.clone();
        let frame = client_frame(OP_BINARY, &vec![0x5a; 64 * 1024]);
        let writer = std::thread::spawn(move || {
            while stream.write_all(&frame).is_ok() {
                progress.fetch_add(frame.len(), Ordering::Relaxed);
            }
        });
        let mut last = 0;
        poll(Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(200));
            let now = written.load(Ordering::Relaxed);
            let stalled = now == last && now > 0;
            last = now;
            stalled.then_some(())
        })
        .unwrap_or_else(|| panic!("{ctx}: the writer never stalled"));
        StalledWriter { ws, writer }
    }

    /// Closes the connection and waits for the writer thread to end.
    pub fn finish(self) {
        drop(self.ws);
        self.writer.join().expect("the writer thread");
    }
}

/// Every variable wsd reads, in `--print-config` order (tests/config_file.rs checks the list is
/// complete against the binary), then `WSD_CONFIG`.
pub const KNOB_VARS: [&str; 52] = [
    "PORT",
    "HOST",
    "CLUSTER_WORKERS",
    "WS_PATH",
    "MAX_PAYLOAD",
    "WSD_IO",
    "WSD_APP",
    "LOG_LEVEL",
    "IDLE_TIMEOUT",
    "SEND_PINGS",
    "MAX_SUBSCRIPTIONS",
    "MAX_BACKPRESSURE",
    "BACKPRESSURE_POLICY",
    "WRITE_DELAY_MS",
    "SEND_BUFFER",
    "MAX_QUEUED_BYTES",
    "PUBLISH_KEY",
    "SHUTDOWN_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "UPGRADE_MAX_CONCURRENT",
    "UPGRADE_MAX_CONCURRENT_PER_IP",
    "PAYLOAD_LIMIT_POLICY",
    "COMPRESSION",
    "COMPRESSION_MIN_SIZE",
    "METRICS_KEY",
    "ADMIN_PORT",
    "REDIS_URL",
    "REDIS_PREFIX",
    "REDIS_SHARDED",
    "LOG_FORMAT",
    "WSD_RELAY_WAKE",
    "SSL_CERT",
    "SSL_KEY",
    "SSL_CLIENT_CA",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_LEEWAY",
    "AUTH_REQUIRED",
    "ANON_SUBSCRIBE",
    "ANON_PUBLISH",
    "DEFAULT_SUBSCRIBE",
    "DEFAULT_PUBLISH",
    "ALLOWED_ORIGINS",
    "RATE_LIMIT",
    "RATE_LIMIT_COST",
    "RATE_LIMIT_STRIKES",
    "RATE_LIMIT_IDENTITY",
    "UPGRADE_RATE_PER_IP",
    "WSD_CONFIG",
];

/// The `wsd` binary with none of its variables (nor `NO_COLOR`) inherited from the test
/// environment, and no stdin.
pub fn wsd_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsd"));
    for k in KNOB_VARS {
        cmd.env_remove(k);
    }
    cmd.env_remove("NO_COLOR");
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// Kills and reaps the child when dropped, so a failing test leaves no process behind.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
