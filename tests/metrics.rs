//! `GET /metrics` against a real server on two workers, on every backend: a known set of things
//! is done (WebSocket clients, messages, a subscription and publishes, refused handshakes,
//! closes), then the exposition is parsed with a real Prometheus parser, the Python
//! `prometheus_client` package's OpenMetrics `text_string_to_metric_families`, and every value
//! is checked against what the test did. Also `METRICS_KEY`.
//!
//! The parser runs in the interpreter named by `WSD_TEST_PYTHON` (scripts/test creates a venv in
//! `target/pyenv` and sets it), else `target/pyenv/bin/python` if present. Without one the
//! parsing test is skipped with a note, except under `WSD_REQUIRE_URING=1` (CI), where it fails.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pubsub::*;
use common::*;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use wsd::app::AppKind;
use wsd::config::{Config, Workers};
use wsd::io::Backend;
use wsd::metrics::{FAMILIES, PROCESS_FAMILIES};
use wsd::server::Server;

/// Families that are gauges (or the build info); every other one is a counter.
const GAUGES: [&str; 4] = [
    "wsd_connections",
    "wsd_queued_bytes",
    "wsd_topics",
    "wsd_subscriptions",
];

/// Parses stdin with the OpenMetrics parser and prints one line per family (`F name type help`)
/// and per sample (`S name labels value`), tab-separated, labels as sorted `k=v` pairs.
const PARSER: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print("F\t%s\t%s\t%s" % (f.name, f.type, f.documentation))
    for s in f.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("S\t%s\t%s\t%r" % (s.name, labels, float(s.value)))
"#;

/// A pub/sub server on two workers.
fn start_pubsub(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
    start(backend, |cfg| {
        cfg.app = AppKind::Pubsub;
        cfg.cluster_workers = Workers::Count(2);
        tweak(cfg);
    })
}

/// The Python interpreter with `prometheus_client`, or `None` (with a note) when there is none
/// and CI does not require it.
fn python() -> Option<PathBuf> {
    let path = match std::env::var_os("WSD_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"),
    };
    let works = Command::new(&path)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(path);
    }
    let why = format!(
        "no Python with prometheus_client at {} (scripts/test creates it; or set WSD_TEST_PYTHON)",
        path.display()
    );
    if std::env::var("WSD_REQUIRE_URING").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("note: skipping the Prometheus parser check: {why}");
    None
}

/// What the Python parser made of an exposition.
#[derive(Debug, Default)]
struct Parsed {
    /// Family name → (type, help).
    families: BTreeMap<String, (String, String)>,
    /// (sample name, labels) → value.
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Parsed {
    /// The sum of the samples called `name` whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        let mut found = false;
        let total: f64 = self
            .samples
            .iter()
            .filter(|((n, labels), _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| {
                found = true;
                *v
            })
            .sum();
        assert!(found, "no sample {name} with {filter:?}: {self:#?}");
        assert!(total.fract() == 0.0 && total >= 0.0, "{name}: {total}");
        total as u64
    }

    /// The sum of the samples called `name`, as a float (sums, process figures).
    fn float(&self, name: &str) -> f64 {
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| *v)
            .collect();
        assert!(!values.is_empty(), "no sample {name}: {self:#?}");
        values.iter().sum()
    }

    /// The value of `name` on each worker, by worker id.
    fn per_worker(&self, name: &str, workers: usize) -> Vec<u64> {
        (0..workers)
            .map(|w| self.sum(name, &[("worker", &w.to_string())]))
            .collect()
    }
}

/// Runs the OpenMetrics parser over `text`; a parse error fails the test.
fn parse(python: &PathBuf, text: &str) -> Parsed {
    let mut child = Command::new(python)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let text_owned = text.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(text_owned.as_bytes());
    });
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Prometheus parser did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let (out, err) = (out_t.join().expect("stdout"), err_t.join().expect("stderr"));
    assert!(
        status.success(),
        "the OpenMetrics parser refused /metrics: {err}\n--- exposition ---\n{text}"
    );
    let mut parsed = Parsed::default();
    for line in out.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["F", name, kind, help] => {
                parsed
                    .families
                    .insert(name.to_string(), (kind.to_string(), help.to_string()));
            }
            ["S", name, labels, value] => {
                let labels = labels
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}"));
                parsed.samples.insert((name.to_string(), labels), value);
            }
            _ => panic!("unexpected parser output line {line:?}"),
        }
    }
    parsed
}

/// `GET /metrics` with optional extra headers.
fn scrape_with(addr: SocketAddr, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, "GET", "/metrics", headers, b"")
}

