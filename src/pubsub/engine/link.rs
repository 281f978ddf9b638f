//! The Redis thread: one multiplexed RESP3 connection (the `redis` crate on a single-threaded
//! tokio runtime) that carries subscriptions, publications and the probe.
//!
//! Each loop step sends at most one pipeline: every interest change due, the probe when due, and
//! every publication queued since the last one, in the order the workers queued them; the next
//! starts when its replies are in. Messages pushed by Redis are checked ([`super::wire`]), this
//! instance's own echo is dropped, and the rest go to each interested worker's relay inbox, with
//! one wake per worker per batch.
//!
//! Failure: a lost connection, a failed command, or a probe that did not come back within the
//! probe timeout ends the session; the link reports down, counts what it could not send, waits a
//! jittered exponential backoff and connects again, then subscribes every current interest. While
//! down, workers keep serving local subscribers and their publications are counted undeliverable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::{PushInfo, PushKind, RedisResult, Value};

use super::backoff::Backoff;
use super::conn::{self, Command, Conn, Timeouts};
use super::interest::InterestSet;
use super::{Bridge, RedisSettings, ToEngine, wire};
use crate::io::Waker;
use crate::pubsub::relay::{Relay, Relayed};

/// Longest wait for a TCP (and TLS) connection and the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the replies to one pipeline.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay; doubles up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest reconnect delay, so a recovered Redis is used again within a few seconds.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// How often the loop looks at timers (probe, hysteresis).
const TICK: Duration = Duration::from_millis(100);
/// Bytes of publications queued for the next pipeline beyond which more are counted
/// undeliverable instead of queued (Redis slower than the publishers).
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Least time between two warnings about refused commands.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Runs the link until [`Bridge::stop`].
pub fn run(settings: RedisSettings, bridge: Arc<Bridge>, relay: Arc<Relay>) {
    // rediss:// needs a process-wide rustls provider; another part of wsd may have set one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "redis: cannot start the Redis thread's runtime; Redis stays down");
            return;
        }
    };
    let client = match redis::Client::open(settings.url.as_str()).and_then(|c| {
        let info = c.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        redis::Client::open(info.set_redis_settings(resp3))
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = ?e.kind(), "redis: REDIS_URL unusable; Redis stays down");
            return;
        }
    };
    let link = Link::new(settings, client, bridge, relay);
    runtime.block_on(link.run());
}

/// The eventfd the workers write (a duplicate descriptor), watched by tokio. Tokio's pipe type
/// is used because it registers any pollable descriptor it owns, safely; an eventfd is read in
/// 8-byte units, which resets it.
struct WakeFd(tokio::net::unix::pipe::Receiver);

impl WakeFd {
    fn new(waker: &Waker) -> std::io::Result<Self> {
        let fd = rustix::io::dup(waker.fd())?;
        Ok(WakeFd(
            tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)?,
        ))
    }

    /// Waits for a wake-up and resets the eventfd.
    async fn wait(&self) {
        match self.0.readable().await {
            Ok(()) => {
                let mut buf = [0u8; 8];
                // WouldBlock: readiness was stale; the queue is drained anyway.
                let _ = self.0.try_read(&mut buf);
            }
            // Not expected from an eventfd; poll the queue instead of spinning.
            Err(_) => tokio::time::sleep(TICK).await,
        }
    }
}

/// One command of a pipeline, to read its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Subscribe,
    Unsubscribe,
    Probe,
    Publish,
}

type Batch = Pin<Box<dyn Future<Output = (RedisResult<Vec<Value>>, Vec<Sent>)>>>;

/// The self-publish probe.
#[derive(Debug)]
struct Probe {
    seq: u64,
    next_at: Instant,
    /// The probe in flight and when it was sent.
    outstanding: Option<(u64, Instant)>,
}

struct Link {
    settings: RedisSettings,
    client: redis::Client,
    bridge: Arc<Bridge>,
    relay: Arc<Relay>,
    interest: InterestSet,
    backoff: Backoff,
    /// `{prefix}t:`, the start of every topic channel.
    topic_prefix: Vec<u8>,
    /// `{prefix}probe:{instance}`.
    probe_channel: Vec<u8>,
    pending: Vec<(Arc<str>, Bytes)>,
    pending_bytes: usize,
    to_wake: Vec<bool>,
    last_warn: Option<Instant>,
}

