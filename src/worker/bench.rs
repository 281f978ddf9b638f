//! A worker's connection table and fan-out sink without a driver or sockets, for the `fanout`
//! criterion bench and the `pubsub` fuzz target: the same `Conn`s, out-queues, budget checks and
//! `SlabDeliver` a worker uses, with connections opened by a real upgrade request through the
//! protocol core; and a pub/sub application wired as a server wires it.

use std::sync::Arc;
use std::time::Instant;

use super::backpressure::{Held, SlabDeliver};
use super::{Budget, Conn, outqueue, slab::Slab};
use crate::app::SharedFrame;
use crate::app::{ConnId, Deliver};
use crate::io::{Token, Waker};
use crate::metrics::WorkerStats;
use crate::proto::connection::AppClose;
use crate::proto::deflate::{Codec, Compression};
use crate::proto::{Connection, Handler, HttpRequest, Limits, Message};

/// `n` open WebSocket connections of one worker, as its fan-out sees them.
pub struct DeliverBench {
    conns: Slab<Conn>,
    tokens: Vec<ConnId>,
    dirty: Vec<Token>,
    held: Held,
    queued_bytes: super::tally::QueuedBytes,
    closings: super::Deadlines,
    pool: Vec<Vec<u8>>,
    wakes: Vec<Waker>,
    budget: Budget,
    stats: Arc<WorkerStats>,
    codec: Codec,
}

/// Accepts the upgrade; the bench sends no message.
struct Opener;

impl Handler for Opener {
    fn message(&mut self, _: Message<'_>, _: &mut Vec<u8>) -> Result<(), AppClose> {
        Ok(())
    }
    fn http_request(&mut self, _: &HttpRequest<'_>, _: &mut Vec<u8>) -> u16 {
        0
    }
}

impl DeliverBench {
    /// `n` connections, each upgraded, under `budget`.
    pub fn new(n: usize, budget: Budget) -> Self {
        Self::with_compression(n, budget, false)
    }

    /// `n` connections, each upgraded under `budget`, with `permessage-deflate` negotiated when
    /// `deflate`.
    pub fn with_compression(n: usize, budget: Budget, deflate: bool) -> Self {
        let limits = Limits {
            max_payload: 1 << 20,
            oversized: crate::proto::decoder::Oversized::Fail,
            ws_path: "/ws".into(),
            max_header_bytes: 8192,
            compression: Some(Compression { min_size: 128 }),
        };
        let request: &[u8] = if deflate {
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        } else {
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        };
        let mut conns = Slab::default();
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            let mut proto = Connection::new();
            let mut reply = Vec::new();
            let mut bytes = request.to_vec();
            let _ = proto.handle_bytes(
                &mut bytes,
                &limits,
                &mut Codec::new(),
                &mut reply,
                &mut Opener,
            );
            assert!(proto.is_open(), "the upgrade request is valid");
            assert_eq!(proto.deflate().is_some(), deflate);
            tokens.push(conns.insert(Conn::new(proto, 0)));
        }
        DeliverBench {
            conns,
            tokens,
            dirty: Vec::new(),
            held: Held::default(),
            queued_bytes: Default::default(),
            closings: super::Deadlines::new(budget.close_timeout),
            pool: Vec::new(),
            wakes: Vec::new(),
            budget,
            stats: Arc::default(),
            codec: Codec::new(),
        }
    }

    /// Every connection, in the order they were opened.
    pub fn conns(&self) -> &[ConnId] {
        &self.tokens
    }

    /// Runs `f` with the worker's fan-out sink over these connections, as `App::flush` gets it.
    pub fn with_deliver<R>(&mut self, f: impl FnOnce(&mut dyn Deliver) -> R) -> R {
        let fair = super::backpressure::fair_part(self.budget.queued_share, self.conns.len());
        let worker_queued = usize::try_from(self.queued_bytes.total()).unwrap_or(usize::MAX);
        let mut deliver = SlabDeliver {
            conns: &mut self.conns,
            dirty: &mut self.dirty,
            held: &mut self.held,
            queued_bytes: &mut self.queued_bytes,
            closings: &mut self.closings,
            now: Instant::now(),
            budget: self.budget,
            stats: &self.stats,
            queued: 0,
            pool: &mut self.pool,
            wakes: &mut self.wakes,
            codec: &mut self.codec,
            worker_queued,
            fair,
        };
        f(&mut deliver)
    }

    /// What a turn's flush and the sends' completions do to the queues: every dirty connection's
    /// queue is taken (as handed to the driver) and its buffer comes back to the pool. Returns the
    /// bytes that would have been sent.
    pub fn complete_sends(&mut self) -> usize {
        let mut bytes = 0;
        for token in self.dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.dirty = false;
                let out = conn.out.take();
                bytes += out.len();
                outqueue::recycle(out, &mut self.pool);
            }
        }
        bytes
    }
}

/// A published MESSAGE frame as `PUBLISH` builds it (header + envelope, framed once), with
/// compression off.
pub fn frame(topic: &str, data: &[u8]) -> SharedFrame {
    SharedFrame::plain(crate::pubsub::frame_message(topic, data))
}

/// [`frame`] with `COMPRESSION=shared` (minimum size 128 bytes): its compressed form is made on
/// the first delivery to a connection that negotiated compression.
pub fn frame_compressed(topic: &str, data: &[u8]) -> SharedFrame {
    SharedFrame::new(
        crate::pubsub::frame_message(topic, data),
        Some(Compression { min_size: 128 }),
    )
}

/// A one-worker pub/sub application wired as a server wires it (its relay, its counters in the
/// returned [`Shared`](crate::state::Shared)), for benches and fuzzing: drive it with
/// [`App`](crate::app::App) calls and flush it through a [`DeliverBench`].
pub fn pubsub_app(
    max_subscriptions: usize,
) -> std::io::Result<(crate::pubsub::PubSub, Arc<crate::state::Shared>)> {
    use std::sync::atomic::AtomicBool;
    let waker = Waker::new()?;
    let shared = Arc::new(crate::state::Shared {
        backend: crate::io::Backend::Epoll,
        workers: vec![WorkerStats::default()],
        metrics_key: None,
        publish_key: None,
        draining: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        shutdown_timeout: std::time::Duration::from_secs(1),
        admission: crate::admission::Admission::new(1 << 20, 1 << 20, 0),
        drain: crate::state::DrainStats::default(),
        access: None,
        wakers: vec![waker.clone()],
        tls: None,
        redis: None,
    });
    let relay = Arc::new(crate::pubsub::relay::Relay::new(vec![waker]));
    let config = Arc::new(crate::pubsub::PubSubConfig {
        max_subscriptions,
        max_payload: 1 << 20,
        compression: None,
        engine: None,
    });
    let app = crate::pubsub::PubSub::new(0, config, relay, shared.clone());
    Ok((app, shared))
}
