//! Every knob of wsd, read from flags, the environment and a TOML file, and checked before
//! anything starts.
//!
//! Flags override the environment, the environment overrides the file (`--config`, `WSD_CONFIG`),
//! the file overrides the defaults. A bad value stops wsd with exit status 2 and one line that
//! names the variable, e.g. `wsd: invalid PORT (--port) '70000': must be a number from 0 to 65535`,
//! or the file and key, e.g. `wsd: wsd.toml: invalid port '70000': must be a number from 0 to 65535`.
//!
//! - [`file`]: reading the TOML file into the arguments' defaults, through the same value parsers.
//! - [`print`]: `--print-config`, the effective configuration as a TOML file.

pub mod access;
pub mod file;
mod parse;
pub mod print;

use parse::{
    parse_bool, parse_compression_min_size, parse_host, parse_idle_timeout, parse_max_backpressure,
    parse_max_connections, parse_max_payload, parse_max_queued_bytes, parse_max_subscriptions,
    parse_path, parse_per_ip, parse_port, parse_redis_prefix, parse_send_buffer,
    parse_shutdown_timeout, parse_upgrade_max_concurrent, parse_upgrade_per_ip, parse_workers,
    parse_write_delay_ms, parse_ws_path,
};

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{
    Arg, ArgAction, CommandFactory, FromArgMatches, Parser, error::ContextKind,
    error::ContextValue, error::ErrorKind,
};

use crate::app::AppKind;
use crate::io::IoMode;
use crate::uring::RelayWake;

/// Default `PORT`.
pub const DEFAULT_PORT: u16 = 3000;
/// Default `MAX_PAYLOAD`: 1 MiB, the largest message a client may send.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Largest accepted `MAX_PAYLOAD`: 1 GiB; messages are reassembled in memory.
pub const MAX_MAX_PAYLOAD: usize = 1 << 30;
/// Default `REDIS_PREFIX`.
pub const DEFAULT_REDIS_PREFIX: &str = "wsd:";
/// Default `IDLE_TIMEOUT` in seconds.
pub const DEFAULT_IDLE_TIMEOUT: u32 = 120;
/// Default `MAX_SUBSCRIPTIONS`: topics one connection may be subscribed to.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 512;
/// Default `MAX_BACKPRESSURE`: bytes queued for one connection before the policy applies.
pub const DEFAULT_MAX_BACKPRESSURE: usize = 1 << 20;
/// Most worker threads `CLUSTER_WORKERS` may ask for.
pub const MAX_WORKERS: usize = 1024;
/// Default `SHUTDOWN_TIMEOUT` in seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u32 = 30;
/// Default `UPGRADE_MAX_CONCURRENT`: connections accepted but not yet upgraded, process-wide.
pub const DEFAULT_UPGRADE_MAX_CONCURRENT: usize = 1024;
/// Default `UPGRADE_MAX_CONCURRENT_PER_IP`: a quarter of the process-wide handshake limit, far
/// above what one honest client or NAT has in flight (handshakes finish in milliseconds).
pub const DEFAULT_UPGRADE_MAX_CONCURRENT_PER_IP: usize = 256;
/// File descriptors `MAX_CONNECTIONS=auto` leaves free below `RLIMIT_NOFILE` for listeners,
/// rings, eventfds, logs and the occasional file.
pub const FD_MARGIN: usize = 64;
/// Largest accepted `MAX_CONNECTIONS`.
pub const MAX_MAX_CONNECTIONS: usize = 10_000_000;

/// How many worker threads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per CPU this process may run on.
    Auto,
    /// Exactly this many.
    Count(usize),
}

