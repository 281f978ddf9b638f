//! The access-control knobs (`JWT_*`, `AUTH_REQUIRED`, the pattern lists, `ALLOWED_ORIGINS`, the
//! rate limits), flattened into [`super::Config`], and [`AccessKnobs::build`], which turns them
//! into the [`Access`] every worker shares.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

use super::Secret;
use super::parse::parse_bool;
use crate::access::claims::Policy;
use crate::access::gate::{Access, MessageLimits};
use crate::access::jwt::{DEFAULT_LEEWAY, JwtSettings, Verifier};
use crate::access::origin::OriginList;
use crate::access::pattern::TemplateList;
use crate::ratelimit::rate::parse_optional;
use crate::ratelimit::{Costs, Rate};

/// Default `RATE_LIMIT_STRIKES`.
pub const DEFAULT_STRIKES: u32 = 10;
/// Largest PEM file read for `JWT_PUBLIC_KEY`.
const MAX_PEM_BYTES: u64 = 64 * 1024;

/// A rate knob: `off` or `capacity/refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateKnob(pub Option<Rate>);

impl fmt::Display for RateKnob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) => write!(f, "{r}"),
            None => f.write_str("off"),
        }
    }
}

impl FromStr for RateKnob {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_optional(s).map(RateKnob)
    }
}

/// `JWT_PUBLIC_KEY`: the file's path and the PEM read from it at start.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeyFile {
    /// The path as given.
    pub path: PathBuf,
    /// The file's contents.
    pub pem: Vec<u8>,
}

impl fmt::Debug for PublicKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl FromStr for PublicKeyFile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let path = PathBuf::from(s);
        let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read: {e}"))?;
        if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
            return Err(format!(
                "must be a PEM file of at most {MAX_PEM_BYTES} bytes"
            ));
        }
        let pem = std::fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
        // Checked here so a bad key stops wsd naming the variable.
        Verifier::new(&JwtSettings {
            public_key_pem: Some(&pem),
            ..JwtSettings::default()
        })?;
        Ok(PublicKeyFile { path, pem })
    }
}

/// A pattern list knob (`ANON_SUBSCRIBE=chat:*,user:{sub}:>`; `none` for the empty list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternKnob(pub TemplateList);

impl fmt::Display for PatternKnob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_text())
    }
}

impl FromStr for PatternKnob {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TemplateList::parse_comma(s)
            .map(PatternKnob)
            .map_err(|e| format!("{e} (patterns: chat:*, feed:>, user:{{sub}}:>, or none)"))
    }
}

fn parse_leeway(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n <= 3600 => Ok(n),
        _ => Err("must be a number of seconds from 0 to 3600".into()),
    }
}

fn parse_strikes(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n <= 1_000_000 => Ok(n),
        _ => Err("must be a number of refusals from 0 (never close) to 1000000".into()),
    }
}

fn parse_claim_value(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 1024 || s.chars().any(char::is_control) {
        return Err("must be 1 to 1024 bytes without control characters".into());
    }
    Ok(s.to_owned())
}

