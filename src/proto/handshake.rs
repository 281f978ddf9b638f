//! The HTTP/1.1 opening handshake (RFC 6455 §4.2): parsing the request, checking the upgrade, and
//! writing the `101 Switching Protocols` response or an error response.
//!
//! The subprotocol answered, if any, is the handler's choice ([`Handler::upgrade`]). The only
//! extension is `permessage-deflate`, and only with compression on ([`Limits::compression`]): then
//! the `Sec-WebSocket-Extensions` headers are parsed (malformed ones are answered 400) and the first
//! acceptable offer is answered in the 101. With compression off they are ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::connection::{Handler, Limits, UpgradeDecision};
use super::deflate::Window;
use super::extensions::{self, Agreed};
use super::http::write_response;

/// The most request headers accepted; more is answered with 431.
pub const MAX_HEADERS: usize = 64;

/// The GUID that RFC 6455 appends to the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const TEXT: &str = "text/plain; charset=utf-8";

/// A parsed HTTP request head.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target up to any `?`.
    pub path: &'a str,
    /// What follows the `?`, if there is one.
    pub query: Option<&'a str>,
    /// All headers in the order received.
    pub headers: &'a [httparse::Header<'a>],
    /// The body (`Content-Length` bytes; empty without one). Never larger than `max_payload`.
    pub body: &'a [u8],
}

impl<'a> HttpRequest<'a> {
    /// The value of the first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether any header called `name` holds `token` in its comma-separated list (compared
    /// case-insensitively).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// What [`handle`] made of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request head is not complete yet.
    Partial,
    /// The upgrade was accepted and the 101 response written; the request took this many bytes, and
    /// whatever follows is already frames. With `Some`, `permessage-deflate` was agreed.
    Upgraded(usize, Option<Window>),
    /// The request head is complete but its body is not: wait until this many bytes (head +
    /// body) have arrived before parsing again.
    NeedBytes(usize),
    /// A complete response with this status code was written (an error, or the handler's answer
    /// to a plain HTTP request): close the connection once it is flushed.
    Responded(u16),
}

/// Parses the request head at the start of `buf` and answers it: a 101 (the caller then calls
/// [`Handler::opened`]), an error response, or whatever `handler` answers for a path other than
/// `limits.ws_path`.
pub fn handle<H: Handler>(
    buf: &[u8],
    limits: &Limits,
    out: &mut Vec<u8>,
    handler: &mut H,
) -> Outcome {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return too_large(out, "request headers too large\n");
            }
            return Outcome::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return too_large(out, "too many request headers\n");
        }
        Err(_) => return bad_request(out, "malformed HTTP request\n"),
    };
    if len > limits.max_header_bytes {
        return too_large(out, "request headers too large\n");
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return bad_request(out, "malformed HTTP request\n");
    };
    let target = origin_form(target);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut body: &[u8] = &[];
    if path != limits.ws_path {
        let body_len = match content_length(req.headers) {
            Ok(n) => n,
            Err(BodyError::Chunked) => {
                return respond(out, 411, "Length Required", "send a Content-Length body\n");
            }
            Err(BodyError::Invalid) => return bad_request(out, "invalid Content-Length\n"),
        };
        if body_len > limits.max_payload {
            return respond(
                out,
                413,
                "Payload Too Large",
                "request body over MAX_PAYLOAD\n",
            );
        }
        let Some(total) = len.checked_add(body_len) else {
            return respond(
                out,
                413,
                "Payload Too Large",
                "request body over MAX_PAYLOAD\n",
            );
        };
        match buf.get(len..total) {
            Some(b) => body = b,
            None => return Outcome::NeedBytes(total),
        }
    }
    let request = HttpRequest {
        method,
        path,
        query,
        headers: req.headers,
        body,
    };
    let start = out.len();
    let status = if path != limits.ws_path {
        handler.http_request(&request, out)
    } else {
        let agreed = match limits.compression {
            Some(_) => extensions::negotiate(
                req.headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
                    .map(|h| h.value),
            ),
            None => Ok(None),
        };
        match check_upgrade(&request, version) {
            Ok(_) if agreed.is_err() => {
                let reason = agreed.err().map_or("", |m| m.0);
                let body = format!("malformed Sec-WebSocket-Extensions header: {reason}\n");
                write_response(out, 400, "Bad Request", TEXT, &[], body.as_bytes())
            }
            Ok(key) => match handler.upgrade(&request, out) {
                UpgradeDecision::Accept { protocol } => {
                    let agreed = agreed.ok().flatten();
                    write_switching_protocols(out, key, protocol, agreed.as_ref());
                    let window = agreed.map(|a| {
                        if a.narrow() {
                            Window::Narrow
                        } else {
                            Window::Wide
                        }
                    });
                    return Outcome::Upgraded(len, window);
                }
                UpgradeDecision::Refused { status } => status,
            },
            Err(rejection) => rejection.write(out),
        }
    };
    if method == "HEAD" {
        strip_body(out, start);
    }
    Outcome::Responded(status)
}

