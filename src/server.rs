//! Starting and stopping wsd: one worker thread per core, each with its own `SO_REUSEPORT`
//! listener, driver and connection table, and the state they share ([`Shared`], in `state.rs`).
//!
//! # Admission
//!
//! Every accepted connection is checked against `MAX_CONNECTIONS`, `UPGRADE_MAX_CONCURRENT`,
//! `UPGRADE_MAX_CONCURRENT_PER_IP` and `MAX_CONNECTIONS_PER_IP` ([`crate::admission`]) before its
//! worker allocates anything for it; one over a per-address limit gets `503` with `Retry-After`
//! and is closed, and at a process-wide limit the workers stop accepting until a slot frees.
//! `ADMIN_PORT` adds a listener of its own for `/health` and `/metrics`, outside the limits. `MAX_CONNECTIONS=auto` is the
//! soft `RLIMIT_NOFILE` (which `wsd` raises to the hard limit first, [`crate::sys::raise_nofile_limit`])
//! minus a margin; an explicit value above what the limit allows is logged as a warning.
//!
//! # Graceful shutdown (drain)
//!
//! [`StopHandle::stop`] (SIGTERM or SIGINT in the `wsd` binary) starts the drain: every worker
//! stops accepting, delivers what is queued, closes its WebSocket connections with 1001 behind
//! that data, and exits when its last connection is gone or at `SHUTDOWN_TIMEOUT`; [`Server::wait`]
//! logs how it went. docs/ARCHITECTURE.md has the sequence step by step; `state.rs` holds its
//! shared part and `worker/drain.rs` each worker's.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::admission::Admission;
use crate::app::{AppKind, echo::Echo};
use crate::config::{Config, FD_MARGIN, MaxConnections, MaxQueuedBytes, PayloadLimitPolicy};
use crate::epoll::EpollDriver;
use crate::io::{Backend, Driver, IoMode, Waker};
use crate::metrics::WorkerStats;
use crate::proto::{Limits, Oversized};
use crate::pubsub::engine::{self, RedisSettings};
use crate::pubsub::relay::Relay;
use crate::pubsub::{PubSub, PubSubConfig};
use crate::state::{DrainStats, Shared};
use crate::sys::{allowed_cpus, nofile_limit, pin_to};
use crate::uring::{self, UringDriver, UringParams};
use crate::worker::{Budget, Worker};

/// Request headers larger than this are refused with 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Listen backlog (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// `WSD_IO=uring` was asked for but io_uring is unavailable.
    #[error("WSD_IO=uring but io_uring cannot be set up: {0}")]
    Uring(io::Error),
    /// `SSL_CERT`, `SSL_KEY` or `SSL_CLIENT_CA` is unusable (`wsd` exits 2).
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A worker failed while setting up its event loop.
    #[error("worker {id} failed to start: {source}")]
    Worker {
        /// The worker's number.
        id: usize,
        /// The underlying error.
        source: io::Error,
    },
    /// The Redis thread (`REDIS_URL`) could not be started.
    #[error("cannot start the Redis thread: {0}")]
    Redis(io::Error),
    /// The access-control settings do not fit together (e.g. `AUTH_REQUIRED=true` without a key).
    #[error("{0}")]
    Access(String),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
    threads: Vec<JoinHandle<()>>,
    engine: Option<Engine>,
}

/// The Redis thread (`REDIS_URL`), stopped after the workers.
struct Engine {
    bridge: Arc<engine::Bridge>,
    thread: JoinHandle<()>,
}

/// A handle that can stop the server from another thread (a signal handler thread).
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
}

impl StopHandle {
    /// Begins the drain (the module documentation has the sequence). Later calls do nothing.
    pub fn stop(&self) {
        self.stop_because("stop requested");
    }

    /// [`StopHandle::stop`], naming the cause in the log line (e.g. the signal).
    pub fn stop_because(&self, cause: &str) {
        self.shared.begin_drain(cause);
    }

