//! Starting and stopping wsd: one worker thread per core, each with its own `SO_REUSEPORT`
//! listener, driver and connection table.
//!
//! Stopping is one sequence, run by every worker on its own loop: stop accepting (close the
//! listener), send close 1001 to every connection, let close handshakes finish until
//! `worker::STOP_TIMEOUT`, drop what is left, exit.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::app::{AppKind, echo::Echo};
use crate::config::Config;
use crate::epoll::EpollDriver;
use crate::io::{Backend, Driver, IoMode, Waker};
use crate::proto::Limits;
use crate::pubsub::relay::Relay;
use crate::pubsub::{PubSub, PubSubConfig};
use crate::uring::{self, UringDriver, UringParams};
use crate::worker::{Budget, Worker};

/// Request headers larger than this are refused with 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Listen backlog (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Counters one worker publishes for the rest of the process (relaxed atomics, written by the
/// worker alone).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Connections open now (accepted and not yet released).
    pub connections: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicUsize,
    /// Receives re-armed after the buffer ring ran dry (io_uring).
    pub recv_enobufs: AtomicU64,
    /// Completion-queue overflows recovered from (io_uring).
    pub cq_overflows: AtomicU64,
    /// Loop turns (each one `io_uring_enter` or `epoll_wait`, plus what the turn queued).
    pub turns: AtomicU64,
    /// Sends handed to the driver (one per connection with output per turn, at most one in
    /// flight each): with `delivered`, the kernel sends per delivery.
    pub sends: AtomicU64,
    /// Pub/sub: topics with at least one subscriber on this worker.
    pub topics: AtomicUsize,
    /// Pub/sub: subscriptions held by this worker's connections.
    pub subscriptions: AtomicUsize,
    /// Pub/sub: PUBLISH requests accepted on this worker.
    pub published: AtomicU64,
    /// Pub/sub: messages queued to this worker's subscribers.
    pub delivered: AtomicU64,
    /// Backpressure: new messages dropped for a subscriber over its budget (`drop-newest`).
    pub dropped_newest: AtomicU64,
    /// Backpressure: queued messages dropped to make room (`drop-oldest`).
    pub dropped_oldest: AtomicU64,
    /// Backpressure: connections closed with 1013 (`close`).
    pub closed_backpressure: AtomicU64,
    /// Connections closed with 1001 after IDLE_TIMEOUT of silence.
    pub idle_closes: AtomicU64,
}

/// State shared by all workers of one server.
#[derive(Debug)]
pub struct Shared {
    /// The I/O backend in use.
    pub backend: Backend,
    /// One entry per worker, indexed by worker id.
    pub workers: Vec<WorkerStats>,
    /// Set once to ask every worker to stop.
    pub stopping: AtomicBool,
}

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
    /// A worker failed while setting up its event loop.
    #[error("worker {id} failed to start: {source}")]
    Worker {
        /// The worker's number.
        id: usize,
        /// The underlying error.
        source: io::Error,
    },
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
    threads: Vec<JoinHandle<()>>,
}

/// A handle that can stop the server from another thread (a signal handler thread).
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
}

impl StopHandle {
    /// Asks every worker to begin the stop sequence.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        for waker in &self.wakers {
            waker.wake();
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (every connection is a
/// descriptor) and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        warn!(cpu, error = %e, "cannot pin worker to its CPU");
    }
}

/// Binds a listener. The first of a server's listeners is bound *without* `SO_REUSEPORT` and
/// joins the reuse-port group only after the bind succeeded: the bind fails with "address in use"
/// when any other socket holds the port, so a second wsd on a busy port refuses to start instead
/// of silently sharing its traffic. The other workers' listeners then join the group.
fn listener(addr: SocketAddr, first: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
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
        let backend = choose_backend(config.io)?;
        let workers = config.cluster_workers.resolve();
        let requested = SocketAddr::new(config.host, config.port);
        let listen_err = |source| StartError::Listen {
            addr: requested,
            source,
        };
        // The first listener fixes the port (when 0 was asked for); the others share it.
        let first = listener(requested, true).map_err(listen_err)?;
        let addr = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(requested);
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners
                .push(listener(addr, false).map_err(|source| StartError::Listen { addr, source })?);
        }
        let shared = Arc::new(Shared {
            backend,
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            stopping: AtomicBool::new(false),
        });
        let limits = Arc::new(Limits {
            max_payload: config.max_payload,
            ws_path: config.ws_path.clone(),
            max_header_bytes: MAX_HEADER_BYTES,
        });
        // `auto` runs one worker per allowed CPU and pins each to its own; an explicit count may
        // share the host with other instances, so it leaves placement to the scheduler.
        let cpus = match config.cluster_workers {
            crate::config::Workers::Auto => allowed_cpus(),
            crate::config::Workers::Count(_) => Vec::new(),
        };
        let wakers = (0..workers)
            .map(|id| Waker::new().map_err(|source| StartError::Worker { id, source }))
            .collect::<Result<Vec<_>, _>>()?;
        let app = AppSpec {
            kind: config.app,
            relay: Arc::new(Relay::new(wakers.clone())),
            pubsub: Arc::new(PubSubConfig {
                max_subscriptions: config.max_subscriptions,
                publish_key: config.publish_key.clone(),
                max_payload: config.max_payload,
            }),
        };
        let mut threads = Vec::with_capacity(workers);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, io::Result<()>)>();
        for (id, socket) in listeners.into_iter().enumerate() {
            let spec = WorkerSpec {
                id,
                listener: socket.into(),
                waker: wakers[id].clone(),
                backend,
                uring,
                app: app.clone(),
                limits: limits.clone(),
                budget: Budget {
                    max_backpressure: config.max_backpressure,
                    policy: config.backpressure_policy,
                    idle_timeout: config.idle_timeout,
                    send_pings: config.send_pings,
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
            shared,
            wakers,
            threads,
        };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(source))) => {
                    server.stop_handle().stop();
                    return Err(StartError::Worker { id, source });
                }
                Err(_) => {
                    server.stop_handle().stop();
                    let source = io::Error::other("worker exited during start-up");
                    return Err(StartError::Worker { id: 0, source });
                }
            }
        }
        info!(%addr, workers, io = %backend, "wsd listening");
        Ok(server)
    }

    /// The address the server listens on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

    /// Waits until every worker has exited.
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
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
        if !self.threads.is_empty() {
            self.stop_handle().stop();
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

/// What a worker thread needs to start.
struct WorkerSpec {
    id: usize,
    listener: OwnedFd,
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
        let outcome = match backend {
            Backend::Uring => match UringDriver::new(listener, waker, uring) {
                Ok(driver) => serve(id, driver, app, limits, budget, shared, &ready),
                Err(e) => {
                    let _ = ready.send((id, Err(e)));
                    return;
                }
            },
            Backend::Epoll => match EpollDriver::new(listener, waker) {
                Ok(driver) => serve(id, driver, app, limits, budget, shared, &ready),
                Err(e) => {
                    let _ = ready.send((id, Err(e)));
                    return;
                }
            },
        };
        if let Err(e) = outcome {
            tracing::error!(worker = id, error = %e, "worker event loop failed");
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
    match app.kind {
        AppKind::Echo => Worker::new(id, driver, Echo, limits, budget, shared).run(),
        AppKind::Pubsub => {
            let pubsub = PubSub::new(id, app.pubsub, app.relay, shared.clone());
            Worker::new(id, driver, pubsub, limits, budget, shared).run()
        }
    }
}
