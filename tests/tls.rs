//! TLS (`SSL_CERT`, `SSL_KEY`) on both backends, with independent clients: Python's `websockets`
//! over the `ssl` module (echo, HTTP routes, `POST /publish` to a wss subscriber, a connection that
//! lives across a certificate reload), `openssl s_client` (protocol versions, ALPN, refused
//! versions and suites, the refusal alert), and a rustls client for what the others cannot see
//! (the `close_notify` after the WebSocket close of the drain and of the idle timeout). Also the
//! start-up errors (exit 2 naming the variable). Certificates are made by `openssl` per test.
//!
//! The Python interpreter is `WSD_TEST_PYTHON` or `target/pyenv/bin/python` (scripts/test makes it
//! with `websockets`); without one the Python checks are skipped with a note, except under
//! `WSD_REQUIRE_URING=1` (CI), where they fail.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use wsd::app::AppKind;
use wsd::io::Backend;
use wsd::server::Server;

/// A fresh directory for one test's certificates.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsd-tls-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Key formats `SSL_KEY` accepts.
#[derive(Clone, Copy, Debug)]
enum KeyFormat {
    /// `-----BEGIN PRIVATE KEY-----` (EC P-256).
    Pkcs8,
    /// `-----BEGIN EC PRIVATE KEY-----`.
    Sec1,
    /// `-----BEGIN RSA PRIVATE KEY-----` (RSA 2048).
    Pkcs1,
}

/// A self-signed certificate for 127.0.0.1 and localhost, made by `openssl`: (cert, key).
fn make_cert(dir: &Path, stem: &str, format: KeyFormat) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    // CA:FALSE: webpki (rustls's verifier) refuses a CA certificate as a server's own.
    let newkey: &[&str] = match format {
        KeyFormat::Pkcs1 => &["-newkey", "rsa:2048"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    };
    let out = run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(newkey)
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={stem}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(out.status.success(), "openssl req: {out:?}");
    let convert: Option<&[&str]> = match format {
        KeyFormat::Pkcs8 => None,
        KeyFormat::Sec1 => Some(&["ec"]),
        KeyFormat::Pkcs1 => Some(&["rsa", "-traditional"]),
    };
    if let Some(args) = convert {
        let out = run(Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(&key)
            .arg("-out")
            .arg(&key));
        assert!(out.status.success(), "openssl convert: {out:?}");
    }
    let head = std::fs::read_to_string(&key).expect("key");
    let want = match format {
        KeyFormat::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
        KeyFormat::Sec1 => "-----BEGIN EC PRIVATE KEY-----",
        KeyFormat::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
    };
    assert!(head.starts_with(want), "{format:?}: {head}");
    (cert, key)
}

fn start_tls(backend: Backend, cert: &Path, key: &Path, app: AppKind) -> Server {
    start(backend, |c| {
        c.ssl_cert = Some(cert.to_owned());
        c.ssl_key = Some(key.to_owned());
        c.app = app;
    })
}

/// The Python interpreter with `websockets`, or `None` (with a note) outside CI.
fn python() -> Option<PathBuf> {
    let path = match std::env::var_os("WSD_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"),
    };
    let works = Command::new(&path)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(path);
    }
    let why = format!(
        "no Python with websockets at {} (scripts/test creates it)",
        path.display()
    );
    if std::env::var("WSD_REQUIRE_URING").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("note: skipping the Python TLS clients: {why}");
    None
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls_clients/wss_client.py")
}