impl Workers {
    /// The number of workers this resolves to on this host.
    pub fn resolve(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => crate::sys::allowed_cpus().len().max(1),
        }
    }
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The process-wide connection limit (`MAX_CONNECTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxConnections {
    /// The soft `RLIMIT_NOFILE` (after wsd raises it to the hard limit) minus [`FD_MARGIN`].
    Auto,
    /// Exactly this many.
    Count(usize),
}

impl MaxConnections {
    /// The limit this resolves to, given the open file limit wsd runs with.
    pub fn resolve(self, nofile: u64) -> usize {
        match self {
            MaxConnections::Count(n) => n,
            MaxConnections::Auto => {
                let nofile = usize::try_from(nofile).unwrap_or(MAX_MAX_CONNECTIONS);
                nofile
                    .saturating_sub(FD_MARGIN)
                    .clamp(1, MAX_MAX_CONNECTIONS)
            }
        }
    }
}

impl fmt::Display for MaxConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxConnections::Auto => f.write_str("auto"),
            MaxConnections::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The process-wide bound on bytes queued for peers (`MAX_QUEUED_BYTES`), shared out equally
/// between the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxQueuedBytes {
    /// A quarter of the memory wsd may use: the smaller of `MemTotal` and the cgroup's limit.
    Auto,
    /// No process-wide bound (only `MAX_BACKPRESSURE` per connection).
    Off,
    /// Exactly this many bytes.
    Bytes(u64),
}

impl MaxQueuedBytes {
    /// The bound in bytes (`None`: off), given the memory wsd may use (`None`: unknown, then
    /// `auto` is off too).
    pub fn resolve(self, memory: Option<u64>) -> Option<u64> {
        match self {
            MaxQueuedBytes::Bytes(n) => Some(n),
            MaxQueuedBytes::Off => None,
            MaxQueuedBytes::Auto => memory.map(|m| (m / 4).max(parse::MIN_MAX_QUEUED_BYTES)),
        }
    }
}

impl fmt::Display for MaxQueuedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxQueuedBytes::Auto => f.write_str("auto"),
            MaxQueuedBytes::Off => f.write_str("0"),
            MaxQueuedBytes::Bytes(n) => write!(f, "{n}"),
        }
    }
}

/// What happens to a message larger than `MAX_PAYLOAD` (`PAYLOAD_LIMIT_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadLimitPolicy {
    /// Close the connection with 1009 (message too big).
    Close,
    /// Discard the message as it streams in, answer an `ERROR` `RESOURCE_EXHAUSTED` envelope and
    /// keep the connection open.
    Send,
}

/// `permessage-deflate` (`COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionMode {
    /// Never negotiated: offers are ignored and every frame goes out plain.
    Off,
    /// Negotiated with every client that offers it, without context takeover; a published
    /// message is compressed once and that frame shared by all subscribers that negotiated it.
    Shared,
}

/// Default `COMPRESSION_MIN_SIZE`: messages shorter than this go out uncompressed.
pub const DEFAULT_COMPRESSION_MIN_SIZE: usize = 128;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `pretty` on a terminal, `json` otherwise.
    Auto,
    /// One JSON object per line (for journald, Loki, Elasticsearch).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// What happens to a published message for a subscriber over its backpressure budget
/// (`BACKPRESSURE_POLICY`). Control frames (pong, close) are never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackpressurePolicy {
    /// Drop the new message (what uWebSockets does).
    DropNewest,
    /// Drop the oldest queued messages to make room for the new one.
    DropOldest,
    /// Close the connection with 1013 (try again later).
    Close,
}

/// What `Debug` and `--print-config` show instead of a secret; refused as a secret's value, so a
/// printed configuration read back cannot set a key to it.
pub const REDACTED: &str = "***";

/// A secret setting (a key or token): usable, never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's bytes, for comparison.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
            return Err("must be a non-empty token without spaces or control characters".into());
        }
        if s == REDACTED {
            return Err(format!(
                "must not be \"{REDACTED}\", the placeholder --print-config shows for a secret"
            ));
        }
        Ok(Secret(s.to_owned()))
    }
}