impl Link {
    fn new(
        settings: RedisSettings,
        client: redis::Client,
        bridge: Arc<Bridge>,
        relay: Arc<Relay>,
    ) -> Self {
        let topic_prefix = format!("{}t:", settings.prefix).into_bytes();
        let probe_channel =
            format!("{}probe:{:016x}", settings.prefix, bridge.instance()).into_bytes();
        Link {
            interest: InterestSet::new(settings.hysteresis),
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP, bridge.instance()),
            to_wake: vec![false; relay.workers()],
            settings,
            client,
            bridge,
            relay,
            topic_prefix,
            probe_channel,
            pending: Vec::new(),
            pending_bytes: 0,
            last_warn: None,
        }
    }

    fn subscribe_cmd(&self) -> &'static str {
        if self.settings.sharded {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        }
    }

    fn unsubscribe_cmd(&self) -> &'static str {
        if self.settings.sharded {
            "SUNSUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        }
    }

    fn publish_cmd(&self) -> &'static str {
        if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// `name channel`, with the channel kept for routing by slot.
    fn command(&self, name: &str, channel: Vec<u8>) -> Command {
        let mut cmd = redis::cmd(name);
        cmd.arg(&channel[..]);
        Command { channel, cmd }
    }

    fn channel(&self, topic: &str) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.topic_prefix.len() + topic.len());
        c.extend_from_slice(&self.topic_prefix);
        c.extend_from_slice(topic.as_bytes());
        c
    }

    async fn run(mut self) {
        let wake = match WakeFd::new(self.bridge.waker()) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::error!(error = %e, "redis: cannot watch the wake-up eventfd; Redis stays down");
                return;
            }
        };
        let mut was_up = false;
        let mut failures: u64 = 0;
        while !self.bridge.stopping() {
            let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel();
            let client = self.client.clone();
            let sharded = self.settings.sharded;
            let timeouts = Timeouts {
                connect: CONNECT_TIMEOUT,
                response: RESPONSE_TIMEOUT,
            };
            let connecting =
                async move { conn::connect(&client, sharded, timeouts, push_tx).await };
            let reason = match self.offline_until(&wake, connecting).await {
                None => return,
                Some(Ok(conn)) => {
                    let (reason, came_up) = self.session(conn, push_rx, &wake).await;
                    was_up |= came_up;
                    reason
                }
                Some(Err(e)) => format!("cannot connect: {e}"),
            };
            self.went_down();
            if self.bridge.stopping() {
                return;
            }
            if was_up {
                tracing::warn!(reason = %reason, "redis: link down; local delivery continues, reconnecting");
                was_up = false;
                failures = 0;
            } else {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(reason = %reason, "redis: cannot reach Redis; retrying with backoff");
                } else {
                    tracing::debug!(reason = %reason, failures, "redis: still unreachable");
                }
            }
            let delay = self.backoff.next_delay();
            if self
                .offline_until(&wake, tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Marks the link down and counts what was queued for it as undeliverable.
    fn went_down(&mut self) {
        let status = &self.bridge.status;
        status.up.store(false, Ordering::SeqCst);
        status.channels.store(0, Ordering::Relaxed);
        status.reconnects.fetch_add(1, Ordering::Relaxed);
        status
            .undeliverable
            .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Waits for `fut` while keeping the workers' queue drained (publications counted
    /// undeliverable, interest changes kept). `None` when asked to stop.
    async fn offline_until<F: Future>(&mut self, wake: &WakeFd, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            if self.bridge.stopping() {
                return None;
            }
            self.drain_inbox(false);
            tokio::select! {
                out = &mut fut => return Some(out),
                () = wake.wait() => {}
            }
        }
    }

    /// Takes everything the workers queued.
    fn drain_inbox(&mut self, online: bool) {
        let now = Instant::now();
        while let Some(item) = self.bridge.pop() {
            match item {
                ToEngine::Interest { topic, gained } => self.interest.update(topic, gained, now),
                ToEngine::Publish { topic, frame } => {
                    if online && self.pending_bytes + frame.len() <= MAX_PENDING_BYTES {
                        self.pending_bytes += frame.len();
                        self.pending.push((topic, frame));
                    } else {
                        self.bridge
                            .status
                            .undeliverable
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// One connection's life. Returns why it ended and whether it came up (a probe came back).
    async fn session(
        &mut self,
        conn: Conn,
        mut pushes: tokio::sync::mpsc::UnboundedReceiver<PushInfo>,
        wake: &WakeFd,
    ) -> (String, bool) {
        // Subscribe the probe channel and every current interest before reporting up.
        self.drain_inbox(false);
        self.interest.reconnected();
        let now = Instant::now();
        let changes = self.interest.take_changes(now);
        let mut commands = vec![self.command(self.subscribe_cmd(), self.probe_channel.clone())];
        for topic in &changes.subscribe {
            commands.push(self.command(self.subscribe_cmd(), self.channel(topic)));
        }
        let replies = match conn.send(commands).await {
            Ok(replies) => replies,
            Err(e) => return (format!("subscribing failed: {e}"), false),
        };
        if let Some(Value::ServerError(e)) = replies.first() {
            return (
                format!(
                    "{} of the probe channel refused: {e:?}",
                    self.subscribe_cmd()
                ),
                false,
            );
        }
        let sent = vec![Sent::Subscribe; replies.len()];
        if self.check_replies(&replies, &sent, &conn) {
            return ("the cluster's slot map changed".to_owned(), false);
        }
        self.bridge
            .status
            .channels
            .store(self.interest.subscribed() as u64, Ordering::Relaxed);
        tracing::debug!(
            channels = self.interest.subscribed(),
            sharded = self.settings.sharded,
            cluster = matches!(conn, Conn::Cluster(_)),
            "redis: link up"
        );

        let mut probe = Probe {
            seq: 0,
            next_at: Instant::now(),
            outstanding: None,
        };
        let mut in_flight: Option<Batch> = None;
        let mut in_flight_publishes = 0usize;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let reason = loop {
            if self.bridge.stopping() {
                break "stopping".to_owned();
            }
            if in_flight.is_none()
                && let Some((batch, publishes)) = self.next_batch(&conn, &mut probe)
            {
                in_flight = Some(batch);
                in_flight_publishes = publishes;
            }
            let batch = async {
                match in_flight.as_mut() {
                    Some(batch) => batch.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                push = pushes.recv() => {
                    let mut closed = push.is_none_or(|push| self.on_push(push, &mut probe).is_err());
                    while !closed && let Ok(push) = pushes.try_recv() {
                        closed = self.on_push(push, &mut probe).is_err();
                    }
                    self.wake_workers();
                    if closed {
                        break "connection closed".to_owned();
                    }
                }
                (result, sent) = batch => {
                    in_flight = None;
                    match result {
                        Ok(replies) => {
                            if self.check_replies(&replies, &sent, &conn) {
                                break "the cluster's slot map changed".to_owned();
                            }
                        }
                        Err(e) => {
                            self.bridge
                                .status
                                .undeliverable
                                .fetch_add(in_flight_publishes as u64, Ordering::Relaxed);
                            break format!("command failed: {e}");
                        }
                    }
                }
                () = wake.wait() => self.drain_inbox(true),
                _ = tick.tick() => {
                    if let Some((seq, sent_at)) = probe.outstanding
                        && sent_at.elapsed() > self.settings.probe_timeout
                    {
                        self.bridge.status.probe_failures.fetch_add(1, Ordering::Relaxed);
                        break format!(
                            "probe {seq} not delivered back within {:?}: connected but not delivering",
                            self.settings.probe_timeout
                        );
                    }
                }
            }
        };
        if in_flight.is_some() {
            // Sent or not, nobody can tell: counted as not delivered.
            self.bridge
                .status
                .undeliverable
                .fetch_add(in_flight_publishes as u64, Ordering::Relaxed);
        }
        (reason, self.bridge.status.up.load(Ordering::SeqCst))
    }

    /// The next pipeline: interest changes due, the probe when due, queued publications.
    fn next_batch(&mut self, conn: &Conn, probe: &mut Probe) -> Option<(Batch, usize)> {
        let now = Instant::now();
        let mut commands = Vec::new();
        let mut sent = Vec::new();
        if self.interest.has_changes(now) {
            let changes = self.interest.take_changes(now);
            for topic in &changes.subscribe {
                commands.push(self.command(self.subscribe_cmd(), self.channel(topic)));
                sent.push(Sent::Subscribe);
            }
            for topic in &changes.unsubscribe {
                commands.push(self.command(self.unsubscribe_cmd(), self.channel(topic)));
                sent.push(Sent::Unsubscribe);
            }
            self.bridge
                .status
                .channels
                .store(self.interest.subscribed() as u64, Ordering::Relaxed);
        }
        if probe.outstanding.is_none() && now >= probe.next_at {
            probe.seq += 1;
            let mut cmd = self.command(self.publish_cmd(), self.probe_channel.clone());
            cmd.cmd.arg(&probe.seq.to_be_bytes()[..]);
            commands.push(cmd);
            sent.push(Sent::Probe);
            probe.outstanding = Some((probe.seq, now));
            probe.next_at = now + self.settings.probe_interval;
        }
        let instance = self.bridge.instance();
        let pending = std::mem::take(&mut self.pending);
        let publishes = pending.len();
        for (topic, frame) in &pending {
            let mut cmd = self.command(self.publish_cmd(), self.channel(topic));
            cmd.cmd.arg(wire::encode(instance, frame));
            commands.push(cmd);
            sent.push(Sent::Publish);
        }
        self.pending = pending;
        self.pending.clear();
        self.pending_bytes = 0;
        if sent.is_empty() {
            return None;
        }
        let sending = conn.send(commands);
        let batch: Batch = Box::pin(async move { (sending.await, sent) });
        Some((batch, publishes))
    }

    /// Counts publications and reports commands Redis refused. `true` when connected to a
    /// cluster and a reply says its slot map changed (the session then ends and reconnects).
    fn check_replies(&mut self, replies: &[Value], sent: &[Sent], conn: &Conn) -> bool {
        let status = &self.bridge.status;
        let mut refused = None;
        let moved = matches!(conn, Conn::Cluster(_)) && replies.iter().any(conn::is_topology_error);
        for (i, kind) in sent.iter().enumerate() {
            let error = match replies.get(i) {
                Some(Value::ServerError(e)) => Some(format!("{e:?}")),
                Some(_) => None,
                None => Some("no reply".to_owned()),
            };
            match (kind, error) {
                (Sent::Publish, None) => {
                    status.published.fetch_add(1, Ordering::Relaxed);
                }
                (Sent::Publish, Some(e)) => {
                    status.undeliverable.fetch_add(1, Ordering::Relaxed);
                    refused.get_or_insert(("PUBLISH", e));
                }
                (Sent::Subscribe, Some(e)) => {
                    refused.get_or_insert(("SUBSCRIBE", e));
                }
                (Sent::Unsubscribe, Some(e)) => {
                    refused.get_or_insert(("UNSUBSCRIBE", e));
                }
                (Sent::Probe, Some(e)) => {
                    refused.get_or_insert(("probe PUBLISH", e));
                }
                (_, None) => {}
            }
        }
        if let Some((command, error)) = refused {
            let now = Instant::now();
            if self
                .last_warn
                .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
            {
                self.last_warn = Some(now);
                tracing::warn!(command, error = %error, "redis: command refused");
            }
        }
        moved
    }

    /// Handles one message pushed by Redis. `Err` when the connection is gone.
    fn on_push(&mut self, push: PushInfo, probe: &mut Probe) -> Result<(), ()> {
        let expected = if self.settings.sharded {
            PushKind::SMessage
        } else {
            PushKind::Message
        };
        if push.kind == PushKind::Disconnection {
            return Err(());
        }
        if push.kind != expected {
            return Ok(()); // subscription confirmations and the like
        }
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            self.bridge.status.invalid.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        if channel == self.probe_channel {
            if let Some((seq, _)) = probe.outstanding
                && payload == seq.to_be_bytes()
            {
                probe.outstanding = None;
                // Up only once a publication has gone round: connected is not enough.
                if !self.bridge.status.up.swap(true, Ordering::SeqCst) {
                    self.backoff.reset();
                    tracing::info!(
                        channels = self.interest.subscribed(),
                        sharded = self.settings.sharded,
                        "redis: link up"
                    );
                }
            }
            return Ok(());
        }
        self.deliver(&channel, payload);
        Ok(())
    }

    /// Hands a publication from Redis to every interested worker.
    fn deliver(&mut self, channel: &[u8], payload: Vec<u8>) {
        let status = &self.bridge.status;
        let topic = channel
            .strip_prefix(self.topic_prefix.as_slice())
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|t| crate::envelope::validate_topic(t).is_ok());
        let (Some(topic), Ok(publication)) = (topic, wire::decode(&payload)) else {
            status.invalid.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if publication.instance == self.bridge.instance() {
            return; // our own publication: delivered locally when published
        }
        status.received.fetch_add(1, Ordering::Relaxed);
        let bucket = Relay::bucket(topic);
        // Sent uncompressed to every subscriber (RFC 7692 allows it on a deflate connection).
        let frame =
            crate::app::SharedFrame::plain(Bytes::from(payload).slice(publication.frame_start..));
        let mut shared: Option<Arc<str>> = None;
        for worker in 0..self.relay.workers() {
            if !self.relay.interested(bucket, worker) {
                continue;
            }
            let topic = shared.get_or_insert_with(|| topic.into()).clone();
            self.relay.push(
                worker,
                Relayed {
                    topic,
                    frame: frame.clone(),
                },
            );
            if let Some(w) = self.to_wake.get_mut(worker) {
                *w = true;
            }
        }
    }

    fn wake_workers(&mut self) {
        for (worker, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake)
                && let Some(waker) = self.relay.waker(worker)
            {
                waker.wake();
            }
        }
    }
}