/// Runs the Python client to completion; returns its stdout (panics with its stderr on failure).
fn py_client(py: &Path, addr: SocketAddr, ca: &Path, mode: &str) -> String {
    let out = run(Command::new(py)
        .arg(client_script())
        .arg(format!("wss://{addr}/ws"))
        .arg(ca)
        .arg(mode));
    assert!(
        out.status.success(),
        "python client {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a short Python snippet with `argv[1..]` = `args`; returns stdout.
fn py_snippet(py: &Path, code: &str, args: &[&str]) -> String {
    let out = run(Command::new(py).arg("-c").arg(code).args(args));
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SHA-256 of a PEM certificate's DER, as the Python client prints it.
fn fingerprint(cert: &Path) -> String {
    let out = run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(cert));
    assert!(out.status.success());
    sha256_hex(&out.stdout)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl dgst");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let out = child.wait_with_output().expect("dgst");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `openssl s_client` against `addr` with `args`; returns (handshake succeeded, stdout+stderr).
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-ign_eof")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    // A request, so a successful handshake also proves the HTTP layer answers over TLS.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("HTTP/1.1 200 OK");
    (ok, text)
}

#[test]
fn python_websockets_echo_over_wss_with_every_key_format() {
    let Some(py) = python() else { return };
    let dir = scratch("echo");
    for (i, format) in [KeyFormat::Pkcs8, KeyFormat::Sec1, KeyFormat::Pkcs1]
        .into_iter()
        .enumerate()
    {
        let (cert, key) = make_cert(&dir, &format!("k{i}"), format);
        for backend in backends() {
            let server = start_tls(backend, &cert, &key, AppKind::Echo);
            let out = py_client(&py, server.local_addr(), &cert, "echo");
            let fp = fingerprint(&cert);
            assert_eq!(
                out.trim(),
                format!("ok TLSv1.3 http/1.1 {fp}"),
                "[{backend}] {format:?}"
            );
        }
    }
}

#[test]
fn openssl_sees_tls13_tls12_alpn_and_no_weak_protocol_or_suite() {
    let dir = scratch("versions");
    let (cert, key) = make_cert(&dir, "ec", KeyFormat::Pkcs8);
    let (rsa_cert, rsa_key) = make_cert(&dir, "rsa", KeyFormat::Pkcs1);
    for backend in backends() {
        let server = start_tls(backend, &cert, &key, AppKind::Echo);
        let addr = server.local_addr();
        let rsa_server = start_tls(backend, &rsa_cert, &rsa_key, AppKind::Echo);
        let rsa_addr = rsa_server.local_addr();
        let (ok, text) = s_client(addr, &["-tls1_3", "-alpn", "http/1.1"]);
        assert!(ok, "[{backend}] TLS 1.3: {text}");
        assert!(text.contains("New, TLSv1.3"), "[{backend}] {text}");
        assert!(
            text.contains("ALPN protocol: http/1.1"),
            "[{backend}] {text}"
        );
        let (ok, text) = s_client(addr, &["-tls1_2", "-alpn", "h2,http/1.1"]);
        assert!(ok, "[{backend}] TLS 1.2: {text}");
        assert!(text.contains("New, TLSv1.2"), "[{backend}] {text}");
        assert!(
            text.contains("ALPN protocol: http/1.1"),
            "[{backend}] {text}"
        );
        // The server's preference wins over OpenSSL's (AES-256 first): AES-128-GCM.
        assert!(
            text.contains("ECDHE-ECDSA-AES128-GCM-SHA256"),
            "[{backend}] {text}"
        );
        let (ok, text) = s_client(addr, &["-tls1_3"]);
        assert!(ok, "[{backend}] TLS 1.3: {text}");
        assert!(
            text.contains("TLS_AES_128_GCM_SHA256"),
            "[{backend}] {text}"
        );
        // Every other suite is still accepted from a client that offers only it.
        for (version, flag, suite) in [
            ("-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"),
            ("-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"),
            ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),
            ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ] {
            let (ok, text) = s_client(addr, &[version, flag, suite]);
            assert!(ok, "[{backend}] {suite}: {text}");
            assert!(text.contains(suite), "[{backend}] {suite}: {text}");
        }
        // No ALPN at all is served (curl and old clients).
        let (ok, text) = s_client(addr, &["-tls1_3"]);
        assert!(ok, "[{backend}] no ALPN: {text}");
        // Only another protocol: refused (RFC 7301's no_application_protocol).
        let (ok, text) = s_client(addr, &["-alpn", "h2"]);
        assert!(!ok, "[{backend}] h2-only ALPN accepted: {text}");
        assert!(
            text.contains("no application protocol"),
            "[{backend}] {text}"
        );
        // TLS 1.0 and 1.1 refused even when the client would go down to them.
        for old in ["-tls1", "-tls1_1"] {
            for a in [addr, rsa_addr] {
                let (ok, text) = s_client(a, &[old, "-cipher", "DEFAULT@SECLEVEL=0"]);
                assert!(!ok, "[{backend}] {old} accepted: {text}");
                assert!(
                    text.contains("alert protocol version") || text.contains("handshake failure"),
                    "[{backend}] {old}: {text}"
                );
            }
        }
        // TLS 1.2 suites without forward secrecy or AEAD: refused, on both key types.
        for weak in [
            "AES128-SHA",
            "AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES128-SHA",
            "ECDHE-RSA-AES128-SHA",
            "ECDHE-RSA-AES256-SHA384",
            "DHE-RSA-AES128-GCM-SHA256",
            "DES-CBC3-SHA",
        ] {
            for a in [addr, rsa_addr] {
                let (ok, text) =
                    s_client(a, &["-tls1_2", "-cipher", &format!("{weak}@SECLEVEL=0")]);
                assert!(!ok, "[{backend}] {weak} accepted: {text}");
            }
        }
        // The RSA certificate with a strong suite works.
        let (ok, text) = s_client(
            rsa_addr,
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
        );
        assert!(ok, "[{backend}] RSA TLS 1.2: {text}");
    }
}

#[test]
fn plaintext_and_garbage_on_a_tls_port_get_an_alert_and_a_close() {
    let dir = scratch("garbage");
    let (cert, key) = make_cert(&dir, "g", KeyFormat::Pkcs8);
    for backend in backends() {
        let server = start_tls(backend, &cert, &key, AppKind::Echo);
        let addr = server.local_addr();
        for junk in [
            &b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
            &[0u8; 64][..],
        ] {
            let mut s = tcp(addr);
            s.write_all(junk).expect("write");
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            assert!(
                got.first() == Some(&0x15),
                "[{backend}] expected a TLS alert record, got {got:?}"
            );
        }
        // The server still serves.
        let (ok, text) = s_client(addr, &["-tls1_3"]);
        assert!(ok, "[{backend}] {text}");
    }
}

#[test]
fn http_routes_metrics_and_publish_work_over_tls() {
    let Some(py) = python() else { return };
    let dir = scratch("routes");
    let (cert, key) = make_cert(&dir, "r", KeyFormat::Pkcs8);
    const GET: &str = r#"
import ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[1])
for path in sys.argv[3:]:
    try:
        r = urllib.request.urlopen(f"https://{sys.argv[2]}{path}", context=ctx, timeout=10)
        print(path, r.status, r.read().decode()[:60].replace("\n", " "))
    except urllib.error.HTTPError as e:
        print(path, e.code)
"#;
    const POST: &str = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
req = urllib.request.Request(f"https://{sys.argv[2]}/publish", data=sys.argv[3].encode(), method="POST")
print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())
"#;
    for backend in backends() {
        let server = start_tls(backend, &cert, &key, AppKind::Pubsub);
        let addr = server.local_addr().to_string();
        let ca = cert.to_str().expect("utf-8 path");
        let out = py_snippet(&py, GET, &[ca, &addr, "/health", "/metrics", "/nope"]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("/health 200 {\"status\":\"ok\""),
            "[{backend}] {out}"
        );
        assert!(
            lines[1].starts_with("/metrics 200 # HELP"),
            "[{backend}] {out}"
        );
        assert_eq!(lines[2], "/nope 404", "[{backend}] {out}");
        // A wss subscriber gets what POST /publish (over https) publishes.
        let mut sub = Command::new(&py)
            .arg(client_script())
            .arg(format!("wss://{addr}/ws"))
            .arg(&cert)
            .arg("pubsub")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("subscriber");
        let mut lines = BufReader::new(sub.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first, "subscribed", "[{backend}]");
        let out = py_snippet(&py, POST, &[ca, &addr, r#"{"topic":"t","data":{"n":42}}"#]);
        assert_eq!(out.trim(), r#"{"accepted":1}"#, "[{backend}]");
        let msg = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(msg, r#"message {"n": 42}"#, "[{backend}]");
        let status = sub.wait().expect("wait");
        assert!(status.success(), "[{backend}] subscriber failed");
    }
}

#[test]
fn admission_refuses_a_tls_client_with_an_alert() {
    let dir = scratch("admission");
    let (cert, key) = make_cert(&dir, "a", KeyFormat::Pkcs8);
    for backend in backends() {
        let server = start(backend, |c| {
            c.ssl_cert = Some(cert.clone());
            c.ssl_key = Some(key.clone());
            // A per-address limit: it refuses at once (a process-wide one makes clients wait).
            c.max_connections_per_ip = 1;
        });
        let addr = server.local_addr();
        let _held = tcp(addr);
        wait_admitted(&server, 1);
        let (ok, text) = s_client(addr, &["-tls1_3"]);
        assert!(!ok, "[{backend}] {text}");
        assert!(text.contains("alert internal error"), "[{backend}] {text}");
    }
}

fn wait_admitted(server: &Server, n: usize) {
    let stats = server.worker_stats();
    let ok = poll(Duration::from_secs(5), || {
        let open: usize = stats
            .iter()
            .map(|w| w.connections.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        (open >= n).then_some(())
    });
    assert!(ok.is_some(), "connections never reached {n}");
}

// --- rustls client: close_notify after the WebSocket close --------------------------------------

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn rustls_connect(addr: SocketAddr, cert: &Path) -> tungstenite::WebSocket<TlsStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert).expect("cert");
    roots.add(der).expect("root");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let tcp = tcp(addr);
    let stream = rustls::StreamOwned::new(conn, tcp);
    let (ws, _) = tungstenite::client(format!("wss://localhost:{}/ws", addr.port()), stream)
        .expect("wss handshake");
    ws
}

/// Reads until the close frame, answers it, and checks the TLS stream then ends with
/// `close_notify` (a clean `Ok(0)`; rustls reports an EOF without it as `UnexpectedEof`).
fn expect_close_then_close_notify(mut ws: tungstenite::WebSocket<TlsStream>, ctx: &str) -> u16 {
    let code = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                break frame.map(|f| u16::from(f.code)).unwrap_or(0);
            }
            Ok(_) => continue,
            Err(e) => panic!("{ctx}: {e}"),
        }
    };
    let _ = ws.flush();
    let mut stream = ws.into_inner();
    let mut rest = Vec::new();
    let result = stream.read_to_end(&mut rest);
    assert!(
        result.is_ok(),
        "{ctx}: no close_notify before the EOF: {result:?}"
    );
    code
}

