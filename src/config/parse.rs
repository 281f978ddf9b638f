//! The value parsers behind every knob: each takes the text from a flag, the environment or the
//! file and returns the value or the one-line reason it is refused.

use std::net::IpAddr;
use std::str::FromStr;

use super::{
    MAX_MAX_CONNECTIONS, MAX_MAX_PAYLOAD, MAX_WORKERS, MaxConnections, MaxQueuedBytes, Workers,
};

pub(super) fn parse_port(s: &str) -> Result<u16, String> {
    u16::from_str(s.trim()).map_err(|_| "must be a number from 0 to 65535".to_owned())
}

pub(super) fn parse_host(s: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(s.trim()).map_err(|_| "must be an IPv4 or IPv6 address".to_owned())
}

pub(super) fn parse_workers(s: &str) -> Result<Workers, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Workers::Auto);
    }
    match usize::from_str(s) {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(Workers::Count(n)),
        _ => Err(format!(
            "must be `auto` or a number of workers from 1 to {MAX_WORKERS}"
        )),
    }
}

pub(super) fn parse_path(s: &str) -> Result<std::path::PathBuf, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("must be a file path".to_owned());
    }
    Ok(std::path::PathBuf::from(s))
}

pub(super) fn parse_ws_path(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/')
        && s.len() <= 1024
        && !s.contains(['?', '#'])
        && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be an absolute path like /ws (visible ASCII, no query)".to_owned())
    }
}

pub(super) fn parse_idle_timeout(s: &str) -> Result<u32, String> {
    match u32::from_str(s.trim()) {
        Ok(n) if n <= 86_400 => Ok(n),
        _ => Err("must be a number of seconds from 0 (off) to 86400".to_owned()),
    }
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

pub(super) fn parse_redis_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must be 1 to 64 bytes without spaces or control characters".to_owned());
    }
    Ok(s.to_owned())
}

pub(super) fn parse_max_subscriptions(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("must be a number of subscriptions from 1 to 1000000".to_owned()),
    }
}

pub(super) fn parse_max_backpressure(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if (1024..=MAX_MAX_PAYLOAD).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a number of bytes from 1024 to {MAX_MAX_PAYLOAD}"
        )),
    }
}

pub(super) fn parse_compression_min_size(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if n <= MAX_MAX_PAYLOAD => Ok(n),
        _ => Err(format!(
            "must be a number of bytes from 0 to {MAX_MAX_PAYLOAD}"
        )),
    }
}

pub(super) fn parse_write_delay_ms(s: &str) -> Result<u32, String> {
    match u32::from_str(s.trim()) {
        Ok(n) if n <= 1_000 => Ok(n),
        _ => Err("must be a number of milliseconds from 0 to 1000".to_owned()),
    }
}

/// Largest `SEND_BUFFER`: Linux caps `SO_SNDBUF` at `net.core.wmem_max` anyway.
pub const MAX_SEND_BUFFER: usize = 64 << 20;

pub(super) fn parse_send_buffer(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if n == 0 || (4096..=MAX_SEND_BUFFER).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be 0 (the kernel's autotuning) or a number of bytes from 4096 to {MAX_SEND_BUFFER}"
        )),
    }
}

/// Smallest and largest `MAX_QUEUED_BYTES` other than 0 (off).
pub const MIN_MAX_QUEUED_BYTES: u64 = 64 << 10;
pub const MAX_MAX_QUEUED_BYTES: u64 = 1 << 40;

pub(super) fn parse_max_queued_bytes(s: &str) -> Result<MaxQueuedBytes, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(MaxQueuedBytes::Auto);
    }
    match u64::from_str(s) {
        Ok(0) => Ok(MaxQueuedBytes::Off),
        Ok(n) if (MIN_MAX_QUEUED_BYTES..=MAX_MAX_QUEUED_BYTES).contains(&n) => {
            Ok(MaxQueuedBytes::Bytes(n))
        }
        _ => Err(format!(
            "must be `auto`, 0 (off) or a number of bytes from {MIN_MAX_QUEUED_BYTES} to {MAX_MAX_QUEUED_BYTES}"
        )),
    }
}

pub(super) fn parse_shutdown_timeout(s: &str) -> Result<u32, String> {
    match u32::from_str(s.trim()) {
        Ok(n) if n <= 3_600 => Ok(n),
        _ => Err("must be a number of seconds from 0 to 3600".to_owned()),
    }
}

pub(super) fn parse_max_connections(s: &str) -> Result<MaxConnections, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(MaxConnections::Auto);
    }
    match usize::from_str(s) {
        Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Ok(MaxConnections::Count(n)),
        _ => Err(format!(
            "must be `auto` or a number of connections from 1 to {MAX_MAX_CONNECTIONS}"
        )),
    }
}

pub(super) fn parse_per_ip(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if n <= MAX_MAX_CONNECTIONS => Ok(n),
        _ => Err(format!(
            "must be a number of connections from 0 (off) to {MAX_MAX_CONNECTIONS}"
        )),
    }
}

pub(super) fn parse_upgrade_per_ip(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if n <= MAX_MAX_CONNECTIONS => Ok(n),
        _ => Err(format!(
            "must be a number of handshakes from 0 (off) to {MAX_MAX_CONNECTIONS}"
        )),
    }
}

pub(super) fn parse_upgrade_max_concurrent(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a number of handshakes from 1 to {MAX_MAX_CONNECTIONS}"
        )),
    }
}

pub(super) fn parse_max_payload(s: &str) -> Result<usize, String> {
    match usize::from_str(s.trim()) {
        Ok(n) if (1..=MAX_MAX_PAYLOAD).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a number of bytes from 1 to {MAX_MAX_PAYLOAD}"
        )),
    }
}