/// `REDIS_URL`: `redis://` or `rediss://`, possibly with a user and password, so never printed
/// (`Debug` and `--print-config` show `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL, to connect with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl FromStr for RedisUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == REDACTED {
            return Err(format!(
                "must not be \"{REDACTED}\", the placeholder --print-config shows for a secret"
            ));
        }
        if !(s.starts_with("redis://") || s.starts_with("rediss://")) {
            return Err("must be a redis:// or rediss:// URL".to_owned());
        }
        // Parsed as the link will use it; the error names the problem, never the password.
        match redis::Client::open(s) {
            Ok(_) => Ok(RedisUrl(s.to_owned())),
            Err(e) => Err(format!("not a usable Redis URL ({:?})", e.kind())),
        }
    }
}

/// Log verbosity (`LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Start, stop and configuration lines (the default).
    Info,
    /// Per-connection lines.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// wsd's configuration.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "wsd",
    version,
    about = "A WebSocket server on per-core io_uring workers"
)]
pub struct Config {
    /// TCP port to listen on; 0 picks a free one (it is logged at start).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    pub port: u16,

    /// Address to listen on; 0.0.0.0 is every IPv4 interface, :: every IPv6 one.
    #[arg(long, env = "HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED), value_parser = parse_host)]
    pub host: IpAddr,

    /// Worker threads, each with its own listener (SO_REUSEPORT) and event loop: `auto` runs one
    /// per CPU the process may use, pinned to it.
    #[arg(long = "workers", env = "CLUSTER_WORKERS", default_value_t = Workers::Auto, value_parser = parse_workers)]
    pub cluster_workers: Workers,

    /// The path that accepts WebSocket upgrades; other paths answer plain HTTP (/health, 404).
    #[arg(long, env = "WS_PATH", default_value = "/ws", value_parser = parse_ws_path)]
    pub ws_path: String,

    /// Largest message a client may send, in bytes (all fragments together); what happens to
    /// larger ones is PAYLOAD_LIMIT_POLICY's choice. Default 1 MiB: generous for chat and dashboards, small enough that a
    /// hostile client cannot make the server buffer much.
    #[arg(long, env = "MAX_PAYLOAD", default_value_t = DEFAULT_MAX_PAYLOAD, value_parser = parse_max_payload)]
    pub max_payload: usize,

    /// I/O backend: `auto` uses io_uring and falls back to epoll (with a log line) when io_uring
    /// cannot be set up, e.g. disabled by sysctl or a container's seccomp profile.
    #[arg(long = "io", env = "WSD_IO", default_value = "auto", value_enum)]
    pub io: IoMode,

    /// The application served on the WebSocket path: `pubsub` (topics, publish, fan-out; see
    /// docs/PROTOCOL.md) or `echo` (every message sent back; Autobahn and load tests).
    #[arg(long, env = "WSD_APP", default_value = "pubsub", value_enum)]
    pub app: AppKind,

    /// Log verbosity.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_enum)]
    pub log_level: LogLevel,

