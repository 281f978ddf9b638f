//! Minimal HTTP/1.1 responses: for plain HTTP requests and for failed upgrades.

use std::io::Write as _;

/// Appends a complete HTTP/1.1 response with `Content-Type`, `Content-Length` and
/// `Connection: close`, then `extra_headers` in order, then `body`.
///
/// Header names and values are written as given; they must not contain CR or LF. Returns
/// `status`, so a route can answer with the response it wrote.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> u16 {
    let extra: usize = extra_headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    out.reserve(96 + reason.len() + content_type.len() + extra + body.len());
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    status
}

#[cfg(test)]
mod tests {
    use super::write_response;

    #[test]
    fn writes_a_complete_response() {
        let mut out = b"previous".to_vec();
        write_response(
            &mut out,
            405,
            "Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET")],
            b"only GET\n",
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "previousHTTP/1.1 405 Method Not Allowed\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 9\r\n\
             Connection: close\r\n\
             Allow: GET\r\n\
             \r\n\
             only GET\n"
        );
    }

    #[test]
    fn empty_body() {
        let mut out = Vec::new();
        write_response(&mut out, 204, "No Content", "text/plain", &[], b"");
        assert!(out.ends_with(b"Content-Length: 0\r\nConnection: close\r\n\r\n"));
        assert!(out.starts_with(b"HTTP/1.1 204 No Content\r\n"));
    }
}
