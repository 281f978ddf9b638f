//! Access control inside the pub/sub application, present only when some of it is configured
//! ([`crate::access`]): each connection's rights (SUBSCRIBE and PUBLISH checked against its
//! topic patterns), its rate-limit buckets, the `AUTH` refresh, and closing connections whose
//! token expired (on a [`TimerWheel`], checked once per loop turn, never per message).
//!
//! State is a side table indexed by connection slot, so connections of a server without access
//! control carry none of it.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::access::claims::{Identity, Rights};
use crate::access::gate::{Access, Refusal};
use crate::access::jwt::TokenError;
use crate::app::ConnId;
use crate::envelope::{ErrorCode, Request};
use crate::metrics::{WorkerStats, bump};
use crate::proto::CloseCode;
use crate::proto::connection::AppClose;
use crate::ratelimit::{AtomicBucket, Bucket, MessageType, Refused};
use crate::wheel::TimerWheel;

const NS_PER_S: u64 = 1_000_000_000;

/// The close of a connection whose token expired.
pub const TOKEN_EXPIRED: AppClose = AppClose {
    code: CloseCode(1008),
    reason: "token expired",
};
/// The close after `RATE_LIMIT_STRIKES` refusals in a row.
pub const RATE_LIMITED: AppClose = AppClose {
    code: CloseCode(1008),
    reason: "rate limit exceeded",
};

/// One connection's access state.
#[derive(Debug)]
struct ConnAccess {
    generation: u32,
    /// Rate-limit refusals in a row.
    strikes: u32,
    identity: Option<Arc<Identity>>,
    rights: Rights,
    bucket: Bucket,
    /// The identity's bucket shared with its other connections (`RATE_LIMIT_IDENTITY`).
    shared: Option<Arc<AtomicBucket>>,
}

/// A request the guard refused, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Reply with this error; the connection stays open.
    Reply {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: String,
        /// `retryable` and `retryAfterMs`.
        retry_after_ms: Option<u64>,
    },
    /// Reply with the error, then close the connection.
    Close(AppClose, String),
}

/// One worker's access state.
#[derive(Debug)]
pub struct Guard {
    access: Arc<Access>,
    conns: Vec<Option<ConnAccess>>,
    expiry: TimerWheel,
    due: Vec<ConnId>,
    /// The turn's clock (monotonic nanoseconds).
    now_ns: u64,
    /// Unix seconds when the monotonic clock read zero.
    unix_at_zero: u64,
}

/// The rate-limit cost type of a request.
pub fn message_type(request: &Request<'_>) -> MessageType {
    match request {
        Request::Subscribe { .. } => MessageType::Subscribe,
        Request::Unsubscribe { .. } => MessageType::Unsubscribe,
        Request::Publish { .. } => MessageType::Publish,
        Request::Ping => MessageType::Ping,
        Request::Auth { .. } => MessageType::Auth,
    }
}

impl Guard {
    /// The guard of one worker.
    pub fn new(access: Arc<Access>) -> Guard {
        let now_ns = crate::ratelimit::now_ns();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Guard {
            access,
            conns: Vec::new(),
            expiry: TimerWheel::default(),
            due: Vec::new(),
            now_ns,
            unix_at_zero: unix.saturating_sub(now_ns / NS_PER_S),
        }
    }

    fn entry(&self, conn: ConnId) -> Option<&ConnAccess> {
        self.conns
            .get(conn.index as usize)
            .and_then(Option::as_ref)
            .filter(|c| c.generation == conn.generation)
    }

    fn entry_mut(&mut self, conn: ConnId) -> Option<&mut ConnAccess> {
        self.conns
            .get_mut(conn.index as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == conn.generation)
    }

    fn insert(&mut self, conn: ConnId, identity: Option<Arc<Identity>>) {
        let rights = match &identity {
            Some(id) => id.rights.clone(),
            None => self.access.policy.anonymous().clone(),
        };
        let shared = identity
            .as_ref()
            .and_then(|id| self.access.identity_bucket(&id.sub));
        if let Some(id) = &identity {
            self.schedule_expiry(conn, id.exp);
        }
        let index = conn.index as usize;
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        self.conns[index] = Some(ConnAccess {
            generation: conn.generation,
            strikes: 0,
            identity,
            rights,
            bucket: Bucket::full(),
            shared,
        });
    }

    /// The wheel second at which a token with expiry `exp` (Unix seconds) has expired.
    fn schedule_expiry(&mut self, conn: ConnId, exp: u64) {
        let deadline = exp.saturating_add(self.leeway());
        let second = deadline.saturating_sub(self.unix_at_zero);
        self.expiry
            .schedule(conn, u32::try_from(second).unwrap_or(u32::MAX));
    }

    fn leeway(&self) -> u64 {
        self.access.verifier.as_ref().map_or(0, |v| v.leeway())
    }

    /// A connection opens with the identity verified at its upgrade.
    pub fn identify(&mut self, conn: ConnId, identity: Arc<Identity>) {
        self.insert(conn, Some(identity));
    }

    /// A connection opened (anonymous unless [`Guard::identify`] came first).
    pub fn open(&mut self, conn: ConnId) {
        if self.entry(conn).is_none() {
            self.insert(conn, None);
        }
    }

    /// A connection is gone.
    pub fn close(&mut self, conn: ConnId) {
        if self.entry(conn).is_some() {
            self.conns[conn.index as usize] = None;
        }
    }