    /// Seconds a connection may send nothing before it is closed with 1001; 0 turns it off.
    /// Default 120 s: long enough for any client that answers pings, short enough to reap dead
    /// peers (mobile networks drop connections silently) before they pile up.
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = DEFAULT_IDLE_TIMEOUT, value_parser = parse_idle_timeout)]
    pub idle_timeout: u32,

    /// Ping a connection that has been silent for half of IDLE_TIMEOUT, so a healthy idle client
    /// answers and stays. Only received bytes count as activity, never the server's own sends.
    #[arg(long, env = "SEND_PINGS", default_value_t = true, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub send_pings: bool,

    /// Pub/sub: most topics one connection may subscribe to; more → RESOURCE_EXHAUSTED. Bounds
    /// the memory one client can pin in the topic tables.
    #[arg(long, env = "MAX_SUBSCRIPTIONS", default_value_t = DEFAULT_MAX_SUBSCRIPTIONS, value_parser = parse_max_subscriptions)]
    pub max_subscriptions: usize,

    /// Bytes of published messages queued for one connection before BACKPRESSURE_POLICY applies.
    /// Default 1 MiB: seconds of a busy feed for a healthy client, bounded memory for a stuck one.
    #[arg(long, env = "MAX_BACKPRESSURE", default_value_t = DEFAULT_MAX_BACKPRESSURE, value_parser = parse_max_backpressure)]
    pub max_backpressure: usize,

    /// What a subscriber over its budget loses: `drop-newest` (the new message), `drop-oldest`
    /// (queued messages, oldest first) or `close` (the connection, with 1013).
    #[arg(
        long,
        env = "BACKPRESSURE_POLICY",
        default_value = "drop-newest",
        value_enum
    )]
    pub backpressure_policy: BackpressurePolicy,

    /// Pub/sub: milliseconds published messages may wait before they are sent, so that several
    /// go to a subscriber in one send (0, the default: sent at the end of the loop turn that
    /// queued them). Trades up to this much latency for fewer sends: on a busy topic whose
    /// publications arrive a few per turn, each send is most of the CPU. Replies, pings and
    /// closes are never delayed (and take delayed messages along, in order).
    #[arg(long, env = "WRITE_DELAY_MS", default_value_t = 0, value_parser = parse_write_delay_ms)]
    pub write_delay_ms: u32,

    /// Bytes of kernel send buffer per connection (`SO_SNDBUF`, which Linux doubles and caps at
    /// net.core.wmem_max); 0, the default: the kernel's autotuning (up to tcp_wmem's maximum).
    /// Bounds the kernel memory a client that does not read can pin, on top of MAX_BACKPRESSURE.
    #[arg(long, env = "SEND_BUFFER", default_value_t = 0, value_parser = parse_send_buffer)]
    pub send_buffer: usize,

    /// Bytes queued for peers across the whole process (out-queues, sends in flight, held
    /// messages), shared equally between the workers; over a worker's share, BACKPRESSURE_POLICY
    /// applies to the connections holding more than their fair part. `auto`: a quarter of the
    /// smaller of the machine's memory and the cgroup's limit; 0: off.
    #[arg(long, env = "MAX_QUEUED_BYTES", default_value_t = MaxQueuedBytes::Auto, value_parser = parse_max_queued_bytes)]
    pub max_queued_bytes: MaxQueuedBytes,

    /// Pub/sub: when set, `POST /publish` requires `Authorization: Bearer <PUBLISH_KEY>`
    /// (compared in constant time). Unset: anyone who can reach the port may publish.
    #[arg(long, env = "PUBLISH_KEY", hide_env_values = true, value_parser = clap::value_parser!(Secret))]
    pub publish_key: Option<Secret>,

    /// Seconds a stopping wsd (SIGTERM/SIGINT) keeps delivering queued data and waiting for
    /// clients to answer its 1001 close before it exits anyway. Default 30 s: within the grace
    /// period of systemd (90 s) and Kubernetes (30 s) once the load balancer has moved traffic.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT, value_parser = parse_shutdown_timeout)]
    pub shutdown_timeout: u32,

    /// Most open WebSocket and HTTP connections, process-wide; beyond it new connections are
    /// answered 503 with Retry-After. `auto`: the open file limit minus a margin of 64, so wsd refuses
    /// cleanly instead of failing accept() with EMFILE.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = MaxConnections::Auto, value_parser = parse_max_connections)]
    pub max_connections: MaxConnections,

    /// Most connections from one IP address; 0 turns the limit off (the default: clients behind
    /// one NAT or proxy share an address).
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 0, value_parser = parse_per_ip)]
    pub max_connections_per_ip: usize,

    /// Most connections accepted but not yet upgraded, process-wide; beyond it new ones are
    /// answered 503. Bounds what a flood of slow handshakes can hold. Default 1024.
    #[arg(long, env = "UPGRADE_MAX_CONCURRENT", default_value_t = DEFAULT_UPGRADE_MAX_CONCURRENT, value_parser = parse_upgrade_max_concurrent)]
    pub upgrade_max_concurrent: usize,

    /// Most connections from one IP address accepted but not yet upgraded; beyond it new ones
    /// from that address are answered 503. 0 turns the limit off. Default 256: one address
    /// flooding slow handshakes cannot take every UPGRADE_MAX_CONCURRENT slot from the others.
    #[arg(long, env = "UPGRADE_MAX_CONCURRENT_PER_IP", default_value_t = DEFAULT_UPGRADE_MAX_CONCURRENT_PER_IP, value_parser = parse_upgrade_per_ip)]
    pub upgrade_max_concurrent_per_ip: usize,

    /// A message over MAX_PAYLOAD: `close` closes with 1009; `send` discards it as it streams in,
    /// answers an ERROR RESOURCE_EXHAUSTED envelope and keeps the connection.
    #[arg(
        long,
        env = "PAYLOAD_LIMIT_POLICY",
        default_value = "close",
        value_enum
    )]
    pub payload_limit_policy: PayloadLimitPolicy,

    /// `permessage-deflate` (RFC 7692): `off` (the default, as in uWebSockets and Bun: it costs
    /// CPU on every compressed message and most feeds are small) or `shared`: negotiated
    /// without context takeover, so no connection keeps compression state, and each published
    /// message is compressed once for all the subscribers that negotiated it.
    #[arg(long, env = "COMPRESSION", default_value = "off", value_enum)]
    pub compression: CompressionMode,

    /// With COMPRESSION=shared, messages shorter than this many bytes go out uncompressed
    /// (compressing a short message costs more than the bytes it saves).
    #[arg(long, env = "COMPRESSION_MIN_SIZE", default_value_t = DEFAULT_COMPRESSION_MIN_SIZE, value_parser = parse_compression_min_size)]
    pub compression_min_size: usize,

    /// When set, `GET /metrics` requires `Authorization: Bearer <METRICS_KEY>`.
    #[arg(long, env = "METRICS_KEY", hide_env_values = true, value_parser = clap::value_parser!(Secret))]
    pub metrics_key: Option<Secret>,

    /// A second port (on HOST, plain HTTP) that serves only `GET /health` and `GET /metrics`,
    /// outside every connection limit, so load balancers and Prometheus still get answers while
    /// the WebSocket port is full. Unset (the default): none; 0 picks a free port. Must differ
    /// from PORT. docs/OPERATIONS.md, "Admission limits".
    #[arg(long, env = "ADMIN_PORT", value_parser = parse_port)]
    pub admin_port: Option<u16>,

    /// Pub/sub across instances: the Redis to publish through and subscribe from
    /// (`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS). Unset (the default):
    /// this instance's publications stay on it. docs/REDIS.md.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = clap::value_parser!(RedisUrl))]
    pub redis_url: Option<RedisUrl>,

    /// The start of every Redis channel wsd uses, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX, value_parser = parse_redis_prefix)]
    pub redis_prefix: String,

    /// Sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7+), so a Redis Cluster spreads topics
    /// over its shards; when the node in `REDIS_URL` is a cluster node, every shard is used.
    #[arg(long, env = "REDIS_SHARDED", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub redis_sharded: bool,

    /// Log line format: `json` (one object per line), `pretty`, or `auto` (pretty on a terminal,
    /// json otherwise).
    #[arg(long, env = "LOG_FORMAT", default_value = "auto", value_enum)]
    pub log_format: LogFormat,

    /// io_uring only: how a worker wakes another it relayed pub/sub messages to: `eventfd` (a
    /// write) or `msg_ring` (IORING_OP_MSG_RING sent with the turn's other submissions). Measured
    /// equal within noise (figures at `uring::RelayWake`); eventfd is the default.
    #[arg(long, env = "WSD_RELAY_WAKE", default_value = "eventfd", value_enum)]
    pub relay_wake: RelayWake,

    /// PEM certificate chain (server certificate first). With SSL_KEY, every listener speaks TLS
    /// (wss://, https://): TLS 1.3 and 1.2, ALPN http/1.1. Re-read on SIGHUP.
    #[arg(long, env = "SSL_CERT", value_name = "FILE", value_parser = parse_path)]
    pub ssl_cert: Option<PathBuf>,

    /// PEM private key of SSL_CERT's certificate (PKCS#8, SEC1 or PKCS#1). Re-read on SIGHUP.
    #[arg(long, env = "SSL_KEY", value_name = "FILE", value_parser = parse_path)]
    pub ssl_key: Option<PathBuf>,

    /// PEM CA certificates for mutual TLS: every client must present a certificate that chains
    /// to one of them (its subject is the connection's identity when no JWT is configured).
    #[arg(long, env = "SSL_CLIENT_CA", value_name = "FILE", value_parser = parse_path)]
    pub ssl_client_ca: Option<PathBuf>,

    /// Testing only, not a knob (no flag, variable or file key): how long a client may take to
    /// finish its upgrade request. Tests that start a server through the library shorten it so
    /// they need not wait the production value out.
    #[arg(skip = HANDSHAKE_TIMEOUT)]
    pub handshake_timeout: std::time::Duration,

    /// Testing only, not a knob (as `handshake_timeout`): how long the peer has to answer a
    /// close frame.
    #[arg(skip = CLOSE_TIMEOUT)]
    pub close_timeout: std::time::Duration,
    /// Access control: tokens, rights, origins, rate limits.
    #[command(flatten)]
    pub access: access::AccessKnobs,
}

