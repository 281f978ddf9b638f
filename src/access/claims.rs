//! What a verified token grants: its claims as sent, and the [`Identity`] a connection keeps.
#![forbid(unsafe_code)]

use std::sync::Arc;

use serde::Deserialize;

use super::pattern::{PatternSet, TemplateList};

/// Longest `sub` accepted, in bytes.
pub const MAX_SUB_LEN: usize = 256;
/// Largest `info` object accepted, in bytes of JSON.
pub const MAX_INFO_LEN: usize = 1024;

/// The claims wsd reads from a token (`exp`, `nbf`, `aud` and `iss` are checked by the verifier).
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// The identity.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Topic patterns the identity may subscribe to (absent: the server's `DEFAULT_SUBSCRIBE`).
    #[serde(default)]
    pub subscribe: Option<Vec<String>>,
    /// Topic patterns the identity may publish on (absent: the server's `DEFAULT_PUBLISH`).
    #[serde(default)]
    pub publish: Option<Vec<String>>,
    /// A small JSON object about the identity (kept for presence).
    #[serde(default)]
    pub info: Option<serde_json::Value>,
}

/// What a connection may subscribe to and publish on, bound to its identity.
#[derive(Debug, Clone)]
pub struct Rights {
    /// Topics it may subscribe to.
    pub subscribe: Arc<PatternSet>,
    /// Topics it may publish on.
    pub publish: Arc<PatternSet>,
}

impl Rights {
    /// Rights that allow everything.
    pub fn everything() -> Rights {
        let all = Arc::new(PatternSet::everything());
        Rights {
            subscribe: all.clone(),
            publish: all,
        }
    }
}

/// The server-wide pattern lists (`ANON_*`, `DEFAULT_*`), and the anonymous rights bound once.
#[derive(Debug, Clone)]
pub struct Policy {
    default_subscribe: TemplateList,
    default_publish: TemplateList,
    /// `DEFAULT_*` bound once when neither list uses `{sub}` (shared by every such connection).
    default_shared: Option<Rights>,
    anonymous: Rights,
}

impl Policy {
    /// The policy of the four lists.
    pub fn new(
        anon_subscribe: &TemplateList,
        anon_publish: &TemplateList,
        default_subscribe: TemplateList,
        default_publish: TemplateList,
    ) -> Policy {
        let default_shared =
            (!default_subscribe.uses_sub() && !default_publish.uses_sub()).then(|| Rights {
                subscribe: Arc::new(default_subscribe.bind(None)),
                publish: Arc::new(default_publish.bind(None)),
            });
        Policy {
            anonymous: Rights {
                subscribe: Arc::new(anon_subscribe.bind(None)),
                publish: Arc::new(anon_publish.bind(None)),
            },
            default_subscribe,
            default_publish,
            default_shared,
        }
    }

    /// The rights of a connection without a token.
    pub fn anonymous(&self) -> &Rights {
        &self.anonymous
    }
}

/// Why claims were refused (every reason is reported to the client as `invalid token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadClaims(pub String);

/// A verified identity as a connection holds it (shared between connections of one token).
#[derive(Debug)]
pub struct Identity {
    /// The `sub` claim.
    pub sub: Box<str>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// What it may do.
    pub rights: Rights,
    /// The `info` claim as compact JSON.
    pub info: Option<Box<str>>,
}

impl Identity {
    /// The identity of verified `claims`, with rights from its lists or the policy's defaults.
    pub fn new(claims: Claims, policy: &Policy) -> Result<Identity, BadClaims> {
        let sub = claims.sub;
        if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.chars().any(char::is_control) {
            return Err(BadClaims(format!(
                "sub must be 1 to {MAX_SUB_LEN} bytes without control characters"
            )));
        }
        let bind = |claimed: Option<Vec<String>>, default: &TemplateList| match claimed {
            Some(list) => TemplateList::parse(&list)
                .map(|l| Arc::new(l.bind(Some(&sub))))
                .map_err(|e| BadClaims(e.to_string())),
            None => Ok(Arc::new(default.bind(Some(&sub)))),
        };
        let rights = match (&policy.default_shared, &claims.subscribe, &claims.publish) {
            (Some(shared), None, None) => shared.clone(),
            _ => Rights {
                subscribe: bind(claims.subscribe, &policy.default_subscribe)?,
                publish: bind(claims.publish, &policy.default_publish)?,
            },
        };
        let info = match claims.info {
            None | Some(serde_json::Value::Null) => None,
            Some(v @ serde_json::Value::Object(_)) => {
                let text = v.to_string();
                if text.len() > MAX_INFO_LEN {
                    return Err(BadClaims(format!(
                        "info must be at most {MAX_INFO_LEN} bytes"
                    )));
                }
                Some(text.into_boxed_str())
            }
            Some(_) => return Err(BadClaims("info must be an object".into())),
        };
        Ok(Identity {
            sub: sub.into_boxed_str(),
            exp: claims.exp,
            rights,
            info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> TemplateList {
        TemplateList::parse_comma(s).expect("valid list")
    }

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).expect("claims")
    }

    #[test]
    fn lists_in_the_token_win_over_the_defaults() {
        let policy = Policy::new(
            &list("none"),
            &list("none"),
            list(">"),
            list("user:{sub}:>"),
        );
        let id = Identity::new(
            claims(r#"{"sub":"al","exp":9,"subscribe":["chat:*"]}"#),
            &policy,
        )
        .expect("valid");
        assert!(id.rights.subscribe.allows("chat:1"));
        assert!(!id.rights.subscribe.allows("news"));
        assert!(id.rights.publish.allows("user:al:x"));
        assert!(!id.rights.publish.allows("user:bo:x"));
        let id =
            Identity::new(claims(r#"{"sub":"al","exp":9,"publish":[]}"#), &policy).expect("ok");
        assert!(id.rights.subscribe.allows("news"));
        assert!(id.rights.publish.is_empty(), "an empty list grants nothing");
    }

    #[test]
    fn defaults_without_sub_are_shared() {
        let policy = Policy::new(&list("lobby"), &list("none"), list("chat:*"), list("none"));
        let a = Identity::new(claims(r#"{"sub":"a","exp":1}"#), &policy).expect("a");
        let b = Identity::new(claims(r#"{"sub":"b","exp":1}"#), &policy).expect("b");
        assert!(Arc::ptr_eq(&a.rights.subscribe, &b.rights.subscribe));
        assert!(policy.anonymous().subscribe.allows("lobby"));
        assert!(!policy.anonymous().publish.allows("lobby"));
    }

    #[test]
    fn bad_claims_are_refused() {
        let policy = Policy::new(&list("none"), &list("none"), list(">"), list(">"));
        for bad in [
            r#"{"sub":"","exp":1}"#,
            r#"{"sub":"a\u0001","exp":1}"#,
            r#"{"sub":"a","exp":1,"subscribe":["a:>:b"]}"#,
            r#"{"sub":"a","exp":1,"info":[1]}"#,
        ] {
            assert!(Identity::new(claims(bad), &policy).is_err(), "{bad}");
        }
        let big = format!(
            r#"{{"sub":"a","exp":1,"info":{{"k":"{}"}}}}"#,
            "x".repeat(MAX_INFO_LEN)
        );
        assert!(Identity::new(claims(&big), &policy).is_err());
        let id =
            Identity::new(claims(r#"{"sub":"a","exp":1,"info":{"n": 1}}"#), &policy).expect("ok");
        assert_eq!(id.info.as_deref(), Some(r#"{"n":1}"#));
    }
}