/// Why a request's body length could not be read.
enum BodyError {
    /// `Transfer-Encoding` (chunked) bodies are not read; a length is required.
    Chunked,
    /// A `Content-Length` that is not a number, or two that disagree.
    Invalid,
}

/// The body length a request declares: 0 without `Content-Length`.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, BodyError> {
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(BodyError::Chunked);
        }
        if h.name.eq_ignore_ascii_case("Content-Length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(BodyError::Invalid);
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(BodyError::Invalid)?;
            if length.is_some_and(|l| l != n) {
                return Err(BodyError::Invalid);
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

/// Writes a plain-text error response.
fn respond(out: &mut Vec<u8>, status: u16, reason: &str, body: &str) -> Outcome {
    write_response(out, status, reason, TEXT, &[], body.as_bytes());
    Outcome::Responded(status)
}

/// The path-and-query part of a request target, also for the absolute form
/// (`GET ws://host/ws HTTP/1.1`), which RFC 9112 §3.2.2 says a server must accept.
fn origin_form(target: &str) -> &str {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !is_scheme {
        return target;
    }
    // The authority ends at the first '/', '?' or '#'; only a '/' starts a path we can serve.
    match rest.find(['/', '?', '#']) {
        Some(i) if rest.as_bytes().get(i) == Some(&b'/') => &rest[i..],
        _ => "/",
    }
}

/// A response to HEAD carries no content (RFC 9110 §9.3.2): cut everything after the head of the
/// response written from `start` on, whichever writer produced it.
fn strip_body(out: &mut Vec<u8>, start: usize) {
    if let Some(end) = out
        .get(start..)
        .and_then(|resp| resp.windows(4).position(|w| w == b"\r\n\r\n"))
    {
        out.truncate(start + end + 4);
    }
}

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rejection {
    status: u16,
    body: &'static str,
}

impl Rejection {
    const fn bad(body: &'static str) -> Self {
        Self { status: 400, body }
    }

    /// Writes the refusal; returns the status written.
    fn write(self, out: &mut Vec<u8>) -> u16 {
        match self.status {
            405 => write_response(
                out,
                405,
                "Method Not Allowed",
                TEXT,
                &[("Allow", "GET")],
                self.body.as_bytes(),
            ),
            426 => write_response(
                out,
                426,
                "Upgrade Required",
                TEXT,
                &[("Sec-WebSocket-Version", "13")],
                self.body.as_bytes(),
            ),
            _ => write_response(out, 400, "Bad Request", TEXT, &[], self.body.as_bytes()),
        }
    }
}

/// Checks an upgrade request on the WebSocket path; returns the client's key.
fn check_upgrade<'a>(req: &HttpRequest<'a>, version: u8) -> Result<&'a [u8], Rejection> {
    if req.method != "GET" {
        return Err(Rejection {
            status: 405,
            body: "method must be GET for a WebSocket upgrade\n",
        });
    }
    if version < 1 {
        return Err(Rejection::bad(
            "HTTP/1.1 is required for a WebSocket upgrade\n",
        ));
    }
    if req.header("Host").is_none() {
        return Err(Rejection::bad("missing Host header\n"));
    }
    if !req.has_token("Upgrade", "websocket") {
        return Err(Rejection::bad(
            "Upgrade header must contain \"websocket\"\n",
        ));
    }
    if !req.has_token("Connection", "upgrade") {
        return Err(Rejection::bad(
            "Connection header must contain \"Upgrade\"\n",
        ));
    }
    match req.header("Sec-WebSocket-Version").map(<[u8]>::trim_ascii) {
        None => return Err(Rejection::bad("missing Sec-WebSocket-Version header\n")),
        Some(b"13") => {}
        Some(_) => {
            return Err(Rejection {
                status: 426,
                body: "unsupported Sec-WebSocket-Version (only 13 is supported)\n",
            });
        }
    }
    let has_body = req.header("Transfer-Encoding").is_some()
        || req
            .header("Content-Length")
            .is_some_and(|v| v.trim_ascii() != b"0");
    if has_body {
        return Err(Rejection::bad("an upgrade request must not have a body\n"));
    }
    let keys = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Key"))
        .count();
    if keys > 1 {
        return Err(Rejection::bad("Sec-WebSocket-Key appears more than once\n"));
    }
    let Some(key) = req.header("Sec-WebSocket-Key").map(<[u8]>::trim_ascii) else {
        return Err(Rejection::bad("missing Sec-WebSocket-Key header\n"));
    };
    if !is_valid_key(key) {
        return Err(Rejection::bad(
            "Sec-WebSocket-Key must be base64 of 16 bytes\n",
        ));
    }
    Ok(key)
}