/// A client that has not finished its upgrade request by then is dropped (slow-loris).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the server waits for the peer's close frame after sending its own. (While draining,
/// the wait starts once the close frame has been handed to the kernel, behind the queued data.)
pub const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for Config {
    /// The documented defaults, ignoring the environment (for embedding and tests).
    fn default() -> Self {
        Config {
            port: DEFAULT_PORT,
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            cluster_workers: Workers::Auto,
            ws_path: "/ws".to_owned(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            io: IoMode::Auto,
            app: AppKind::Pubsub,
            log_level: LogLevel::Info,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            send_pings: true,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_backpressure: DEFAULT_MAX_BACKPRESSURE,
            backpressure_policy: BackpressurePolicy::DropNewest,
            write_delay_ms: 0,
            send_buffer: 0,
            max_queued_bytes: MaxQueuedBytes::Auto,
            publish_key: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_connections: MaxConnections::Auto,
            max_connections_per_ip: 0,
            upgrade_max_concurrent: DEFAULT_UPGRADE_MAX_CONCURRENT,
            upgrade_max_concurrent_per_ip: DEFAULT_UPGRADE_MAX_CONCURRENT_PER_IP,
            payload_limit_policy: PayloadLimitPolicy::Close,
            compression: CompressionMode::Off,
            compression_min_size: DEFAULT_COMPRESSION_MIN_SIZE,
            metrics_key: None,
            admin_port: None,
            redis_url: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            redis_sharded: false,
            log_format: LogFormat::Auto,
            relay_wake: RelayWake::DEFAULT,
            ssl_cert: None,
            ssl_key: None,
            ssl_client_ca: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            close_timeout: CLOSE_TIMEOUT,
            access: access::AccessKnobs::default(),
        }
    }
}

impl Config {
    /// The TLS files this configuration names (none: plain `ws://`).
    pub fn tls_files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            cert: self.ssl_cert.clone(),
            key: self.ssl_key.clone(),
            client_ca: self.ssl_client_ca.clone(),
        }
    }

    /// Parses flags, environment and the configuration file; prints help, version or
    /// (`--print-config`) the effective configuration and exits 0, or prints one line naming the
    /// bad variable or file key and exits 2. Also returns warnings to log once logging is set up.
    pub fn from_args() -> (Config, Vec<String>) {
        match Config::load(std::env::args_os().collect()) {
            Ok(Loaded {
                config,
                print: true,
                ..
            }) => {
                print!("{}", config.to_toml());
                std::process::exit(0);
            }
            Ok(Loaded {
                config, warnings, ..
            }) => (config, warnings),
            Err(LoadError::Clap(e))
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) =>
            {
                e.exit()
            }
            Err(e) => {
                eprintln!("wsd: {e}");
                std::process::exit(2);
            }
        }
    }

    /// Parses `args` (program name first), the environment and the file that `--config` or
    /// `WSD_CONFIG` names: flags override the environment, which overrides the file, which
    /// overrides the defaults.
    pub fn load(args: Vec<OsString>) -> Result<Loaded, LoadError> {
        let mut cmd = command();
        let mut warnings = Vec::new();
        if let Some(path) = file::path_from(&args) {
            cmd = file::apply(cmd, &path, &mut warnings).map_err(LoadError::File)?;
        }
        let matches = cmd.try_get_matches_from(args).map_err(LoadError::Clap)?;
        let print = matches.get_flag(file::PRINT_ARG);
        let config = Config::from_arg_matches(&matches).map_err(LoadError::Clap)?;
        if let Some(admin) = config.admin_port
            && admin != 0
            && admin == config.port
        {
            return Err(LoadError::File(format!(
                "invalid ADMIN_PORT (--admin-port) '{admin}': must differ from PORT"
            )));
        }
        if config.access.auth_required == Some(true) && !config.access.has_key() {
            return Err(LoadError::File(
                "invalid AUTH_REQUIRED (--auth-required) 'true': needs JWT_SECRET or JWT_PUBLIC_KEY"
                    .to_owned(),
            ));
        }
        Ok(Loaded {
            config,
            warnings,
            print,
        })
    }
}

