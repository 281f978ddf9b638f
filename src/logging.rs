//! Log lines: the `tracing` subscriber behind `LOG_FORMAT` and `LOG_LEVEL`.
//!
//! `json` writes one object per line to stderr (`timestamp`, `level`, `message`, the event's
//! fields flattened beside them, `target`, `threadName`), for journald, Loki or Elasticsearch;
//! `pretty` writes one human-readable line per event, in colour on a terminal; `auto` picks
//! `pretty` when stderr is a terminal and `json` otherwise.
//!
//! What is logged: one line per start (address, backend, workers, application), per worker
//! start, per stop and per configuration warning at `info`/`warn`; per-connection lines only at
//! `debug`. Keys (`PUBLISH_KEY`, `METRICS_KEY`), `Authorization` headers and message bodies are
//! never logged.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// The format `format` stands for when stderr is (`terminal`) or is not a terminal.
pub fn resolve(format: LogFormat, terminal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if terminal => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// Installs the process-wide subscriber writing to stderr. Does nothing if one is installed.
pub fn init(format: LogFormat, level: LogLevel) {
    let terminal = std::io::stderr().is_terminal();
    let filter = EnvFilter::new(format!("wsd={}", level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An error means a subscriber is already installed (an embedding program's): keep it.
    let _ = match resolve(format, terminal) {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_thread_names(true)
            .try_init(),
        _ => builder.with_ansi(terminal).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_pretty_only_on_a_terminal() {
        assert_eq!(resolve(LogFormat::Auto, true), LogFormat::Pretty);
        assert_eq!(resolve(LogFormat::Auto, false), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Json, true), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Pretty, false), LogFormat::Pretty);
    }
}
