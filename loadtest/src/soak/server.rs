//! What the soak scenario reads of the server itself: its open descriptors (/proc/PID/fd), resident memory over time and the slope after warm-up, and the messages it declares dropped (its `/health`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/fd");
    let dir = std::fs::read_dir(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(dir.count() as u64)
}

/// Messages the server says it dropped for subscribers over their budget: the sum of every
/// worker's `dropped_newest` and `dropped_oldest` in `GET /health`.
pub fn declared_drops(addr: SocketAddr, host: &str) -> Result<u64, String> {
    let body = get(addr, host, "/health")?;
    Ok(sum_fields(&body, "\"dropped_newest\":") + sum_fields(&body, "\"dropped_oldest\":"))
}

fn get(addr: SocketAddr, host: &str, path: &str) -> Result<String, String> {
    let timeout = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("GET {path}: connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("GET {path}: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut resp = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut resp)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("GET {path}: no complete response"));
    };
    // /health answers 200 (and 503 while draining, which a soak run never sees).
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "GET {path}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_string())
}

/// The sum of the unsigned integers following each occurrence of `key` in `body`.
fn sum_fields(body: &str, key: &str) -> u64 {
    body.match_indices(key)
        .filter_map(|(i, _)| {
            let rest = &body[i + key.len()..];
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            rest[..n].parse::<u64>().ok()
        })
        .sum()
}

/// Least-squares slope of `(seconds, KiB)` samples, in KiB per minute; `None` under 3 samples.
pub fn slope_kib_per_min(samples: &[(f64, u64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mt = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mv = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(t, v) in samples {
        num += (t - mt) * (v as f64 - mv);
        den += (t - mt) * (t - mt);
    }
    (den > 0.0).then(|| num / den * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_summed_over_workers() {
        let body = r#"{"status":"ok","io":"uring","connections":3,"workers":[{"connections":1,"published":5,"delivered":9,"dropped_newest":2,"dropped_oldest":0},{"connections":2,"dropped_newest":40,"dropped_oldest":7}]}"#;
        assert_eq!(sum_fields(body, "\"dropped_newest\":"), 42);
        assert_eq!(sum_fields(body, "\"dropped_oldest\":"), 7);
        assert_eq!(sum_fields(body, "\"missing\":"), 0);
    }

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, u64)> = (0..10).map(|i| (i as f64, 1000 + 5 * i)).collect();
        let s = slope_kib_per_min(&line).expect("slope");
        assert!((s - 300.0).abs() < 1e-9, "{s}");
        let flat: Vec<(f64, u64)> = (0..10).map(|i| (i as f64, 1000 + i % 2)).collect();
        assert!(slope_kib_per_min(&flat).expect("slope").abs() < 10.0);
        assert_eq!(slope_kib_per_min(&line[..2]), None);
    }
}