    /// Stops the workers of a server that failed to start, without the drain's log lines.
    fn stop_quietly(&self) {
        self.shared.draining.store(true, Ordering::Release);
        for waker in &self.wakers {
            waker.wake();
        }
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }
}

/// The connection limit `MAX_CONNECTIONS` resolves to with the open file limit `nofile`, with a
/// warning when an explicit value needs more descriptors than the limit allows (accept() would
/// fail with EMFILE before the 503s begin).
/// Each worker's share of `MAX_QUEUED_BYTES` (`usize::MAX`: off), logged once.
fn queued_share(setting: MaxQueuedBytes, workers: usize) -> usize {
    let memory = crate::sys::memory_limit();
    let Some(total) = setting.resolve(memory) else {
        if setting == MaxQueuedBytes::Auto {
            warn!("MAX_QUEUED_BYTES=auto: the memory size is unreadable, no process-wide bound");
        } else {
            info!("MAX_QUEUED_BYTES=0: no process-wide bound on queued bytes");
        }
        return usize::MAX;
    };
    let workers = workers.max(1);
    let share = usize::try_from(total / workers as u64).unwrap_or(usize::MAX);
    info!(
        max_queued_bytes = total,
        per_worker = share,
        setting = %setting,
        memory = memory.unwrap_or(0),
        "queued bytes bound (MAX_QUEUED_BYTES; auto: a quarter of memory or the cgroup's limit)"
    );
    share
}

fn resolve_max_connections(setting: MaxConnections, nofile: u64) -> usize {
    let max = setting.resolve(nofile);
    if let MaxConnections::Count(n) = setting {
        let needed = (n as u64).saturating_add(FD_MARGIN as u64);
        if needed > nofile {
            warn!(
                max_connections = n,
                nofile,
                needed,
                "RLIMIT_NOFILE is below what MAX_CONNECTIONS needs: connections past the file \
                 limit fail in accept() instead of getting a 503; raise the limit (ulimit -n, \
                 LimitNOFILE=) or lower MAX_CONNECTIONS"
            );
        }
    }
    max
}

/// Binds a listener. The first of a server's listeners is bound *without* `SO_REUSEPORT` and
/// joins the reuse-port group only after the bind succeeded: the bind fails with "address in use"
/// when any other socket holds the port, so a second wsd on a busy port refuses to start instead
/// of silently sharing its traffic. The other workers' listeners then join the group.
///
/// A `send_buffer` other than 0 is set as the listener's `SO_SNDBUF`, which Linux copies to every
/// connection it accepts (`SEND_BUFFER`).
fn listener(addr: SocketAddr, first: bool, send_buffer: usize) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if send_buffer > 0 {
        socket.set_send_buffer_size(send_buffer)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if !first {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    if first {
        socket.set_reuse_port(true)?;
    }
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// How long [`first_listener`] retries a bind that fails with "address in use".
pub const BIND_RETRY: Duration = Duration::from_secs(2);

/// Pause between two bind attempts while the port is in use.
const BIND_RETRY_STEP: Duration = Duration::from_millis(50);

/// Binds the first listener, retrying "address in use" for up to [`BIND_RETRY`] (one log line
/// when it starts waiting, one when it gets the port).
///
/// A wsd killed with SIGKILL leaves its listeners to the kernel for a moment (on io_uring they
/// are released by the ring's deferred teardown, some 0.1–0.5 s later), so a supervisor's
/// immediate restart would otherwise fail with "address in use". A port held by a live process
/// still fails the start, only [`BIND_RETRY`] later.
fn first_listener(addr: SocketAddr, send_buffer: usize) -> io::Result<Socket> {
    let start = std::time::Instant::now();
    let mut logged = false;
    loop {
        match listener(addr, true, send_buffer) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
                if start.elapsed() >= BIND_RETRY {
                    return Err(e);
                }
                if !logged {
                    warn!(
                        %addr,
                        retry_for_ms = BIND_RETRY.as_millis() as u64,
                        "address in use (a previous wsd may still be exiting); retrying"
                    );
                    logged = true;
                }
                std::thread::sleep(BIND_RETRY_STEP);
            }
            Ok(socket) => {
                if logged {
                    info!(%addr, waited_ms = start.elapsed().as_millis() as u64, "address free, bound");
                }
                return Ok(socket);
            }
            Err(e) => return Err(e),
        }
    }
}

