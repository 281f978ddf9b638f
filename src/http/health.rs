//! `GET /health`: whether the server takes new clients, with per-worker counts.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::proto::http::write_response;
use crate::state::Shared;

/// `200 {"status":"ok",...}` with the I/O backend and per-worker connection counts; while the
/// server drains, `503 {"status":"draining",...}` with the same fields, so a load balancer stops
/// sending new clients here. With `REDIS_URL`, `"redis":"up"` or `"down"`: a Redis outage is
/// reported but stays 200, since local clients are still served.
pub fn respond(shared: &Shared, out: &mut Vec<u8>) -> u16 {
    let mut body = String::with_capacity(128);
    let mut total = 0;
    let mut workers = String::new();
    for (i, w) in shared.workers.iter().enumerate() {
        let open = w.connections.load(Ordering::Relaxed);
        total += open;
        let sep = if i == 0 { "" } else { "," };
        let accepted = w.accepted.load(Ordering::Relaxed);
        let _ = write!(
            workers,
            concat!(
                r#"{}{{"connections":{},"accepted":{},"topics":{},"subscriptions":{},"#,
                r#""published":{},"delivered":{},"dropped_newest":{},"dropped_oldest":{},"#,
                r#""closed_backpressure":{},"turns":{},"sends":{}}}"#
            ),
            sep,
            open,
            accepted,
            w.topics.load(Ordering::Relaxed),
            w.subscriptions.load(Ordering::Relaxed),
            w.published.load(Ordering::Relaxed),
            w.delivered.load(Ordering::Relaxed),
            w.dropped_newest.load(Ordering::Relaxed),
            w.dropped_oldest.load(Ordering::Relaxed),
            w.closed_backpressure.load(Ordering::Relaxed),
            w.loop_turns.load(Ordering::Relaxed),
            w.sends.load(Ordering::Relaxed),
        );
    }
    let draining = shared.is_draining();
    // Redis down does not fail the check: this instance still serves its own clients (docs/REDIS.md).
    let redis = match &shared.redis {
        Some(r) if r.up.load(Ordering::Relaxed) => r#","redis":"up""#,
        Some(_) => r#","redis":"down""#,
        None => "",
    };
    let _ = write!(
        body,
        r#"{{"status":"{}","io":"{}"{redis},"connections":{total},"workers":[{workers}]}}"#,
        if draining { "draining" } else { "ok" },
        shared.backend
    );
    if draining {
        write_response(
            out,
            503,
            "Service Unavailable",
            "application/json",
            &[],
            body.as_bytes(),
        )
    } else {
        write_response(out, 200, "OK", "application/json", &[], body.as_bytes())
    }
}
