//! wsd-loadtest entry point: parses arguments, raises the open-file limit, runs the chosen scenario (echo, connect, fanout) and prints its report.

mod cli;
mod conn;
mod connect;
mod connect_report;
mod driver;
mod fanout;
mod frame;
mod inflate;
mod proc;
mod report;
mod soak;
mod sock;
mod stats;
mod upgrade;
#[allow(unsafe_code)] // the io_uring driver: every block has its SAFETY line
mod uring;
mod url;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ConnectArgs, EchoArgs, FanoutArgs, SoakArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(ca) = &cli.ca
        && let Err(e) = sock::set_ca(ca)
    {
        eprintln!("wsd-loadtest: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.cmd {
        Command::Echo(args) => echo(&args),
        Command::Connect(args) => connect(&args),
        Command::Fanout(args) => fanout_cmd(&args),
        Command::Soak(args) => soak_cmd(&args),
    };
    match result {
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
    if target.tls && args.io == driver::Io::Uring {
        return Err(
            "wss:// runs with --io epoll (the io_uring mode sends the frames as they are)".into(),
        );
    }
    check_nofile(u64::from(args.connections))?;
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
        io: args.io,
        compression: args.compression,
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

/// Raises RLIMIT_NOFILE and warns when it is still below `connections` plus a margin.
fn check_nofile(connections: u64) -> Result<(), String> {
    let limit = proc::raise_nofile_limit()?;
    let needed = connections + 16;
    if let Some(l) = limit.filter(|&l| l < needed) {
        eprintln!("wsd-loadtest: warning: open-file limit {l} is below the {needed} needed");
    }
    Ok(())
}

fn connect(args: &ConnectArgs) -> Result<ExitCode, String> {
    let target = url::parse(&args.url)?;
    if args.timeout.is_zero() {
        return Err("--timeout must be greater than 0".into());
    }
    check_nofile(u64::from(args.connections))?;
    let cfg = connect::Config {
        target,
        connections: args.connections as usize,
        concurrency: args.concurrency as usize,
        timeout: args.timeout,
        settle: args.settle,
        server_pid: args.server_pid,
        progress: !args.json,
        compression: args.compression,
    };
    let out = connect::run(&cfg)?;
    let summary = connect_report::Summary {
        url: &args.url,
        cfg: &cfg,
        out: &out,
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.human());
    }
    Ok(if out.connected == 0 || summary.errors() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn fanout_cmd(args: &FanoutArgs) -> Result<ExitCode, String> {
    let target = url::parse(&args.url)?;
    if args.duration.is_zero() {
        return Err("--duration must be greater than 0".into());
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number of publications per second".into());
    }
    check_nofile(u64::from(args.subscribers) + u64::from(args.publishers))?;
    let cfg = fanout::Config {
        target,
        subscribers: args.subscribers as usize,
        publishers: args.publishers as usize,
        topics: args.topics as usize,
        window: args.window as usize,
        rate: args.rate,
        size: args.size as usize,
        feed_pad: args.feed_pad,
        raw: args.raw,
        raw_self: args.raw_self,
        duration: args.duration,
        warmup: args.warmup,
        drain: args.drain,
        connect_timeout: args.connect_timeout,
        compression: args.compression,
        server_pid: args.server_pid,
        sub_target: args.sub_url.as_deref().map(url::parse).transpose()?,
        extra_pids: args.extra_pid.clone(),
        progress: !args.json,
    };
    let out = fanout::run(&cfg)?;
    let summary = fanout::report::Summary {
        url: &args.url,
        cfg: &cfg,
        out: &out,
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.human());
    }
    Ok(if out.deliveries.measured == 0 || summary.errors() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn soak_cmd(args: &SoakArgs) -> Result<ExitCode, String> {
    if args.duration.is_zero() {
        return Err("--duration must be greater than 0".into());
    }
    check_nofile(u64::from(args.connections))?;
    let cfg = soak::Config {
        target: url::parse(&args.url)?,
        connections: args.connections as usize,
        publishers: args.publishers as usize,
        topics: args.topics as usize,
        rate: args.rate,
        size: args.size as usize,
        churn: args.churn,
        duration: args.duration,
        warmup: args.warmup,
        drain: args.drain,
        connect_timeout: args.connect_timeout,
        settle: args.settle,
        server_pid: args.server_pid,
        max_rss_slope: args.max_rss_slope,
        progress: !args.json,
    };
    let out = soak::run(&cfg)?;
    let summary = soak::report::Summary {
        url: &args.url,
        cfg: &cfg,
        out: &out,
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        print!("{}", summary.human());
    }
    Ok(if summary.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
