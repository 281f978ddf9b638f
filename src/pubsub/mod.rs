//! The pub/sub application (`WSD_APP=pubsub`): the JSON envelope protocol of docs/PROTOCOL.md —
//! SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PING — over per-worker topic tables and the cross-worker relay.
//!
//! A PUBLISH is validated once, framed once (WebSocket header + MESSAGE envelope with the
//! publisher's `data` bytes spliced in verbatim) into one refcounted buffer, and that buffer is
//! queued on every subscriber of this worker at the end of the loop turn (copied when small, see
//! `worker::COPY_FRAME_MAX`) and handed to every other worker that has subscribers of the topic.
#![forbid(unsafe_code)]

pub mod engine;
pub mod guard;
pub mod relay;
pub mod topics;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::access::claims::Identity;
use crate::app::{App, ConnId, Deliver, Outbox, Publish, SharedFrame};
use crate::envelope::{self, Envelope, ErrorCode, Request, Scratch};
use crate::metrics::{WorkerStats, bump};
use crate::proto::connection::AppClose;
use crate::proto::deflate::Compression;
use crate::proto::frame::{self, Message, MessageKind, Opcode};
use crate::ratelimit::MessageType;
use crate::state::Shared;
use guard::Denial;
use relay::{Relay, Relayed};
use topics::{SubscribeError, TopicKey, TopicTable};

/// Parse scratch kept between messages; more is released after the message that needed it.
const SCRATCH_RETAIN: usize = 1 << 20;

/// Pub/sub settings shared by every worker.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// Most topics one connection may be subscribed to (`MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: usize,
    /// Largest `POST /publish` body (`MAX_PAYLOAD`; the protocol core enforces it with 413).
    pub max_payload: usize,
    /// `COMPRESSION=shared`: published messages get a compressed frame too.
    pub compression: Option<Compression>,
    /// The Redis engine, when `REDIS_URL` is set: publications and interest changes go to it too.
    pub engine: Option<Arc<engine::Bridge>>,
}

/// A publish waiting for the end of the turn to reach this worker's subscribers.
struct Pending {
    topic: TopicKey,
    frame: SharedFrame,
    exclude: Option<ConnId>,
}

/// One worker's pub/sub application.
pub struct PubSub {
    worker: usize,
    config: Arc<PubSubConfig>,
    relay: Arc<Relay>,
    stats: Arc<Shared>,
    topics: TopicTable,
    /// Local subscriber counts per interest bucket (see [`relay`]).
    interest: Vec<u32>,
    pending: Vec<Pending>,
    /// Workers handed messages this turn, woken once in `flush`.
    to_wake: Vec<bool>,
    /// The Redis thread was handed something this turn, woken once in `flush`.
    wake_engine: bool,
    scratch: Scratch,
    /// Rights, rate limits and token expiry, when access control is configured.
    guard: Option<guard::Guard>,
}

impl PubSub {
    /// The application of worker `worker`.
    pub fn new(
        worker: usize,
        config: Arc<PubSubConfig>,
        relay: Arc<Relay>,
        stats: Arc<Shared>,
    ) -> Self {
        let workers = relay.workers();
        let guard = stats.access.clone().map(guard::Guard::new);
        PubSub {
            guard,
            worker,
            config,
            relay,
            stats,
            topics: TopicTable::default(),
            interest: vec![0; relay::BUCKETS],
            pending: Vec::new(),
            to_wake: vec![false; workers],
            wake_engine: false,
            scratch: Scratch::default(),
        }
    }

    fn my_stats(&self) -> &WorkerStats {
        &self.stats.workers[self.worker]
    }