/// Whether `key` is the base64 encoding of exactly 16 bytes.
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// The `Sec-WebSocket-Accept` value for `key`: base64(SHA-1(key ++ GUID)), 28 bytes.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut accept = [0u8; 28];
    // 20 bytes always encode to exactly 28.
    let _ = STANDARD.encode_slice(sha.digest().bytes(), &mut accept);
    accept
}

fn write_switching_protocols(
    out: &mut Vec<u8>,
    key: &[u8],
    protocol: Option<&str>,
    deflate: Option<&Agreed>,
) {
    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    const PROTOCOL: &[u8] = b"Sec-WebSocket-Protocol: ";
    out.reserve(HEAD.len() + 28 + 4 + protocol.map_or(0, |p| PROTOCOL.len() + p.len()));
    out.extend_from_slice(HEAD);
    out.extend_from_slice(&accept_key(key));
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(agreed) = deflate {
        agreed.write_header(out);
    }
    out.extend_from_slice(b"\r\n");
}

fn bad_request(out: &mut Vec<u8>, body: &str) -> Outcome {
    write_response(out, 400, "Bad Request", TEXT, &[], body.as_bytes());
    Outcome::Responded(400)
}

fn too_large(out: &mut Vec<u8>, body: &str) -> Outcome {
    write_response(
        out,
        431,
        "Request Header Fields Too Large",
        TEXT,
        &[],
        body.as_bytes(),
    );
    Outcome::Responded(431)
}

#[cfg(test)]
mod tests {
    #[test]
    fn absolute_form_targets_become_origin_form() {
        use super::origin_form;
        assert_eq!(origin_form("/ws"), "/ws");
        assert_eq!(origin_form("/ws?next=http://x/y"), "/ws?next=http://x/y");
        assert_eq!(origin_form("ws://host:3000/ws?a=1"), "/ws?a=1");
        assert_eq!(origin_form("http://host"), "/");
        assert_eq!(origin_form("http://host?a=/b"), "/");
        assert_eq!(origin_form("://host/ws"), "://host/ws");
    }

    #[test]
    fn head_responses_lose_their_body_only() {
        let mut out = b"kept".to_vec();
        super::write_response(
            &mut out,
            405,
            "Method Not Allowed",
            "text/plain",
            &[],
            b"body\n",
        );
        super::strip_body(&mut out, 4);
        assert!(out.starts_with(b"keptHTTP/1.1 405"));
        assert!(out.ends_with(b"Content-Length: 5\r\nConnection: close\r\n\r\n"));
    }

    use super::*;
    use crate::proto::connection::AppClose;
    use crate::proto::frame::Message;

    struct NotFound(Vec<String>);

    impl Handler for NotFound {
        fn message(&mut self, _: Message<'_>, _: &mut Vec<u8>) -> Result<(), AppClose> {
            Ok(())
        }
        fn http_request(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> u16 {
            let ua = req.header("user-agent").unwrap_or_default();
            self.0.push(format!(
                "{} {} {:?} {}",
                req.method,
                req.path,
                req.query,
                String::from_utf8_lossy(ua)
            ));
            write_response(out, 404, "Not Found", TEXT, &[], b"not found\n");
            404
        }
    }

    fn limits() -> Limits {
        Limits {
            max_payload: 1 << 20,
            oversized: crate::proto::Oversized::Fail,
            ws_path: "/ws".into(),
            max_header_bytes: 8192,
            compression: None,
        }
    }

    fn run(req: &str) -> (Outcome, String, Vec<String>) {
        let mut out = Vec::new();
        let mut h = NotFound(Vec::new());
        let o = handle(req.as_bytes(), &limits(), &mut out, &mut h);
        (o, String::from_utf8(out).unwrap(), h.0)
    }