#[test]
fn drain_and_idle_timeout_end_with_close_notify_after_the_close_frame() {
    let dir = scratch("closenotify");
    let (cert, key) = make_cert(&dir, "c", KeyFormat::Pkcs8);
    for backend in backends() {
        let server = start(backend, |c| {
            c.ssl_cert = Some(cert.clone());
            c.ssl_key = Some(key.clone());
            c.idle_timeout = 2;
            c.send_pings = false;
        });
        let addr = server.local_addr();
        let mut ws = rustls_connect(addr, &cert);
        ws.send(tungstenite::Message::text("x")).expect("send");
        assert_eq!(ws.read().expect("echo"), tungstenite::Message::text("x"));
        ws.get_mut()
            .get_mut()
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("timeout");
        let code = expect_close_then_close_notify(ws, &format!("[{backend}] idle"));
        assert_eq!(code, 1001, "[{backend}] idle timeout close code");

        let ws = rustls_connect(addr, &cert);
        let stopper = server.stop_handle();
        let waiter = std::thread::spawn(move || server.wait());
        stopper.stop();
        let code = expect_close_then_close_notify(ws, &format!("[{backend}] drain"));
        assert_eq!(code, 1001, "[{backend}] drain close code");
        waiter.join().expect("server stopped");
    }
}

