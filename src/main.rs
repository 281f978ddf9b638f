//! The `wsd` daemon: read the configuration, start the workers, stop cleanly on SIGTERM/SIGINT.

use std::io::IsTerminal;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info};
use wsd::config::Config;
use wsd::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, so that as little of the heap as possible is faulted in as huge pages.
    let thp = wsd::server::disable_transparent_huge_pages();
    let config = Config::from_args();
    let filter = tracing_subscriber::EnvFilter::new(format!("wsd={}", config.log_level.as_str()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    if let Err(e) = thp {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off");
    }
    match wsd::server::raise_nofile_limit() {
        Ok(limit) => info!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(&config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("wsd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = server.stop_handle();
    std::thread::spawn(move || {
        let mut received = signals.forever();
        if let Some(signal) = received.next() {
            info!(signal, "stopping: closing connections with 1001");
            stop.stop();
        }
        if received.next().is_some() {
            info!("second signal: exiting at once");
            std::process::exit(1);
        }
    });
    server.wait();
    info!("wsd stopped");
    ExitCode::SUCCESS
}
