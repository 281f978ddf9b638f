//! Bearer-key checks for the HTTP endpoints that take one (`POST /publish` with `PUBLISH_KEY`,
//! `GET /metrics` with `METRICS_KEY`).

use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::proto::HttpRequest;

/// Whether `req` may pass: no key is set, or its `Authorization` header is `Bearer <key>`.
///
/// The scheme is case-insensitive (RFC 9110 §11.1); the key is compared in constant time.
pub fn authorized(req: &HttpRequest<'_>, key: Option<&Secret>) -> bool {
    let Some(key) = key else {
        return true;
    };
    let given = req.header("Authorization").and_then(|v| {
        let v = v.trim_ascii();
        let space = v.iter().position(|&b| b == b' ')?;
        let (scheme, key) = v.split_at(space);
        scheme
            .eq_ignore_ascii_case(b"Bearer")
            .then(|| key.trim_ascii())
    });
    given.is_some_and(|g| bool::from(g.ct_eq(key.expose())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: Option<&str>, key: Option<&str>) -> bool {
        let headers: Vec<httparse::Header<'_>> = header
            .map(|v| httparse::Header {
                name: "authorization",
                value: v.as_bytes(),
            })
            .into_iter()
            .collect();
        let req = HttpRequest {
            method: "GET",
            path: "/metrics",
            query: None,
            headers: &headers,
            body: b"",
        };
        let key: Option<Secret> = key.map(|k| k.parse().expect("valid key"));
        authorized(&req, key.as_ref())
    }

    #[test]
    fn bearer_keys() {
        assert!(check(None, None));
        assert!(check(Some("Bearer anything"), None));
        assert!(check(Some("Bearer s3cret"), Some("s3cret")));
        assert!(check(Some("bearer   s3cret  "), Some("s3cret")));
        assert!(!check(None, Some("s3cret")));
        assert!(!check(Some("Bearer s3cre"), Some("s3cret")));
        assert!(!check(Some("Bearer s3cret2"), Some("s3cret")));
        assert!(!check(Some("Basic s3cret"), Some("s3cret")));
        assert!(!check(Some("s3cret"), Some("s3cret")));
        assert!(!check(Some("Bearer"), Some("s3cret")));
    }
}