    /// This worker gained or lost its last local subscriber of `topic`.
    fn interest_changed(&mut self, topic: &str, gained: bool) {
        if let Some(engine) = &self.config.engine {
            engine.interest(topic.into(), gained);
            self.wake_engine = true;
        }
        let bucket = Relay::bucket(topic);
        let count = &mut self.interest[bucket];
        if gained {
            *count += 1;
            if *count == 1 {
                self.relay.set_interest(bucket, self.worker, true);
            }
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.relay.set_interest(bucket, self.worker, false);
            }
        }
    }

    fn publish_counts(&self) {
        let stats = self.my_stats();
        stats
            .topics
            .store(self.topics.topic_count(), Ordering::Relaxed);
        stats
            .subscriptions
            .store(self.topics.subscription_count(), Ordering::Relaxed);
    }

    /// Publishes `data` on `topic`: framed once, queued for this worker's subscribers (except
    /// `exclude`) at the end of the turn, handed to every other worker with subscribers.
    fn publish(&mut self, exclude: Option<ConnId>, topic: &str, data: &[u8]) {
        let frame = SharedFrame::new(frame_message(topic, data), self.config.compression);
        self.my_stats().published.fetch_add(1, Ordering::Relaxed);
        if let Some(key) = self.topics.key(topic) {
            self.pending.push(Pending {
                topic: key,
                frame: frame.clone(),
                exclude,
            });
        }
        let bucket = Relay::bucket(topic);
        let mut shared_topic: Option<Arc<str>> = None;
        for worker in 0..self.relay.workers() {
            if worker == self.worker || !self.relay.interested(bucket, worker) {
                continue;
            }
            let topic = shared_topic.get_or_insert_with(|| topic.into()).clone();
            self.relay.push(
                worker,
                Relayed {
                    topic,
                    frame: frame.clone(),
                },
            );
            self.to_wake[worker] = true;
        }
        if let Some(engine) = &self.config.engine {
            let topic = shared_topic.unwrap_or_else(|| topic.into());
            engine.publish(topic, frame.plain_frame().clone());
            self.wake_engine = true;
        }
    }

    fn handle(&mut self, conn: ConnId, envelope: Envelope<'_>, out: &mut Outbox<'_>) {
        let cid = envelope.correlation_id;
        match envelope.request {
            Request::Subscribe { topics } => {
                if let Some(g) = &self.guard
                    && let Some(topic) = topics.iter().find(|t| !g.may_subscribe(conn, t))
                {
                    bump(&self.stats.workers[self.worker].permission_denied[0]);
                    let message = format!("not allowed to subscribe to '{topic}'");
                    return reply_error(out, ErrorCode::PermissionDenied, &message, cid);
                }
                for topic in topics.iter() {
                    match self
                        .topics
                        .subscribe(conn, topic, self.config.max_subscriptions)
                    {
                        Ok(s) if s.first => self.interest_changed(topic, true),
                        Ok(_) => {}
                        Err(SubscribeError::TooMany) => {
                            let message = format!(
                                "subscription limit reached ({} per connection)",
                                self.config.max_subscriptions
                            );
                            self.publish_counts();
                            return reply_error(out, ErrorCode::ResourceExhausted, &message, cid);
                        }
                    }
                }
                self.publish_counts();
                ack(out, "SUBSCRIBE", cid);
            }
            Request::Unsubscribe { topics } => {
                for topic in topics.iter() {
                    if self.topics.unsubscribe(conn, topic) == Some(true) {
                        self.interest_changed(topic, false);
                    }
                }
                self.publish_counts();
                ack(out, "UNSUBSCRIBE", cid);
            }
            Request::Publish { topic, .. }
                if self
                    .guard
                    .as_ref()
                    .is_some_and(|g| !g.may_publish(conn, topic)) =>
            {
                bump(&self.stats.workers[self.worker].permission_denied[1]);
                let message = format!("not allowed to publish on '{topic}'");
                reply_error(out, ErrorCode::PermissionDenied, &message, cid);
            }
            Request::Publish { .. } if self.stats.is_draining() => {
                // Every publish accepted before the drain reaches all its subscribers ahead of
                // their 1001 (docs/ARCHITECTURE.md, the drain); one accepted now might not, so it is refused, not lost.
                let mut body = Vec::with_capacity(128);
                let message = "server is shutting down: publish again after reconnecting";
                envelope::write_error(&mut body, ErrorCode::Unavailable, message, true, None, cid);
                out.send(MessageKind::Text, &body);
            }
            Request::Publish {
                topic,
                data,
                exclude_self,
            } => {
                self.publish(exclude_self.then_some(conn), topic, data);
                ack(out, "PUBLISH", cid);
            }
            Request::Ping => {
                let mut body = Vec::with_capacity(64);
                envelope::write_pong(&mut body, cid);
                out.send(MessageKind::Text, &body);
            }
            Request::Auth { token } => {
                let stats = &self.stats.workers[self.worker];
                let result = match &mut self.guard {
                    Some(g) => g.refresh(conn, token, stats),
                    None => Err(Denial::Reply {
                        code: ErrorCode::InvalidArgument,
                        message: "AUTH: authentication is not configured on this server".into(),
                        retry_after_ms: None,
                    }),
                };
                match result {
                    Ok(()) => ack(out, "AUTH", cid),
                    Err(denial) => {
                        // A refresh refusal never closes.
                        let _ = write_denial(out, denial, cid);
                    }
                }
            }
        }
    }

    /// Charges one message of type `ty` to the rate limits (when configured): `Ok(true)` to go
    /// on, `Ok(false)` when it was refused (the error is in `out`), `Err` to close.
    #[inline]
    fn admit(
        &mut self,
        conn: ConnId,
        ty: MessageType,
        cid: Option<&str>,
        out: &mut Outbox<'_>,
    ) -> Result<bool, AppClose> {
        let Some(g) = &mut self.guard else {
            return Ok(true);
        };
        match g.charge(conn, ty, &self.stats.workers[self.worker]) {
            Ok(()) => Ok(true),
            Err(denial) => write_denial(out, denial, cid).map(|()| false),
        }
    }
}

