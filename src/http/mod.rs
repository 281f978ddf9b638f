//! Every plain HTTP route served beside the WebSocket path, and the checks an upgrade request
//! passes before it is accepted.
//!
//! The protocol core ([`crate::proto`]) parses a request and hands the worker what is not a valid
//! upgrade on the WebSocket path; the worker hands it to [`Routes::respond`]:
//! - `GET /health` ([`health`]): 200, or 503 while the server drains;
//! - `GET /metrics` ([`crate::metrics`]): the counters, behind `METRICS_KEY` ([`auth`]);
//! - `POST /publish` ([`publish`]), when the application takes publishes (pub/sub): the body is
//!   validated here and handed to [`App::publish_batch`](crate::app::App::publish_batch);
//! - 404 for any other `GET`, 405 for any other method.
//!
//! A valid upgrade request is accepted only if [`upgrade::accepts`] says so: the one place where
//! the checks on upgrades live (the drain today; auth, origin and rate limits go there too).

pub mod auth;
pub mod health;
pub mod publish;
pub mod upgrade;

use std::sync::Arc;

use crate::app::App;
use crate::envelope::Scratch;
use crate::proto::HttpRequest;
use crate::proto::http::write_response;
use crate::state::Shared;

/// Scratch a quiet worker keeps: a 1,000-message `POST /publish` body leaves megabytes.
const SCRATCH_KEEP: usize = 64 * 1024;

/// The plain routes of one worker, with the parse scratch `POST /publish` reuses.
#[derive(Default)]
pub struct Routes {
    scratch: Scratch,
    /// The worker these routes answer for (a scrape leaves its own connection out of
    /// `wsd_connections`).
    worker: usize,
}

impl Routes {
    /// The routes of worker `worker`.
    pub fn for_worker(worker: usize) -> Self {
        Routes {
            scratch: Scratch::default(),
            worker,
        }
    }

    /// Frees the parse scratch if a large `POST /publish` body left it holding memory (a worker
    /// calls this when it goes quiet, `worker/trim.rs`).
    pub fn trim(&mut self) {
        if self.scratch.retained_bytes() > SCRATCH_KEEP {
            self.scratch.shrink();
        }
    }

    /// Answers a request that is not a WebSocket upgrade: appends one complete response to `out`
    /// and returns its status code.
    pub fn respond<A: App>(
        &mut self,
        req: &HttpRequest<'_>,
        shared: &Arc<Shared>,
        app: &mut A,
        out: &mut Vec<u8>,
    ) -> u16 {
        match (req.method, req.path) {
            (_, "/publish") if app.accepts_publish() => {
                publish::respond(req, shared, &mut self.scratch, app, out)
            }
            ("GET", "/health") => health::respond(shared, out),
            ("GET", "/metrics") => metrics(req, shared, Some(self.worker), out),
            ("GET", _) => {
                write_response(out, 404, "Not Found", "text/plain", &[], b"no such path\n")
            }
            _ => write_response(
                out,
                405,
                "Method Not Allowed",
                "text/plain",
                &[("Allow", "GET")],
                b"only GET is served here\n",
            ),
        }
    }
}

/// Answers a request on the admin listener (`ADMIN_PORT`): `GET /health` and `GET /metrics`
/// as on the WebSocket port (a scrape here is not in `wsd_connections`), 404 for anything else,
/// WebSocket upgrades included.
pub fn respond_admin(req: &HttpRequest<'_>, shared: &Arc<Shared>, out: &mut Vec<u8>) -> u16 {
    match (req.method, req.path) {
        ("GET", "/health") => health::respond(shared, out),
        ("GET", "/metrics") => metrics(req, shared, None, out),
        _ => write_response(
            out,
            404,
            "Not Found",
            "text/plain",
            &[],
            b"the admin port serves GET /health and GET /metrics only\n",
        ),
    }
}

/// Answers `GET /metrics`: 401 with `WWW-Authenticate: Bearer` when `METRICS_KEY` is set and
/// the request does not carry it, the exposition otherwise, in the format its `Accept` header
/// asks for (OpenMetrics unless it asks for `text/plain` only). `worker`: the worker whose
/// connection asks, when `wsd_connections` counts that connection.
fn metrics(
    req: &HttpRequest<'_>,
    shared: &Arc<Shared>,
    worker: Option<usize>,
    out: &mut Vec<u8>,
) -> u16 {
    if !auth::authorized(req, shared.metrics_key.as_ref()) {
        return write_response(
            out,
            401,
            "Unauthorized",
            "text/plain; charset=utf-8",
            &[("WWW-Authenticate", "Bearer")],
            b"missing or wrong Authorization: Bearer key\n",
        );
    }
    let format = crate::metrics::Format::negotiate(req.header("Accept"));
    let body = crate::metrics::render_for(shared, crate::metrics::Scrape { format, worker });
    write_response(out, 200, "OK", format.content_type(), &[], body.as_bytes())
}