fn choose_backend(mode: IoMode) -> Result<Backend, StartError> {
    match mode {
        IoMode::Epoll => Ok(Backend::Epoll),
        IoMode::Uring => uring::probe()
            .map(|()| Backend::Uring)
            .map_err(StartError::Uring),
        IoMode::Auto => match uring::probe() {
            Ok(()) => Ok(Backend::Uring),
            Err(e) => {
                warn!(error = %e, "io_uring unavailable, falling back to epoll");
                Ok(Backend::Epoll)
            }
        },
    }
}

impl Server {
    /// Binds the listeners and starts the workers; returns once every worker is serving.
    pub fn start(config: &Config) -> Result<Server, StartError> {
        Server::start_tuned(config, UringParams::default())
    }

    /// As [`Server::start`], with the io_uring ring sized by `uring` instead of the defaults.
    pub fn start_tuned(config: &Config, uring: UringParams) -> Result<Server, StartError> {
        let uring = UringParams {
            relay_wake: config.relay_wake,
            ..uring
        };
        let tls = crate::tls::Tls::from_files(&config.tls_files())?;
        let mut warnings = Vec::new();
        let access = config
            .access
            .build(config.publish_key.is_some(), &mut warnings)
            .map_err(StartError::Access)?
            .map(Arc::new);
        for warning in warnings {
            warn!("{warning}");
        }
        let backend = choose_backend(config.io)?;
        let workers = config.cluster_workers.resolve();
        let requested = SocketAddr::new(config.host, config.port);
        let listen_err = |source| StartError::Listen {
            addr: requested,
            source,
        };
        // The first listener fixes the port (when 0 was asked for); the others share it.
        let first = first_listener(requested, config.send_buffer).map_err(listen_err)?;
        if config.send_buffer > 0 {
            // What the kernel granted: doubled, and capped at net.core.wmem_max.
            let granted = first.send_buffer_size().unwrap_or(0);
            info!(
                requested = config.send_buffer,
                granted, "send buffer per connection (SEND_BUFFER)"
            );
            if granted < config.send_buffer {
                warn!(
                    requested = config.send_buffer,
                    granted,
                    "SEND_BUFFER is over net.core.wmem_max: the kernel granted less (see sysctl/)"
                );
            }
        }
        let addr = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(requested);
        // The admin listener (`ADMIN_PORT`): plain HTTP, `/health` and `/metrics` only, served by
        // worker 0 outside the connection limits.
        let admin = match config.admin_port {
            Some(port) => {
                let requested = SocketAddr::new(config.host, port);
                let socket = first_listener(requested, 0).map_err(|source| StartError::Listen {
                    addr: requested,
                    source,
                })?;
                let bound = socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(requested);
                info!(addr = %bound, "admin listener: /health and /metrics only (ADMIN_PORT)");
                Some((socket, bound))
            }
            None => None,
        };
        let admin_addr = admin.as_ref().map(|(_, addr)| *addr);
        let mut admin = admin.map(|(socket, _)| OwnedFd::from(socket));
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(
                listener(addr, false, config.send_buffer)
                    .map_err(|source| StartError::Listen { addr, source })?,
            );
        }
        let max_connections = resolve_max_connections(config.max_connections, nofile_limit());
        let queued_share = queued_share(config.max_queued_bytes, workers);
        let wakers = (0..workers)
            .map(|id| Waker::new().map_err(|source| StartError::Worker { id, source }))
            .collect::<Result<Vec<_>, _>>()?;
        let relay = Arc::new(Relay::new(wakers.clone()));
        let engine = match (&config.redis_url, config.app) {
            (Some(url), AppKind::Pubsub) => {
                let mut settings = RedisSettings::new(url.expose());
                settings.prefix = config.redis_prefix.clone();
                settings.sharded = config.redis_sharded;
                let (bridge, thread) =
                    engine::start(settings, relay.clone()).map_err(StartError::Redis)?;
                Some(Engine { bridge, thread })
            }
            (Some(_), AppKind::Echo) => {
                warn!("REDIS_URL is ignored: WSD_APP=echo has no pub/sub");
                None
            }
            (None, _) => None,
        };
        let shared = Arc::new(Shared {
            redis: engine.as_ref().map(|e| e.bridge.status.clone()),
            backend,
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            metrics_key: config.metrics_key.clone(),
            publish_key: config.publish_key.clone(),
            draining: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout.into()),
            admission: Admission::with_upgrade_per_ip(
                max_connections,
                config.upgrade_max_concurrent,
                config.max_connections_per_ip,
                config.upgrade_max_concurrent_per_ip,
            ),
            drain: DrainStats::default(),
            access,
            wakers: wakers.clone(),
            tls,
        });
        let limits = Arc::new(Limits {
            max_payload: config.max_payload,
            oversized: match config.payload_limit_policy {
                PayloadLimitPolicy::Close => Oversized::Fail,
                PayloadLimitPolicy::Send => Oversized::Discard,
            },
            ws_path: config.ws_path.clone(),
            max_header_bytes: MAX_HEADER_BYTES,
            compression: match config.compression {
                crate::config::CompressionMode::Off => None,
                crate::config::CompressionMode::Shared => {
                    Some(crate::proto::deflate::Compression {
                        min_size: config.compression_min_size,
                    })
                }
            },
        });
        // `auto` runs one worker per allowed CPU and pins each to its own; an explicit count may
        // share the host with other instances, so it leaves placement to the scheduler.
        let cpus = match config.cluster_workers {
            crate::config::Workers::Auto => allowed_cpus(),
            crate::config::Workers::Count(_) => Vec::new(),
        };
        let app = AppSpec {
            kind: config.app,
            relay,
            pubsub: Arc::new(PubSubConfig {
                max_subscriptions: config.max_subscriptions,
                max_payload: config.max_payload,
                compression: limits.compression,
                engine: engine.as_ref().map(|e| e.bridge.clone()),
            }),
        };
        let mut threads = Vec::with_capacity(workers);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, io::Result<()>)>();
        for (id, socket) in listeners.into_iter().enumerate() {
            let spec = WorkerSpec {
                id,
                listener: socket.into(),
                admin: if id == 0 { admin.take() } else { None },
                waker: wakers[id].clone(),
                backend,
                uring,
                app: app.clone(),
                limits: limits.clone(),
                budget: Budget {
                    max_backpressure: config.max_backpressure,
                    policy: config.backpressure_policy,
                    queued_share,
                    idle_timeout: config.idle_timeout,
                    send_pings: config.send_pings,
                    write_delay: Duration::from_millis(config.write_delay_ms.into()),
                    handshake_timeout: config.handshake_timeout,
                    close_timeout: config.close_timeout,
                },
                shared: shared.clone(),
                cpu: (!cpus.is_empty()).then(|| cpus[id % cpus.len()]),
                ready: ready_tx.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("wsd-worker-{id}"))
                .spawn(move || spec.run())
                .map_err(|source| StartError::Worker { id, source })?;
            threads.push(thread);
        }
        drop(ready_tx);
        let server = Server {
            addr,
            admin_addr,
            shared,
            wakers,
            threads,
            engine,
        };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(source))) => {
                    server.stop_handle().stop_quietly();
                    return Err(StartError::Worker { id, source });
                }
                Err(_) => {
                    server.stop_handle().stop_quietly();
                    let source = io::Error::other("worker exited during start-up");
                    return Err(StartError::Worker { id: 0, source });
                }
            }
        }
        let app = match config.app {
            AppKind::Echo => "echo",
            AppKind::Pubsub => "pubsub",
        };
        info!(%addr, workers, io = %backend, app, max_connections, "wsd listening");
        if server.shared.tls.is_some() {
            info!("TLS on every connection (SSL_CERT, SSL_KEY): wss:// and https://");
        }
        Ok(server)
    }

    /// The address the server listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address (`ADMIN_PORT`), if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The I/O backend in use.
    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// Each worker's counters, indexed by worker id.
    pub fn worker_stats(&self) -> &[WorkerStats] {
        &self.shared.workers
    }

    /// A handle that stops the server from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
            wakers: self.wakers.clone(),
        }
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// The state the workers share (counters, admission counts, drain state).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Waits until every worker has exited; after a drain, logs how it went.
    pub fn wait(mut self) {
        self.join_workers();
    }

    fn join_workers(&mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(engine) = self.engine.take() {
            engine.bridge.stop();
            let _ = engine.thread.join();
        }
        let drain = &self.shared.drain;
        if let Some(started) = drain.started.get() {
            info!(
                closed = drain.closed.load(Ordering::Relaxed),
                dropped_at_timeout = drain.dropped.load(Ordering::Relaxed),
                unsent_bytes = drain.unsent_bytes.load(Ordering::Relaxed),
                took_ms = started.elapsed().as_millis() as u64,
                "drained"
            );
        }
    }

    /// Stops the server and waits for its workers.
    pub fn shutdown(self) {
        self.stop_handle().stop();
        self.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.engine.is_some() {
            self.stop_handle().stop();
            self.join_workers();
        }
    }
}

