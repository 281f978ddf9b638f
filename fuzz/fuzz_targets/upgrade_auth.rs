//! Upgrade checks and `AUTH` with random tokens: `access::gate::Access` (HS256 key, audience,
//! origin list, upgrade rate) decides upgrade requests whose `Authorization`, `?token=`,
//! `Sec-WebSocket-Protocol` and `Origin` come from the input, and authenticates tokens built from
//! it: raw text, and header/claims JSON from the input signed with the real key (so the claims
//! checks and the identity's patterns and `info` are reached, not only the signature check).
//! Nothing may panic; an accepted token's identity must satisfy the claims limits.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use wsd::access::claims::{MAX_SUB_LEN, Policy};
use wsd::access::gate::{Access, MessageLimits};
use wsd::access::jwt::{JwtSettings, Verifier};
use wsd::access::pattern::TemplateList;
use wsd::proto::HttpRequest;

const SECRET: &[u8] = b"fuzz-secret-of-at-least-32-bytes!";

fn access() -> &'static Access {
    static ACCESS: OnceLock<Access> = OnceLock::new();
    ACCESS.get_or_init(|| {
        let verifier = Verifier::new(&JwtSettings {
            secret: Some(SECRET),
            audience: Some("wsd"),
            leeway: 5,
            ..JwtSettings::default()
        })
        .expect("settings")
        .expect("a key");
        let list = |s| TemplateList::parse_comma(s).expect("list");
        let policy = Policy::new(
            &list("none"),
            &list("none"),
            list(">"),
            list("user:{sub}:>"),
        );
        Access::new(
            Some(verifier),
            true,
            Some(
                "https://*.example.com,http://localhost:3000"
                    .parse()
                    .expect("origins"),
            ),
            policy,
            Some("1000/1000".parse().expect("rate")),
            MessageLimits {
                connection: None,
                identity: Some("10/1".parse().expect("rate")),
                costs: Default::default(),
                strikes: 10,
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let access = access();
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\u{0}').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    // A token signed with the real key over header and claims from the input.
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(part(0)),
        URL_SAFE_NO_PAD.encode(part(1))
    );
    let key = EncodingKey::from_secret(SECRET);
    let signed = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256)
        .map(|sig| format!("{signing_input}.{sig}"))
        .unwrap_or_default();
    for token in [signed.as_str(), part(2)] {
        if let Ok(Some(id)) = access.authenticate(Some(token)) {
            assert!(!id.sub.is_empty() && id.sub.len() <= MAX_SUB_LEN);
            let _ = id.rights.subscribe.allows(part(3));
            let _ = id.rights.publish.allows(part(3));
            let _ = access.identity_bucket(&id.sub);
        }
    }
    // An upgrade request carrying input in every place a token or origin may be.
    let query = format!("token={}&x={}", part(2), part(4));
    let headers = [
        httparse::Header {
            name: "Authorization",
            value: part(5).as_bytes(),
        },
        httparse::Header {
            name: "Sec-WebSocket-Protocol",
            value: part(6).as_bytes(),
        },
        httparse::Header {
            name: "Origin",
            value: part(7).as_bytes(),
        },
        httparse::Header {
            name: "Authorization",
            value: signed.as_bytes(),
        },
    ];
    let n = (data.first().copied().unwrap_or(0) % 5) as usize;
    let req = HttpRequest {
        method: "GET",
        path: "/ws",
        query: Some(&query),
        headers: &headers[..n],
        body: b"",
    };
    let ip = IpAddr::V4(Ipv4Addr::from(u32::from(data.len() as u16)));
    if let Ok(admitted) = access.check_upgrade(&req, Some(ip), data.len() as u64 * 1_000_000) {
        assert!(admitted.protocol.is_none_or(|p| p == "wsd.v1"));
    }
});
