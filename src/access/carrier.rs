//! Where a token comes from in an upgrade request, and which subprotocol is answered.
//!
//! A token may come as `Authorization: Bearer <jwt>`, as the `token` query parameter, or as an
//! offered subprotocol `bearer.<jwt>` (browsers cannot set headers on a WebSocket: they offer
//! `["wsd.v1", "bearer.<jwt>"]`). The first found in that order is used. The answered subprotocol
//! is the first offered one wsd speaks ([`SUBPROTOCOL`]); never a `bearer.` one, so the token is
//! never echoed.
#![forbid(unsafe_code)]

use crate::proto::HttpRequest;

/// The subprotocol wsd speaks.
pub const SUBPROTOCOL: &str = "wsd.v1";
/// The prefix of a subprotocol that carries a token.
const BEARER_PROTOCOL: &[u8] = b"bearer.";

/// Which carrier a token came in (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer`.
    Header,
    /// `?token=`.
    Query,
    /// `Sec-WebSocket-Protocol: bearer.<jwt>`.
    Subprotocol,
}

/// The token of an upgrade request, if it has one (an empty one counts as none).
pub fn token<'a>(req: &HttpRequest<'a>) -> Option<(&'a str, Carrier)> {
    let from_header = req.header("Authorization").and_then(|v| {
        let v = v.trim_ascii();
        let space = v.iter().position(|&b| b == b' ')?;
        let (scheme, rest) = v.split_at(space);
        scheme
            .eq_ignore_ascii_case(b"Bearer")
            .then(|| rest.trim_ascii())
    });
    if let Some(t) = from_header.and_then(non_empty) {
        return Some((t, Carrier::Header));
    }
    if let Some(t) = offered(req)
        .find_map(|p| p.strip_prefix(BEARER_PROTOCOL))
        .and_then(non_empty)
    {
        return Some((t, Carrier::Subprotocol));
    }
    let from_query = req.query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(str::as_bytes)
    });
    from_query.and_then(non_empty).map(|t| (t, Carrier::Query))
}

/// The subprotocol to answer: the first offered one wsd speaks.
pub fn subprotocol(req: &HttpRequest<'_>) -> Option<&'static str> {
    offered(req)
        .any(|p| p == SUBPROTOCOL.as_bytes())
        .then_some(SUBPROTOCOL)
}

/// Every offered subprotocol, in order, across `Sec-WebSocket-Protocol` headers.
fn offered<'a>(req: &HttpRequest<'a>) -> impl Iterator<Item = &'a [u8]> {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

fn non_empty(t: &[u8]) -> Option<&str> {
    std::str::from_utf8(t).ok().filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(query: Option<&'a str>, headers: &'a [httparse::Header<'a>]) -> HttpRequest<'a> {
        HttpRequest {
            method: "GET",
            path: "/ws",
            query,
            headers,
            body: b"",
        }
    }

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn each_carrier() {
        let hs = [h("authorization", "bearer  abc.def.ghi ")];
        assert_eq!(
            token(&req(None, &hs)),
            Some(("abc.def.ghi", Carrier::Header))
        );
        let hs = [h("Sec-WebSocket-Protocol", "wsd.v1, bearer.abc.def.ghi")];
        let r = req(None, &hs);
        assert_eq!(token(&r), Some(("abc.def.ghi", Carrier::Subprotocol)));
        assert_eq!(subprotocol(&r), Some("wsd.v1"));
        let r = req(Some("a=1&token=abc.def&b=2"), &[]);
        assert_eq!(token(&r), Some(("abc.def", Carrier::Query)));
        assert_eq!(subprotocol(&r), None);
    }

    #[test]
    fn header_wins_and_empty_is_none() {
        let hs = [
            h("Sec-WebSocket-Protocol", "bearer.sub"),
            h("Authorization", "Bearer hdr"),
        ];
        assert_eq!(
            token(&req(Some("token=q"), &hs)),
            Some(("hdr", Carrier::Header))
        );
        let hs = [
            h("Authorization", "Basic dXNlcg=="),
            h("Sec-WebSocket-Protocol", "bearer."),
        ];
        assert_eq!(token(&req(Some("token="), &hs)), None);
        assert_eq!(token(&req(Some("xtoken=1"), &[])), None);
    }

    #[test]
    fn subprotocol_is_never_the_token() {
        let hs = [
            h("Sec-WebSocket-Protocol", "bearer.x, chat"),
            h("sec-websocket-protocol", "wsd.v1"),
        ];
        assert_eq!(subprotocol(&req(None, &hs)), Some("wsd.v1"));
        let hs = [h("Sec-WebSocket-Protocol", "bearer.wsd.v1")];
        assert_eq!(subprotocol(&req(None, &hs)), None);
        let hs = [h("Sec-WebSocket-Protocol", "WSD.V1")];
        assert_eq!(
            subprotocol(&req(None, &hs)),
            None,
            "subprotocols compare exactly"
        );
    }
}
