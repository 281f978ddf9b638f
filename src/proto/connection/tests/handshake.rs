//! The opening handshake: 101, every rejection status, plain HTTP, request size bounds.

use super::*;

/// Sends `request` (in one piece and byte by byte) and checks the response's status line, that
/// the body names the problem, and `Done`.
fn assert_rejected(request: &str, status_line: &str, body_has: &str, header: Option<&str>) {
    for chunked in [false, true] {
        let run = if chunked {
            drive(request.as_bytes().chunks(1), &limits(), false)
        } else {
            drive([request.as_bytes()], &limits(), false)
        };
        let out = String::from_utf8(run.out).unwrap();
        assert!(out.starts_with(status_line), "{request:?} got {out:?}");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let head = format!("{head}\r\n");
        assert!(body.contains(body_has), "{request:?} got {body:?}");
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        if let Some(header) = header {
            assert!(head.contains(&format!("\r\n{header}\r\n")), "{head}");
        }
        // Open until the answer, Done from then on (input after it is ignored).
        let done_at = run
            .statuses
            .iter()
            .position(|&s| s == Status::Done)
            .unwrap();
        assert!(run.statuses[..done_at].iter().all(|&s| s == Status::Open));
        assert!(run.statuses[done_at..].iter().all(|&s| s == Status::Done));
        assert!(!run.conn.is_open() && !run.conn.is_handshaking());
        assert!(run.recs.is_empty());
    }
}

/// An upgrade request with header `name` replaced by `line` (or removed when `line` is empty).
fn request_with(name: &str, line: &str) -> String {
    let mut req = String::new();
    for l in std::str::from_utf8(UPGRADE)
        .unwrap()
        .split_inclusive("\r\n")
    {
        if l.starts_with(name) {
            if !line.is_empty() {
                req.push_str(line);
                req.push_str("\r\n");
            }
        } else {
            req.push_str(l);
        }
    }
    req
}

#[test]
fn handshake_statuses() {
    // 101, in one piece and byte by byte.
    for chunk in [UPGRADE.len(), 1, 7] {
        let run = drive(UPGRADE.chunks(chunk), &limits(), false);
        assert_eq!(run.out, [SWITCHING, b"<opened>"].concat());
        assert!(run.statuses.iter().all(|&s| s == Status::Open));
        assert!(run.conn.is_open());
        assert_eq!(run.recs, [Rec::Opened]);
    }
    let bad = "HTTP/1.1 400 Bad Request\r\n";
    assert_rejected(
        &request_with("GET", "POST /ws HTTP/1.1"),
        "HTTP/1.1 405 Method Not Allowed\r\n",
        "GET",
        Some("Allow: GET"),
    );
    assert_rejected(
        &request_with("GET", "GET /ws HTTP/1.0"),
        bad,
        "HTTP/1.1",
        None,
    );
    assert_rejected(&request_with("Host", ""), bad, "Host", None);
    assert_rejected(&request_with("Upgrade", ""), bad, "Upgrade", None);
    assert_rejected(
        &request_with("Upgrade", "Upgrade: h2c"),
        bad,
        "Upgrade",
        None,
    );
    assert_rejected(
        &request_with("Connection", "Connection: keep-alive"),
        bad,
        "Connection",
        None,
    );
    assert_rejected(
        &request_with("Sec-WebSocket-Version", ""),
        bad,
        "Sec-WebSocket-Version",
        None,
    );
    assert_rejected(
        &request_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
        "HTTP/1.1 426 Upgrade Required\r\n",
        "Sec-WebSocket-Version",
        Some("Sec-WebSocket-Version: 13"),
    );
    assert_rejected(
        &request_with("Sec-WebSocket-Key", ""),
        bad,
        "Sec-WebSocket-Key",
        None,
    );
    for key in [
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",
        "dGhlIHNhbXBsZSBub25j!Q==",
        "c2hvcnQ=",
    ] {
        let line = format!("Sec-WebSocket-Key: {key}");
        assert_rejected(
            &request_with("Sec-WebSocket-Key", &line),
            bad,
            "Sec-WebSocket-Key",
            None,
        );
    }
    assert_rejected(
        "GET /ws HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        bad,
        "malformed",
        None,
    );
    assert_rejected("\x01\x02\x03\r\n\r\n", bad, "malformed", None);
    // 431: too long before the head is complete, and too many headers.
    let long = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n",
        "f".repeat(9000)
    );
    assert_rejected(
        &long,
        "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "too large",
        None,
    );
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /ws HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_rejected(
        &req,
        "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "too many",
        None,
    );
}

#[test]
fn request_line_without_end_is_bounded() {
    // No newline ever: still answered with 431 as soon as the limit is passed.
    let line = format!("GET /{}", "a".repeat(20_000));
    let run = drive(line.as_bytes().chunks(100), &limits(), false);
    let done_at = run
        .statuses
        .iter()
        .position(|&s| s == Status::Done)
        .unwrap();
    assert_eq!(done_at, 8192 / 100);
    assert!(run.out.starts_with(b"HTTP/1.1 431 "));
}

#[test]
fn plain_http_goes_to_the_handler() {
    let req = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
    for chunk in [req.len(), 1] {
        let run = drive(req.chunks(chunk), &limits(), false);
        assert_eq!(run.recs, [Rec::Http("GET /index.html".into())]);
        assert!(run.out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert_eq!(run.statuses.last(), Some(&Status::Done));
    }
    // Input after the response is ignored.
    let run = drive([&req[..], b"GET / HTTP/1.1\r\n\r\n"], &limits(), false);
    assert_eq!(run.statuses, [Status::Done, Status::Done]);
    assert_eq!(run.recs.len(), 1);
}

#[test]
fn nothing_is_allocated_until_needed() {
    let conn = Connection::new();
    assert!(conn.is_handshaking() && !conn.is_open());
    let State::Handshaking(buf, _) = &conn.state else {
        panic!()
    };
    assert_eq!(buf.capacity(), 0);
}

#[test]
fn request_bodies_are_read_whole_and_bounded() {
    let req = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    // In one piece, byte by byte, and with the body split from the head.
    for chunk in [req.len(), 1, req.len() - 11] {
        let run = drive(req.chunks(chunk), &limits(), false);
        assert_eq!(
            run.recs,
            [Rec::Http("POST /publish body=hello world".into())],
            "chunk {chunk}"
        );
        assert_eq!(run.statuses.last(), Some(&Status::Done));
        let before: Vec<_> = run.statuses.iter().rev().skip(1).collect();
        assert!(
            before.iter().all(|s| **s == Status::Open),
            "waits for the whole body"
        );
    }
    let mut small = limits();
    small.max_payload = 10;
    let run = drive([&req[..]], &small, false);
    assert!(
        run.out.starts_with(b"HTTP/1.1 413 Payload Too Large\r\n"),
        "{:?}",
        run.out
    );
    assert!(run.recs.is_empty());
    // The 413 comes from the head alone: no body byte needs to arrive.
    let head_only = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n";
    let run = drive([&head_only[..]], &limits(), false);
    assert!(
        run.out.starts_with(b"HTTP/1.1 413 "),
        "{:?}",
        String::from_utf8_lossy(&run.out)
    );
    assert_rejected(
        "POST /publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 411 Length Required\r\n",
        "Content-Length",
        None,
    );
    for bad in ["abc", "-1", "1 2", ""] {
        assert_rejected(
            &format!("POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n"),
            "HTTP/1.1 400 Bad Request\r\n",
            "Content-Length",
            None,
        );
    }
    assert_rejected(
        "POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 400 Bad Request\r\n",
        "Content-Length",
        None,
    );
}
