//! `POST /publish` bodies: one publish object (`{"topic": T, "data": ...}`) or an array of them.
//!
//! The body is validated once by simd-json and cut into its items along simd-json's structural
//! indexes (see `span.rs`), so each item is the exact bytes the backend sent; each item is then
//! read as a PUBLISH payload by [`crate::envelope::parse`] ([`publish_envelope`] builds that message).

use std::ops::Range;

use simd_json::Tape;

use super::error::{EnvelopeError, ErrorKind};
use super::json::{self, Scratch};
use super::span::publish_items;

/// Most items one `POST /publish` body may carry (named in [`ErrorKind::BatchTooLarge`]'s message).
pub const MAX_BATCH: usize = 1000;

/// Validates a `POST /publish` body and returns the byte range of each publish object in it.
pub fn split_publish_body(
    body: &[u8],
    scratch: &mut Scratch,
) -> Result<Vec<Range<usize>>, EnvelopeError> {
    let Scratch {
        input,
        retry_input,
        buffers,
        tape: tape_slot,
        ..
    } = scratch;
    let mut tape: Tape<'_> = std::mem::replace(tape_slot, Tape(Vec::new())).reset();
    let loaded = json::load(body, input, retry_input, buffers, &mut tape);
    *tape_slot = tape.reset();
    loaded?;
    match publish_items(body, buffers.structural_indexes()) {
        Some(Ok(items)) if items.is_empty() => Err(ErrorKind::EmptyBatch.into()),
        Some(Ok(items)) if items.len() > MAX_BATCH => {
            Err(ErrorKind::BatchTooLarge(items.len()).into())
        }
        Some(Ok(items)) => Ok(items),
        Some(Err(index)) => Err(ErrorKind::BatchItemNotAnObject(index).into()),
        None => Err(ErrorKind::NotAPublishBody.into()),
    }
}

const PUBLISH_PREFIX: &[u8] = br#"{"type":"PUBLISH","payload":"#;

/// Bytes [`publish_envelope`] writes before the item.
pub fn publish_envelope_prefix_len() -> usize {
    PUBLISH_PREFIX.len()
}

/// Writes the PUBLISH envelope whose payload is `item` (a publish object) into `out`.
pub fn publish_envelope(out: &mut Vec<u8>, item: &[u8]) {
    out.clear();
    out.extend_from_slice(PUBLISH_PREFIX);
    out.extend_from_slice(item);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Request, parse};

    fn items(body: &str) -> Result<Vec<String>, String> {
        let mut scratch = Scratch::default();
        split_publish_body(body.as_bytes(), &mut scratch)
            .map(|r| r.into_iter().map(|r| body[r].to_owned()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn objects_and_arrays_split_into_exact_items() {
        let one = r#" {"topic":"a", "data": { "x" : [1, 2] } } "#;
        assert_eq!(items(one), Ok(vec![one.trim().to_owned()]));
        let many = r#"[ {"topic":"a","data":1} ,{"topic":"b","data":"s,]"}]"#;
        assert_eq!(
            items(many),
            Ok(vec![
                r#"{"topic":"a","data":1}"#.to_owned(),
                r#"{"topic":"b","data":"s,]"}"#.to_owned()
            ])
        );
        let mut scratch = Scratch::default();
        let mut msg = Vec::new();
        publish_envelope(&mut msg, br#"{"topic":"b","data":"s,]"}"#);
        match parse(&msg, &mut scratch).map(|e| e.request) {
            Ok(Request::Publish { topic, data, .. }) => {
                assert_eq!((topic, data), ("b", &br#""s,]""#[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert!(items("not json").unwrap_err().starts_with("not JSON"));
        assert_eq!(
            items("[]").unwrap_err(),
            "the array holds no publish object"
        );
        assert_eq!(
            items(r#"[{"topic":"a","data":1}, 7]"#).unwrap_err(),
            "item 1 is not an object"
        );
        assert_eq!(
            items("\"x\"").unwrap_err(),
            "body must be a publish object or an array of them"
        );
        assert!(items(r#"{"topic":"a"} {}"#).is_err(), "trailing data");
    }
}
