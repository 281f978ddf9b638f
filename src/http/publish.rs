//! `POST /publish`: a publish object or an array of them (docs/PROTOCOL.md), all validated
//! before any is handed to the application's [`App::publish_batch`].

use crate::app::{App, Publish};
use crate::envelope::{self, Request, Scratch};
use crate::proto::HttpRequest;
use crate::proto::http::write_response;
use crate::state::Shared;

use super::auth;

/// Answers `POST /publish` (any other method gets 405): 401 without the `PUBLISH_KEY` bearer key,
/// 503 while the server drains, 400 naming the first bad item, otherwise `{"accepted":n}` once
/// every item is handed to `app`.
pub fn respond<A: App>(
    req: &HttpRequest<'_>,
    shared: &Shared,
    scratch: &mut Scratch,
    app: &mut A,
    out: &mut Vec<u8>,
) -> u16 {
    if req.method != "POST" {
        return reject(
            out,
            405,
            "Method Not Allowed",
            "use POST",
            &[("Allow", "POST")],
        );
    }
    if !auth::authorized(req, shared.publish_key.as_ref()) {
        let message = "missing or wrong Authorization: Bearer key";
        return reject(
            out,
            401,
            "Unauthorized",
            message,
            &[("WWW-Authenticate", "Bearer")],
        );
    }
    if shared.is_draining() {
        // Subscribers are being closed: a publish accepted now would reach nobody.
        let message = "server is shutting down: publish to another instance";
        return reject(
            out,
            503,
            "Service Unavailable",
            message,
            &[("Retry-After", "1")],
        );
    }
    let items = match envelope::split_publish_body(req.body, scratch) {
        Ok(items) => items,
        Err(e) => return reject(out, 400, "Bad Request", &e.to_string(), &[]),
    };
    // Validate every item first (all or nothing), keeping topic and data positions.
    let mut checked: Vec<(String, std::ops::Range<usize>)> = Vec::with_capacity(items.len());
    let mut msg = Vec::new();
    let prefix = envelope::publish_envelope_prefix_len();
    for (i, item) in items.iter().enumerate() {
        envelope::publish_envelope(&mut msg, &req.body[item.clone()]);
        let parsed = envelope::parse(&msg, scratch).map(|e| e.request);
        match parsed {
            Ok(Request::Publish { topic, data, .. }) => {
                // `data` lies in `msg` after the fixed prefix: map it back into the body.
                let offset = (data.as_ptr() as usize)
                    .saturating_sub(msg.as_ptr() as usize)
                    .saturating_sub(prefix);
                let start = item.start + offset;
                checked.push((topic.to_owned(), start..start + data.len()));
            }
            Ok(other) => {
                let message = format!("item {i}: not a publish ({})", other.type_name());
                return reject(out, 400, "Bad Request", &message, &[]);
            }
            Err(e) => {
                return reject(out, 400, "Bad Request", &format!("item {i}: {e}"), &[]);
            }
        }
    }
    let batch: Vec<Publish<'_>> = checked
        .iter()
        .map(|(topic, data)| Publish {
            topic,
            data: req.body.get(data.clone()).unwrap_or_default(),
        })
        .collect();
    app.publish_batch(&batch);
    let body = format!(r#"{{"accepted":{}}}"#, checked.len());
    write_response(out, 200, "OK", "application/json", &[], body.as_bytes())
}

/// A JSON error answer to `POST /publish`: `{"error": "<message>"}`.
fn reject(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> u16 {
    let mut body = Vec::with_capacity(32 + message.len());
    body.extend_from_slice(br#"{"error":""#);
    envelope::push_escaped(&mut body, message);
    body.extend_from_slice(b"\"}");
    write_response(out, status, reason, "application/json", extra, &body)
}
