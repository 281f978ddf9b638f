//! `ALLOWED_ORIGINS`: which browser origins may open a WebSocket.
//!
//! A list of exact origins (`https://app.example.com`, `http://localhost:8080`) and wildcard ones
//! (`https://*.example.com`: any subdomain, at any depth, but not `example.com` itself). Scheme and
//! host compare case-insensitively, the port exactly (an origin without a port matches only one
//! without). A request without `Origin` is not from a browser page and is not checked here.
#![forbid(unsafe_code)]

use std::fmt;

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// `scheme://host[:port]`, lower case.
    Exact(String),
    /// `scheme://*.suffix[:port]`: the scheme with `://`, the suffix with its leading dot, the
    /// port part (`""` or `":8443"`).
    Wildcard {
        scheme: String,
        suffix: String,
        port: String,
    },
}

/// The parsed `ALLOWED_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginList {
    allowed: Vec<Allowed>,
    text: String,
}

impl OriginList {
    /// Whether an `Origin` header value is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin.trim_ascii()) else {
            return false;
        };
        let origin = origin.to_ascii_lowercase();
        self.allowed.iter().any(|a| match a {
            Allowed::Exact(o) => *o == origin,
            Allowed::Wildcard {
                scheme,
                suffix,
                port,
            } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|rest| rest.strip_suffix(port.as_str()))
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|label| {
                    !label.is_empty() && !label.contains([':', '/']) && !label.ends_with('.')
                }),
        })
    }
}

impl fmt::Display for OriginList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for OriginList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        let mut shown = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            allowed.push(parse_one(item)?);
            shown.push(item.to_owned());
        }
        if allowed.is_empty() {
            return Err("must list at least one origin such as https://app.example.com".into());
        }
        Ok(OriginList {
            allowed,
            text: shown.join(","),
        })
    }
}

fn parse_one(item: &str) -> Result<Allowed, String> {
    let bad = |why: &str| Err(format!("'{item}': {why}"));
    if item == "null" {
        // What browsers send from sandboxed frames and file: pages; allowed only if listed.
        return Ok(Allowed::Exact("null".into()));
    }
    let lower = item.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return bad("an origin is scheme://host[:port], e.g. https://app.example.com");
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return bad("invalid scheme");
    }
    if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
        return bad("an origin has no path, query or user");
    }
    // An IPv6 host is bracketed: `http://[::1]:8080`.
    let split = match rest.find(']') {
        Some(end) => {
            let (h, p) = rest.split_at(end + 1);
            (
                h,
                if p.is_empty() {
                    None
                } else {
                    Some(p.strip_prefix(':').unwrap_or("x"))
                },
            )
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let (host, port) = match split {
        (h, Some(p)) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
                return bad("invalid port");
            }
            (h, format!(":{p}"))
        }
        (h, None) => (h, String::new()),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.*[]:".contains(&b))
    {
        return bad("invalid host");
    }
    match host.strip_prefix("*.") {
        Some(suffix) if !suffix.is_empty() && !suffix.contains('*') && suffix.contains('.') => {
            Ok(Allowed::Wildcard {
                scheme: format!("{scheme}://"),
                suffix: format!(".{suffix}"),
                port,
            })
        }
        Some(_) => bad("a wildcard needs a domain with a dot after it: https://*.example.com"),
        None if host.contains('*') => bad("`*` may only be the first label: https://*.example.com"),
        None => Ok(Allowed::Exact(lower)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> OriginList {
        s.parse().expect("valid list")
    }

    #[test]
    fn exact_origins() {
        let l = list("https://app.example.com, http://localhost:8080");
        assert!(l.allows(b"https://app.example.com"));
        assert!(l.allows(b"HTTPS://App.Example.com"));
        assert!(l.allows(b"http://localhost:8080"));
        assert!(!l.allows(b"http://localhost"));
        assert!(!l.allows(b"http://app.example.com"));
        assert!(!l.allows(b"https://app.example.com.evil.net"));
        assert!(!l.allows(b"https://evil.net"));
        assert!(!l.allows(b"null"));
        assert!(!l.allows(&[0xff, 0xfe]));
        assert_eq!(
            l.to_string(),
            "https://app.example.com,http://localhost:8080"
        );
    }

    #[test]
    fn wildcard_origins() {
        let l = list("https://*.example.com");
        assert!(l.allows(b"https://a.example.com"));
        assert!(l.allows(b"https://a.b.example.com"));
        assert!(!l.allows(b"https://example.com"));
        assert!(!l.allows(b"https://.example.com"));
        assert!(!l.allows(b"https://evilexample.com"));
        assert!(!l.allows(b"http://a.example.com"));
        assert!(!l.allows(b"https://a.example.com:8443"));
        assert!(!l.allows(b"https://a.example.com.evil.net"));
        assert!(!l.allows(b"https://x/.example.com"));
        let l = list("https://*.example.com:8443");
        assert!(l.allows(b"https://a.example.com:8443"));
        assert!(!l.allows(b"https://a.example.com"));
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in [
            "",
            " , ",
            "example.com",
            "https://",
            "https://a.com/path",
            "https://a.com:99999",
            "https://a.com:",
            "https://*",
            "https://*.com",
            "https://a.*.com",
            "https://u@a.com",
            "ht tp://a.com",
        ] {
            assert!(bad.parse::<OriginList>().is_err(), "{bad:?} accepted");
        }
        assert!(list("null").allows(b"null"));
        let l = list("http://[::1]:8080,http://[::1]");
        assert!(l.allows(b"http://[::1]:8080"));
        assert!(l.allows(b"http://[::1]"));
        assert!("http://[::1]x".parse::<OriginList>().is_err());
    }
}