    /// The start of a loop turn: keeps the clock and closes connections whose token expired.
    pub fn tick(&mut self, now_ns: u64, close: &mut Vec<(ConnId, AppClose)>, stats: &WorkerStats) {
        self.now_ns = now_ns;
        let second = u32::try_from(now_ns / NS_PER_S).unwrap_or(u32::MAX);
        let mut due = std::mem::take(&mut self.due);
        self.expiry.advance(second, &mut due);
        let unix_now = self.unix_at_zero + now_ns / NS_PER_S;
        let leeway = self.leeway();
        for conn in due.drain(..) {
            let Some(exp) = self
                .entry(conn)
                .and_then(|c| c.identity.as_ref())
                .map(|id| id.exp)
            else {
                continue; // gone, or the slot has a new connection
            };
            if unix_now >= exp.saturating_add(leeway) {
                bump(&stats.policy_closes[1]);
                close.push((conn, TOKEN_EXPIRED));
                // No more expiry checks: the entry goes when the connection does.
                if let Some(c) = self.entry_mut(conn) {
                    c.identity = None;
                }
            } else {
                self.schedule_expiry(conn, exp); // refreshed, or filed a revolution early
            }
        }
        self.due = due;
    }

    /// Charges a message of type `ty` to the connection's buckets.
    pub fn charge(
        &mut self,
        conn: ConnId,
        ty: MessageType,
        stats: &WorkerStats,
    ) -> Result<(), Denial> {
        let limits = self.access.messages;
        if !limits.any() {
            return Ok(());
        }
        let now = self.now_ns;
        let Some(c) = self.entry_mut(conn) else {
            return Ok(());
        };
        let cost = limits.costs.of(ty);
        let mut bucket = c.bucket;
        let mut refused = None;
        if let Some(rate) = limits.connection
            && let Err(r) = bucket.try_take(cost, now, &rate)
        {
            refused = Some((0, r));
        }
        if refused.is_none()
            && let (Some(rate), Some(shared)) = (limits.identity, &c.shared)
            && let Err(r) = shared.try_take(cost, now, &rate)
        {
            refused = Some((1, r));
        }
        let Some((scope, why)) = refused else {
            c.bucket = bucket;
            c.strikes = 0;
            return Ok(());
        };
        bump(&stats.rate_limited[scope]);
        c.strikes = c.strikes.saturating_add(1);
        let what = if scope == 0 { "connection" } else { "identity" };
        let (message, retry_after_ms) = match why {
            Refused::RetryAfterMs(ms) => (format!("rate limit exceeded ({what})"), Some(ms)),
            Refused::Never => (
                format!("this message costs more than the {what} rate limit allows at once"),
                None,
            ),
        };
        if limits.strikes > 0 && c.strikes >= limits.strikes {
            bump(&stats.policy_closes[0]);
            return Err(Denial::Close(RATE_LIMITED, message));
        }
        Err(Denial::Reply {
            code: ErrorCode::ResourceExhausted,
            message,
            retry_after_ms,
        })
    }

    /// Whether the connection may subscribe to `topic`.
    pub fn may_subscribe(&self, conn: ConnId, topic: &str) -> bool {
        match self.entry(conn) {
            Some(c) => c.rights.subscribe.allows(topic),
            None => self.access.policy.anonymous().subscribe.allows(topic),
        }
    }

    /// Whether the connection may publish on `topic`.
    pub fn may_publish(&self, conn: ConnId, topic: &str) -> bool {
        match self.entry(conn) {
            Some(c) => c.rights.publish.allows(topic),
            None => self.access.policy.anonymous().publish.allows(topic),
        }
    }

    /// `AUTH`: replaces the connection's token with `token` (the same `sub` only; an anonymous
    /// connection may take any identity).
    pub fn refresh(
        &mut self,
        conn: ConnId,
        token: &str,
        stats: &WorkerStats,
    ) -> Result<(), Denial> {
        let reply = |code, message: &str| Denial::Reply {
            code,
            message: message.to_owned(),
            retry_after_ms: None,
        };
        if self.access.verifier.is_none() {
            bump(&stats.auth_refreshes[1]);
            return Err(reply(
                ErrorCode::InvalidArgument,
                "AUTH: authentication is not configured on this server",
            ));
        }
        let identity = match self.access.authenticate(Some(token)) {
            Ok(Some(identity)) => identity,
            Ok(None) | Err(Refusal::Token(TokenError::Missing)) => {
                bump(&stats.auth_refreshes[1]);
                return Err(reply(ErrorCode::Unauthenticated, "missing token"));
            }
            Err(Refusal::Token(TokenError::Expired)) => {
                bump(&stats.auth_refreshes[1]);
                return Err(reply(ErrorCode::Unauthenticated, "expired token"));
            }
            Err(_) => {
                bump(&stats.auth_refreshes[1]);
                return Err(reply(ErrorCode::Unauthenticated, "invalid token"));
            }
        };
        let current = self.entry(conn).and_then(|c| c.identity.clone());
        if let Some(current) = current
            && current.sub != identity.sub
        {
            bump(&stats.auth_refreshes[1]);
            bump(&stats.permission_denied[2]);
            return Err(reply(
                ErrorCode::PermissionDenied,
                "AUTH: the token is for another identity",
            ));
        }
        let shared = match self.entry(conn).and_then(|c| c.shared.clone()) {
            Some(shared) => Some(shared),
            None => self.access.identity_bucket(&identity.sub),
        };
        self.schedule_expiry(conn, identity.exp);
        match self.entry_mut(conn) {
            Some(c) => {
                c.rights = identity.rights.clone();
                c.identity = Some(identity);
                c.shared = shared;
            }
            None => self.insert(conn, Some(identity)),
        }
        bump(&stats.auth_refreshes[0]);
        Ok(())
    }
}