    /// RFC 6455 §1.3: the SHA-1 of the example key and GUID is b3 7a 4f 2c c0 62 4f 16 90 f6 46 06
    /// cf 38 59 45 b2 be c4 ea, whose base64 is the value below (also §1.3's example response).
    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_upgrade() {
        let req = "GET /ws?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
        let (o, out, _) = run(req);
        assert_eq!(o, Outcome::Upgraded(req.len(), None));
        assert_eq!(
            out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn token_lists_and_case() {
        let req = "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: h2c, WebSocket\r\n\
                   connection: keep-alive,  UPGRADE \r\nsec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\n\
                   sec-websocket-version: 13\r\n\r\n";
        assert_eq!(run(req).0, Outcome::Upgraded(req.len(), None));
        // Split over two Connection headers.
        let req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(run(req).0, Outcome::Upgraded(req.len(), None));
        // A substring is not a token.
        let req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocketx\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert!(run(req).1.starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn other_paths_go_to_the_handler() {
        let (o, out, seen) =
            run("GET /index.html?x=1&y HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n");
        assert_eq!(o, Outcome::Responded(404));
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert_eq!(seen, ["GET /index.html Some(\"x=1&y\") t"]);
        // Even an upgrade request.
        let (o, _, seen) = run(
            "GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(o, Outcome::Responded(404));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn the_handler_picks_the_subprotocol() {
        struct Picky;
        impl Handler for Picky {
            fn message(&mut self, _: Message<'_>, _: &mut Vec<u8>) -> Result<(), AppClose> {
                Ok(())
            }
            fn http_request(&mut self, _: &HttpRequest<'_>, _: &mut Vec<u8>) -> u16 {
                404
            }
            fn upgrade(&mut self, req: &HttpRequest<'_>, _: &mut Vec<u8>) -> UpgradeDecision {
                let offered = req.has_token("Sec-WebSocket-Protocol", "wsd.v1");
                UpgradeDecision::Accept {
                    protocol: offered.then_some("wsd.v1"),
                }
            }
        }
        let req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Protocol: chat, wsd.v1\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut out = Vec::new();
        let o = handle(req.as_bytes(), &limits(), &mut out, &mut Picky);
        assert_eq!(o, Outcome::Upgraded(req.len(), None));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: wsd.v1\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn upgrades_are_refused_when_the_handler_says_so() {
        struct Draining;
        impl Handler for Draining {
            fn message(&mut self, _: Message<'_>, _: &mut Vec<u8>) -> Result<(), AppClose> {
                Ok(())
            }
            fn http_request(&mut self, _: &HttpRequest<'_>, out: &mut Vec<u8>) -> u16 {
                write_response(out, 404, "Not Found", TEXT, &[], b"not found\n");
                404
            }
            fn upgrade(&mut self, req: &HttpRequest<'_>, out: &mut Vec<u8>) -> UpgradeDecision {
                assert_eq!(req.path, "/ws");
                let retry = [("Retry-After", "1")];
                let status = write_response(
                    out,
                    503,
                    "Service Unavailable",
                    TEXT,
                    &retry,
                    b"shutting down\n",
                );
                UpgradeDecision::Refused { status }
            }
        }
        let valid = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut out = Vec::new();
        let o = handle(valid.as_bytes(), &limits(), &mut out, &mut Draining);
        assert_eq!(o, Outcome::Responded(503));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nRetry-After: 1\r\n"), "{out}");
        // An invalid upgrade keeps its own answer.
        let mut out = Vec::new();
        let bad = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
        handle(bad.as_bytes(), &limits(), &mut out, &mut Draining);
        assert!(out.starts_with(b"HTTP/1.1 400 "));
    }

    #[test]
    fn partial_and_limits() {
        assert_eq!(run("GET /ws HTTP/1.1\r\nHost: x\r\n").0, Outcome::Partial);
        assert_eq!(run("").0, Outcome::Partial);
        let long = format!("GET /ws HTTP/1.1\r\nX-Long: {}\r\n", "a".repeat(8200));
        let (o, out, _) = run(&long);
        assert_eq!(o, Outcome::Responded(431));
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        // Complete but over the limit: the same answer as when it arrives in pieces.
        let (_, out, _) = run(&format!("{long}\r\n"));
        assert!(out.starts_with("HTTP/1.1 431 "));
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        let (_, out, _) = run(&format!("GET /ws HTTP/1.1\r\n{many}\r\n"));
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(out.ends_with("too many request headers\n"));
        let (_, out, _) = run("GARBAGE\0 / HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(out.ends_with("malformed HTTP request\n"));
    }
}