/// `GET /metrics`, checked for 200 and the OpenMetrics content type; returns the body.
fn scrape(addr: SocketAddr) -> String {
    let resp = scrape_with(addr, &[]);
    assert_eq!(resp.status, 200, "/metrics: {resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some(wsd::metrics::CONTENT_TYPE),
        "{resp:?}"
    );
    resp.text()
}

/// Sends `request` on its own connection and checks the status of the answer.
fn refused(addr: SocketAddr, request: &str, status: u16) -> usize {
    let (resp, _) = http_exchange(addr, request.as_bytes());
    assert_eq!(resp.status, status, "answer to {request:?}: {resp:?}");
    request.len()
}

/// Closes a client with 1000 and reads until the server's answer ends the connection.
fn close_normally(client: &mut PsClient) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    client
        .ws
        .close(Some(frame))
        .unwrap_or_else(|e| panic!("{}: close: {e}", client.name));
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match client.ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("{}: waiting for the close answer: {e}", client.name),
        }
        assert!(
            Instant::now() < deadline,
            "{}: no close answer",
            client.name
        );
    }
}

/// Wire size of a masked client frame with a payload of `len` bytes (under 64 KiB).
fn client_frame_len(len: usize) -> usize {
    len + 4 + if len < 126 { 2 } else { 4 }
}

#[test]
fn metrics_count_what_happened() {
    let Some(python) = python() else {
        return;
    };
    for backend in backends() {
        let python = python.clone();
        off_thread(move || metrics_scenario(backend, &python));
    }
}

