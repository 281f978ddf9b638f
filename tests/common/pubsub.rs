//! A client of the pub/sub protocol (docs/PROTOCOL.md) for the integration tests: JSON
//! envelopes over tungstenite, every read bounded by a timeout, replies checked for shape and
//! parsed with serde_json (`data` kept as the exact bytes the server sent).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::{
    IO_TIMEOUT, Json, WorkerStats, health_info, json_member, json_members, parse_json, preview,
};

/// One message from the server, checked to be a JSON envelope.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The whole text frame.
    pub text: String,
    /// `type`.
    pub kind: String,
    /// `meta.correlationId`, if present.
    pub correlation_id: Option<String>,
    /// The raw text of `payload`.
    pub payload: String,
}

impl Reply {
    /// Checks `text` is an envelope: a JSON object with a string `type`, an object `payload`, and
    /// an optional `meta` object whose `correlationId` is a string; no duplicate or unknown
    /// top-level keys. The whole text must be valid JSON (serde_json), at any depth.
    pub fn parse(text: String) -> Result<Reply, String> {
        let ctx = || preview(&text);
        let mut kind = None;
        let mut payload = None;
        let mut correlation_id = None;
        for (key, raw) in json_members(&text)? {
            match key.as_str() {
                "type" => match serde_json::from_str::<String>(raw) {
                    Ok(s) => kind = Some(s),
                    Err(_) => return Err(format!("type is {raw}: {}", ctx())),
                },
                "payload" => {
                    json_members(raw).map_err(|e| format!("payload is not an object ({e})"))?;
                    payload = Some(raw.to_owned());
                }
                "meta" => {
                    let meta = json_members(raw)
                        .map_err(|e| format!("meta is not an object ({e}): {}", ctx()))?;
                    if let Some((_, c)) = meta.iter().find(|(k, _)| k == "correlationId") {
                        match serde_json::from_str::<String>(c) {
                            Ok(s) => correlation_id = Some(s),
                            Err(_) => {
                                return Err(format!("meta.correlationId is {c}: {}", ctx()));
                            }
                        }
                    }
                }
                other => return Err(format!("unknown top-level key {other:?}: {}", ctx())),
            }
        }
        let kind = kind.ok_or_else(|| format!("no type: {}", ctx()))?;
        let payload = payload.ok_or_else(|| format!("no payload: {}", ctx()))?;
        Ok(Reply {
            text,
            kind,
            correlation_id,
            payload,
        })
    }

    /// The raw text of payload field `key`.
    pub fn raw(&self, key: &str) -> Option<&str> {
        json_member(&self.payload, key)
            .unwrap_or_else(|e| panic!("payload of {}: {e}", preview(&self.text)))
    }

    /// Payload field `key`, parsed.
    pub fn field(&self, key: &str) -> Option<Json> {
        self.raw(key).map(|raw| {
            parse_json(raw).unwrap_or_else(|e| {
                panic!("payload.{key} is not JSON ({e}): {}", preview(&self.text))
            })
        })
    }

    /// Payload field `key`, which must be a string.
    pub fn str_field(&self, key: &str) -> String {
        match self.field(key) {
            Some(Json::String(s)) => s,
            other => panic!("payload.{key} is {other:?}: {}", preview(&self.text)),
        }
    }

    /// A MESSAGE's topic.
    pub fn topic(&self) -> String {
        self.str_field("topic")
    }

    /// A MESSAGE's `data`, exactly as the server sent it.
    pub fn data(&self) -> &str {
        self.raw("data")
            .unwrap_or_else(|| panic!("MESSAGE without data: {}", preview(&self.text)))
    }

    /// An ERROR's `code`.
    pub fn code(&self) -> String {
        self.str_field("code")
    }

    /// Whether this is a MESSAGE.
    pub fn is_message(&self) -> bool {
        self.kind == "MESSAGE"
    }
}

/// What a read brought.
#[derive(Debug)]
pub enum Event {
    /// An application message.
    Reply(Reply),
    /// A close frame with this code (`None`: empty payload).
    Close(Option<u16>),
    /// The connection ended without a close frame (EOF or reset).
    Ended(String),
    /// Nothing within the timeout.
    Timeout,
}

static CID: AtomicU64 = AtomicU64::new(1);