/// Frames a MESSAGE once: WebSocket header + envelope in one exactly sized buffer.
pub fn frame_message(topic: &str, data: &[u8]) -> Bytes {
    let len = envelope::message_len(topic, data);
    let mut header = [0u8; 14];
    let header_len = frame::encode_header(&mut header, true, Opcode::Text, None, len as u64);
    let mut buf = Vec::with_capacity(header_len + len);
    buf.extend_from_slice(&header[..header_len]);
    envelope::write_message(&mut buf, topic, data);
    Bytes::from(buf)
}

fn ack(out: &mut Outbox<'_>, of: &str, correlation_id: Option<&str>) {
    // PROTOCOL.md: a successful request is acknowledged only when it carries a correlationId.
    if correlation_id.is_some() {
        let mut body = Vec::with_capacity(96);
        envelope::write_ack(&mut body, of, correlation_id);
        out.send(MessageKind::Text, &body);
    }
}

/// Answers a refused request; `Err` when the connection must close after it.
fn write_denial(out: &mut Outbox<'_>, denial: Denial, cid: Option<&str>) -> Result<(), AppClose> {
    match denial {
        Denial::Reply {
            code,
            message,
            retry_after_ms,
        } => {
            let mut body = Vec::with_capacity(128 + message.len());
            let retryable = retry_after_ms.is_some();
            envelope::write_error(&mut body, code, &message, retryable, retry_after_ms, cid);
            out.send(MessageKind::Text, &body);
            Ok(())
        }
        Denial::Close(close, message) => {
            reply_error(out, ErrorCode::ResourceExhausted, &message, cid);
            Err(close)
        }
    }
}

fn reply_error(out: &mut Outbox<'_>, code: ErrorCode, message: &str, correlation_id: Option<&str>) {
    let mut body = Vec::with_capacity(128 + message.len());
    envelope::write_error(&mut body, code, message, false, None, correlation_id);
    out.send(MessageKind::Text, &body);
}

impl App for PubSub {
    fn accepts_publish(&self) -> bool {
        true
    }

