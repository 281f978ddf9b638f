//! Server envelopes: `MESSAGE`, `ACK`, `ERROR` and `PONG`, appended to a `Vec<u8>` with no
//! intermediate allocation, strings JSON-escaped.

use std::fmt::{self, Write as _};

use super::{EnvelopeError, ErrorCode};

const MESSAGE_HEAD: &[u8] = br#"{"type":"MESSAGE","payload":{"topic":""#;
const MESSAGE_MID: &[u8] = br#"","data":"#;
const MESSAGE_TAIL: &[u8] = b"}}";

/// Exact length of what [`write_message`] appends for `topic` and `data`.
#[must_use]
pub fn message_len(topic: &str, data: &[u8]) -> usize {
    MESSAGE_HEAD.len() + escaped_len(topic) + MESSAGE_MID.len() + data.len() + MESSAGE_TAIL.len()
}

/// Appends `{"type":"MESSAGE","payload":{"topic":"<topic>","data":<data>}}`.
///
/// `data` is copied verbatim: pass the `data` of a parsed `PUBLISH`, which is valid JSON.
pub fn write_message(out: &mut Vec<u8>, topic: &str, data: &[u8]) {
    out.reserve(message_len(topic, data));
    out.extend_from_slice(MESSAGE_HEAD);
    push_escaped(out, topic);
    out.extend_from_slice(MESSAGE_MID);
    out.extend_from_slice(data);
    out.extend_from_slice(MESSAGE_TAIL);
}