/// A fresh correlationId.
pub fn cid(prefix: &str) -> String {
    format!("{prefix}-{}", CID.fetch_add(1, Ordering::Relaxed))
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// A client envelope: `{"type":T,"payload":P[,"meta":{"correlationId":C}]}` (`payload` raw JSON).
pub fn envelope(kind: &str, payload: &str, cid: Option<&str>) -> String {
    match cid {
        Some(c) => format!(
            r#"{{"type":"{kind}","payload":{payload},"meta":{{"correlationId":{}}}}}"#,
            json_str(c)
        ),
        None => format!(r#"{{"type":"{kind}","payload":{payload}}}"#),
    }
}

/// A PUBLISH envelope with raw `data`.
pub fn publish_envelope(topic: &str, data: &str, cid: Option<&str>) -> String {
    envelope(
        "PUBLISH",
        &format!(r#"{{"topic":{},"data":{data}}}"#, json_str(topic)),
        cid,
    )
}

/// A pub/sub client on `/ws`.
pub struct PsClient {
    pub ws: WebSocket<TcpStream>,
    /// Names the client in failure messages.
    pub name: String,
    /// Messages read while waiting for something else, handed out first by [`PsClient::next`].
    pub backlog: VecDeque<Reply>,
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

impl PsClient {
    /// Connects to `ws://addr/ws`.
    pub fn connect(addr: SocketAddr, name: impl Into<String>) -> Self {
        let ws = super::ws_connect_with(addr, "/ws", Some(client_config()));
        PsClient {
            ws,
            name: name.into(),
            backlog: VecDeque::new(),
        }
    }

    /// Connects with `SO_RCVBUF` set to `rcvbuf` before the handshake, so the kernel holds little
    /// for a client that stops reading.
    pub fn connect_small_rcvbuf(addr: SocketAddr, name: impl Into<String>, rcvbuf: usize) -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://{addr}/ws");
        let (ws, response) =
            tungstenite::client::client_with_config(url.as_str(), stream, Some(client_config()))
                .unwrap_or_else(|e| panic!("WebSocket handshake with {url} failed: {e}"));
        assert_eq!(response.status().as_u16(), 101, "upgrade of {url}");
        PsClient {
            ws,
            name: name.into(),
            backlog: VecDeque::new(),
        }
    }

    /// Sends one text frame.
    pub fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .unwrap_or_else(|e| panic!("{}: send {}: {e}", self.name, preview(text)));
    }

    /// Sends one binary frame.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .unwrap_or_else(|e| panic!("{}: send binary: {e}", self.name));
    }

    /// Reads the next event within `within` (the backlog first).
    pub fn event(&mut self, within: Duration) -> Event {
        if let Some(r) = self.backlog.pop_front() {
            return Event::Reply(r);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Event::Timeout;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let text = t.as_str().to_owned();
                    return match Reply::parse(text) {
                        Ok(r) => Event::Reply(r),
                        Err(e) => panic!("{}: bad envelope from the server: {e}", self.name),
                    };
                }
                Ok(Message::Binary(b)) => {
                    panic!("{}: the server sent a binary message: {b:?}", self.name)
                }
                Ok(Message::Close(frame)) => return Event::Close(frame.map(|f| f.code.into())),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    continue;
                }
                Err(e) => return Event::Ended(e.to_string()),
            }
        }
    }

    /// The next message within `within`, `None` on timeout; a close or error fails the test.
    pub fn next_within(&mut self, within: Duration) -> Option<Reply> {
        match self.event(within) {
            Event::Reply(r) => Some(r),
            Event::Timeout => None,
            other => panic!("{}: connection ended: {other:?}", self.name),
        }
    }

    /// The next message; fails the test after [`IO_TIMEOUT`].
    pub fn next(&mut self) -> Reply {
        self.next_within(IO_TIMEOUT)
            .unwrap_or_else(|| panic!("{}: nothing from the server in {IO_TIMEOUT:?}", self.name))
    }

    /// Fails if anything arrives within `within`.
    pub fn expect_silence(&mut self, within: Duration, ctx: &str) {
        if let Some(r) = self.next_within(within) {
            panic!(
                "{}: {ctx}: expected nothing, got {}",
                self.name,
                preview(&r.text)
            );
        }
    }

    /// Reads until a non-MESSAGE reply arrives and returns it; MESSAGEs read meanwhile go to the
    /// backlog (in order).
    pub fn next_reply(&mut self) -> Reply {
        let mut stash = Vec::new();
        let mut from_backlog = std::mem::take(&mut self.backlog);
        let reply = loop {
            let r = match from_backlog.pop_front() {
                Some(r) => r,
                None => self.next(),
            };
            if r.is_message() {
                stash.push(r);
            } else {
                break r;
            }
        };
        stash.extend(from_backlog);
        self.backlog = stash.into();
        reply
    }

    /// Sends `text` and returns the reply carrying `cid` (ACK, ERROR or PONG); an unrelated
    /// non-MESSAGE reply fails the test.
    pub fn request(&mut self, text: &str, cid: &str) -> Reply {
        self.send(text);
        let r = self.next_reply();
        assert_eq!(
            r.correlation_id.as_deref(),
            Some(cid),
            "{}: reply to {} carries the wrong correlationId: {}",
            self.name,
            preview(text),
            preview(&r.text)
        );
        r
    }

    /// Sends `text` and expects an ACK of `of` with its correlationId.
    pub fn expect_ack(&mut self, text: &str, cid: &str, of: &str) {
        let r = self.request(text, cid);
        assert_eq!(
            (r.kind.as_str(), r.str_field("of").as_str()),
            ("ACK", of),
            "{}: reply to {}: {}",
            self.name,
            preview(text),
            r.text
        );
    }

    /// SUBSCRIBE to `topic` and waits for the ACK.
    pub fn subscribe(&mut self, topic: &str) {
        let c = cid("sub");
        let payload = format!(r#"{{"topic":{}}}"#, json_str(topic));
        self.expect_ack(&envelope("SUBSCRIBE", &payload, Some(&c)), &c, "SUBSCRIBE");
    }

    /// UNSUBSCRIBE from `topic` and waits for the ACK.
    pub fn unsubscribe(&mut self, topic: &str) {
        let c = cid("unsub");
        let payload = format!(r#"{{"topic":{}}}"#, json_str(topic));
        self.expect_ack(
            &envelope("UNSUBSCRIBE", &payload, Some(&c)),
            &c,
            "UNSUBSCRIBE",
        );
    }

    /// PUBLISH without a correlationId (no reply expected).
    pub fn publish(&mut self, topic: &str, data: &str) {
        self.send(&publish_envelope(topic, data, None));
    }

    /// PING with a correlationId; expects the PONG (MESSAGEs meanwhile go to the backlog).
    pub fn ping(&mut self) {
        let c = cid("ping");
        let r = self.request(&envelope("PING", "{}", Some(&c)), &c);
        assert_eq!(r.kind, "PONG", "{}: reply to PING: {}", self.name, r.text);
    }

    /// Takes the MESSAGEs that [`PsClient::next_reply`] set aside.
    pub fn take_backlog(&mut self) -> Vec<Reply> {
        self.backlog.drain(..).collect()
    }

    /// Reads exactly `n` MESSAGEs (backlog first); anything else fails the test.
    pub fn messages(&mut self, n: usize, within: Duration) -> Vec<Reply> {
        let deadline = Instant::now() + within;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(r) = self.next_within(left) else {
                panic!(
                    "{}: got {} of {n} messages within {within:?}; last: {:?}",
                    self.name,
                    out.len(),
                    out.last().map(|r: &Reply| preview(&r.text))
                );
            };
            assert!(
                r.is_message(),
                "{}: expected a MESSAGE, got {}",
                self.name,
                preview(&r.text)
            );
            out.push(r);
        }
        out
    }
}

