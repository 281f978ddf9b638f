//! The checks a valid WebSocket upgrade request passes before it gets its `101`, all decided here:
//!
//! - a draining server refuses new WebSocket connections (`503` with `Retry-After`), so that a
//!   request finished after the signal does not get a connection that would be closed at once;
//! - access control ([`crate::access`], when configured): a foreign `Origin` → `403`, too many
//!   upgrades from the address → `429` with `Retry-After`, no, an invalid or an expired token →
//!   `401` with a one-line reason;
//! - the subprotocol answered: the first offered one wsd speaks (`wsd.v1`), never a token.

use std::net::IpAddr;
use std::sync::Arc;

use crate::access::carrier;
use crate::access::claims::Identity;
use crate::access::gate::Refusal;
use crate::metrics::bump;
use crate::metrics::stats::AUTH_FAILURES;
use crate::proto::http::write_response;
use crate::proto::{HttpRequest, UpgradeDecision};
use crate::state::Shared;

const TEXT: &str = "text/plain; charset=utf-8";

/// Decides a valid upgrade request from `ip` on worker `worker` at `now` (monotonic
/// nanoseconds, [`crate::ratelimit::now_ns`]); a refusal is written to `out`. On acceptance,
/// the identity the connection opens with (`None`: anonymous).
pub fn decide(
    shared: &Shared,
    worker: usize,
    req: &HttpRequest<'_>,
    ip: Option<IpAddr>,
    now: u64,
    out: &mut Vec<u8>,
) -> (UpgradeDecision, Option<Arc<Identity>>) {
    if shared.is_draining() {
        let retry = [("Retry-After", "1")];
        let body = b"server shutting down: connect again\n";
        let status = write_response(out, 503, "Service Unavailable", TEXT, &retry, body);
        return (UpgradeDecision::Refused { status }, None);
    }
    let Some(access) = shared.access.as_deref() else {
        let protocol = carrier::subprotocol(req);
        return (UpgradeDecision::Accept { protocol }, None);
    };
    match access.check_upgrade(req, ip, now) {
        Ok(admitted) => (
            UpgradeDecision::Accept {
                protocol: admitted.protocol,
            },
            admitted.identity,
        ),
        Err(refusal) => {
            let stats = &shared.workers[worker];
            if let Some(i) = AUTH_FAILURES.iter().position(|r| *r == refusal.as_str()) {
                bump(&stats.auth_failures[i]);
            }
            let status = refuse(refusal, out);
            (UpgradeDecision::Refused { status }, None)
        }
    }
}

/// Writes the answer to a refused upgrade. The reason says no more than missing, invalid or
/// expired: nothing that helps forge a token.
fn refuse(refusal: Refusal, out: &mut Vec<u8>) -> u16 {
    match refusal {
        Refusal::Token(e) => {
            let (body, challenge): (&[u8], _) = match e.as_str() {
                "missing" => (b"missing token\n", "Bearer"),
                "expired" => (
                    b"expired token\n",
                    "Bearer error=\"invalid_token\", error_description=\"expired\"",
                ),
                _ => (b"invalid token\n", "Bearer error=\"invalid_token\""),
            };
            let headers = [("WWW-Authenticate", challenge)];
            write_response(out, 401, "Unauthorized", TEXT, &headers, body)
        }
        Refusal::Origin => {
            write_response(out, 403, "Forbidden", TEXT, &[], b"origin not allowed\n")
        }
        Refusal::Rate { retry_after_s } => {
            let retry = retry_after_s.to_string();
            let headers = [("Retry-After", retry.as_str())];
            let body = b"too many upgrades from this address\n";
            write_response(out, 429, "Too Many Requests", TEXT, &headers, body)
        }
    }
}
