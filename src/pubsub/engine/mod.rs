//! The Redis engine: pub/sub across wsd instances (`REDIS_URL`).
//!
//! One thread per process (`wsd-redis`, a single-threaded tokio runtime driving the `redis`
//! crate) owns the Redis connection. Workers talk to it only through a [`Bridge`]: a lock-free
//! queue of publications and interest changes, and an eventfd that wakes the thread once per
//! worker turn. What arrives from Redis is handed to interested workers through the existing
//! cross-worker relay ([`crate::pubsub::relay`]), exactly like a publication from another worker.
//! With `REDIS_URL` unset there is no bridge and the workers' paths are the same as before.
//!
//! - [`wire`]: the envelope (instance id + ready frame) and its checks.
//! - [`interest`]: which topics to subscribe, batched, with hysteresis.
//! - [`backoff`]: reconnect delays.
//! - [`conn`]: the connection: one node, or a Redis Cluster in sharded mode.
//! - [`link`]: the thread: connection, subscriptions, publishing, probe, reconnects.
//!
//! docs/REDIS.md describes the behaviour for operators.

pub mod backoff;
pub mod conn;
pub mod interest;
pub mod link;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::SegQueue;

use crate::io::Waker;
use crate::metrics::RedisStats;

/// Default `REDIS_PREFIX`.
pub const DEFAULT_PREFIX: &str = "wsd:";

/// How the engine reaches Redis.
#[derive(Clone)]
pub struct RedisSettings {
    /// `REDIS_URL` (may hold a password: never logged or printed).
    pub url: String,
    /// `REDIS_PREFIX`: the start of every channel name.
    pub prefix: String,
    /// `REDIS_SHARDED`: `SSUBSCRIBE`/`SPUBLISH` instead of `SUBSCRIBE`/`PUBLISH`.
    pub sharded: bool,
    /// How long a topic stays subscribed after its last local subscriber left.
    pub hysteresis: Duration,
    /// How often the link publishes a probe to itself.
    pub probe_interval: Duration,
    /// How long a probe may take to come back before the link counts as broken.
    pub probe_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"***")
            .field("prefix", &self.prefix)
            .field("sharded", &self.sharded)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// Settings for `url` with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            sharded: false,
            hysteresis: Duration::from_secs(2),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(3),
        }
    }
}

/// Checks a `REDIS_URL`: `redis://` or `rediss://`, parsed as the `redis` crate will use it.
///
/// # Errors
/// A sentence saying what is wrong (without echoing a password).
pub fn validate_url(url: &str) -> Result<(), String> {
    let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
    if !scheme_ok {
        return Err("must start with redis:// or rediss://".to_owned());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("not a usable Redis URL ({:?})", e.kind()))
}

/// A message from a worker to the Redis thread.
#[derive(Debug)]
pub enum ToEngine {
    /// Publish this frame on `topic` to the other instances.
    Publish {
        /// The topic.
        topic: Arc<str>,
        /// The ready WebSocket frame.
        frame: Bytes,
    },
    /// A worker gained its first (`gained`) or lost its last local subscriber of `topic`.
    Interest {
        /// The topic.
        topic: Arc<str>,
        /// Gained or lost.
        gained: bool,
    },
}

/// The workers' side of the engine: where they queue publications and interest changes.
#[derive(Debug)]
pub struct Bridge {
    inbox: SegQueue<ToEngine>,
    waker: Waker,
    stop: AtomicBool,
    instance: u64,
    /// State and counters (also read by `/health` and `/metrics`).
    pub status: Arc<RedisStats>,
}

impl Bridge {
    /// A bridge whose thread wakes on `waker`, for the instance `instance`.
    pub fn new(waker: Waker, instance: u64) -> Self {
        Bridge {
            inbox: SegQueue::new(),
            waker,
            stop: AtomicBool::new(false),
            instance,
            status: Arc::default(),
        }
    }

    /// Queues `frame` for the other instances (the caller wakes [`Bridge::waker`] once per turn).
    pub fn publish(&self, topic: Arc<str>, frame: Bytes) {
        self.inbox.push(ToEngine::Publish { topic, frame });
    }

    /// Queues an interest change (the caller wakes [`Bridge::waker`] once per turn).
    pub fn interest(&self, topic: Arc<str>, gained: bool) {
        self.inbox.push(ToEngine::Interest { topic, gained });
    }

    /// The Redis thread's waker.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// This process's instance id (in every publication it sends).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Whether the link is up (for `/health`).
    pub fn is_up(&self) -> bool {
        self.status.up.load(Ordering::Relaxed)
    }

    /// Asks the thread to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn pop(&self) -> Option<ToEngine> {
        self.inbox.pop()
    }
}

/// A random instance id (the kernel's random source; never 0).
pub fn new_instance_id() -> u64 {
    let mut buf = [0u8; 8];
    if rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty()).is_err() {
        // Practically unreachable; the time and address still differ between processes.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        buf = (now ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
    }
    u64::from_be_bytes(buf).max(1)
}

/// Starts the Redis thread for `settings`, delivering into `relay`.
///
/// # Errors
/// The eventfd or the thread could not be created.
pub fn start(
    settings: RedisSettings,
    relay: Arc<super::relay::Relay>,
) -> std::io::Result<(Arc<Bridge>, std::thread::JoinHandle<()>)> {
    let bridge = Arc::new(Bridge::new(Waker::new()?, new_instance_id()));
    let thread_bridge = bridge.clone();
    let handle = std::thread::Builder::new()
        .name("wsd-redis".to_owned())
        .spawn(move || link::run(settings, thread_bridge, relay))?;
    Ok((bridge, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_connecting() {
        assert!(validate_url("redis://127.0.0.1:6379").is_ok());
        assert!(validate_url("redis://user:secret@host:1/0").is_ok());
        assert!(validate_url("rediss://host").is_ok());
        let e = validate_url("http://host").expect_err("scheme");
        assert!(e.contains("redis://"), "{e}");
        assert!(validate_url("redis://:99999999").is_err());
        let e = validate_url("redis://u:topsecret@[bad").expect_err("bad host");
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(new_instance_id(), new_instance_id());
    }
}
