//! Command-line arguments of every scenario (clap derive), and the shared parser for durations in seconds.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for wsd (loopback only).
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
    /// For wss:// targets: a PEM file of certificates to trust (the server's test certificate;
    /// its subjectAltName must match the URL's host). Every connection makes a full handshake.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Echo throughput and latency: every connection sends a message and waits for its echo.
    Echo(EchoArgs),
    /// Connection setup: opens N connections (K handshakes at a time), then holds them idle and reports
    /// the server's resident memory per connection.
    Connect(ConnectArgs),
    /// Pub/sub fan-out: S subscribers over T topics, P publishers; deliveries/s, publish→delivery latency,
    /// and lost / duplicated / reordered messages from per-publisher sequence numbers.
    Fanout(FanoutArgs),
    /// Soak: N connections for a bounded time, publishing open loop while subscribers reconnect;
    /// every delivery checked per (publisher, subscription), the server's RSS slope, descriptors
    /// back to their baseline after the clients close, loss within the server's declared drops.
    Soak(SoakArgs),
}

#[derive(Args)]
pub struct EchoArgs {
    /// Target, e.g. ws://127.0.0.1:9001/ws or wss://127.0.0.1:9001/ws with --ca (loopback only).
    #[arg(long)]
    pub url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=(64 << 20)))]
    pub size: u32,
    /// Send binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Messages in flight per connection (1 = ping-pong).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub in_flight: u32,
    /// Measured seconds (hard stop; fractions allowed).
    #[arg(long, value_parser = seconds)]
    pub duration: Duration,
    /// Warm-up seconds before measuring (not counted).
    #[arg(long, default_value = "1", value_parser = seconds)]
    pub warmup: Duration,
    /// Seconds allowed for connecting and upgrading all connections.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub connect_timeout: Duration,
    /// PID of the server, to report its CPU time per message.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Spin on epoll instead of sleeping: avoids wake-up latency of an idle core, but then the
    /// load generator's CPU time is 100% of the window and no longer its cost per message.
    #[arg(long)]
    pub busy_poll: bool,
    /// How sockets are driven once upgraded: `uring` submits all receives and sends of a loop turn
    /// with one io_uring_enter; `epoll` makes one recv and one send system call per message
    /// (`--busy-poll` applies to epoll only).
    #[arg(long, value_enum, default_value = "epoll")]
    pub io: crate::driver::Io,
    /// Offer permessage-deflate as browsers do (`permessage-deflate; client_max_window_bits`);
    /// compressed server messages are inflated and checked like plain ones.
    #[arg(long)]
    pub compression: bool,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}

pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s} s is out of range (0..86400)"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Target, e.g. ws://127.0.0.1:9001/ws or wss://127.0.0.1:9001/ws with --ca (loopback only).
    #[arg(long)]
    pub url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,
    /// Most handshakes (TCP connect + upgrade) in flight at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Hard bound on the connect phase, in seconds; connections not upgraded by then count as failed.
    #[arg(long, default_value = "30", value_parser = seconds)]
    pub timeout: Duration,
    /// Seconds to hold the connections idle before reading the server's memory again.
    #[arg(long, default_value = "2", value_parser = seconds)]
    pub settle: Duration,
    /// PID of the server (required: its VmRSS is read before and after).
    #[arg(long)]
    pub server_pid: u32,
    /// Offer permessage-deflate as browsers do (`permessage-deflate; client_max_window_bits`);
    /// compressed server messages are inflated and checked like plain ones.
    #[arg(long)]
    pub compression: bool,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct FanoutArgs {
    /// Target, e.g. ws://127.0.0.1:9001/ws or wss://127.0.0.1:9001/ws with --ca (loopback only).
    #[arg(long)]
    pub url: String,
    /// Subscriber connections; subscriber i subscribes to topic t<i % topics>.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub subscribers: u32,
    /// Publisher connections; publisher j publishes on topic t<j % topics>.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub publishers: u32,
    /// Number of topics.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub topics: u32,
    /// Unconfirmed messages per publisher; a message is confirmed when all its subscribers have it.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub window: u32,
    /// Open loop: publications per second over all publishers (the window still caps the lag).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Minimum bytes of each publication's data ({"seq","ts","pub"} is padded with "pad" up to it).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=(16 << 20)))]
    pub size: u32,
    /// Pad with market-feed-like records (`S042 101.37/101.41 x300; `, numbers varying per
    /// message) instead of `x`s, so the data compresses like a real JSON feed (for --compression).
    #[arg(long)]
    pub feed_pad: bool,
    /// Raw mode for servers without the pub/sub protocol: publishers send the data alone, no SUBSCRIBE;
    /// every subscriber must receive every publication (a broadcast server). Needs --topics 1.
    #[arg(long)]
    pub raw: bool,
    /// With --raw: every publisher also receives its own publications (an echo server, or a broadcast to all).
    #[arg(long)]
    pub raw_self: bool,
    /// Measured seconds (hard stop; fractions allowed).
    #[arg(long, value_parser = seconds)]
    pub duration: Duration,
    /// Warm-up seconds before measuring (not counted).
    #[arg(long, default_value = "1", value_parser = seconds)]
    pub warmup: Duration,
    /// Most seconds to wait after publishing stops for every sent message to arrive; then what is missing is lost.
    #[arg(long, default_value = "3", value_parser = seconds)]
    pub drain: Duration,
    /// Seconds allowed for connecting, upgrading and confirming every subscription.
    #[arg(long, default_value = "30", value_parser = seconds)]
    pub connect_timeout: Duration,
    /// PID of the server, to report its CPU time per delivery.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Offer permessage-deflate as browsers do (`permessage-deflate; client_max_window_bits`);
    /// compressed server messages are inflated and checked like plain ones.
    #[arg(long)]
    pub compression: bool,
    /// A second server (e.g. another instance sharing a Redis): every odd-numbered subscriber
    /// connects there instead; publishers stay on --url.
    #[arg(long)]
    pub sub_url: Option<String>,
    /// More server processes whose CPU time counts as server CPU (repeatable; with --sub-url, its PID).
    #[arg(long)]
    pub extra_pid: Vec<u32>,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SoakArgs {
    /// Target, e.g. ws://127.0.0.1:9001/ws (loopback only; ws:// only).
    #[arg(long)]
    pub url: String,
    /// Every connection, publishers included.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub connections: u32,
    /// Publisher connections; publisher j publishes on topic t<j % topics>.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub publishers: u32,
    /// Topics; subscriber i subscribes to t<i % topics>.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub topics: u32,
    /// Publications per second over all publishers (open loop).
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Minimum bytes of each publication's data.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=(1 << 20)))]
    pub size: u32,
    /// Subscriber reconnects per second (drain, close handshake, connect, subscribe).
    #[arg(long, default_value_t = 20.0)]
    pub churn: f64,
    /// Seconds of publishing and churn (hard stop; then drain, close and settle).
    #[arg(long, value_parser = seconds)]
    pub duration: Duration,
    /// Seconds after the connect phase before RSS samples count for the slope.
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub warmup: Duration,
    /// Most seconds a draining subscriber waits for messages it is owed; then they count as lost.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub drain: Duration,
    /// Most seconds for the connect phase, for one reconnect's handshake and ACK, and for a close handshake.
    #[arg(long, default_value = "60", value_parser = seconds)]
    pub connect_timeout: Duration,
    /// Most seconds to wait for the server's descriptors to come back to the baseline.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub settle: Duration,
    /// PID of the server (required: its /proc/PID/fd and VmRSS are read).
    #[arg(long)]
    pub server_pid: u32,
    /// Fail when the server's RSS grows faster than this after warm-up, in KiB per minute.
    #[arg(long)]
    pub max_rss_slope: Option<f64>,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}
