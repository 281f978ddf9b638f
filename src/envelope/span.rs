//! Finds the exact byte span of a member value in the original message, using the structural
//! indexes that simd-json's stage 1 computed for it.
//!
//! Stage 1 records the offset of every `{ } [ ] : ,`, of every string's opening quote and of the
//! first byte of every number or literal, never of anything inside a string. Once simd-json has
//! accepted the message, these offsets are a token stream of valid JSON in which every value
//! starts a token, containers end with their closing bracket, and strings and scalars are one
//! token each. Walking it needs no string scanning, so finding `data` costs one step per token
//! before and inside it, whatever the length of its strings.

use std::ops::Range;

/// The byte range in `msg` of the value reached by following `path` from the top-level object:
/// `path[0]` is the position of a member among the top-level object's members, `path[1]` among
/// that member's object value, and so on. The message must already be valid JSON whose
/// structural indexes are `structurals`; `None` means they do not describe such an object (a
/// bug, never expected).
pub(crate) fn member_span(msg: &[u8], structurals: &[u32], path: &[usize]) -> Option<Range<usize>> {
    let tok = |k: usize| {
        structurals
            .get(k)
            .and_then(|&p| msg.get(p as usize))
            .copied()
    };
    let mut k = 0;
    for &member in path {
        (tok(k)? == b'{').then_some(())?;
        k += 1;
        for _ in 0..member {
            let after_value = skip_value(msg, structurals, member_value(&tok, k)?)?;
            (tok(after_value)? == b',').then_some(())?;
            k = after_value + 1;
        }
        k = member_value(&tok, k)?;
    }
    let start = *structurals.get(k)? as usize;
    let after = skip_value(msg, structurals, k)?;
    let end = match tok(k)? {
        b'{' | b'[' => *structurals.get(after - 1)? as usize + 1,
        // A string or scalar ends where the whitespace before the next token (`,` `}` `]`)
        // begins; a string's closing quote is not a structural, and cannot be whitespace.
        _ => trim_ws_end(msg, *structurals.get(after)? as usize),
    };
    (start < end && end <= msg.len()).then_some(start..end)
}

