//! The simd-json stage: the reusable [`Scratch`], validation of the whole message into a tape,
//! and turning simd-json's errors into [`ErrorKind`]s.

use std::fmt;

use simd_json::{Buffers, ErrorType, INPUT_PADDING, Tape};

use super::{ErrorKind, MAX_DEPTH};

/// Per-worker parser state, reused for every message so that parsing does not allocate once the
/// buffers have grown to the largest message seen: the padded copy of the message that simd-json
/// unescapes strings into, simd-json's [`Buffers`] (structural indexes, stage-2 stack, string
/// buffer), the tape, and the storage of [`Topics`](super::Topics).
///
/// Memory held is a small multiple of the largest message parsed; [`Scratch::shrink`] gives it
/// back after an unusually large one.
pub struct Scratch {
    pub(crate) input: Vec<u8>,
    /// Second copy, used only when a number is out of simd-json's range (see [`load`]).
    pub(crate) retry_input: Vec<u8>,
    pub(crate) buffers: Buffers,
    pub(crate) tape: Tape<'static>,
    pub(crate) topic_buf: String,
    pub(crate) topic_ends: Vec<usize>,
}

impl Scratch {
    /// Empty scratch; buffers grow on first use.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Scratch whose message copy is pre-sized for messages of up to `message_len` bytes (the
    /// tape and simd-json's buffers still grow with the number of JSON tokens).
    #[must_use]
    pub fn with_capacity(message_len: usize) -> Self {
        Self {
            input: Vec::with_capacity(message_len + INPUT_PADDING),
            retry_input: Vec::new(),
            // simd-json's own padded input copy is only used by `fill_tape`, not by
            // `fill_tape_padded`, so it is created small.
            buffers: Buffers::with_max_depth(0, MAX_DEPTH),
            tape: Tape(Vec::with_capacity(message_len / 16)),
            topic_buf: String::new(),
            topic_ends: Vec::new(),
        }
    }

    /// Approximate heap bytes held (message copies, tape, structural indexes, topic storage),
    /// so a worker can [`shrink`](Self::shrink) after a large or token-dense message: a 1 MiB
    /// array of small numbers leaves about 15 MiB here.
    #[must_use]
    pub fn retained_bytes(&self) -> usize {
        // simd-json's string buffer is about as large as the largest message.
        2 * self.input.capacity()
            + self.retry_input.capacity()
            + self.tape.0.capacity() * size_of::<simd_json::Node<'static>>()
            + size_of_val(self.buffers.structural_indexes())
            + self.topic_buf.capacity()
            + self.topic_ends.capacity() * size_of::<usize>()
    }

    /// Frees everything held; the next parse allocates again.
    pub fn shrink(&mut self) {
        *self = Self::new();
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("input_capacity", &self.input.capacity())
            .field("tape_capacity", &self.tape.0.capacity())
            .finish_non_exhaustive()
    }
}