// --- the binary: start-up errors and SIGHUP ------------------------------------------------------

#[test]
fn bad_tls_settings_exit_2_naming_the_variable() {
    let dir = scratch("exit2");
    let (cert, key) = make_cert(&dir, "a", KeyFormat::Pkcs8);
    let (_cert_b, key_b) = make_cert(&dir, "b", KeyFormat::Sec1);
    let missing = dir.join("missing.pem");
    let cases: Vec<(Vec<(&str, &Path)>, &str)> = vec![
        (vec![("SSL_CERT", &cert)], "SSL_KEY"),
        (vec![("SSL_KEY", &key)], "SSL_CERT"),
        (
            vec![("SSL_CERT", &missing), ("SSL_KEY", &key)],
            "invalid SSL_CERT",
        ),
        (
            vec![("SSL_CERT", &cert), ("SSL_KEY", &missing)],
            "invalid SSL_KEY",
        ),
        (
            vec![("SSL_CERT", &cert), ("SSL_KEY", &key_b)],
            "invalid SSL_KEY",
        ),
        (
            vec![("SSL_CERT", &key), ("SSL_KEY", &key)],
            "invalid SSL_CERT",
        ),
        (
            vec![
                ("SSL_CERT", &cert),
                ("SSL_KEY", &key),
                ("SSL_CLIENT_CA", &missing),
            ],
            "invalid SSL_CLIENT_CA",
        ),
    ];
    for (vars, want) in cases {
        let mut cmd = wsd_command();
        cmd.env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("WSD_IO", "epoll");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("wsd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("wsd: "))
            .unwrap_or_else(|| panic!("{vars:?}: no wsd: line in {stderr}"));
        assert!(line.contains(want), "{vars:?}: {line}");
    }
}

#[test]
fn sighup_reloads_the_certificate_and_established_clients_keep_working() {
    let Some(py) = python() else { return };
    for backend in backends() {
        let dir = scratch(&format!("reload-{backend}"));
        let (cert, key) = make_cert(&dir, "live", KeyFormat::Pkcs8);
        let (old_copy, _) = (dir.join("old.crt"), ());
        std::fs::copy(&cert, &old_copy).expect("copy");
        let port = free_port();
        let child = wsd_command()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env(
                "WSD_IO",
                match backend {
                    Backend::Epoll => "epoll",
                    Backend::Uring => "uring",
                },
            )
            .env("WSD_APP", "echo")
            .env("CLUSTER_WORKERS", "1")
            .env("LOG_FORMAT", "json")
            .env("SSL_CERT", &cert)
            .env("SSL_KEY", &key)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("wsd");
        let mut guard = Guard(child);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        assert!(
            poll(Duration::from_secs(10), || TcpStream::connect(addr).ok()).is_some(),
            "[{backend}] wsd did not listen"
        );
        // A client connected before the reload.
        let mut held = Command::new(&py)
            .arg(client_script())
            .arg(format!("wss://{addr}/ws"))
            .arg(&old_copy)
            .arg("hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("held client");
        let mut held_out = BufReader::new(held.stdout.take().expect("stdout")).lines();
        let ready = held_out.next().and_then(Result::ok).unwrap_or_default();
        let old_fp = fingerprint(&old_copy);
        assert_eq!(
            ready,
            format!("ready TLSv1.3 http/1.1 {old_fp}"),
            "[{backend}]"
        );

        // A new certificate and key in place, then SIGHUP.
        let (new_cert, new_key) = make_cert(&dir, "next", KeyFormat::Sec1);
        std::fs::copy(&new_cert, &cert).expect("copy");
        std::fs::copy(&new_key, &key).expect("copy");
        let new_fp = fingerprint(&new_cert);
        hup(&guard);
        let seen = poll(Duration::from_secs(10), || {
            let out = Command::new(&py)
                .arg(client_script())
                .arg(format!("wss://{addr}/ws"))
                .arg(&new_cert)
                .arg("echo")
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(&new_fp).then_some(text)
        });
        assert!(
            seen.is_some(),
            "[{backend}] no new client saw the new certificate"
        );

        // The old client's connection still works, on its old certificate.
        let stdin = held.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("go");
        let again = held_out.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            again,
            format!("again ok TLSv1.3 http/1.1 {old_fp}"),
            "[{backend}]"
        );
        assert!(held.wait().expect("held").success(), "[{backend}]");

        // A bad file: the reload fails with a log line, the current certificate stays.
        std::fs::write(&key, "not a key").expect("write");
        hup(&guard);
        std::thread::sleep(Duration::from_millis(300));
        let out = py_client(&py, addr, &new_cert, "echo");
        assert!(out.contains(&new_fp), "[{backend}] {out}");
        assert!(
            guard.0.try_wait().expect("wait").is_none(),
            "[{backend}] wsd exited"
        );
        terminate(&mut guard);
        let mut log = String::new();
        guard
            .0
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut log)
            .expect("log");
        assert!(
            log.contains("TLS certificate reloaded"),
            "[{backend}] {log}"
        );
        assert!(
            log.contains("TLS reload failed") && log.contains("SSL_KEY"),
            "[{backend}] {log}"
        );
    }
}