/// What a worker thread needs to start.
struct WorkerSpec {
    id: usize,
    listener: OwnedFd,
    admin: Option<OwnedFd>,
    waker: Waker,
    backend: Backend,
    uring: UringParams,
    app: AppSpec,
    limits: Arc<Limits>,
    budget: Budget,
    shared: Arc<Shared>,
    cpu: Option<usize>,
    ready: mpsc::Sender<(usize, io::Result<()>)>,
}

impl WorkerSpec {
    /// The worker thread: pin, set up the driver on this thread (io_uring's single issuer), report
    /// readiness, run the loop.
    fn run(self) {
        if let Some(cpu) = self.cpu {
            pin_to(cpu);
        }
        let WorkerSpec {
            id,
            listener,
            admin,
            waker,
            backend,
            uring,
            app,
            limits,
            budget,
            shared,
            ready,
            ..
        } = self;
        let server = shared.clone();
        let outcome = match backend {
            Backend::Uring => match UringDriver::new(listener, admin, waker, uring) {
                Ok(driver) => serve(id, driver, app, limits, budget, shared, &ready),
                Err(e) => {
                    shared.worker_quiesced();
                    let _ = ready.send((id, Err(e)));
                    return;
                }
            },
            Backend::Epoll => match EpollDriver::new(listener, admin, waker) {
                Ok(driver) => serve(id, driver, app, limits, budget, shared, &ready),
                Err(e) => {
                    shared.worker_quiesced();
                    let _ = ready.send((id, Err(e)));
                    return;
                }
            },
        };
        if let Err(e) = outcome {
            tracing::error!(worker = id, error = %e, "worker event loop failed");
            server.failed.store(true, Ordering::Release);
            server.begin_drain("a worker failed");
        }
    }
}

/// The application a worker runs, and what it shares with the other workers.
#[derive(Clone)]
struct AppSpec {
    kind: AppKind,
    relay: Arc<Relay>,
    pubsub: Arc<PubSubConfig>,
}

fn serve<D: Driver>(
    id: usize,
    driver: D,
    app: AppSpec,
    limits: Arc<Limits>,
    budget: Budget,
    shared: Arc<Shared>,
    ready: &mpsc::Sender<(usize, io::Result<()>)>,
) -> io::Result<()> {
    let _ = ready.send((id, Ok(())));
    info!(worker = id, "worker started");
    match app.kind {
        AppKind::Echo => Worker::new(id, driver, Echo, limits, budget, shared).run(),
        AppKind::Pubsub => {
            let pubsub = PubSub::new(id, app.pubsub, app.relay, shared.clone());
            Worker::new(id, driver, pubsub, limits, budget, shared).run()
        }
    }
}
