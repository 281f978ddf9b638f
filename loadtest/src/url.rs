//! Target parsing: a `ws://HOST:PORT/path` URL whose host must be a loopback address, and the upgrade request sent to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A parsed, loopback-only WebSocket target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header value (as written in the URL).
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `wss://`: TLS (`--ca` names the certificate to trust).
    pub tls: bool,
}

impl Target {
    /// The host part of the URL (no port, no brackets), the TLS server name.
    pub fn host_name(&self) -> String {
        let h = match self.host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => self.host.as_str(),
        };
        h.trim_start_matches('[').trim_end_matches(']').to_owned()
    }
}

/// The `Sec-WebSocket-Key` of every upgrade request (the RFC 6455 example nonce).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` a correct server answers to [`WS_KEY`].
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Parses `ws://HOST[:PORT][/path]` or `wss://...`; refuses names other than `localhost`, and any non-loopback address.
pub fn parse(url: &str) -> Result<Target, String> {
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(format!("{url}: user info is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| format!("{url}: unterminated [IPv6] host"))?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{url}: junk after ]")),
        };
        (&v6[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        None if tls => 443,
        None => 80,
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .map_err(|_| format!("{url}: host must be a loopback IP address or localhost"))?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{url}: refusing non-loopback address {ip} (only 127.0.0.0/8 and ::1)"
        ));
    }
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        host: authority.to_string(),
        path,
        tls,
    })
}

/// The HTTP/1.1 upgrade request for `t`, built once and sent on every connection; with
/// `compression`, it offers `permessage-deflate` as browsers do.
pub fn upgrade_request(t: &Target, compression: bool) -> Vec<u8> {
    let offer = if compression {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        t.path, t.host
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_only() {
        let t = parse("ws://127.0.0.1:9001/ws").expect("v4");
        assert_eq!(t.addr, "127.0.0.1:9001".parse().expect("addr"));
        assert_eq!(t.path, "/ws");
        assert_eq!(t.host, "127.0.0.1:9001");
        assert_eq!(
            parse("ws://127.8.9.10").expect("127/8").addr,
            "127.8.9.10:80".parse().expect("addr")
        );
        let t = parse("ws://[::1]:9002/a?b=c").expect("v6");
        assert_eq!(t.addr, "[::1]:9002".parse().expect("addr"));
        assert_eq!(t.path, "/a?b=c");
        assert_eq!(parse("ws://localhost:1?x").expect("localhost").path, "/?x");
        for bad in [
            "ws://10.0.0.1:9001/",
            "ws://192.168.1.1/",
            "ws://8.8.8.8:80/",
            "ws://example.com/",
            "ws://[::2]:1/",
            "ws://[::ffff:127.0.0.1]:1/",
            "ws://0.0.0.0:1/",
            "http://127.0.0.1/",
            "ws://127.0.0.1:99999/",
            "ws://u@127.0.0.1/",
        ] {
            assert!(parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn wss_is_tls_with_its_server_name() {
        let t = parse("wss://127.0.0.1:9001/ws").expect("wss");
        assert!(t.tls);
        assert_eq!(t.host_name(), "127.0.0.1");
        assert_eq!(parse("wss://localhost/").expect("443").addr.port(), 443);
        assert_eq!(parse("wss://[::1]:5/").expect("v6").host_name(), "::1");
        assert!(!parse("ws://127.0.0.1/").expect("ws").tls);
    }

    #[test]
    fn request_is_a_websocket_upgrade() {
        let t = parse("ws://127.0.0.1:9001/ws").expect("url");
        let r = String::from_utf8(upgrade_request(&t, false)).expect("ascii");
        let d = String::from_utf8(upgrade_request(&t, true)).expect("ascii");
        assert!(d.ends_with(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
        assert!(r.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
        assert!(r.ends_with("Sec-WebSocket-Version: 13\r\n\r\n"));
    }
}