fn hup(guard: &Guard) {
    let status = Command::new("kill")
        .args(["-HUP", &guard.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Stops the child with SIGTERM and waits for it.
fn terminate(guard: &mut Guard) {
    let _ = Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status();
    let _ = guard.0.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn many_simultaneous_handshakes_all_complete() {
    // The worker takes one handshake step per loop turn and queues the rest: every one of them
    // must still complete, in well under the handshake timeout.
    let dir = scratch("storm");
    let (cert, key) = make_cert(&dir, "s", KeyFormat::Pkcs8);
    for backend in backends() {
        let server = start_tls(backend, &cert, &key, AppKind::Echo);
        let addr = server.local_addr();
        let started = Instant::now();
        let clients: Vec<_> = (0..64)
            .map(|i| {
                let cert = cert.clone();
                std::thread::spawn(move || {
                    let mut ws = rustls_connect(addr, &cert);
                    let msg = format!("client {i}");
                    ws.send(tungstenite::Message::text(msg.clone()))
                        .expect("send");
                    assert_eq!(ws.read().expect("echo"), tungstenite::Message::text(msg));
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client");
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "[{backend}] 64 handshakes took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let Some(py) = python() else { return };
    let dir = scratch("mtls");
    let (cert, key) = make_cert(&dir, "server", KeyFormat::Pkcs8);
    // A client CA and a client certificate it signed; another self-signed client certificate.
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.crt");
    let ok = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=test client CA"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    assert!(ok.status.success(), "{ok:?}");
    let client_key = dir.join("client.key");
    let client_csr = dir.join("client.csr");
    let client = dir.join("client.crt");
    let ok = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", "/CN=alice/O=Example"])
        .arg("-keyout")
        .arg(&client_key)
        .arg("-out")
        .arg(&client_csr));
    assert!(ok.status.success(), "{ok:?}");
    let ext = dir.join("client.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    let ok = run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&client_csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&client));
    assert!(ok.status.success(), "{ok:?}");
    let (stranger, stranger_key) = make_cert(&dir, "stranger", KeyFormat::Pkcs8);
    const CLIENT: &str = r#"
import asyncio, ssl, sys, websockets
async def main(url, ca, cert, key):
    ctx = ssl.create_default_context(cafile=ca)
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    try:
        async with websockets.connect(url, ssl=ctx, open_timeout=10) as ws:
            await ws.send("hi")
            print("echo", await ws.recv())
    except Exception as e:
        print("refused", type(e).__name__)
asyncio.run(main(*sys.argv[1:]))
"#;
    for backend in backends() {
        let server = start(backend, |c| {
            c.ssl_cert = Some(cert.clone());
            c.ssl_key = Some(key.clone());
            c.ssl_client_ca = Some(ca.clone());
        });
        let url = format!("wss://{}/ws", server.local_addr());
        let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
        let with = py_snippet(
            &py,
            CLIENT,
            &[&url, &s(&cert), &s(&client), &s(&client_key)],
        );
        assert_eq!(with.trim(), "echo hi", "[{backend}]");
        let without = py_snippet(&py, CLIENT, &[&url, &s(&cert), "-", "-"]);
        assert!(without.starts_with("refused"), "[{backend}] {without}");
        let other = py_snippet(
            &py,
            CLIENT,
            &[&url, &s(&cert), &s(&stranger), &s(&stranger_key)],
        );
        assert!(other.starts_with("refused"), "[{backend}] {other}");
    }
}

#[test]
fn sslyze_finds_no_weak_protocol_or_suite() {
    let Some(py) = python() else { return };
    let has_sslyze = Command::new(&py)
        .args(["-c", "import sslyze"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_sslyze {
        assert_ne!(
            std::env::var("WSD_REQUIRE_URING").as_deref(),
            Ok("1"),
            "no sslyze in {} (scripts/test installs it)",
            py.display()
        );
        eprintln!("note: skipping the sslyze scan: no sslyze");
        return;
    }
    const SUMMARY: &str = r#"
import json, sys
r = json.load(open(sys.argv[1]))["server_scan_results"][0]["scan_result"]
for k, v in r.items():
    res = v.get("result") if isinstance(v, dict) else None
    if res and "accepted_cipher_suites" in res:
        print(k, " ".join(c["cipher_suite"]["name"] for c in res["accepted_cipher_suites"]))
"#;
    let dir = scratch("sslyze");
    let (cert, key) = make_cert(&dir, "ec", KeyFormat::Pkcs8);
    let (rsa_cert, rsa_key) = make_cert(&dir, "rsa", KeyFormat::Pkcs1);
    for backend in backends() {
        for (cert, key) in [(&cert, &key), (&rsa_cert, &rsa_key)] {
            let server = start_tls(backend, cert, key, AppKind::Echo);
            let json = dir.join(format!("scan-{backend}.json"));
            let out = run(Command::new(&py)
                .args(["-m", "sslyze"])
                .arg(server.local_addr().to_string())
                .args([
                    "--sslv2",
                    "--sslv3",
                    "--tlsv1",
                    "--tlsv1_1",
                    "--tlsv1_2",
                    "--tlsv1_3",
                ])
                .arg(format!("--json_out={}", json.display())));
            assert!(out.status.success(), "[{backend}] sslyze: {out:?}");
            let summary = py_snippet(&py, SUMMARY, &[json.to_str().expect("utf-8")]);
            let mut seen = 0;
            for line in summary.lines() {
                let mut words = line.split_whitespace();
                let scan = words.next().unwrap_or_default();
                let suites: Vec<&str> = words.collect();
                seen += 1;
                match scan {
                    "tls_1_3_cipher_suites" => assert!(!suites.is_empty(), "[{backend}] {line}"),
                    "tls_1_2_cipher_suites" => {
                        assert!(!suites.is_empty(), "[{backend}] {line}");
                        for s in suites {
                            assert!(
                                s.starts_with("TLS_ECDHE_")
                                    && (s.contains("_GCM_") || s.contains("CHACHA20_POLY1305")),
                                "[{backend}] weak TLS 1.2 suite {s}"
                            );
                        }
                    }
                    _ => assert!(suites.is_empty(), "[{backend}] {line}"),
                }
            }
            assert_eq!(seen, 6, "[{backend}] every protocol scanned: {summary}");
        }
    }
}
