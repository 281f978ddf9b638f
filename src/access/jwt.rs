//! Verifying JSON Web Tokens with the `jsonwebtoken` crate (no hand-written JOSE).
//!
//! The algorithms accepted are fixed by the keys configured, never by the token: `JWT_SECRET`
//! allows HS256/384/512 and only with that secret; `JWT_PUBLIC_KEY` allows the algorithms of its
//! kind (RSA: RS256/384/512 and PS256/384/512; EC: ES256/384; Ed25519: EdDSA). So `alg: none` is
//! refused (the crate does not even parse it), and a token HMAC-signed with the public key as
//! secret ("algorithm confusion") is refused because HS* is checked only against `JWT_SECRET`.
#![forbid(unsafe_code)]

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::claims::Claims;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;
/// Default `JWT_LEEWAY` in seconds.
pub const DEFAULT_LEEWAY: u64 = 5;

/// The verification settings of `JWT_*`.
#[derive(Clone, Default)]
pub struct JwtSettings<'a> {
    /// `JWT_SECRET`.
    pub secret: Option<&'a [u8]>,
    /// The contents of the `JWT_PUBLIC_KEY` file (PEM).
    pub public_key_pem: Option<&'a [u8]>,
    /// `JWT_AUDIENCE`.
    pub audience: Option<&'a str>,
    /// `JWT_ISSUER`.
    pub issuer: Option<&'a str>,
    /// `JWT_LEEWAY`, seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: u64,
}

/// The kind of a public key, which fixes the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RS256/384/512, PS256/384/512.
    Rsa,
    /// ES256/384.
    Ec,
    /// EdDSA (Ed25519).
    Ed,
}

impl KeyKind {
    fn algorithms(self) -> Vec<Algorithm> {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => vec![RS256, RS384, RS512, PS256, PS384, PS512],
            KeyKind::Ec => vec![ES256, ES384],
            KeyKind::Ed => vec![EdDSA],
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "RSA",
            KeyKind::Ec => "EC",
            KeyKind::Ed => "Ed25519",
        })
    }
}

/// Why a token was refused, as far as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No token was given.
    Missing,
    /// Malformed, badly signed, wrong algorithm, audience or issuer, not yet valid, bad claims.
    Invalid,
    /// Past `exp` (plus the leeway).
    Expired,
}

impl TokenError {
    /// The one-line reason given to the client, also the `reason` label of the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Invalid => "invalid",
            TokenError::Expired => "expired",
        }
    }
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    hmac: Option<(DecodingKey, Validation)>,
    public: Option<(DecodingKey, Validation, KeyKind)>,
    leeway: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hmac", &self.hmac.is_some())
            .field("public", &self.public.as_ref().map(|p| p.2))
            .finish()
    }
}

impl Verifier {
    /// A verifier for the settings; `Ok(None)` when no key is configured. The error names what
    /// is wrong (for the start-up message).
    pub fn new(s: &JwtSettings<'_>) -> Result<Option<Verifier>, String> {
        let validation = |algorithms: Vec<Algorithm>| {
            let mut v = Validation::new(algorithms[0]);
            v.algorithms = algorithms;
            v.leeway = s.leeway;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "sub"]);
            match s.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            if let Some(iss) = s.issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        let hmac = s.secret.map(|secret| {
            let algs = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
            (DecodingKey::from_secret(secret), validation(algs))
        });
        let public = match s.public_key_pem {
            None => None,
            Some(pem) => {
                let (key, kind) = public_key(pem)?;
                Some((key, validation(kind.algorithms()), kind))
            }
        };
        if hmac.is_none() && public.is_none() {
            return Ok(None);
        }
        Ok(Some(Verifier {
            hmac,
            public,
            leeway: s.leeway,
        }))
    }

    /// The kind of the public key, if one is configured.
    pub fn public_key_kind(&self) -> Option<KeyKind> {
        self.public.as_ref().map(|p| p.2)
    }

    /// The leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Verifies `token` (signature, algorithm, `exp`, `nbf`, `aud`, `iss`) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let (k, v) = self.hmac.as_ref().ok_or(TokenError::Invalid)?;
                (k, v)
            }
            _ => {
                let (k, v, _) = self.public.as_ref().ok_or(TokenError::Invalid)?;
                (k, v)
            }
        };
        if !validation.algorithms.contains(&header.alg) {
            return Err(TokenError::Invalid);
        }
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// Reads a PEM public key and tells its kind.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, KeyKind), String> {
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((k, KeyKind::Ec));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((k, KeyKind::Ed));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, KeyKind::Rsa));
    }
    Err("must be a PEM public key (RSA, EC P-256/P-384 or Ed25519)".to_owned())
}

#[cfg(test)]
mod tests;
