//! Parse errors ([`EnvelopeError`], [`ErrorKind`]) and the wire error codes ([`ErrorCode`]).

use std::fmt;

use super::{MAX_CORRELATION_ID_LEN, MAX_DEPTH, MAX_TOPIC_LEN, MAX_TOPICS};

/// The `code` of an `ERROR` reply (see the protocol's error code table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, no or unknown `type`, bad payload fields, bad topic name.
    InvalidArgument,
    /// The request needs an identity and the connection has none.
    Unauthenticated,
    /// The identity's claims do not allow this topic.
    PermissionDenied,
    /// Rate limit, too many subscriptions, payload over limit.
    ResourceExhausted,
    /// The server is draining for shutdown.
    Unavailable,
    /// A bug.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire, e.g. `"INVALID_ARGUMENT"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string of at most `N` bytes stored inline, so errors stay `Copy` and never allocate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InlineStr<const N: usize> {
    len: u8,
    truncated: bool,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// Copies `s`, cut at the last char boundary at or before `N` bytes.
    pub(crate) fn truncating(s: &str) -> Self {
        let mut end = s.len().min(N).min(usize::from(u8::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; N];
        let head = s.as_bytes().get(..end).unwrap_or_default();
        if let Some(dst) = bytes.get_mut(..end) {
            dst.copy_from_slice(head);
        }
        Self {
            len: u8::try_from(end).unwrap_or(0),
            truncated: end < s.len(),
            bytes,
        }
    }

    /// The stored text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        let head = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(head).unwrap_or_default()
    }

    /// Whether the original was longer than what is stored.
    #[must_use]
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    /// Quoted and escaped like Rust's `{:?}`, with `...` after the quote when truncated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// What exactly is wrong with a client envelope. Its `Display` is the human message of the
/// `ERROR` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// simd-json rejected the message; no byte offset is known.
    #[error("not JSON: {reason}")]
    NotJson {
        /// What simd-json found, e.g. "invalid UTF-8".
        reason: &'static str,
    },
    /// simd-json rejected the message at a byte offset.
    #[error("not JSON: {reason} at byte {offset}")]
    NotJsonAt {
        /// What simd-json found, e.g. "invalid number".
        reason: &'static str,
        /// Offset into the message.
        offset: usize,
    },
    /// Objects and arrays nest deeper than [`MAX_DEPTH`] (counting the envelope itself).
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A complete JSON object is followed by more than whitespace.
    #[error("trailing characters after the JSON object")]
    TrailingData,
    /// The top-level value is valid JSON but not an object.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// A `POST /publish` body that is neither a publish object nor an array.
    #[error("body must be a publish object or an array of them")]
    NotAPublishBody,
    /// A `POST /publish` array with no item.
    #[error("the array holds no publish object")]
    EmptyBatch,
    /// A `POST /publish` array with more items than [`crate::envelope::MAX_BATCH`].
    #[error("the array holds {0} publish objects; at most 1000 per request")]
    BatchTooLarge(usize),
    /// A `POST /publish` array item that is not an object.
    #[error("item {0} is not an object")]
    BatchItemNotAnObject(usize),
    /// A key the protocol knows appears twice in one object (the path names it).
    #[error("duplicate key \"{0}\"")]
    DuplicateKey(&'static str),
    /// No `type` key.
    #[error("missing type")]
    MissingType,
    /// `type` is a string but not one of the request kinds (case-sensitive).
    #[error("unknown type {0}")]
    UnknownType(InlineStr<32>),
    /// A required field is absent, e.g. "payload.data missing".
    #[error("{0} missing")]
    Missing(&'static str),
    /// A field that must be a string is not.
    #[error("{0} must be a string")]
    NotAString(&'static str),
    /// A field that must be an object is not (`payload`, `meta`).
    #[error("{0} must be an object")]
    NotAnObjectField(&'static str),
    /// A field that must be a boolean is not (`payload.excludeSelf`).
    #[error("{0} must be a boolean")]
    NotABool(&'static str),
    /// `payload.topics` is not an array.
    #[error("payload.topics must be an array")]
    TopicsNotAnArray,
    /// An entry of `payload.topics` is not a string.
    #[error("payload.topics[{0}] must be a string")]
    TopicsEntryNotAString(usize),
    /// `payload.topics` is `[]`.
    #[error("payload.topics is empty")]
    TopicsEmpty,
    /// `payload.topics` has more than [`MAX_TOPICS`] entries.
    #[error("payload.topics has more than {MAX_TOPICS} entries")]
    TooManyTopics,
    /// Both `payload.topic` and `payload.topics`.
    #[error("both topic and topics given")]
    BothTopicForms,
    /// `payload.topics` on a `PUBLISH`, which takes exactly one `payload.topic`.
    #[error("PUBLISH takes payload.topic, not payload.topics")]
    TopicsNotAllowed,
    /// A topic name of zero bytes.
    #[error("topic is empty")]
    TopicEmpty,
    /// A topic name over [`MAX_TOPIC_LEN`] bytes.
    #[error("topic longer than {MAX_TOPIC_LEN} bytes")]
    TopicTooLong,
    /// A topic name with U+0000..=U+001F or U+007F.
    #[error("topic contains a control character")]
    TopicControlChar,
    /// `meta.correlationId` over [`MAX_CORRELATION_ID_LEN`] bytes.
    #[error("correlationId longer than {MAX_CORRELATION_ID_LEN} bytes")]
    CorrelationIdTooLong,
}

/// A rejected client envelope: always answered with [`ErrorCode::InvalidArgument`], echoing
/// [`EnvelopeError::correlation_id`] when the message had a readable one. Allocation-free and
/// `Copy`; the correlation id is kept inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct EnvelopeError {
    kind: ErrorKind,
    correlation_id: Option<InlineStr<MAX_CORRELATION_ID_LEN>>,
}

impl EnvelopeError {
    /// An error without a correlation id.
    #[must_use]
    pub const fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            correlation_id: None,
        }
    }

    /// Attaches the request's correlation id (ids over 64 bytes are never accepted by the
    /// parser; here they would be cut at a char boundary).
    #[must_use]
    pub fn with_correlation_id(mut self, id: Option<&str>) -> Self {
        self.correlation_id = id.map(InlineStr::truncating);
        self
    }

    /// What is wrong.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The wire code: always `INVALID_ARGUMENT`.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }

    /// The request's `meta.correlationId`, when it could be read.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_ref().map(InlineStr::as_str)
    }
}