fn metrics_scenario(backend: Backend, python: &PathBuf) {
    let ctx = format!("[{backend}]");
    let server = start_pubsub(backend, |_| {});
    let addr = server.local_addr();
    let mut scrapes = 0u64;
    let scrape_parsed = |scrapes: &mut u64| {
        *scrapes += 1;
        parse(python, &scrape(addr))
    };

    // Four WebSocket clients; one will vanish without a close frame.
    let mut sub = PsClient::connect(addr, format!("{ctx} sub"));
    let mut publisher = PsClient::connect(addr, format!("{ctx} pub"));
    let mut pinger = PsClient::connect(addr, format!("{ctx} pinger"));
    let vanisher = ws_connect(addr);
    let mut sent_bytes = 0; // a lower bound of what the server received
    let mut received_bytes = 0; // a lower bound of what it sent

    // 1 SUBSCRIBE in, 1 ACK out.
    sub.subscribe("news");
    // 5 PUBLISH in (no correlationId: no ACK), 5 deliveries out.
    const PUBLISHES: usize = 5;
    for i in 0..PUBLISHES {
        let text = publish_envelope("news", &format!(r#"{{"n":{i}}}"#), None);
        sent_bytes += client_frame_len(text.len());
        publisher.publish("news", &format!(r#"{{"n":{i}}}"#));
    }
    for m in sub.messages(PUBLISHES, IO_TIMEOUT) {
        received_bytes += m.text.len() + 2;
    }
    // POST /publish with 2 messages: 2 more publishes and deliveries.
    let body = br#"[{"topic":"news","data":1},{"topic":"news","data":2}]"#;
    let resp = http_request(addr, "POST", "/publish", &[], body);
    assert_eq!(resp.status, 200, "{ctx} POST /publish: {resp:?}");
    assert_eq!(resp.text(), r#"{"accepted":2}"#, "{ctx}");
    sent_bytes += body.len();
    for m in sub.messages(2, IO_TIMEOUT) {
        received_bytes += m.text.len() + 2;
    }
    // 3 PING in, 3 PONG out.
    const PINGS: u64 = 3;
    for _ in 0..PINGS {
        pinger.ping();
    }
    // Three refused requests: 404, 426, 400.
    sent_bytes += refused(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404);
    sent_bytes += refused(
        addr,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n",
        426,
    );
    sent_bytes += refused(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 400);

    // While the clients are open: 4 WebSocket connections (the scrape leaves its own out).
    let mut last = None;
    let settled = poll(Duration::from_secs(20), || {
        let p = scrape_parsed(&mut scrapes);
        let ok = p.sum("wsd_connections", &[]) == 4;
        last = Some(p);
        ok.then_some(())
    });
    let p = last.expect("one scrape");
    assert!(
        settled.is_some(),
        "{ctx}: connections never settled at 4: {p:#?}"
    );
    assert_eq!(p.sum("wsd_topics", &[]), 1, "{ctx}");
    assert_eq!(p.sum("wsd_subscriptions", &[]), 1, "{ctx}");
    assert_eq!(
        p.sum("wsd_closes_total", &[]),
        0,
        "{ctx}: nothing closed yet"
    );

    // Close three clients with 1000; the fourth vanishes (1006).
    close_normally(&mut sub);
    close_normally(&mut publisher);
    close_normally(&mut pinger);
    drop(vanisher);

    let mut last = None;
    let settled = poll(Duration::from_secs(20), || {
        let p = scrape_parsed(&mut scrapes);
        let ok = p.sum("wsd_connections", &[]) == 0
            && p.sum("wsd_closes_total", &[]) == 4
            && p.sum("wsd_queued_bytes", &[]) == 0;
        last = Some(p);
        ok.then_some(())
    });
    let p = last.expect("one scrape");
    assert!(
        settled.is_some(),
        "{ctx}: never settled after the closes: {p:#?}"
    );

    // Every family, with its type and help, and a sample for each worker.
    for name in FAMILIES {
        let (kind, help) = p
            .families
            .get(name)
            .unwrap_or_else(|| panic!("{ctx}: no family {name}: {p:#?}"));
        let want = if name == "wsd_build" {
            "info"
        } else if name == "wsd_publish_delay_seconds" {
            "histogram"
        } else if GAUGES.contains(&name) {
            "gauge"
        } else {
            "counter"
        };
        assert_eq!(kind, want, "{ctx}: type of {name}");
        assert!(!help.is_empty(), "{ctx}: {name} has no help");
        if name != "wsd_build" {
            let sample = match want {
                "counter" => format!("{name}_total"),
                "histogram" => format!("{name}_count"),
                _ => name.to_owned(),
            };
            assert_eq!(p.per_worker(&sample, 2).len(), 2, "{ctx}: {sample}");
        }
    }
    for name in PROCESS_FAMILIES {
        let (kind, _) = p
            .families
            .get(name)
            .unwrap_or_else(|| panic!("{ctx}: no family {name}: {p:#?}"));
        let want = if name == "process_cpu_seconds" {
            "counter"
        } else {
            "gauge"
        };
        assert_eq!(kind, want, "{ctx}: type of {name}");
    }
    assert_eq!(
        p.families.len(),
        FAMILIES.len() + PROCESS_FAMILIES.len(),
        "{ctx}: {:?}",
        p.families
    );
    let io = backend.to_string();
    assert_eq!(
        p.sum(
            "wsd_build_info",
            &[("io", &io), ("version", env!("CARGO_PKG_VERSION"))]
        ),
        1,
        "{ctx}"
    );

    // The values: exactly what the test did.
    let v = |name: &str, filter: &[(&str, &str)]| p.sum(name, filter);
    let http = 3 + 1; // refused requests and POST /publish
    assert_eq!(
        v("wsd_connections_accepted_total", &[]),
        4 + http + scrapes,
        "{ctx}: accepted (4 WebSocket, {http} HTTP, {scrapes} scrapes)"
    );
    assert_eq!(
        v("wsd_connections", &[]),
        0,
        "{ctx}: only the scrape is open, and it does not count itself"
    );
    // One publish-delay observation per turn that delivered: at least one, at most one per
    // publication (7), each within the histogram's range.
    let turns = v("wsd_publish_delay_seconds_count", &[]);
    assert!(
        (1..=7).contains(&turns),
        "{ctx}: delay observations {turns}"
    );
    assert_eq!(
        v("wsd_publish_delay_seconds_bucket", &[("le", "+Inf")]),
        turns,
        "{ctx}"
    );
    let delay_sum = p.float("wsd_publish_delay_seconds_sum");
    assert!(
        delay_sum > 0.0 && delay_sum < turns as f64 * 5.0,
        "{ctx}: delay sum {delay_sum} s over {turns} turns"
    );
    // The process figures, read from /proc at the scrape: this test process is the server.
    let rss = p.float("process_resident_memory_bytes");
    assert!(rss > f64::from(1u32 << 20), "{ctx}: RSS {rss}");
    assert!(
        p.float("process_open_fds") >= 8.0,
        "{ctx}: listeners, rings, sockets"
    );
    assert!(p.float("process_cpu_seconds_total") > 0.0, "{ctx}");
    let start = p.float("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now && start > now - 3600.0,
        "{ctx}: start {start}, now {now}"
    );
    assert_eq!(
        v("wsd_messages_received_total", &[]),
        1 + 5 + PINGS,
        "{ctx}"
    );
    assert_eq!(
        v("wsd_messages_sent_total", &[]),
        1 + 5 + 2 + PINGS,
        "{ctx}: ACK, deliveries, PONGs"
    );
    assert_eq!(v("wsd_published_total", &[]), 7, "{ctx}");
    assert_eq!(v("wsd_delivered_total", &[]), 7, "{ctx}");
    for (status, n) in [("400", 1), ("404", 1), ("426", 1), ("401", 0), ("other", 0)] {
        assert_eq!(
            v("wsd_handshake_failures_total", &[("status", status)]),
            n,
            "{ctx}: handshake failures {status}"
        );
    }
    assert_eq!(v("wsd_handshake_failures_total", &[]), 3, "{ctx}");
    assert_eq!(v("wsd_closes_total", &[("code", "1000")]), 3, "{ctx}");
    assert_eq!(v("wsd_closes_total", &[("code", "1006")]), 1, "{ctx}");
    assert_eq!(v("wsd_closes_total", &[]), 4, "{ctx}");
    assert_eq!(v("wsd_topics", &[]), 0, "{ctx}");
    assert_eq!(v("wsd_subscriptions", &[]), 0, "{ctx}");
    assert_eq!(v("wsd_queued_bytes", &[]), 0, "{ctx}");
    for zero in [
        "wsd_connections_rejected_total",
        "wsd_idle_closes_total",
        "wsd_oversized_discarded_total",
        "wsd_dropped_messages_total",
        "wsd_backpressure_closes_total",
        "wsd_queued_bound_applied_total",
        "wsd_uring_cq_overflows_total",
    ] {
        assert_eq!(v(zero, &[]), 0, "{ctx}: {zero}");
    }
    let bytes_in = v("wsd_received_bytes_total", &[]);
    let bytes_out = v("wsd_sent_bytes_total", &[]);
    assert!(
        (sent_bytes as u64..1 << 20).contains(&bytes_in),
        "{ctx}: received bytes {bytes_in}, the test sent at least {sent_bytes}"
    );
    assert!(
        (received_bytes as u64..1 << 20).contains(&bytes_out),
        "{ctx}: sent bytes {bytes_out}, the test received at least {received_bytes}"
    );
    assert!(
        p.per_worker("wsd_loop_turns_total", 2)
            .iter()
            .all(|&t| t > 0),
        "{ctx}: both workers turn their loops"
    );
}

#[test]
fn metrics_key_is_required_when_set() {
    for backend in backends() {
        off_thread(move || {
            let ctx = format!("[{backend}]");
            let key = "m3trics-k3y";
            let server = start_pubsub(backend, |c| c.metrics_key = Some(key.parse().unwrap()));
            let addr = server.local_addr();
            let bearer = format!("Bearer {key}");
            for headers in [
                &[][..],
                &[("Authorization", "Bearer wrong")][..],
                &[("Authorization", "Bearer m3trics-k3")][..],
                &[("Authorization", key)][..],
            ] {
                let resp = scrape_with(addr, headers);
                assert_eq!(resp.status, 401, "{ctx} {headers:?}: {resp:?}");
                assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{ctx}");
                assert!(!resp.text().contains("# TYPE"), "{ctx}: no metrics leak");
            }
            let resp = scrape_with(addr, &[("Authorization", &bearer)]);
            assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
            let text = resp.text();
            assert!(text.ends_with("# EOF\n"), "{ctx}: {text}");
            // The four refusals were counted, the right key's scrape was not.
            let refusals: u64 = text
                .lines()
                .filter(|l| l.starts_with("wsd_handshake_failures_total{") && l.contains("\"401\""))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
                .sum();
            assert_eq!(refusals, 4, "{ctx}: {text}");
            // The key guards /metrics only.
            assert_eq!(health_info(addr).status, "ok", "{ctx}");
        });
    }
}

/// The value of the sample line `series` (name and labels as written) in an exposition.
fn sample_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn queued_bytes_follow_a_stuck_subscriber() {
    const BUDGET: usize = 1 << 20;
    for backend in backends() {
        off_thread(move || {
            let ctx = format!("[{backend}]");
            let server = start(backend, |c| {
                c.app = AppKind::Pubsub;
                c.max_payload = 4 << 20;
                c.max_backpressure = BUDGET;
            });
            let addr = server.local_addr();
            let mut stuck = PsClient::connect_small_rcvbuf(addr, format!("{ctx} stuck"), 4096);
            stuck.subscribe("flood");
            let item = format!(r#"{{"topic":"flood","data":"{}"}}"#, "x".repeat(4000));
            let body = format!("[{}]", vec![item; 300].join(","));
            let series = r#"wsd_queued_bytes{worker="0"}"#;
            // Publish until the kernel's buffers are full and the server holds a backlog (each
            // POST queues about the budget, 1 MiB; loopback buffers take a few MiB).
            let mut queued = 0;
            for _ in 0..40 {
                let resp = http_request(addr, "POST", "/publish", &[], body.as_bytes());
                assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
                let text = scrape(addr);
                queued = sample_value(&text, series).expect("queued bytes sample");
                if queued > 0 {
                    break;
                }
            }
            assert!(
                queued > 0 && queued <= (BUDGET + 8192) as u64,
                "{ctx}: a stuck subscriber holds up to the budget plus one message: {queued}"
            );
            drop(stuck);
            let drained = poll(Duration::from_secs(20), || {
                (sample_value(&scrape(addr), series) == Some(0)).then_some(())
            });
            assert!(
                drained.is_some(),
                "{ctx}: queued bytes stay after the close"
            );
        });
    }
}

/// `promtool` (Debian's `prometheus` package; scripts/test installs it), or `None` with a note
/// when it is missing and CI does not require it.
fn promtool() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("WSD_TEST_PROMTOOL").unwrap_or("promtool".into()));
    let works = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(path);
    }
    let why = format!(
        "no {} (scripts/test installs Debian's prometheus package)",
        path.display()
    );
    if std::env::var("WSD_REQUIRE_URING").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("note: skipping the promtool check: {why}");
    None
}

/// Runs `promtool check metrics` over `text`: its exit status and what it printed.
fn promtool_check(promtool: &PathBuf, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", promtool.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let owned = text.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(owned.as_bytes());
    });
    let out = child.wait_with_output().expect("promtool output");
    let _ = writer.join();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn plain_text_scrapers_get_the_classic_format_and_promtool_accepts_it() {
    let Some(promtool) = promtool() else {
        return;
    };
    // The check must be able to fail: promtool refuses the OpenMetrics answer (its `info`
    // type is not in the classic format).
    for backend in backends() {
        let promtool = promtool.clone();
        off_thread(move || {
            let ctx = format!("[{backend}]");
            let server = start_pubsub(backend, |_| {});
            let addr = server.local_addr();
            // Something in every family that moves: a delivery, so the histogram has a sample.
            let mut sub = PsClient::connect(addr, format!("{ctx} sub"));
            sub.subscribe("t");
            let resp = http_request(addr, "POST", "/publish", &[], br#"{"topic":"t","data":1}"#);
            assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
            sub.messages(1, IO_TIMEOUT);
            for accept in ["text/plain", "text/plain; version=0.0.4; q=0.9, */*; q=0.1"] {
                let resp = scrape_with(addr, &[("Accept", accept)]);
                assert_eq!(resp.status, 200, "{ctx} {accept}: {resp:?}");
                assert_eq!(
                    resp.header("content-type"),
                    Some(wsd::metrics::CLASSIC_CONTENT_TYPE),
                    "{ctx} {accept}"
                );
                let text = resp.text();
                assert!(!text.contains("# EOF"), "{ctx}: {text}");
                assert!(
                    text.contains("# TYPE wsd_connections_accepted_total counter\n"),
                    "{ctx}: {text}"
                );
                let (ok, said) = promtool_check(&promtool, &text);
                assert!(
                    ok,
                    "{ctx}: promtool refused the classic format: {said}\n{text}"
                );
                let count = sample_value(&text, r#"wsd_publish_delay_seconds_count{worker="0"}"#)
                    .unwrap_or(0)
                    + sample_value(&text, r#"wsd_publish_delay_seconds_count{worker="1"}"#)
                        .unwrap_or(0);
                assert!(count >= 1, "{ctx}: the delivery's turn observed: {text}");
            }
            // What Prometheus itself sends, and no Accept at all: OpenMetrics, which promtool's
            // classic parser refuses.
            for headers in [
                &[(
                    "Accept",
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                )][..],
                &[][..],
            ] {
                let resp = scrape_with(addr, headers);
                assert_eq!(
                    resp.header("content-type"),
                    Some(wsd::metrics::CONTENT_TYPE),
                    "{ctx} {headers:?}"
                );
                let (ok, said) = promtool_check(&promtool, &resp.text());
                assert!(!ok, "{ctx}: promtool took OpenMetrics as classic: {said}");
            }
        });
    }
}