/// The access-control knobs.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct AccessKnobs {
    /// JWT: the HMAC secret of HS256/384/512 tokens. Setting it (or JWT_PUBLIC_KEY) turns on
    /// authentication at upgrade (docs/SECURITY.md).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = clap::value_parser!(Secret))]
    pub jwt_secret: Option<Secret>,

    /// JWT: a PEM public key file (RSA: RS*/PS*; EC P-256/P-384: ES256/384; Ed25519: EdDSA). The
    /// key's kind fixes the algorithms accepted.
    #[arg(long, env = "JWT_PUBLIC_KEY", value_name = "FILE", value_parser = clap::value_parser!(PublicKeyFile))]
    pub jwt_public_key: Option<PublicKeyFile>,

    /// JWT: the `aud` every token must carry (unset: not checked).
    #[arg(long, env = "JWT_AUDIENCE", value_parser = parse_claim_value)]
    pub jwt_audience: Option<String>,

    /// JWT: the `iss` every token must carry (unset: not checked).
    #[arg(long, env = "JWT_ISSUER", value_parser = parse_claim_value)]
    pub jwt_issuer: Option<String>,

    /// JWT: seconds of clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY", default_value_t = DEFAULT_LEEWAY, value_parser = parse_leeway)]
    pub jwt_leeway: u64,

    /// Refuse upgrades without a valid token (401). Default: true when a JWT key is set. `false`
    /// lets clients without a token in, anonymous, with the ANON_* rights.
    #[arg(long, env = "AUTH_REQUIRED", action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub auth_required: Option<bool>,

    /// Topics anonymous connections may subscribe to (patterns, comma-separated, or `none`).
    /// Default: every topic (`>`) without a JWT key, none with one.
    #[arg(long, env = "ANON_SUBSCRIBE", value_parser = clap::value_parser!(PatternKnob))]
    pub anon_subscribe: Option<PatternKnob>,

    /// Topics anonymous connections may publish on. Default: every topic without a JWT key or
    /// PUBLISH_KEY, none otherwise.
    #[arg(long, env = "ANON_PUBLISH", value_parser = clap::value_parser!(PatternKnob))]
    pub anon_publish: Option<PatternKnob>,

    /// Topics a token without a `subscribe` claim may subscribe to. Default: every topic.
    #[arg(long, env = "DEFAULT_SUBSCRIBE", value_parser = clap::value_parser!(PatternKnob))]
    pub default_subscribe: Option<PatternKnob>,

    /// Topics a token without a `publish` claim may publish on. Default: every topic without
    /// PUBLISH_KEY, none with it.
    #[arg(long, env = "DEFAULT_PUBLISH", value_parser = clap::value_parser!(PatternKnob))]
    pub default_publish: Option<PatternKnob>,

    /// Browser origins allowed to open a WebSocket (comma-separated: https://app.example.com,
    /// https://*.example.com); others get 403. Requests without Origin are allowed. Unset: all.
    #[arg(long, env = "ALLOWED_ORIGINS", value_parser = clap::value_parser!(OriginList))]
    pub allowed_origins: Option<OriginList>,

    /// Pub/sub messages per connection: `capacity/refill_per_second` (e.g. 100/20) or `off`.
    /// Over it: ERROR RESOURCE_EXHAUSTED with retryAfterMs.
    #[arg(long, env = "RATE_LIMIT", default_value = "off", value_parser = clap::value_parser!(RateKnob))]
    pub rate_limit: RateKnob,

    /// What each message type costs against the rate limits, e.g. PUBLISH:1,SUBSCRIBE:5 (types:
    /// SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PING, AUTH, OTHER; unnamed ones cost 1).
    #[arg(long, env = "RATE_LIMIT_COST", default_value_t = Costs::default(), value_parser = clap::value_parser!(Costs))]
    pub rate_limit_cost: Costs,

    /// Consecutive rate-limit refusals after which the connection is closed with 1008 (0: never).
    #[arg(long, env = "RATE_LIMIT_STRIKES", default_value_t = DEFAULT_STRIKES, value_parser = parse_strikes)]
    pub rate_limit_strikes: u32,

    /// Pub/sub messages per identity (`sub`), shared by all its connections on every worker:
    /// `capacity/refill_per_second` or `off`.
    #[arg(long, env = "RATE_LIMIT_IDENTITY", default_value = "off", value_parser = clap::value_parser!(RateKnob))]
    pub rate_limit_identity: RateKnob,

    /// WebSocket upgrades per client address (IPv6: per /64): `n/s` or `capacity/refill_per_second`,
    /// or `off`. Over it: 429 with Retry-After.
    #[arg(long, env = "UPGRADE_RATE_PER_IP", default_value = "off", value_parser = clap::value_parser!(RateKnob))]
    pub upgrade_rate_per_ip: RateKnob,
}

