//! The state every worker of one server shares: the counters, the connection limits, the drain
//! (docs/ARCHITECTURE.md has its sequence) and the workers' wakers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::info;

use crate::admission::Admission;
use crate::config::Secret;
use crate::io::{Backend, Waker};
use crate::metrics::{self, WorkerStats};

/// State shared by all workers of one server.
#[derive(Debug)]
pub struct Shared {
    /// The I/O backend in use.
    pub backend: Backend,
    /// One entry per worker, indexed by worker id.
    pub workers: Vec<WorkerStats>,
    /// The bearer key `GET /metrics` requires, if any (`METRICS_KEY`).
    pub metrics_key: Option<Secret>,
    /// The bearer key `POST /publish` requires, if any (`PUBLISH_KEY`).
    pub publish_key: Option<Secret>,
    /// Set once, by `StopHandle::stop`, to make every worker drain and exit.
    pub draining: AtomicBool,
    /// A worker's event loop failed: the server drains and `wsd` exits with status 1 rather than
    /// serving on with a dead worker (its listener, connections and relay inbox gone with it).
    pub failed: AtomicBool,
    /// How long draining may take before what is left is dropped (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// The connection limits and their process-wide counts.
    pub admission: Admission,
    /// What the drain achieved, added up by each worker as it exits.
    pub drain: DrainStats,
    /// Access control (tokens, rights, origins, rate limits), when any of it is configured.
    pub access: Option<Arc<crate::access::gate::Access>>,
    /// Every worker's waker, indexed by worker id.
    pub(crate) wakers: Vec<Waker>,
    /// TLS on every connection (`SSL_CERT`, `SSL_KEY`); `None`: plain.
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
    /// The Redis link's state and counters, when `REDIS_URL` is set.
    pub redis: Option<Arc<metrics::RedisStats>>,
}

impl Shared {
    /// Whether the server is draining (stopping): `/health` answers 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins the drain, logging `cause`; later calls do nothing.
    pub(crate) fn begin_drain(&self, cause: &str) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.drain.started.set(Instant::now());
        let connections = self.admission.open();
        info!(
            cause,
            connections,
            shutdown_timeout_s = self.shutdown_timeout.as_secs(),
            "draining: stopped accepting, closing connections with 1001 after their queued data"
        );
        for waker in &self.wakers {
            waker.wake();
        }
    }

    /// A worker will hand no more messages to the others: it has begun draining (after its last
    /// hand-off), or it is gone. The last one wakes every worker.
    pub(crate) fn worker_quiesced(&self) {
        let quiesced = self.drain.quiesced.fetch_add(1, Ordering::AcqRel) + 1;
        if quiesced >= self.workers.len() {
            for waker in &self.wakers {
                waker.wake();
            }
        }
    }

    /// Whether every worker has quiesced: what any of them handed over before it began draining
    /// is now visible to its target, so a flush after this delivers all of it.
    pub(crate) fn all_quiesced(&self) -> bool {
        self.drain.quiesced.load(Ordering::Acquire) >= self.workers.len()
    }
}

/// The outcome of a drain, summed over the workers.
#[derive(Debug, Default)]
pub struct DrainStats {
    /// When the drain began.
    pub started: OnceLock<Instant>,
    /// Connections open at the start of the drain that closed before `SHUTDOWN_TIMEOUT`.
    pub closed: AtomicUsize,
    /// Connections still open at `SHUTDOWN_TIMEOUT`, dropped.
    pub dropped: AtomicUsize,
    /// Bytes still queued for the dropped connections.
    pub unsent_bytes: AtomicU64,
    /// Workers that will hand no more messages to others (began draining, or gone).
    pub quiesced: AtomicUsize,
}

impl metrics::Source for Shared {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn workers(&self) -> &[WorkerStats] {
        &self.workers
    }

    fn redis(&self) -> Option<&metrics::RedisStats> {
        self.redis.as_deref()
    }
}