/// The byte ranges of a `POST /publish` body's publish objects: the body itself when it is an
/// object, each element when it is an array (`Err(index)` for the first element that is not an
/// object). The body must already be valid JSON whose structural indexes are `structurals`.
pub(crate) fn publish_items(
    msg: &[u8],
    structurals: &[u32],
) -> Option<Result<Vec<Range<usize>>, usize>> {
    let tok = |k: usize| {
        structurals
            .get(k)
            .and_then(|&p| msg.get(p as usize))
            .copied()
    };
    let object = |k: usize| -> Option<Range<usize>> {
        let after = skip_value(msg, structurals, k)?;
        Some(*structurals.get(k)? as usize..*structurals.get(after - 1)? as usize + 1)
    };
    match tok(0)? {
        b'{' => Some(Ok(vec![object(0)?])),
        b'[' => {
            let mut items = Vec::new();
            let mut k = 1;
            if tok(k)? == b']' {
                return Some(Ok(items));
            }
            loop {
                if tok(k)? != b'{' {
                    return Some(Err(items.len()));
                }
                items.push(object(k)?);
                k = skip_value(msg, structurals, k)?;
                match tok(k)? {
                    b',' => k += 1,
                    b']' => return Some(Ok(items)),
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

/// The raw `meta.correlationId` string of a message that simd-json's stage 1 accepted but stage 2
/// did not (too deep), found by walking the top-level object along the structural indexes with
/// its own depth count. `None` when it is not there, not a plain string (escapes are not decoded
/// here), or the structure does not look like an object.
pub(crate) fn correlation_id_of_deep<'m>(msg: &'m [u8], structurals: &[u32]) -> Option<&'m str> {
    let tok = |k: usize| {
        structurals
            .get(k)
            .and_then(|&p| msg.get(p as usize))
            .copied()
    };
    let key_at = |k: usize| -> Option<&[u8]> {
        let start = *structurals.get(k)? as usize + 1;
        let len = msg.get(start..)?.iter().position(|&b| b == b'"')?;
        let key = msg.get(start..start + len)?;
        (!key.contains(&b'\\')).then_some(key)
    };
    // Members of the object whose `{` is token `k`: (key, index of the value token).
    let find = |k: usize, want: &[u8]| -> Option<usize> {
        (tok(k)? == b'{').then_some(())?;
        let mut k = k + 1;
        loop {
            let value = member_value(&tok, k)?;
            if key_at(k)? == want {
                return Some(value);
            }
            let after = skip_value(msg, structurals, value)?;
            match tok(after)? {
                b',' => k = after + 1,
                _ => return None,
            }
        }
    };
    let meta = find(0, b"meta")?;
    let id = find(meta, b"correlationId")?;
    (tok(id)? == b'"').then_some(())?;
    let raw = key_at(id)?;
    (raw.len() <= super::MAX_CORRELATION_ID_LEN)
        .then(|| std::str::from_utf8(raw).ok())
        .flatten()
}

/// `k` indexes a member's key; checks `"key" :` and returns the index of the value token.
fn member_value(tok: &impl Fn(usize) -> Option<u8>, k: usize) -> Option<usize> {
    (tok(k)? == b'"' && tok(k + 1)? == b':').then_some(k + 2)
}

/// Index of the token after the value whose first token is `k`.
fn skip_value(msg: &[u8], structurals: &[u32], k: usize) -> Option<usize> {
    let first = *msg.get(*structurals.get(k)? as usize)?;
    if !matches!(first, b'{' | b'[') {
        return Some(k + 1);
    }
    let mut depth = 0usize;
    for (j, &pos) in structurals.iter().enumerate().skip(k) {
        match msg.get(pos as usize)? {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn trim_ws_end(msg: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(msg.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::{Buffers, Tape};

    /// simd-json's structural indexes of `msg` (which must be valid JSON).
    fn structurals(msg: &[u8]) -> Vec<u32> {
        let mut copy = msg.to_vec();
        let mut buffers = Buffers::default();
        let mut tape = Tape::null();
        simd_json::fill_tape(&mut copy, &mut buffers, &mut tape).expect("valid JSON");
        buffers.structural_indexes().to_vec()
    }

    fn span<'m>(msg: &'m str, path: &[usize]) -> Option<&'m str> {
        let r = member_span(msg.as_bytes(), &structurals(msg.as_bytes()), path)?;
        msg.get(r)
    }

    #[test]
    fn top_level_members() {
        let m = r#"{ "a" : 1 , "b":[ 1, {"x":"}"} ] ,"c":"s\"}" ,"d" :{ } }"#;
        assert_eq!(span(m, &[0]), Some("1"));
        assert_eq!(span(m, &[1]), Some(r#"[ 1, {"x":"}"} ]"#));
        assert_eq!(span(m, &[2]), Some(r#""s\"}""#));
        assert_eq!(span(m, &[3]), Some("{ }"));
        assert_eq!(span(m, &[4]), None);
    }

    #[test]
    fn nested_members() {
        let m =
            "{\"t\":\"P\",\"p\":{\"topic\":\"x\",\"q\":[[]],\"data\":\n{\"a\": 1 }\n},\"m\":{}}";
        assert_eq!(span(m, &[1, 2]), Some("{\"a\": 1 }"));
        assert_eq!(span(m, &[1, 1]), Some("[[]]"));
        assert_eq!(span(m, &[1, 0]), Some("\"x\""));
        assert_eq!(
            span(m, &[1]),
            Some("{\"topic\":\"x\",\"q\":[[]],\"data\":\n{\"a\": 1 }\n}")
        );
        assert_eq!(span(m, &[0, 0]), None); // "P" is not an object
        assert_eq!(span(m, &[2, 0]), None); // {} has no member 0
    }

    #[test]
    fn scalars_are_trimmed_exactly() {
        for v in [
            "0", "-1.5e+7", "1e300", "true", "false", "null", "\"\"", "\" a \"",
        ] {
            let m = format!("{{\"k\":\t{v}\r\n ,\"z\":{v}}}");
            assert_eq!(span(&m, &[0]), Some(v), "{v}");
            assert_eq!(span(&m, &[1]), Some(v), "{v}");
        }
    }

    #[test]
    fn inconsistent_structurals_give_none() {
        let msg = br#"{"a":[1]}"#;
        let s = structurals(msg);
        assert_eq!(member_span(msg, &s, &[0]), Some(5..8));
        assert_eq!(member_span(msg, &s[..3], &[0]), None); // truncated token stream
        assert_eq!(member_span(msg, &[], &[0]), None);
        assert_eq!(member_span(b"", &s, &[0]), None);
        assert_eq!(member_span(msg, &[0, 1, 4, 9, 9], &[0]), None); // out-of-range offsets
    }
}
