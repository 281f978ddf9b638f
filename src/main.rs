//! The `wsd` daemon: read the configuration (flags, environment, `--config` file), start the
//! workers, drain on SIGTERM/SIGINT, reload the TLS certificate on SIGHUP.
//!
//! Exit status: 0 after a drain (whether or not `SHUTDOWN_TIMEOUT` cut it short: the timeout is
//! the configured bound, and the end-of-drain log line counts what it dropped); 128 + the signal
//! number (130, 143) when a second signal ends the drain at once; 1 when the server cannot start,
//! or when a worker's event loop fails (the other workers drain first); 2 for an invalid setting
//! (including an unusable `SSL_CERT`, `SSL_KEY` or `SSL_CLIENT_CA`).

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};
use wsd::config::Config;
use wsd::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, so that as little of the heap as possible is faulted in as huge pages.
    let thp = wsd::sys::disable_transparent_huge_pages();
    let (config, warnings) = Config::from_args();
    wsd::logging::init(config.log_format, config.log_level);
    for warning in warnings {
        tracing::warn!("{warning}");
    }

    if let Err(e) = thp {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off");
    }
    match wsd::sys::raise_nofile_limit() {
        Ok(limit) => info!(limit, "open file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open file limit"),
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
        Err(e @ wsd::server::StartError::Tls(_)) => {
            // A bad setting, like any other: exit 2, naming the variable.
            eprintln!("wsd: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("wsd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = server.shared().tls.clone();
    match Signals::new([SIGHUP]) {
        Ok(mut hup) => {
            std::thread::spawn(move || {
                for _ in hup.forever() {
                    // New handshakes get the new certificate; established sessions keep theirs;
                    // a bad file leaves the current one in place. Without TLS: nothing to do.
                    match tls.as_ref().map(|t| t.reload()) {
                        None => info!("SIGHUP: no TLS configured, nothing to reload"),
                        Some(Ok(())) => info!("SIGHUP: TLS certificate reloaded"),
                        Some(Err(e)) => {
                            error!(error = %e, "SIGHUP: TLS reload failed, keeping the current certificate")
                        }
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot install the SIGHUP handler: no TLS reload"),
    }
    let stop = server.stop_handle();
    std::thread::spawn(move || {
        let mut received = signals.forever();
        if let Some(signal) = received.next() {
            stop.stop_because(signal_name(signal));
        }
        if let Some(signal) = received.next() {
            // The operator chose not to wait: what is still queued is lost, so the exit status
            // says the process was cut short, as a shell reports death by that signal (128 + n).
            warn!(
                signal = signal_name(signal),
                "second signal: exiting at once, dropping what is still queued"
            );
            std::process::exit(128 + signal);
        }
    });
    let shared = server.shared().clone();
    server.wait();
    if shared.failed.load(std::sync::atomic::Ordering::Acquire) {
        error!("wsd stopped: a worker's event loop failed (logged above)");
        return ExitCode::FAILURE;
    }
    info!("wsd stopped");
    ExitCode::SUCCESS
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}
