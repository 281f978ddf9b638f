//! Helpers for the access-control tests: tokens made by PyJWT (tests/auth/tokens.py, in the
//! Python of `WSD_TEST_PYTHON` or `target/pyenv`), and pub/sub clients that present them.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

use super::pubsub::PsClient;
use super::{HttpResponse, IO_TIMEOUT, tcp};

/// The project directory (test keys and the token script are relative to it).
pub fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test key file's path, e.g. `key("rsa.pub")`.
pub fn key(name: &str) -> String {
    project()
        .join("tests/keys")
        .join(name)
        .display()
        .to_string()
}

/// The Python with PyJWT and cryptography; panics with how to get one (scripts/test makes it).
pub fn python() -> PathBuf {
    let path = match std::env::var_os("WSD_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => project().join("target/pyenv/bin/python"),
    };
    let ok = Command::new(&path)
        .args(["-c", "import jwt, cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no Python with PyJWT and cryptography at {} (scripts/test creates target/pyenv; or set WSD_TEST_PYTHON)",
        path.display()
    );
    path
}

/// Tokens for `specs` (JSON objects as tests/auth/tokens.py documents), in order.
pub fn tokens(specs: &[String]) -> Vec<String> {
    let mut child = Command::new(python())
        .arg(project().join("tests/auth/tokens.py"))
        .current_dir(project())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/auth/tokens.py");
    let input = format!("[{}]", specs.join(","));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write specs");
    let out = child.wait_with_output().expect("tokens.py");
    assert!(
        out.status.success(),
        "tokens.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let list = text.trim().trim_start_matches('[').trim_end_matches(']');
    list.split(',')
        .map(|t| t.trim().trim_matches('"').to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// One token.
pub fn token(spec: &str) -> String {
    tokens(&[spec.to_owned()]).remove(0)
}

/// A spec signed with `alg` by `key` (`"hs:<secret>"` or a key file) for `claims` (a JSON
/// object), expiring in `exp_in` seconds.
pub fn spec(alg: &str, key: &str, claims: &str, exp_in: i64) -> String {
    format!(r#"{{"alg":"{alg}","key":"{key}","claims":{claims},"exp_in":{exp_in}}}"#)
}

/// How a client presents its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer`.
    Header,
    /// `?token=`.
    Query,
    /// `Sec-WebSocket-Protocol: wsd.v1, bearer.<jwt>`, as a browser offers it.
    Subprotocol,
}

/// Every carrier.
pub const CARRIERS: [Carrier; 3] = [Carrier::Header, Carrier::Query, Carrier::Subprotocol];

/// Connects a pub/sub client presenting `token` (if any) through `carrier`, with extra headers;
/// `Err` is the HTTP status and body of a refused upgrade.
pub fn connect(
    addr: SocketAddr,
    name: &str,
    token: Option<&str>,
    carrier: Carrier,
    headers: &[(&str, &str)],
) -> Result<PsClient, (u16, String)> {
    let path = match (token, carrier) {
        (Some(t), Carrier::Query) => format!("/ws?token={t}"),
        _ => "/ws".to_owned(),
    };
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    let h = request.headers_mut();
    match (token, carrier) {
        (Some(t), Carrier::Header) => {
            h.insert("authorization", value(&format!("Bearer {t}")));
        }
        (Some(t), Carrier::Subprotocol) => {
            h.insert(
                "sec-websocket-protocol",
                value(&format!("wsd.v1, bearer.{t}")),
            );
        }
        _ => {}
    }
    for (k, v) in headers {
        h.append(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            value(v),
        );
    }
    let stream = tcp(addr);
    match tungstenite::client::client(request, stream) {
        Ok((ws, response)) => {
            if carrier == Carrier::Subprotocol && token.is_some() {
                let p = response.headers().get("sec-websocket-protocol");
                assert_eq!(
                    p.and_then(|v| v.to_str().ok()),
                    Some("wsd.v1"),
                    "{name}: the subprotocol answered"
                );
            }
            Ok(PsClient {
                ws,
                name: name.to_owned(),
                backlog: VecDeque::new(),
            })
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((r.status().as_u16(), body))
        }
        Err(e) => panic!("{name}: handshake failed: {e}"),
    }
}

fn value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).expect("header value")
}

/// Sends a raw upgrade request with `extra` header lines (each ending in CRLF) and reads the
/// whole answer head (and body, for a refusal).
pub fn raw_upgrade(addr: SocketAddr, target: &str, extra: &str) -> HttpResponse {
    let mut stream = tcp(addr);
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        super::SAMPLE_KEY
    );
    stream.write_all(req.as_bytes()).expect("send");
    let (mut head, mut rest) = super::read_head(&mut stream).expect("response head");
    if head.status == 101 {
        return head;
    }
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("a refusal has a Content-Length");
    while rest.len() < len {
        let mut chunk = [0u8; 4096];
        match std::io::Read::read(&mut stream, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
        }
    }
    rest.truncate(len);
    head.body = rest;
    head
}