/// The result of [`Config::load`].
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// Warnings about the configuration file (e.g. a secret in a world-readable file).
    pub warnings: Vec<String>,
    /// `--print-config` was given.
    pub print: bool,
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// A flag or environment variable (or `--help`/`--version`, which are not errors).
    Clap(clap::Error),
    /// The configuration file: one line naming it and, for a bad entry, the key.
    File(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Clap(e) => f.write_str(&one_line(e)),
            LoadError::File(line) => f.write_str(line),
        }
    }
}

/// The command line: every knob of [`Config`], plus `--config` and `--print-config`.
fn command() -> clap::Command {
    Config::command()
        .arg(
            Arg::new(file::CONFIG_ARG)
                .long("config")
                .env("WSD_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "TOML file with any of the settings below, keyed by the environment variable \
                     in lower case (port = 3000); the environment and flags override it",
                ),
        )
        .arg(
            Arg::new(file::PRINT_ARG)
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help(
                    "Print the effective configuration as a file --config accepts (secrets shown \
                     as \"***\") and exit",
                ),
        )
}

/// Renders a clap error as one line, naming the environment variable behind the flag.
fn one_line(e: &clap::Error) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches("--")
        .to_owned();
    let command = Config::command();
    let knob = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()));
    let env = knob.and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()));
    // A secret's refused value may still be the secret (or hold a password): never echoed.
    let value = if knob.is_some_and(Arg::is_hide_env_values_set) {
        REDACTED.to_owned()
    } else {
        value
    };
    match (env, e.kind()) {
        (Some(env), ErrorKind::ValueValidation | ErrorKind::InvalidValue) => {
            format!("invalid {env} (--{long}) '{value}': {}", why(e))
        }
        _ => first_line(e),
    }
}

/// The first line of a rendered clap error, without its `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    rendered
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned()
}

/// Why a value was refused: the value parser's own message (`must be ...`), or the list of valid
/// values for an enumeration.
fn why(e: &clap::Error) -> String {
    let line = first_line(e);
    let why = line
        .rsplit_once("': ")
        .map_or(line.as_str(), |(_, why)| why);
    if why.starts_with("invalid value") || why.is_empty() {
        match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(v)) => format!("must be one of {}", v.join(", ")),
            _ => "invalid value".to_owned(),
        }
    } else {
        why.to_owned()
    }
}

#[cfg(test)]
mod tests;
