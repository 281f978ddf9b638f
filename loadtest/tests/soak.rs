//! The soak scenario, CI-sized, on both backends: a wsd pub/sub server in this process (so that
//! the load generator reads this process's descriptors and memory as the server's) and
//! `wsd-loadtest soak` against it: 1,000 connections for 20 s with subscribers reconnecting all
//! along. It must end by itself with nothing lost, duplicated or reordered beyond the drops the
//! server declares, and every descriptor the server opened for the clients closed again.
//! The 10-minute, 10,000-connection runs are in BENCHMARKS.md ("Soak").

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use wsd::app::AppKind;
use wsd::config::{Config, Workers};
use wsd::io::{Backend, IoMode};
use wsd::server::Server;

/// The backends to run: epoll always, io_uring when it can be set up (required with
/// `WSD_REQUIRE_URING=1`, as in CI).
fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Epoll];
    match wsd::uring::probe() {
        Ok(()) => list.push(Backend::Uring),
        Err(e) => {
            assert_ne!(
                std::env::var("WSD_REQUIRE_URING").as_deref(),
                Ok("1"),
                "WSD_REQUIRE_URING=1 but io_uring cannot be set up here: {e}"
            );
            eprintln!("note: io_uring unavailable ({e}); soak on epoll only");
        }
    }
    list
}

/// A number member of the flat JSON report.
fn number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in the report: {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{key} in the report: {e}: {json}"))
}

#[test]
fn soak_with_reconnect_churn_loses_nothing_and_leaks_no_descriptor() {
    wsd::sys::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    for backend in backends() {
        let config = Config {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            cluster_workers: Workers::Count(2),
            io: match backend {
                Backend::Epoll => IoMode::Epoll,
                Backend::Uring => IoMode::Uring,
            },
            app: AppKind::Pubsub,
            shutdown_timeout: 5,
            ..Config::default()
        };
        let server = Server::start(&config).expect("server starts");
        assert_eq!(server.backend(), backend);
        let url = format!("ws://{}/ws", server.local_addr());
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_wsd-loadtest"))
            .args(["soak", "--url", &url, "--json"])
            .args([
                "--connections",
                "1000",
                "--publishers",
                "10",
                "--topics",
                "10",
            ])
            .args(["--rate", "100", "--churn", "20", "--duration", "20"])
            .args(["--warmup", "5", "--drain", "15", "--settle", "15"])
            .args(["--server-pid", &std::process::id().to_string()])
            .output()
            .expect("wsd-loadtest runs");
        let json = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "[{backend}] soak took {:.0} s: {json}",
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "[{backend}] soak failed ({}): {json}\n{stderr}",
            out.status
        );
        // The exit status already says all of this; the report must agree, field by field.
        assert_eq!(number(&json, "connected"), 1000.0, "[{backend}] {json}");
        assert!(number(&json, "published") >= 1000.0, "[{backend}] {json}");
        assert!(number(&json, "reconnects") >= 100.0, "[{backend}] {json}");
        assert!(number(&json, "expected") > 100_000.0, "[{backend}] {json}");
        assert_eq!(number(&json, "errors"), 0.0, "[{backend}] {json}");
        assert!(
            number(&json, "lost") <= number(&json, "declared_drops"),
            "[{backend}] {json}"
        );
        assert_eq!(number(&json, "duplicates"), 0.0, "[{backend}] {json}");
        assert_eq!(number(&json, "reordered"), 0.0, "[{backend}] {json}");
        // The baseline is the lower of the two idle counts: a server just started may still hold a
        // few descriptors of its own start-up (seen on io_uring: 14 before, 11 after, 1011 connected).
        let idle_fds = number(&json, "fds_before").min(number(&json, "fds_after"));
        assert!(
            number(&json, "fds_connected") >= idle_fds + 1000.0,
            "[{backend}] the server's descriptors were not read: {json}"
        );
        assert!(
            number(&json, "fds_after") <= number(&json, "fds_before"),
            "[{backend}] descriptor leak: {json}"
        );
        server.shutdown();
    }
}