impl Default for AccessKnobs {
    fn default() -> Self {
        AccessKnobs {
            jwt_secret: None,
            jwt_public_key: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway: DEFAULT_LEEWAY,
            auth_required: None,
            anon_subscribe: None,
            anon_publish: None,
            default_subscribe: None,
            default_publish: None,
            allowed_origins: None,
            rate_limit: RateKnob(None),
            rate_limit_cost: Costs::default(),
            rate_limit_strikes: DEFAULT_STRIKES,
            rate_limit_identity: RateKnob(None),
            upgrade_rate_per_ip: RateKnob(None),
        }
    }
}

impl AccessKnobs {
    /// Whether a JWT key is configured.
    pub fn has_key(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some()
    }

    /// The shared access control, or `None` when nothing of it is on (no key, no pattern list,
    /// no origin list, no rate limit, and no `PUBLISH_KEY` to keep WebSocket publishes behind):
    /// then nothing is checked anywhere and nothing costs. Warnings go to `warnings`.
    pub fn build(
        &self,
        publish_key: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Access>, String> {
        let lists = [
            &self.anon_subscribe,
            &self.anon_publish,
            &self.default_subscribe,
            &self.default_publish,
        ];
        let any = self.has_key()
            || publish_key
            || lists.iter().any(|l| l.is_some())
            || self.allowed_origins.is_some()
            || self.rate_limit.0.is_some()
            || self.rate_limit_identity.0.is_some()
            || self.upgrade_rate_per_ip.0.is_some();
        if !any {
            return Ok(None);
        }
        let verifier = Verifier::new(&JwtSettings {
            secret: self.jwt_secret.as_ref().map(Secret::expose),
            public_key_pem: self.jwt_public_key.as_ref().map(|k| k.pem.as_slice()),
            audience: self.jwt_audience.as_deref(),
            issuer: self.jwt_issuer.as_deref(),
            leeway: self.jwt_leeway,
        })?;
        let key = verifier.is_some();
        if self.auth_required == Some(true) && !key {
            return Err("AUTH_REQUIRED=true needs JWT_SECRET or JWT_PUBLIC_KEY".into());
        }
        if let Some(s) = &self.jwt_secret
            && s.expose().len() < 32
        {
            warnings.push("JWT_SECRET is shorter than 32 bytes: HS256 secrets that short can be guessed offline from one token".into());
        }
        if key && self.allowed_origins.is_none() {
            warnings.push("authentication is on and ALLOWED_ORIGINS is unset: any web page may open connections with a token it holds (tokens are not cookies, so a page cannot borrow a user's)".into());
        }
        let everything = || TemplateList::parse_comma(">").unwrap_or_default();
        let nothing = TemplateList::default;
        let pick = |knob: &Option<PatternKnob>, default: TemplateList| {
            knob.as_ref().map_or(default, |k| k.0.clone())
        };
        let anon_subscribe = pick(
            &self.anon_subscribe,
            if key { nothing() } else { everything() },
        );
        let anon_publish = pick(
            &self.anon_publish,
            if key || publish_key {
                nothing()
            } else {
                everything()
            },
        );
        let default_subscribe = pick(&self.default_subscribe, everything());
        let default_publish = pick(
            &self.default_publish,
            if publish_key { nothing() } else { everything() },
        );
        let policy = Policy::new(
            &anon_subscribe,
            &anon_publish,
            default_subscribe,
            default_publish,
        );
        Ok(Some(Access::new(
            verifier,
            self.auth_required.unwrap_or(key),
            self.allowed_origins.clone(),
            policy,
            self.upgrade_rate_per_ip.0,
            MessageLimits {
                connection: self.rate_limit.0,
                identity: self.rate_limit_identity.0,
                costs: self.rate_limit_cost,
                strikes: self.rate_limit_strikes,
            },
        )))
    }
}
