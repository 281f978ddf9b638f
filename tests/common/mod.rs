//! Helpers shared by the integration tests: which backends to run, starting a server, clients
//! (tungstenite and raw TCP), hand-built frames, and reading `/health`.
//!
//! Every blocking read and write has a timeout, so no test can hang on a silent server.
#![allow(dead_code)]

pub mod pubsub;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tungstenite::WebSocket;
use tungstenite::protocol::WebSocketConfig;
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

/// Builds one frame by hand: any opcode (low 4 bits), fin, rsv bits (low 3 bits), mask on or off.
pub fn frame(opcode: u8, fin: bool, rsv: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(((fin as u8) << 7) | ((rsv & 0x7) << 4) | (opcode & 0xF));
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        let key = next_mask();
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A final, masked client frame with no RSV bits.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, true, 0, true, payload)
}

/// A masked frame header only, announcing `len` payload bytes (followed by the 4-byte mask key).
pub fn client_header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut out = vec![((fin as u8) << 7) | (opcode & 0xF)];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
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

/// Reads one frame from `r` (unmasking it if it is masked).
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Frame> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head)?;
    let fin = head[0] & 0x80 != 0;
    let rsv = (head[0] >> 4) & 0x7;
    let opcode = head[0] & 0xF;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as u64
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => n as u64,
    };
    if len > 1 << 30 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Frame {
        fin,
        rsv,
        opcode,
        masked,
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
    let v = Json::parse(body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"));
    let s = |k: &str| match v.get(k) {
        Some(Json::Str(s)) => s.clone(),
        other => panic!("/health field {k} is {other:?}: {body}"),
    };
    let n = |j: Option<&Json>, k: &str| match j {
        Some(Json::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => *n as u64,
        other => panic!("/health field {k} is {other:?}: {body}"),
    };
    let workers = match v.get("workers") {
        Some(Json::Arr(items)) => items
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
        Some(Json::Arr(items)) if items.iter().any(|w| w.get("topics").is_some()) => Some(
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

/// A minimal JSON value, enough to check `/health`.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses a whole document.
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    /// A field of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    fields.push((k, self.value()?));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.b[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                s.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {s:?}"))
            }
            _ => Err(format!("unexpected input at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.b.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| "string not UTF-8".into());
                }
                Some(b'\\') if self.b.get(self.i + 1) == Some(&b'u') => {
                    self.i += 2;
                    let c = self.unicode_escape()?;
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                Some(b'\\') => {
                    let esc = *self.b.get(self.i + 1).ok_or("bad escape")?;
                    let c = match esc {
                        b'b' => 0x08,
                        b'f' => 0x0C,
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        _ => return Err(format!("unsupported escape \\{}", esc as char)),
                    };
                    out.push(c);
                    self.i += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already consumed), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.b[self.i..].starts_with(b"\\u") {
                return Err(format!("lone high surrogate at {}", self.i));
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(format!("bad low surrogate at {}", self.i));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| format!("bad \\u escape before {}", self.i))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| format!("short \\u escape at {}", self.i))?;
        let v = u32::from_str_radix(digits, 16)
            .map_err(|_| format!("bad \\u escape {digits:?} at {}", self.i))?;
        self.i += 4;
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw JSON spans (no recursion, so hostile nesting cannot overflow the test's stack)
// ---------------------------------------------------------------------------------------------

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end of the string starting at `b[i] == '"'`; raw control bytes inside it are an error.
fn skip_string(b: &[u8], mut i: usize) -> Result<usize, String> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            c if c < 0x20 => return Err(format!("raw control byte {c:#04x} in a string at {i}")),
            _ => i += 1,
        }
    }
    Err("unterminated string".into())
}

/// The end of the JSON value starting at `b[i]` (after whitespace). Checks the bracket structure
/// and the strings, not the scalars; iterative, so any depth is fine.
pub fn json_value_end(b: &[u8], i: usize) -> Result<usize, String> {
    let mut i = skip_ws(b, i);
    let mut stack: Vec<u8> = Vec::new();
    loop {
        match b.get(i) {
            None => return Err(format!("value ends early at {i}")),
            Some(b'"') => i = skip_string(b, i)?,
            Some(&c @ (b'{' | b'[')) => {
                stack.push(if c == b'{' { b'}' } else { b']' });
                i += 1;
            }
            Some(&c @ (b'}' | b']')) => {
                if stack.pop() != Some(c) {
                    return Err(format!("unbalanced {:?} at {i}", c as char));
                }
                i += 1;
            }
            Some(b',' | b':' | b' ' | b'\t' | b'\n' | b'\r') if !stack.is_empty() => i += 1,
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'-' | b'+' | b'.'))
                {
                    i += 1;
                }
            }
            Some(c) => return Err(format!("unexpected byte {:?} at {i}", *c as char)),
        }
        if stack.is_empty() {
            return Ok(i);
        }
    }
}

/// The raw text of the value of `key` in the JSON object `doc` (top level only), exactly as it
/// appears in `doc`. `Ok(None)` when the key is absent; `Err` when `doc` is not an object.
/// Duplicate keys are an error (a server must not send them).
pub fn json_member<'a>(doc: &'a str, key: &str) -> Result<Option<&'a str>, String> {
    let b = doc.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(format!("not an object: {}", preview(doc)));
    }
    i = skip_ws(b, i + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return Err(format!("expected a key at {i}: {}", preview(doc)));
            }
            let key_end = skip_string(b, i)?;
            let name = Json::parse(&doc[i..key_end])?;
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return Err(format!("expected ':' at {i}: {}", preview(doc)));
            }
            let start = skip_ws(b, i + 1);
            let end = json_value_end(b, start)?;
            if name == Json::Str(key.to_owned()) {
                if found.is_some() {
                    return Err(format!("duplicate key {key:?}: {}", preview(doc)));
                }
                found = Some(&doc[start..end]);
            }
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' at {i}: {}", preview(doc))),
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return Err(format!("trailing bytes at {i}: {}", preview(doc)));
    }
    Ok(found)
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
pub const KNOB_VARS: [&str; 24] = [
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
    "PUBLISH_KEY",
    "SHUTDOWN_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "UPGRADE_MAX_CONCURRENT",
    "PAYLOAD_LIMIT_POLICY",
    "METRICS_KEY",
    "LOG_FORMAT",
    "WSD_RELAY_WAKE",
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
