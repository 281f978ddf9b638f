//! `LOG_FORMAT=json`: the real binary, run briefly on every backend, writes only JSON objects to
//! stderr, with the documented fields on the start, worker-start and stop lines, and never a
//! key (`PUBLISH_KEY`, `METRICS_KEY`, `JWT_SECRET`, `Authorization` values), a token (from any
//! carrier, valid or not, or an `AUTH` message) or a message body, even at `LOG_LEVEL=debug`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pubsub::*;
use common::*;
use wsd::io::Backend;

const PUBLISH_KEY: &str = "pub-Secret-7f3a91";
const METRICS_KEY: &str = "met-Secret-c4d2e8";
const BODY_MARKER: &str = "body-Marker-5b6e02";
const JWT_SECRET: &str = "jwt-Secret-0e9d4c-long-enough-for-HS256";

/// Reads lines from `rx` until one contains `needle`; every line read is kept in `seen`.
fn line_with(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    needle: &str,
    within: Duration,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => panic!("no stderr line with {needle:?} in {within:?}; saw {seen:#?}"),
        }
    }
}

/// A field of a JSON object, as a string (numbers as written).
fn field(obj: &Json, key: &str) -> Option<String> {
    match obj.get(key)? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[test]
fn json_logs_are_objects_and_never_hold_secrets() {
    for backend in backends() {
        off_thread(move || json_run(backend));
    }
}

fn json_run(backend: Backend) {
    let ctx = format!("[{backend}]");
    let io = match backend {
        Backend::Uring => "uring",
        Backend::Epoll => "epoll",
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsd"));
    cmd.env_clear()
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("CLUSTER_WORKERS", "2")
        .env("WSD_IO", io)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .env("PUBLISH_KEY", PUBLISH_KEY)
        .env("METRICS_KEY", METRICS_KEY)
        .env("JWT_SECRET", JWT_SECRET)
        .env("AUTH_REQUIRED", "false")
        .env("ANON_SUBSCRIBE", ">")
        .env("ANON_PUBLISH", ">")
        .env("RATE_LIMIT", "100/10")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wsd");
    let stderr = child.stderr.take().expect("stderr");
    let mut guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let start = line_with(&rx, &mut seen, "wsd listening", Duration::from_secs(20));
    let start = parse_json(&start).unwrap_or_else(|e| panic!("{ctx}: {e}: {start}"));
    let addr: SocketAddr = field(&start, "addr")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{ctx}: no addr in {start:?}"));
    assert_eq!(field(&start, "workers").as_deref(), Some("2"), "{ctx}");
    assert_eq!(
        field(&start, "io").as_deref(),
        Some(backend.to_string().as_str()),
        "{ctx}"
    );
    assert_eq!(field(&start, "app").as_deref(), Some("pubsub"), "{ctx}");

    // Traffic that carries both keys and a message body.
    let mut client = PsClient::connect(addr, format!("{ctx} client"));
    client.subscribe("logs");
    client.publish("logs", &format!(r#""{BODY_MARKER}""#));
    assert!(
        client.messages(1, IO_TIMEOUT)[0]
            .data()
            .contains(BODY_MARKER)
    );
    let auth = format!("Bearer {PUBLISH_KEY}");
    let body = format!(r#"{{"topic":"logs","data":"{BODY_MARKER}"}}"#);
    let resp = http_request(
        addr,
        "POST",
        "/publish",
        &[("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
    let wrong = http_request(
        addr,
        "POST",
        "/publish",
        &[("Authorization", &format!("Bearer {METRICS_KEY}"))],
        body.as_bytes(),
    );
    assert_eq!(wrong.status, 401, "{ctx}: {wrong:?}");
    let auth = format!("Bearer {METRICS_KEY}");
    let resp = http_request(addr, "GET", "/metrics", &[("Authorization", &auth)], b"");
    assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
    drop(client);
    let tokens = common::auth::tokens(&[
        common::auth::spec(
            "HS256",
            &format!("hs:{JWT_SECRET}"),
            r#"{"sub":"logged"}"#,
            300,
        ),
        common::auth::spec(
            "HS256",
            &format!("hs:{JWT_SECRET}"),
            r#"{"sub":"logged"}"#,
            -300,
        ),
        common::auth::spec(
            "HS256",
            "hs:wrong-secret-but-32-bytes-long-xx",
            r#"{"sub":"x"}"#,
            300,
        ),
    ]);
    for carrier in common::auth::CARRIERS {
        let mut c =
            common::auth::connect(addr, &ctx, Some(&tokens[0]), carrier, &[]).expect("upgrade");
        let id = cid("auth");
        let auth = envelope(
            "AUTH",
            &format!(r#"{{"token":"{}"}}"#, tokens[0]),
            Some(&id),
        );
        assert_eq!(c.request(&auth, &id).kind, "ACK");
        let bad = envelope(
            "AUTH",
            &format!(r#"{{"token":"{}"}}"#, tokens[2]),
            Some(&id),
        );
        assert_eq!(c.request(&bad, &id).kind, "ERROR");
        for bad in &tokens[1..] {
            let refused = common::auth::connect(addr, &ctx, Some(bad), carrier, &[]).err();
            assert_eq!(refused.map(|e| e.0), Some(401), "{ctx}");
        }
    }

    let pid = guard.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "{ctx}: kill -TERM {pid}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "{ctx}: wsd did not stop in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{ctx}: exit status {status:?}");
    let _ = reader.join();
    seen.extend(rx.try_iter());

    let objects: Vec<Json> = seen
        .iter()
        .map(|line| {
            let obj = parse_json(line)
                .unwrap_or_else(|e| panic!("{ctx}: stderr line is not JSON ({e}): {line}"));
            for key in ["timestamp", "level", "message", "target"] {
                assert!(
                    field(&obj, key).is_some_and(|v| !v.is_empty()),
                    "{ctx}: no {key} in {line}"
                );
            }
            obj
        })
        .collect();
    let with_message = |m: &str| {
        objects
            .iter()
            .filter(|o| field(o, "message").as_deref() == Some(m))
            .count()
    };
    assert_eq!(with_message("wsd listening"), 1, "{ctx}: {seen:#?}");
    assert_eq!(with_message("worker started"), 2, "{ctx}: {seen:#?}");
    assert_eq!(with_message("wsd stopped"), 1, "{ctx}: {seen:#?}");
    let all = seen.join("\n");
    for secret in [PUBLISH_KEY, METRICS_KEY, BODY_MARKER, JWT_SECRET] {
        assert!(!all.contains(secret), "{ctx}: {secret} was logged:\n{all}");
    }
    for token in &tokens {
        // Any of its three parts (the header part is shared by many tokens: checked whole).
        assert!(
            !all.contains(token.as_str()),
            "{ctx}: a token was logged:\n{all}"
        );
        for part in token.split('.').skip(1) {
            assert!(
                !all.contains(part),
                "{ctx}: part of a token was logged:\n{all}"
            );
        }
    }
    assert!(
        all.contains("ALLOWED_ORIGINS is unset"),
        "{ctx}: the start-up warning about origins is missing:\n{all}"
    );
}