/// The pub/sub counters of every worker from `/health`.
pub fn stats(addr: SocketAddr) -> Vec<WorkerStats> {
    let h = health_info(addr);
    h.stats
        .unwrap_or_else(|| panic!("/health has no pub/sub counters: {:?}", h.workers))
}

/// Sums one counter over the workers.
pub fn total(stats: &[WorkerStats], f: impl Fn(&WorkerStats) -> u64) -> u64 {
    stats.iter().map(f).sum()
}

/// Polls `/health` until `ok` holds for the per-worker counters; returns the last reading and
/// whether it held.
pub fn wait_stats(
    addr: SocketAddr,
    within: Duration,
    ok: impl Fn(&[WorkerStats]) -> bool,
) -> (Vec<WorkerStats>, bool) {
    let mut last = Vec::new();
    let hit = super::poll(within, || {
        let s = stats(addr);
        let good = ok(&s);
        last = s;
        good.then_some(())
    });
    (last, hit.is_some())
}

/// The worker that serves `client`: subscribes it to a fresh probe topic, sees which worker's
/// subscription count rose, and unsubscribes again. Nothing else may subscribe meanwhile.
pub fn worker_of(addr: SocketAddr, client: &mut PsClient) -> usize {
    let before = stats(addr);
    let probe = cid("probe");
    client.subscribe(&probe);
    let after = stats(addr);
    client.unsubscribe(&probe);
    let rose: Vec<usize> = (0..after.len())
        .filter(|&w| after[w].subscriptions != before[w].subscriptions)
        .collect();
    assert!(
        rose.len() == 1 && after[rose[0]].subscriptions == before[rose[0]].subscriptions + 1,
        "{}: one subscription should show on exactly one worker: before {before:?}, after {after:?}",
        client.name
    );
    rose[0]
}

/// Opens clients until one is served by `worker` (at most 200 tries; the others are closed).
pub fn client_on_worker(addr: SocketAddr, worker: usize, name: &str) -> PsClient {
    for _ in 0..200 {
        let mut c = PsClient::connect(addr, name);
        if worker_of(addr, &mut c) == worker {
            return c;
        }
    }
    panic!("{name}: 200 connections and none landed on worker {worker}");
}