    fn publish_batch(&mut self, batch: &[Publish<'_>]) {
        for item in batch {
            self.publish(None, item.topic, item.data);
        }
    }

    fn on_message(
        &mut self,
        conn: ConnId,
        msg: Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), AppClose> {
        if msg.kind == MessageKind::Binary {
            if !self.admit(conn, MessageType::Other, None, out)? {
                return Ok(());
            }
            reply_error(
                out,
                ErrorCode::InvalidArgument,
                "binary messages are not part of the protocol: send JSON text",
                None,
            );
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = match envelope::parse(msg.data, &mut scratch) {
            Ok(envelope) => {
                let ty = guard::message_type(&envelope.request);
                let admitted = self.admit(conn, ty, envelope.correlation_id, out);
                if let Ok(true) = admitted {
                    self.handle(conn, envelope, out);
                }
                admitted.map(|_| ())
            }
            Err(e) => {
                let cid = e.correlation_id();
                let admitted = self.admit(conn, MessageType::Other, cid, out);
                if let Ok(true) = admitted {
                    reply_error(out, ErrorCode::InvalidArgument, &e.to_string(), cid);
                }
                admitted.map(|_| ())
            }
        };
        if scratch.retained_bytes() > SCRATCH_RETAIN {
            scratch.shrink(); // a huge or dense message: give its memory back
        }
        self.scratch = scratch;
        result
    }

    fn on_oversized(
        &mut self,
        conn: ConnId,
        _kind: MessageKind,
        out: &mut Outbox<'_>,
    ) -> Result<(), AppClose> {
        if !self.admit(conn, MessageType::Other, None, out)? {
            return Ok(());
        }
        let message = format!(
            "message discarded: larger than MAX_PAYLOAD ({} bytes)",
            self.config.max_payload
        );
        reply_error(out, ErrorCode::ResourceExhausted, &message, None);
        Ok(())
    }

    fn on_identity(&mut self, conn: ConnId, identity: Arc<Identity>) {
        if let Some(g) = &mut self.guard {
            g.identify(conn, identity);
        }
    }

    fn on_open(&mut self, conn: ConnId, _out: &mut Outbox<'_>) {
        if let Some(g) = &mut self.guard {
            g.open(conn);
        }
    }

    fn tick(&mut self, now_ns: u64, close: &mut Vec<(ConnId, AppClose)>) {
        if let Some(g) = &mut self.guard {
            g.tick(now_ns, close, &self.stats.workers[self.worker]);
        }
    }

    fn on_close(&mut self, conn: ConnId) {
        if let Some(g) = &mut self.guard {
            g.close(conn);
        }
        let mut lost = Vec::new();
        self.topics
            .remove_conn(conn, |topic| lost.push(topic.to_owned()));
        for topic in lost {
            self.interest_changed(&topic, false);
        }
        self.publish_counts();
    }

    fn flush(&mut self, deliver: &mut dyn Deliver) {
        // Drops are counted by the worker, per reason; deliveries here.
        let mut delivered = 0u64;
        // Messages other workers published, in the order they were handed over.
        while let Some(Relayed { topic, frame }) = self.relay.pop(self.worker) {
            if let Some(key) = self.topics.key(&topic) {
                delivered += deliver.send_to_all(self.topics.subscribers(key), None, &frame);
            }
        }
        for Pending {
            topic,
            frame,
            exclude,
        } in self.pending.drain(..)
        {
            delivered += deliver.send_to_all(self.topics.subscribers(topic), exclude, &frame);
        }
        for (worker, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake)
                && let Some(waker) = self.relay.waker(worker)
            {
                deliver.wake(waker);
            }
        }
        if std::mem::take(&mut self.wake_engine)
            && let Some(engine) = &self.config.engine
        {
            deliver.wake(engine.waker());
        }
        if delivered > 0 {
            self.my_stats()
                .delivered
                .fetch_add(delivered, Ordering::Relaxed);
        }
    }
}