impl From<ErrorKind> for EnvelopeError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_on_the_wire() {
        let all = [
            (ErrorCode::InvalidArgument, "INVALID_ARGUMENT"),
            (ErrorCode::Unauthenticated, "UNAUTHENTICATED"),
            (ErrorCode::PermissionDenied, "PERMISSION_DENIED"),
            (ErrorCode::ResourceExhausted, "RESOURCE_EXHAUSTED"),
            (ErrorCode::Unavailable, "UNAVAILABLE"),
            (ErrorCode::Internal, "INTERNAL"),
        ];
        for (code, s) in all {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.to_string(), s);
        }
    }

    #[test]
    fn messages() {
        let cases: &[(ErrorKind, &str)] = &[
            (
                ErrorKind::NotJson {
                    reason: "invalid UTF-8",
                },
                "not JSON: invalid UTF-8",
            ),
            (
                ErrorKind::NotJsonAt {
                    reason: "invalid number",
                    offset: 7,
                },
                "not JSON: invalid number at byte 7",
            ),
            (ErrorKind::TooDeep, "nesting deeper than 64 levels"),
            (
                ErrorKind::TrailingData,
                "trailing characters after the JSON object",
            ),
            (ErrorKind::NotAnObject, "message is not a JSON object"),
            (ErrorKind::DuplicateKey("type"), "duplicate key \"type\""),
            (ErrorKind::MissingType, "missing type"),
            (
                ErrorKind::UnknownType(InlineStr::truncating("FOO")),
                "unknown type \"FOO\"",
            ),
            (ErrorKind::Missing("payload.data"), "payload.data missing"),
            (
                ErrorKind::NotAString("payload.topic"),
                "payload.topic must be a string",
            ),
            (
                ErrorKind::NotAnObjectField("meta"),
                "meta must be an object",
            ),
            (
                ErrorKind::NotABool("payload.excludeSelf"),
                "payload.excludeSelf must be a boolean",
            ),
            (
                ErrorKind::TopicsNotAnArray,
                "payload.topics must be an array",
            ),
            (
                ErrorKind::TopicsEntryNotAString(3),
                "payload.topics[3] must be a string",
            ),
            (ErrorKind::TopicsEmpty, "payload.topics is empty"),
            (
                ErrorKind::TooManyTopics,
                "payload.topics has more than 512 entries",
            ),
            (ErrorKind::BothTopicForms, "both topic and topics given"),
            (
                ErrorKind::TopicsNotAllowed,
                "PUBLISH takes payload.topic, not payload.topics",
            ),
            (ErrorKind::TopicEmpty, "topic is empty"),
            (ErrorKind::TopicTooLong, "topic longer than 256 bytes"),
            (
                ErrorKind::TopicControlChar,
                "topic contains a control character",
            ),
            (
                ErrorKind::CorrelationIdTooLong,
                "correlationId longer than 64 bytes",
            ),
        ];
        for (kind, msg) in cases {
            assert_eq!(kind.to_string(), *msg);
            let err = EnvelopeError::from(*kind);
            assert_eq!(err.to_string(), *msg);
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
            assert_eq!(err.correlation_id(), None);
        }
    }

    #[test]
    fn unknown_type_is_quoted_escaped_and_truncated() {
        let k = ErrorKind::UnknownType(InlineStr::truncating("a\"b\n"));
        assert_eq!(k.to_string(), r#"unknown type "a\"b\n""#);
        let long = "é".repeat(40); // 80 bytes: cut at 32 on a char boundary
        let s = InlineStr::<32>::truncating(&long);
        assert_eq!(s.as_str(), "é".repeat(16));
        assert!(s.is_truncated());
        assert_eq!(
            ErrorKind::UnknownType(s).to_string(),
            format!("unknown type \"{}\"...", "é".repeat(16))
        );
        let odd = format!("x{}", "é".repeat(40)); // boundary falls mid-char at 32
        assert_eq!(InlineStr::<32>::truncating(&odd).as_str().len(), 31);
    }

    #[test]
    fn correlation_id_is_carried_inline() {
        let id = "c".repeat(64);
        let e = EnvelopeError::new(ErrorKind::MissingType).with_correlation_id(Some(&id));
        assert_eq!(e.correlation_id(), Some(id.as_str()));
        let e = e.with_correlation_id(Some(""));
        assert_eq!(e.correlation_id(), Some(""));
        assert_eq!(e.with_correlation_id(None).correlation_id(), None);
    }
}
