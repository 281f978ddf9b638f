//! wsd-loadtest command line: parses arguments, raises the open-file limit, runs the echo load and prints the report.

mod conn;
mod driver;
mod frame;
mod proc;
mod report;
mod stats;
mod url;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for wsd (loopback only).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Echo throughput and latency: every connection sends a message and waits for its echo.
    Echo(EchoArgs),
}

#[derive(Args)]
struct EchoArgs {
    /// Target, e.g. ws://127.0.0.1:9001/ws (loopback addresses only).
    #[arg(long)]
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    connections: u32,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=(64 << 20)))]
    size: u32,
    /// Send binary messages (default: text).
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection (1 = ping-pong).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    in_flight: u32,
    /// Measured seconds (hard stop; fractions allowed).
    #[arg(long, value_parser = seconds)]
    duration: Duration,
    /// Warm-up seconds before measuring (not counted).
    #[arg(long, default_value = "1", value_parser = seconds)]
    warmup: Duration,
    /// Seconds allowed for connecting and upgrading all connections.
    #[arg(long, default_value = "10", value_parser = seconds)]
    connect_timeout: Duration,
    /// PID of the server, to report its CPU time per message.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Spin on epoll instead of sleeping: avoids wake-up latency of an idle core, but then the
    /// load generator's CPU time is 100% of the window and no longer its cost per message.
    #[arg(long)]
    busy_poll: bool,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    json: bool,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s} s is out of range (0..86400)"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn main() -> ExitCode {
    let Command::Echo(args) = Cli::parse().cmd;
    match echo(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsd-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}

fn echo(args: &EchoArgs) -> Result<ExitCode, String> {
    let target = url::parse(&args.url)?;
    if args.duration.is_zero() {
        return Err("--duration must be greater than 0".into());
    }
    let limit = proc::raise_nofile_limit()?;
    let needed = u64::from(args.connections) + 16;
    if limit.is_some_and(|l| l < needed) {
        eprintln!(
            "wsd-loadtest: warning: open-file limit {} is below the {needed} needed",
            limit.unwrap_or_default()
        );
    }
    let cfg = driver::Config {
        target,
        connections: args.connections as usize,
        size: args.size as usize,
        binary: args.binary,
        in_flight: args.in_flight as usize,
        duration: args.duration,
        warmup: args.warmup,
        connect_timeout: args.connect_timeout,
        server_pid: args.server_pid,
        busy_poll: args.busy_poll,
    };
    let outcome = driver::run(&cfg)?;
    let summary = report::Summary::new(&args.url, &cfg, &outcome, proc::clock_ticks_per_second());
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.human());
    }
    if summary.messages == 0 || summary.errors() > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