/// Validates `msg` as JSON (UTF-8, grammar, depth <= [`MAX_DEPTH`]) and fills `tape` from a padded
/// copy in `input`; on success `buffers.structural_indexes()` holds the offsets of `msg`'s
/// structural characters.
///
/// simd-json rejects numbers outside the f64/i64/u64 range (`1e400`,
/// `123456789012345678901234567890`) although RFC 8259 allows them. `data` is forwarded verbatim
/// and no envelope field is numeric, so when simd-json reports an invalid number, every number
/// token that matches RFC 8259's number grammar (checked by [`number_end`]) is replaced in a second
/// copy by `0` and spaces (same length, same offsets) and simd-json parses that copy instead.
/// Everything else is still validated by simd-json.
pub(crate) fn load<'a>(
    msg: &[u8],
    input: &'a mut Vec<u8>,
    retry_input: &'a mut Vec<u8>,
    buffers: &mut Buffers,
    tape: &mut Tape<'a>,
) -> Result<(), ErrorKind> {
    padded_copy(input, msg);
    let err = match simd_json::fill_tape_padded(input, msg.len(), buffers, tape) {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    if *err.error() != ErrorType::InvalidNumber {
        return Err(classify(&err, msg, buffers.structural_indexes()));
    }
    padded_copy(retry_input, msg);
    if !patch_numbers(retry_input, msg, buffers.structural_indexes()) {
        return Err(classify(&err, msg, buffers.structural_indexes()));
    }
    match simd_json::fill_tape_padded(retry_input, msg.len(), buffers, tape) {
        Ok(()) => Ok(()),
        Err(err) => Err(classify(&err, msg, buffers.structural_indexes())),
    }
}

fn padded_copy(buf: &mut Vec<u8>, msg: &[u8]) {
    buf.clear();
    buf.reserve(msg.len() + INPUT_PADDING);
    buf.extend_from_slice(msg);
    buf.resize(msg.len() + INPUT_PADDING, b' ');
}

/// Replaces each grammatical number token of `msg` (found at the structural indexes) by `0`
/// and spaces in `copy`. Returns whether any was replaced.
fn patch_numbers(copy: &mut [u8], msg: &[u8], structurals: &[u32]) -> bool {
    let mut any = false;
    for &pos in structurals {
        let start = pos as usize;
        if !matches!(msg.get(start), Some(b'-' | b'0'..=b'9')) {
            continue;
        }
        let Some(end) = number_end(msg, start) else {
            continue;
        };
        if let Some((first, rest)) = copy.get_mut(start..end).and_then(<[u8]>::split_first_mut) {
            *first = b'0';
            rest.fill(b' ');
            any = true;
        }
    }
    any
}

/// If an RFC 8259 number starts at `start` and is followed by the end of input, whitespace,
/// `,`, `]` or `}`, returns where it ends:
/// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`.
fn number_end(msg: &[u8], start: usize) -> Option<usize> {
    let at = |i: usize| msg.get(i).copied();
    let digits = |mut i: usize| {
        while at(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        i
    };
    let mut i = start;
    if at(i) == Some(b'-') {
        i += 1;
    }
    match at(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    if at(i) == Some(b'.') {
        let j = digits(i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(i);
        if j == i {
            return None;
        }
        i = j;
    }
    match at(i) {
        None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}') => Some(i),
        Some(_) => None,
    }
}

/// Maps a simd-json error to the message the client gets.
fn classify(err: &simd_json::Error, msg: &[u8], structurals: &[u32]) -> ErrorKind {
    let at_end = structurals
        .last()
        .is_some_and(|&p| p as usize == err.index());
    let reason = match err.error() {
        ErrorType::Eof => {
            return ErrorKind::NotJson {
                reason: "empty message",
            };
        }
        ErrorType::InvalidUtf8 => {
            return ErrorKind::NotJson {
                reason: "invalid UTF-8",
            };
        }
        ErrorType::DepthLimitExceeded => return ErrorKind::TooDeep,
        ErrorType::InputTooLarge => {
            return ErrorKind::NotJson {
                reason: "message too large",
            };
        }
        _ if trailing_after_object(msg, structurals, err.index()) => {
            return ErrorKind::TrailingData;
        }
        // simd-json reports these with an offset relative to the string, not the message.
        ErrorType::InvalidEscape
        | ErrorType::InvalidUnicodeEscape
        | ErrorType::InvalidUnicodeCodepoint => {
            return ErrorKind::NotJson {
                reason: "invalid escape in a string",
            };
        }
        // Stage 2 ran out of tokens.
        ErrorType::Syntax if at_end && err.character().is_some() => {
            return ErrorKind::NotJson {
                reason: "unexpected end of message",
            };
        }
        // Stage 1 reports an unterminated string or a raw control character in a string
        // without a position.
        ErrorType::Syntax if err.character().is_none() => {
            return ErrorKind::NotJson {
                reason: "unterminated string or control character in a string",
            };
        }
        ErrorType::InvalidNumber | ErrorType::InvalidExponent => "invalid number",
        ErrorType::UnterminatedString => "unterminated string",
        ErrorType::ExpectedTrue | ErrorType::ExpectedFalse | ErrorType::ExpectedNull => {
            "invalid literal"
        }
        ErrorType::ExpectedObjectColon => "expected ':' after an object key",
        ErrorType::ExpectedObjectKey | ErrorType::KeyMustBeAString => "expected a string key",
        ErrorType::ExpectedObjectContent => "expected ',' or '}' in an object",
        ErrorType::ExpectedArrayContent => "expected ',' or ']' in an array",
        ErrorType::TrailingData => "trailing characters",
        ErrorType::InternalError => "unexpected character",
        _ => "syntax error",
    };
    match err.character() {
        Some(_) => ErrorKind::NotJsonAt {
            reason,
            offset: err.index(),
        },
        None => ErrorKind::NotJson { reason },
    }
}

/// Whether the message starts with a complete `{...}` (by simd-json's structural characters)
/// that is followed by more structural characters, and the error is not before its end.
fn trailing_after_object(msg: &[u8], structurals: &[u32], err_index: usize) -> bool {
    if structurals.first().and_then(|&p| msg.get(p as usize)) != Some(&b'{') {
        return false;
    }
    let mut depth = 0usize;
    for (k, &pos) in structurals.iter().enumerate() {
        match msg.get(pos as usize) {
            Some(b'{' | b'[') => depth += 1,
            Some(b'}' | b']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return k + 1 < structurals.len() && err_index >= pos as usize;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(msg: &[u8]) -> Result<Vec<String>, ErrorKind> {
        let mut s = Scratch::new();
        let Scratch {
            input,
            retry_input,
            buffers,
            tape,
            ..
        } = &mut s;
        let mut t = std::mem::replace(tape, Tape(Vec::new())).reset();
        load(msg, input, retry_input, buffers, &mut t)?;
        Ok(t.0.iter().map(|n| format!("{n:?}")).collect())
    }

    fn not_json_at(reason: &'static str, offset: usize) -> ErrorKind {
        ErrorKind::NotJsonAt { reason, offset }
    }

    #[test]
    fn accepts_json() {
        assert_eq!(run(br#"{"a":[1,true]}"#).unwrap().len(), 5);
        assert!(run(b" \t\r\n{}\n ").is_ok());
    }

    #[test]
    fn empty_and_whitespace() {
        let empty = ErrorKind::NotJson {
            reason: "empty message",
        };
        assert_eq!(run(b""), Err(empty));
        assert_eq!(run(b" \n\t "), Err(empty));
    }

    #[test]
    fn invalid_utf8_never_panics() {
        let bad: [&[u8]; 6] = [
            b"\xff",
            b"{\"type\":\"PING\xff\"}",
            b"{\"a\":\"\xc3\"}",
            b"{\"a\":\"\xed\xa0\x80\"}", // UTF-16 surrogate encoded as UTF-8
            b"{\"a\":\"\xf4\x90\x80\x80\"}", // above U+10FFFF
            b"{\"a\":1}\xe9",
        ];
        for m in bad {
            let e = run(m).unwrap_err();
            assert!(e.to_string().starts_with("not JSON"), "{m:?}: {e}");
        }
        assert_eq!(
            run(b"\xff"),
            Err(ErrorKind::NotJson {
                reason: "invalid UTF-8"
            })
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(run(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(run(deep.as_bytes()), Err(ErrorKind::TooDeep));
        for n in [1_000, 100_000] {
            let deep = format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
            assert_eq!(run(deep.as_bytes()), Err(ErrorKind::TooDeep));
            let open = "{\"a\":".repeat(n);
            assert_eq!(run(open.as_bytes()), Err(ErrorKind::TooDeep));
        }
    }

    #[test]
    fn trailing_data() {
        for m in [
            &b"{} x"[..],
            b"{\"a\":1}}",
            b"{\"a\":[1]} {}",
            b"{}{}",
            b"{}\"s\"",
            b"{} 1e400",
        ] {
            assert_eq!(run(m), Err(ErrorKind::TrailingData), "{m:?}");
        }
        // Not trailing: broken before the end of the object.
        assert_eq!(
            run(b"{\"a\":tru} x"),
            Err(not_json_at("invalid literal", 5))
        );
        assert_eq!(run(b"[1] 2"), Err(not_json_at("unexpected character", 2)));
    }

    #[test]
    fn huge_numbers_are_accepted_verbatim_when_grammatical() {
        for n in [
            "1e400",
            "-1e400",
            "1E+400",
            "123456789012345678901234567890",
            "-0.5e-99999",
            "0e9999999999999999999",
        ] {
            let m = format!("{{\"a\":[{n}, {n}],\"b\":{n}}}");
            assert!(run(m.as_bytes()).is_ok(), "{n}");
        }
    }

    #[test]
    fn bad_numbers_are_rejected() {
        for n in [
            "01", "1.", "-", "1e", "1e+", ".5", "+1", "1e400x", "0x10", "1.e5", "--1", "1e400.5",
        ] {
            let m = format!("{{\"a\":{n}}}");
            let e = run(m.as_bytes()).unwrap_err();
            assert!(e.to_string().starts_with("not JSON"), "{n}: {e}");
        }
        // An out-of-range number elsewhere does not let a bad one through.
        assert!(run(b"{\"a\":1e400,\"b\":01}").is_err());
        assert!(run(b"{\"a\":1e400,\"b\":tru}").is_err());
    }

    #[test]
    fn number_grammar() {
        let ok = ["0", "-0", "12", "1.5", "1e5", "1E-5", "-12.34e+56", "0.0"];
        for n in ok {
            assert_eq!(number_end(n.as_bytes(), 0), Some(n.len()), "{n}");
            assert_eq!(
                number_end(format!("{n},").as_bytes(), 0),
                Some(n.len()),
                "{n}"
            );
        }
        for n in [
            "00", "01", "-", "1.", "1e", "1e-", ".1", "1a", "1\"", "1:", "1[", "-a",
        ] {
            assert_eq!(number_end(n.as_bytes(), 0), None, "{n}");
        }
    }

    #[test]
    fn syntax_errors_have_messages() {
        let end = ErrorKind::NotJson {
            reason: "unexpected end of message",
        };
        for m in [
            &b"{"[..],
            b"{\"a\"",
            b"{\"a\":",
            b"{\"type\":\"PING\"",
            b"{\"a\":[1,2",
        ] {
            assert_eq!(run(m), Err(end), "{m:?}");
        }
        let string = ErrorKind::NotJson {
            reason: "unterminated string or control character in a string",
        };
        assert_eq!(run(b"{\"a\":\"x}"), Err(string));
        assert_eq!(run(b"{\"a\":\"\x01\"}"), Err(string));
        let escape = ErrorKind::NotJson {
            reason: "invalid escape in a string",
        };
        assert_eq!(run(b"{\"a\":\"\\x\"}"), Err(escape));
        assert_eq!(run(b"{\"a\":\"\\ud800\"}"), Err(escape));
        assert_eq!(
            run(b"{\"a\" 1}"),
            Err(not_json_at("expected ':' after an object key", 5))
        );
        assert_eq!(
            run(b"{1:2}"),
            Err(not_json_at("expected ',' or '}' in an object", 1))
        );
        assert_eq!(
            run(b"{\"a\":1,}"),
            Err(not_json_at("expected a string key", 7))
        );
        assert_eq!(
            run(b"{\"a\":[1 2]}"),
            Err(not_json_at("expected ',' or ']' in an array", 8))
        );
        assert_eq!(
            run(b"{\"a\":[}"),
            Err(not_json_at("unexpected character", 6))
        );
        assert_eq!(run(b"{\"a\":-}"), Err(not_json_at("invalid number", 6)));
        assert_eq!(run(b"x"), Err(not_json_at("unexpected character", 0)));
    }
}
