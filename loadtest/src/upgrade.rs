//! The client side of the opening handshake, shared by every scenario: a non-blocking TCP connect, sending the upgrade request, checking the 101 response.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType, connect, socket_with, sockopt};

use crate::url::WS_ACCEPT;

/// Largest upgrade response accepted.
const MAX_RESPONSE: usize = 16 * 1024;

/// Creates a non-blocking TCP socket (TCP_NODELAY) and starts connecting it to `addr`.
pub fn open_socket(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    sockopt::set_tcp_nodelay(&fd, true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
    match connect(&fd, &addr) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(fd),
        Err(e) => Err(format!("connect {addr}: {e}")),
    }
}

/// Checks that a non-blocking connect finished without error (call once the socket is writable).
pub fn connect_result(fd: &OwnedFd) -> Result<(), String> {
    match sockopt::socket_error(fd) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) | Err(e) => Err(format!("connect: {e}")),
    }
}

/// Progress of one connection's upgrade: request bytes sent, response bytes collected.
#[derive(Debug, Default)]
pub struct Upgrade {
    sent: usize,
    response: Vec<u8>,
    /// The server agreed to `permessage-deflate` (its messages may come compressed).
    pub deflate: bool,
}

impl Upgrade {
    /// Sends what remains of `request` until done or the socket is full.
    pub fn send_request(
        &mut self,
        sock: &mut crate::sock::Sock,
        request: &[u8],
    ) -> Result<(), String> {
        match sock.flush_tls() {
            Ok(()) | Err(Errno::AGAIN) => {}
            Err(e) => return Err(format!("sending TLS records: {e}")),
        }
        while let Some(rest) = request.get(self.sent..).filter(|r| !r.is_empty()) {
            match sock.send(rest) {
                Ok(n) => self.sent += n,
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(e) => return Err(format!("sending upgrade request: {e}")),
            }
        }
        Ok(())
    }

    /// Appends received bytes; once the response header is complete, checks it (status 101 and the
    /// right `Sec-WebSocket-Accept`) and returns where frames begin in `data`.
    pub fn on_response(&mut self, data: &[u8]) -> Result<Option<usize>, String> {
        let old = self.response.len();
        self.response.extend_from_slice(data);
        let search_from = old.saturating_sub(3);
        let Some(end) = self.response[search_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| search_from + p + 4)
        else {
            if self.response.len() > MAX_RESPONSE {
                return Err("upgrade response too long".into());
            }
            return Ok(None);
        };
        self.deflate = check_response(&self.response[..end])?;
        self.response = Vec::new();
        Ok(Some(end - old))
    }
}

/// Validates a complete upgrade response header; returns whether `permessage-deflate` was agreed
/// (then only without server context takeover, which is all the inflaters here can follow).
fn check_response(head: &[u8]) -> Result<bool, String> {
    let head = String::from_utf8_lossy(head);
    let status = head.lines().next().unwrap_or_default();
    let mut parts = status.split_ascii_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) || parts.next() != Some("101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    let accepted = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == WS_ACCEPT
        })
    });
    if !accepted {
        return Err("missing or wrong Sec-WebSocket-Accept".into());
    }
    let deflate = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, v)| v.to_ascii_lowercase())
    });
    match deflate {
        Some(v) if v.contains("permessage-deflate") => {
            if !v.contains("server_no_context_takeover") {
                return Err(format!(
                    "server agreed to permessage-deflate with context takeover ({v}): not supported"
                ));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn response_split_anywhere_then_frames() {
        let mut stream = OK.as_bytes().to_vec();
        stream.extend_from_slice(&[0x81, 0x00]);
        for at in 0..stream.len() {
            let mut u = Upgrade::default();
            let (a, b) = stream.split_at(at);
            let first = u.on_response(a).expect("valid so far");
            let rest_at = match first {
                Some(i) => {
                    assert_eq!(&a[i..], &stream[OK.len()..at], "split {at}");
                    continue;
                }
                None => u.on_response(b).expect("valid").expect("complete"),
            };
            assert_eq!(&b[rest_at..], &[0x81, 0x00], "split {at}");
        }
    }

    #[test]
    fn refusals() {
        let mut u = Upgrade::default();
        assert!(u.on_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        let mut u = Upgrade::default();
        let bad = OK.replace("s3pP", "xxxx");
        assert!(u.on_response(bad.as_bytes()).is_err());
        let mut u = Upgrade::default();
        assert!(u.on_response(&vec![b'a'; MAX_RESPONSE + 1]).is_err());
    }
}
