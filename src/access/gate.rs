//! Everything access control needs at run time, built once from the configuration and shared by
//! every worker: the upgrade decision ([`Access::check_upgrade`]: origin, upgrade rate, token)
//! and what the application applies per message (rights policy, message rate limits, the
//! per-identity buckets).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

use super::carrier;
use super::claims::{Identity, Policy};
use super::jwt::{TokenError, Verifier};
use super::origin::OriginList;
use crate::proto::HttpRequest;
use crate::ratelimit::per_ip::PerIp;
use crate::ratelimit::{AtomicBucket, Costs, Rate, Refused};

/// The per-message rate limits (`RATE_LIMIT*`).
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// Per connection (`RATE_LIMIT`).
    pub connection: Option<Rate>,
    /// Per identity, across workers (`RATE_LIMIT_IDENTITY`).
    pub identity: Option<Rate>,
    /// The cost of each message type (`RATE_LIMIT_COST`).
    pub costs: Costs,
    /// Consecutive refusals before the connection is closed with 1008 (`RATE_LIMIT_STRIKES`;
    /// 0: never).
    pub strikes: u32,
}

impl MessageLimits {
    /// Whether any message limit is on.
    pub fn any(&self) -> bool {
        self.connection.is_some() || self.identity.is_some()
    }
}

/// Access control as configured.
#[derive(Debug)]
pub struct Access {
    /// The token verifier (`None`: no key configured, every connection is anonymous).
    pub verifier: Option<Verifier>,
    /// A connection without a valid token is refused (`AUTH_REQUIRED`).
    pub auth_required: bool,
    /// `ALLOWED_ORIGINS` (`None`: every origin).
    pub origins: Option<OriginList>,
    /// Rights of connections without lists in their token, and of anonymous ones.
    pub policy: Policy,
    /// `UPGRADE_RATE_PER_IP`.
    pub upgrades: Option<PerIp>,
    /// The per-message limits.
    pub messages: MessageLimits,
    /// Each identity's shared bucket while it has connections (`RATE_LIMIT_IDENTITY`).
    identity_buckets: Mutex<HashMap<Box<str>, Weak<AtomicBucket>>>,
}

/// A valid upgrade request that may proceed.
#[derive(Debug)]
pub struct Admitted {
    /// The subprotocol to answer (`wsd.v1` when offered).
    pub protocol: Option<&'static str>,
    /// The verified identity (`None`: anonymous).
    pub identity: Option<Arc<Identity>>,
}

/// Why an upgrade was refused: the status and one-line reason to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no, an invalid or an expired token.
    Token(TokenError),
    /// 403: an `Origin` not in `ALLOWED_ORIGINS`.
    Origin,
    /// 429: too many upgrades from this address; retry after this many seconds.
    Rate {
        /// Whole seconds, at least 1.
        retry_after_s: u64,
    },
}

impl Refusal {
    /// The metric label (`reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Token(e) => e.as_str(),
            Refusal::Origin => "origin",
            Refusal::Rate { .. } => "rate",
        }
    }
}

impl Access {
    /// Access control from its parts.
    pub fn new(
        verifier: Option<Verifier>,
        auth_required: bool,
        origins: Option<OriginList>,
        policy: Policy,
        upgrades: Option<Rate>,
        messages: MessageLimits,
    ) -> Access {
        Access {
            verifier,
            auth_required,
            origins,
            policy,
            upgrades: upgrades.map(PerIp::new),
            messages,
            identity_buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Decides a valid upgrade request from `ip` at `now` (monotonic nanoseconds): the origin
    /// first (cheapest), then the address's upgrade rate, then the token.
    pub fn check_upgrade(
        &self,
        req: &HttpRequest<'_>,
        ip: Option<IpAddr>,
        now: u64,
    ) -> Result<Admitted, Refusal> {
        if let (Some(origins), Some(origin)) = (&self.origins, req.header("Origin"))
            && !origins.allows(origin)
        {
            return Err(Refusal::Origin);
        }
        if let (Some(table), Some(ip)) = (&self.upgrades, ip)
            && let Err(refused) = table.try_upgrade(ip, now)
        {
            let ms = match refused {
                Refused::RetryAfterMs(ms) => ms,
                Refused::Never => 1000,
            };
            return Err(Refusal::Rate {
                retry_after_s: ms.div_ceil(1000).max(1),
            });
        }
        let identity = self.authenticate(carrier::token(req).map(|(t, _)| t))?;
        Ok(Admitted {
            protocol: carrier::subprotocol(req),
            identity,
        })
    }

    /// The identity of `token` (or anonymous when allowed).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<Arc<Identity>>, Refusal> {
        let Some(verifier) = &self.verifier else {
            return Ok(None); // no key: every connection is anonymous, a token is ignored
        };
        let Some(token) = token else {
            return if self.auth_required {
                Err(Refusal::Token(TokenError::Missing))
            } else {
                Ok(None)
            };
        };
        // A token that is given must be valid, even where anonymous clients are allowed.
        let claims = verifier.verify(token).map_err(Refusal::Token)?;
        let identity =
            Identity::new(claims, &self.policy).map_err(|_| Refusal::Token(TokenError::Invalid))?;
        Ok(Some(Arc::new(identity)))
    }

    /// The shared bucket of identity `sub` (`None` when `RATE_LIMIT_IDENTITY` is off): the same
    /// one for every connection of `sub` on every worker while any of them holds it.
    pub fn identity_bucket(&self, sub: &str) -> Option<Arc<AtomicBucket>> {
        self.messages.identity?;
        let mut map = self
            .identity_buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = map.get(sub).and_then(Weak::upgrade) {
            return Some(bucket);
        }
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let bucket = Arc::new(AtomicBucket::full());
        map.insert(sub.into(), Arc::downgrade(&bucket));
        Some(bucket)
    }
}
