//! Tokens made with the crate's encoder and the test keys in tests/keys (the integration tests
//! make theirs with PyJWT, an independent implementation).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"an HS256 test secret of 32 bytes";
const RSA_KEY: &[u8] = include_bytes!("../../../tests/keys/rsa.key");
const RSA_PUB: &[u8] = include_bytes!("../../../tests/keys/rsa.pub");
const RSA_OTHER: &[u8] = include_bytes!("../../../tests/keys/rsa-other.key");
const EC_KEY: &[u8] = include_bytes!("../../../tests/keys/ec.key");
const EC_PUB: &[u8] = include_bytes!("../../../tests/keys/ec.pub");
const ED_KEY: &[u8] = include_bytes!("../../../tests/keys/ed.key");
const ED_PUB: &[u8] = include_bytes!("../../../tests/keys/ed.pub");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "exp": now() + 600});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).expect("encode")
}

fn verifier(secret: Option<&[u8]>, pem: Option<&[u8]>) -> Verifier {
    Verifier::new(&JwtSettings {
        secret,
        public_key_pem: pem,
        audience: Some("wsd"),
        issuer: Some("https://issuer.test"),
        leeway: 5,
    })
    .expect("valid settings")
    .expect("a key")
}

fn good() -> Value {
    claims(json!({"aud": "wsd", "iss": "https://issuer.test"}))
}

#[test]
fn every_key_kind_verifies_its_algorithms() {
    let v = verifier(Some(SECRET), None);
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = sign(alg, &EncodingKey::from_secret(SECRET), &good());
        assert_eq!(v.verify(&t).expect("valid").sub, "alice", "{alg:?}");
    }
    let v = verifier(None, Some(RSA_PUB));
    assert_eq!(v.public_key_kind(), Some(KeyKind::Rsa));
    let key = EncodingKey::from_rsa_pem(RSA_KEY).expect("rsa key");
    for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
        assert!(v.verify(&sign(alg, &key, &good())).is_ok(), "{alg:?}");
    }
    let v = verifier(None, Some(EC_PUB));
    assert_eq!(v.public_key_kind(), Some(KeyKind::Ec));
    let key = EncodingKey::from_ec_pem(EC_KEY).expect("ec key");
    assert!(v.verify(&sign(Algorithm::ES256, &key, &good())).is_ok());
    let v = verifier(None, Some(ED_PUB));
    assert_eq!(v.public_key_kind(), Some(KeyKind::Ed));
    let key = EncodingKey::from_ed_pem(ED_KEY).expect("ed key");
    assert!(v.verify(&sign(Algorithm::EdDSA, &key, &good())).is_ok());
}

#[test]
fn time_audience_and_issuer_are_checked() {
    let v = verifier(Some(SECRET), None);
    let key = EncodingKey::from_secret(SECRET);
    let t = |c: Value| sign(Algorithm::HS256, &key, &c);
    let base = good();
    let with = |k: &str, val: Value| {
        let mut c = base.clone();
        c[k] = val;
        c
    };
    assert_eq!(
        v.verify(&t(with("exp", json!(now() - 60)))).err(),
        Some(TokenError::Expired)
    );
    // Within the leeway.
    assert!(v.verify(&t(with("exp", json!(now() - 2)))).is_ok());
    assert_eq!(
        v.verify(&t(with("nbf", json!(now() + 60)))).err(),
        Some(TokenError::Invalid)
    );
    assert!(v.verify(&t(with("nbf", json!(now() - 1)))).is_ok());
    assert_eq!(
        v.verify(&t(with("aud", json!("other")))).err(),
        Some(TokenError::Invalid)
    );
    assert_eq!(
        v.verify(&t(with("iss", json!("evil")))).err(),
        Some(TokenError::Invalid)
    );
    let mut no_exp = base.clone();
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    assert_eq!(v.verify(&t(no_exp)).err(), Some(TokenError::Invalid));
    let mut no_sub = base.clone();
    no_sub.as_object_mut().map(|o| o.remove("sub"));
    assert_eq!(v.verify(&t(no_sub)).err(), Some(TokenError::Invalid));
    assert_eq!(v.verify("").err(), Some(TokenError::Missing));
    assert_eq!(v.verify("a.b.c").err(), Some(TokenError::Invalid));
    assert_eq!(
        v.verify(&"a".repeat(MAX_TOKEN_LEN + 1)).err(),
        Some(TokenError::Invalid)
    );
}

#[test]
fn forged_none_and_confused_tokens_are_refused() {
    let v = verifier(Some(SECRET), Some(RSA_PUB));
    // Forged: signed by another key, or by a wrong secret.
    let other = EncodingKey::from_rsa_pem(RSA_OTHER).expect("key");
    assert_eq!(
        v.verify(&sign(Algorithm::RS256, &other, &good())).err(),
        Some(TokenError::Invalid)
    );
    let wrong = EncodingKey::from_secret(b"not the secret at all, 32 bytes!");
    assert_eq!(
        v.verify(&sign(Algorithm::HS256, &wrong, &good())).err(),
        Some(TokenError::Invalid)
    );
    // A valid token with its payload swapped.
    let ok = sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), &good());
    let mut parts: Vec<&str> = ok.split('.').collect();
    let evil = URL_SAFE_NO_PAD.encode(
        claims(json!({"sub": "root", "aud": "wsd", "iss": "https://issuer.test"})).to_string(),
    );
    parts[1] = &evil;
    assert_eq!(v.verify(&parts.join(".")).err(), Some(TokenError::Invalid));
    // alg none, signed or not.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(good().to_string());
    assert_eq!(
        v.verify(&format!("{none_header}.{payload}.")).err(),
        Some(TokenError::Invalid)
    );
    // Algorithm confusion: HS256 with the public key's PEM as the secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUB),
        &good(),
    );
    assert_eq!(v.verify(&confused).err(), Some(TokenError::Invalid));
    let v = verifier(None, Some(RSA_PUB));
    assert_eq!(v.verify(&confused).err(), Some(TokenError::Invalid));
    // An algorithm of another key kind.
    let ec = EncodingKey::from_ec_pem(EC_KEY).expect("key");
    assert_eq!(
        v.verify(&sign(Algorithm::ES256, &ec, &good())).err(),
        Some(TokenError::Invalid)
    );
    // HS with no secret configured.
    assert_eq!(v.verify(&ok).err(), Some(TokenError::Invalid));
}

#[test]
fn settings_are_checked() {
    assert!(
        Verifier::new(&JwtSettings::default())
            .expect("ok")
            .is_none()
    );
    let bad = JwtSettings {
        public_key_pem: Some(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        ..JwtSettings::default()
    };
    assert!(Verifier::new(&bad).is_err());
    let private = JwtSettings {
        public_key_pem: Some(EC_KEY),
        ..JwtSettings::default()
    };
    assert!(
        Verifier::new(&private).is_err(),
        "a private key is not a public key"
    );
}