/// Appends `{"type":"ACK","payload":{"of":"<of>"}}`, with `"meta":{"correlationId":...}` when
/// `correlation_id` is given. `of` is the request's type, see
/// [`Request::type_name`](super::Request::type_name).
pub fn write_ack(out: &mut Vec<u8>, of: &str, correlation_id: Option<&str>) {
    out.extend_from_slice(br#"{"type":"ACK","payload":{"of":""#);
    push_escaped(out, of);
    out.extend_from_slice(b"\"}");
    finish(out, correlation_id);
}

/// Appends `{"type":"ERROR","payload":{"code":"<code>","message":"<message>","retryable":<bool>}}`
/// with `"retryAfterMs":n` in the payload when given and `meta.correlationId` when given.
pub fn write_error(
    out: &mut Vec<u8>,
    code: ErrorCode,
    message: &str,
    retryable: bool,
    retry_after_ms: Option<u64>,
    correlation_id: Option<&str>,
) {
    error_head(out, code);
    push_escaped(out, message);
    error_tail(out, retryable, retry_after_ms, correlation_id);
}

/// Appends the `INVALID_ARGUMENT` `ERROR` reply for a rejected envelope: its message, not
/// retryable, echoing its correlation id. Formats the message straight into `out`.
pub fn write_envelope_error(out: &mut Vec<u8>, err: &EnvelopeError) {
    error_head(out, err.code());
    // Writing into a Vec cannot fail, and the error's Display never fails.
    let _ = write!(Escaper(out), "{err}");
    error_tail(out, false, None, err.correlation_id());
}

/// Appends `{"type":"PONG","payload":{}}`, with `meta.correlationId` when given.
pub fn write_pong(out: &mut Vec<u8>, correlation_id: Option<&str>) {
    out.extend_from_slice(br#"{"type":"PONG","payload":{}"#);
    finish(out, correlation_id);
}

fn error_head(out: &mut Vec<u8>, code: ErrorCode) {
    out.extend_from_slice(br#"{"type":"ERROR","payload":{"code":""#);
    out.extend_from_slice(code.as_str().as_bytes());
    out.extend_from_slice(br#"","message":""#);
}

fn error_tail(out: &mut Vec<u8>, retryable: bool, retry_after_ms: Option<u64>, id: Option<&str>) {
    out.extend_from_slice(if retryable {
        br#"","retryable":true"#.as_slice()
    } else {
        br#"","retryable":false"#.as_slice()
    });
    if let Some(ms) = retry_after_ms {
        out.extend_from_slice(br#","retryAfterMs":"#);
        push_u64(out, ms);
    }
    out.push(b'}');
    finish(out, id);
}

/// Closes an envelope whose payload is written: the optional meta, then `}`.
fn finish(out: &mut Vec<u8>, correlation_id: Option<&str>) {
    if let Some(id) = correlation_id {
        out.extend_from_slice(br#","meta":{"correlationId":""#);
        push_escaped(out, id);
        out.extend_from_slice(b"\"}");
    }
    out.push(b'}');
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Bytes of `s` once JSON-escaped (without quotes).
#[must_use]
pub fn escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// Appends `s` JSON-escaped (without quotes): `"` and `\` get a backslash, U+0000..=U+001F become
/// `\u00XX`; everything else, including non-ASCII, is copied as is.
pub fn push_escaped(out: &mut Vec<u8>, s: &str) {
    const fn hex(n: u8) -> u8 {
        if n < 10 { b'0' + n } else { b'a' + n - 10 }
    }
    let bytes = s.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..0x20 => &[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 0xf)],
            _ => continue,
        };
        out.extend_from_slice(bytes.get(clean_from..i).unwrap_or_default());
        out.extend_from_slice(escape);
        clean_from = i + 1;
    }
    out.extend_from_slice(bytes.get(clean_from..).unwrap_or_default());
}

/// `fmt::Write` adapter that JSON-escapes into a byte buffer.
struct Escaper<'v>(&'v mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ErrorKind;
    use super::*;
    use simd_json::prelude::*;

    fn out(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = b"HDR".to_vec(); // writers append after what is there
        f(&mut v);
        assert_eq!(v.get(..3), Some(&b"HDR"[..]));
        let s = String::from_utf8(v.split_off(3)).unwrap();
        // Every output is valid JSON for simd-json.
        let mut copy = s.clone().into_bytes();
        simd_json::to_borrowed_value(&mut copy).unwrap_or_else(|e| panic!("{s}: {e}"));
        s
    }

    /// Parses `json` and returns the string at `payload.<key>`.
    fn payload_str(json: &str, key: &str) -> String {
        let mut copy = json.as_bytes().to_vec();
        let v = simd_json::to_owned_value(&mut copy).unwrap();
        v["payload"][key].as_str().unwrap().to_owned()
    }

    #[test]
    fn message() {
        let data = b"{\"a\": 1 }";
        let s = out(|v| write_message(v, "room:42", data));
        assert_eq!(
            s,
            r#"{"type":"MESSAGE","payload":{"topic":"room:42","data":{"a": 1 }}}"#
        );
        assert_eq!(message_len("room:42", data), s.len());
        for data in [&b"\"\\u00e9\\n\\\"\""[..], b"[ ]", b"null", b"-0.5"] {
            let s = out(|v| write_message(v, "t", data));
            assert_eq!(message_len("t", data), s.len());
        }
        // Out-of-range numbers pass through verbatim; plain simd-json refuses them, the
        // envelope module's own validation accepts them.
        let mut v = Vec::new();
        write_message(&mut v, "t", b"1e400");
        assert_eq!(
            v,
            br#"{"type":"MESSAGE","payload":{"topic":"t","data":1e400}}"#
        );
        assert_eq!(message_len("t", b"1e400"), v.len());
        let (mut input, mut retry) = (Vec::new(), Vec::new());
        let mut buffers = simd_json::Buffers::default();
        let mut tape = simd_json::Tape::null();
        let valid = super::super::json::load(&v, &mut input, &mut retry, &mut buffers, &mut tape);
        assert_eq!(valid, Ok(()));
    }

    #[test]
    fn message_topic_is_escaped() {
        let topic = "q\"uo\\te\u{0}\u{1}\n\t\u{1f}\u{7f}é🎉";
        let s = out(|v| write_message(v, topic, b"true"));
        assert!(
            s.contains(r#""topic":"q\"uo\\te\u0000\u0001\u000a\u0009\u001f"#),
            "{s}"
        );
        assert_eq!(payload_str(&s, "topic"), topic);
        assert_eq!(message_len(topic, b"true"), s.len());
    }

    #[test]
    fn every_control_char_round_trips() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let s = out(|v| write_ack(v, &all, None));
        assert_eq!(payload_str(&s, "of"), all);
        assert_eq!(escaped_len(&all), 6 * 32);
    }

    #[test]
    fn ack() {
        assert_eq!(
            out(|v| write_ack(v, "SUBSCRIBE", Some("c-17"))),
            r#"{"type":"ACK","payload":{"of":"SUBSCRIBE"},"meta":{"correlationId":"c-17"}}"#
        );
        assert_eq!(
            out(|v| write_ack(v, "PUBLISH", None)),
            r#"{"type":"ACK","payload":{"of":"PUBLISH"}}"#
        );
        let s = out(|v| write_ack(v, "PING", Some("a\"b\\")));
        assert!(s.ends_with(r#""meta":{"correlationId":"a\"b\\"}}"#), "{s}");
    }

    #[test]
    fn error() {
        assert_eq!(
            out(|v| write_error(
                v,
                ErrorCode::ResourceExhausted,
                "rate limit",
                true,
                Some(250),
                Some("c")
            )),
            r#"{"type":"ERROR","payload":{"code":"RESOURCE_EXHAUSTED","message":"rate limit","retryable":true,"retryAfterMs":250},"meta":{"correlationId":"c"}}"#
        );
        assert_eq!(
            out(|v| write_error(v, ErrorCode::Internal, "bug \"7\"", false, None, None)),
            r#"{"type":"ERROR","payload":{"code":"INTERNAL","message":"bug \"7\"","retryable":false}}"#
        );
        for ms in [0, 9, 10, 1234567890, u64::MAX] {
            let s = out(|v| write_error(v, ErrorCode::Unavailable, "", true, Some(ms), None));
            assert!(s.contains(&format!(",\"retryAfterMs\":{ms}}}")), "{s}");
        }
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
        ] {
            assert_eq!(
                payload_str(
                    &out(|v| write_error(v, code, "m", false, None, None)),
                    "code"
                ),
                code.as_str()
            );
        }
    }

    #[test]
    fn envelope_error() {
        let e = EnvelopeError::new(ErrorKind::UnknownType(super::super::InlineStr::truncating(
            "a\"\n",
        )))
        .with_correlation_id(Some("c-1"));
        let s = out(|v| write_envelope_error(v, &e));
        assert_eq!(
            s,
            r#"{"type":"ERROR","payload":{"code":"INVALID_ARGUMENT","message":"unknown type \"a\\\"\\n\"","retryable":false},"meta":{"correlationId":"c-1"}}"#
        );
        assert_eq!(payload_str(&s, "message"), e.to_string());
    }

    #[test]
    fn pong() {
        assert_eq!(
            out(|v| write_pong(v, None)),
            r#"{"type":"PONG","payload":{}}"#
        );
        assert_eq!(
            out(|v| write_pong(v, Some("p1"))),
            r#"{"type":"PONG","payload":{},"meta":{"correlationId":"p1"}}"#
        );
    }
}
