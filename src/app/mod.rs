//! The application boundary: what a worker calls when a connection opens, sends a message or ends.
//!
//! An [`App`] instance lives on one worker thread and sees only that worker's connections, so it
//! needs no locks. Replies go through the [`Outbox`] of the connection being served; they are sent
//! with the worker's corked sends at the end of the loop turn.

pub mod echo;
pub mod shared;

pub use shared::SharedFrame;

use std::sync::Arc;

use bytes::Bytes;

use crate::access::claims::Identity;
use crate::io::{Token, Waker};
use crate::proto::connection::AppClose;
use crate::proto::frame::{self, Message, MessageKind, Opcode};

/// A connection's identity within its worker, valid for the connection's whole life.
pub type ConnId = Token;

/// The outgoing bytes of the connection being served. It counts the messages it queues, so the
/// worker's `messages_sent` counter needs no second look at the bytes.
pub struct Outbox<'a> {
    out: &'a mut Vec<u8>,
    sent: u64,
}

impl<'a> Outbox<'a> {
    /// Wraps the connection's output buffer.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Outbox { out, sent: 0 }
    }

    /// Queues one message as a single unmasked frame.
    pub fn send(&mut self, kind: MessageKind, data: &[u8]) {
        let opcode = match kind {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        };
        frame::write_frame(self.out, opcode, data);
        self.sent += 1;
    }

    /// Messages queued through this outbox.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes queued and not yet handed to the kernel.
    pub fn queued(&self) -> usize {
        self.out.len()
    }
}

/// One validated message of a `POST /publish` batch.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// The topic, already validated.
    pub topic: &'a str,
    /// The message's JSON `data` value, as the publisher wrote it.
    pub data: &'a [u8],
}

/// What became of a frame handed to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued for sending.
    Queued,
    /// Not queued: the connection is over its backpressure budget (counted by the worker).
    Dropped,
    /// Not queued: the connection is gone or closing.
    Gone,
}

/// Access to every connection of the worker, given to [`App::flush`] once per loop turn.
pub trait Deliver {
    /// Queues a shared frame (a complete WebSocket frame, built once) on `conn`, without copying it.
    fn send_shared(&mut self, conn: ConnId, frame: &Bytes) -> SendStatus;

    /// Queues `frame` on every connection of `conns` but `exclude`, in order, each getting the
    /// form it negotiated (compressed or plain); returns how many queued it. One call per message
    /// rather than per subscriber, so the sink can decide once how to queue the frame and loop
    /// without a dynamic call per delivery. The default sends the plain form.
    fn send_to_all(
        &mut self,
        conns: &[ConnId],
        exclude: Option<ConnId>,
        frame: &SharedFrame,
    ) -> u64 {
        let plain = frame.plain_frame();
        let mut queued = 0;
        for &conn in conns {
            if Some(conn) != exclude && self.send_shared(conn, plain) == SendStatus::Queued {
                queued += 1;
            }
        }
        queued
    }

    /// Wakes another worker after handing it messages, with the worker's own driver (which may
    /// fold the wake-up into its next submission). The default wakes it at once.
    fn wake(&mut self, waker: &Waker) {
        waker.wake();
    }
}

/// What runs on a worker for its connections.
pub trait App {
    /// The identity a connection opens with, verified at upgrade ([`crate::http::upgrade`]);
    /// called just before [`App::on_open`], and only for a connection that presented a token.
    fn on_identity(&mut self, conn: ConnId, identity: Arc<Identity>) {
        let _ = (conn, identity);
    }
    /// Called once per loop turn, before the turn's events, with the turn's clock (monotonic
    /// nanoseconds, [`crate::ratelimit::now_ns`]): the only clock rate limits and token expiry
    /// read. Connections to close now (e.g. an expired token) are pushed to `close`.
    fn tick(&mut self, now_ns: u64, close: &mut Vec<(ConnId, AppClose)>) {
        let _ = (now_ns, close);
    }
    /// A WebSocket connection completed its upgrade.
    fn on_open(&mut self, conn: ConnId, out: &mut Outbox<'_>) {
        let _ = (conn, out);
    }
    /// A complete message arrived (text is valid UTF-8). Returning an error closes the connection
    /// with that code.
    fn on_message(
        &mut self,
        conn: ConnId,
        msg: Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), AppClose>;
    /// A message over `MAX_PAYLOAD` is being discarded (`PAYLOAD_LIMIT_POLICY=send`) and the
    /// connection stays open; called once per such message. Returning an error closes the
    /// connection with that code. By default nothing is sent.
    fn on_oversized(
        &mut self,
        conn: ConnId,
        kind: MessageKind,
        out: &mut Outbox<'_>,
    ) -> Result<(), AppClose> {
        let _ = (conn, kind, out);
        Ok(())
    }
    /// The connection is gone (closed by either side or failed); nothing more will be delivered.
    fn on_close(&mut self, conn: ConnId) {
        let _ = conn;
    }
    /// Whether this application takes publishes over HTTP (`POST /publish`, answered by
    /// [`crate::http`]); for one that does not, `/publish` is an unknown path (404/405).
    fn accepts_publish(&self) -> bool {
        false
    }
    /// Publishes a batch of messages from `POST /publish`, every one already validated (a topic
    /// and the JSON `data` bytes), in order. Called only if [`App::accepts_publish`].
    fn publish_batch(&mut self, batch: &[Publish<'_>]) {
        let _ = batch;
    }
    /// Called once per loop turn after all input was handled: deliver what was deferred (fan-out
    /// to other connections of this worker). Sends are corked and go out right after.
    fn flush(&mut self, deliver: &mut dyn Deliver) {
        let _ = deliver;
    }
}

/// The built-in applications (`WSD_APP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppKind {
    /// Every text or binary message is sent back as it came (Autobahn, load tests).
    Echo,
    /// The pub/sub protocol of docs/PROTOCOL.md: topics, publish, fan-out across workers.
    Pubsub,
}
