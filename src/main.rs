//! The `wsd` daemon: read the configuration (flags, environment, `--config` file), start the workers, stop cleanly on SIGTERM/SIGINT.

use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info};
use wsd::config::Config;
use wsd::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (config, warnings) = Config::from_args();
    wsd::logging::init(config.log_format, config.log_level);
    for warning in warnings {
        tracing::warn!("{warning}");
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
