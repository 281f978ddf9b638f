//! Client envelopes: [`parse`] into [`Envelope`] / [`Request`], checking every field the
//! protocol defines.

use simd_json::{Node, StaticNode, Tape};

use super::span::{self, member_span};
use super::topic::TopicsBuilder;
use super::{
    EnvelopeError, ErrorKind, InlineStr, MAX_CORRELATION_ID_LEN, MAX_TOPICS, Scratch, Topics, json,
    validate_topic,
};

/// A client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `SUBSCRIBE` to one or more topics.
    Subscribe {
        /// The topic names (validated, unescaped).
        topics: Topics<'a>,
    },
    /// `UNSUBSCRIBE` from one or more topics.
    Unsubscribe {
        /// The topic names (validated, unescaped).
        topics: Topics<'a>,
    },
    /// `PUBLISH` one JSON value to a topic.
    Publish {
        /// The topic name (validated, unescaped).
        topic: &'a str,
        /// `payload.data` exactly as the client sent it (a slice of the message), valid JSON.
        data: &'a [u8],
        /// `payload.excludeSelf`, `false` when absent.
        exclude_self: bool,
    },
    /// `PING`.
    Ping,
    /// `AUTH`: replace the connection's token.
    Auth {
        /// `payload.token`, the new JWT (not yet verified).
        token: &'a str,
    },
}

impl Request<'_> {
    /// The request's `type`, as an `ACK` names it in `payload.of`.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Subscribe { .. } => "SUBSCRIBE",
            Self::Unsubscribe { .. } => "UNSUBSCRIBE",
            Self::Publish { .. } => "PUBLISH",
            Self::Ping => "PING",
            Self::Auth { .. } => "AUTH",
        }
    }
}

/// A parsed client envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What the client asks for.
    pub request: Request<'a>,
    /// `meta.correlationId` (at most 64 bytes, unescaped), to echo on the reply.
    pub correlation_id: Option<&'a str>,
}

/// Parses one client text message.
///
/// `data` borrows from `msg`; topic names and the correlation id borrow from `scratch`, which is
/// reused for the next message. Allocation-free once `scratch` has grown to the message size.
///
/// # Errors
/// Any problem, with what exactly is wrong; see [`ErrorKind`]. The error carries the
/// correlation id whenever the message is valid JSON with a valid `meta.correlationId`.
pub fn parse<'a>(msg: &'a [u8], scratch: &'a mut Scratch) -> Result<Envelope<'a>, EnvelopeError> {
    let Scratch {
        input,
        retry_input,
        buffers,
        tape: tape_slot,
        topic_buf,
        topic_ends,
    } = scratch;
    let mut tape: Tape<'a> = std::mem::replace(tape_slot, Tape(Vec::new())).reset();
    let result = match json::load(msg, input, retry_input, buffers, &mut tape) {
        Ok(()) => {
            let topics = TopicsBuilder::new(topic_buf, topic_ends);
            read(msg, &tape.0, buffers.structural_indexes(), topics)
        }
        Err(ErrorKind::TooDeep) => {
            // Stage 1 still indexed the message: the correlation id can be found without it.
            let cid = span::correlation_id_of_deep(msg, buffers.structural_indexes());
            Err(EnvelopeError::from(ErrorKind::TooDeep).with_correlation_id(cid))
        }
        Err(kind) => Err(kind.into()),
    };
    *tape_slot = tape.reset();
    result
}

/// A member of an object: its position among the members and its value's tape nodes.
#[derive(Clone, Copy)]
struct Member<'t, 'a> {
    index: usize,
    value: &'t [Node<'a>],
}

impl<'a> Member<'_, 'a> {
    fn node(&self) -> Option<Node<'a>> {
        self.value.first().copied()
    }

    fn as_str(&self) -> Option<&'a str> {
        match self.node()? {
            Node::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Calls `f(index, key, value)` for each member of the object whose node starts `nodes`.
/// Returns `Err(())` if `nodes` does not start with an object.
fn members<'t, 'a>(
    nodes: &'t [Node<'a>],
    mut f: impl FnMut(usize, &'a str, &'t [Node<'a>]),
) -> Result<(), ()> {
    let Some((Node::Object { len, .. }, mut rest)) = nodes.split_first() else {
        return Err(());
    };
    for index in 0..*len {
        let Some((Node::String(key), after_key)) = rest.split_first() else {
            return Err(());
        };
        let (value, after) = after_key.split_at_checked(node_len(after_key)).ok_or(())?;
        f(index, key, value);
        rest = after;
    }
    Ok(())
}

/// Number of tape nodes of the value starting `nodes`.
fn node_len(nodes: &[Node<'_>]) -> usize {
    match nodes.first() {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    }
}

/// Records a member under a known key, remembering the first duplicate.
fn set<'t, 'a>(
    slot: &mut Option<Member<'t, 'a>>,
    dup: &mut Option<&'static str>,
    path: &'static str,
    member: Member<'t, 'a>,
) {
    if slot.is_some() {
        dup.get_or_insert(path);
    } else {
        *slot = Some(member);
    }
}

fn read<'a>(
    msg: &'a [u8],
    nodes: &[Node<'a>],
    structurals: &[u32],
    topics: TopicsBuilder<'a>,
) -> Result<Envelope<'a>, EnvelopeError> {
    let (mut ty, mut payload, mut meta, mut dup) = (None, None, None, None);
    members(nodes, |index, key, value| {
        let m = Member { index, value };
        match key {
            "type" => set(&mut ty, &mut dup, "type", m),
            "payload" => set(&mut payload, &mut dup, "payload", m),
            "meta" => set(&mut meta, &mut dup, "meta", m),
            _ => {}
        }
    })
    .map_err(|()| ErrorKind::NotAnObject)?;
    if dup == Some("meta") {
        return Err(ErrorKind::DuplicateKey("meta").into());
    }
    let correlation_id = match meta {
        Some(meta) => read_meta(meta.value)?,
        None => None,
    };
    let fail = |kind: ErrorKind| EnvelopeError::new(kind).with_correlation_id(correlation_id);
    if let Some(path) = dup {
        return Err(fail(ErrorKind::DuplicateKey(path)));
    }
    let ty = ty.ok_or_else(|| fail(ErrorKind::MissingType))?;
    let ty = ty
        .as_str()
        .ok_or_else(|| fail(ErrorKind::NotAString("type")))?;
    let payload = payload.ok_or(ErrorKind::Missing("payload"));
    let request = match ty {
        "PING" => match payload.map(|p| p.node()) {
            Ok(Some(Node::Object { .. })) | Err(_) => Ok(Request::Ping),
            Ok(_) => Err(ErrorKind::NotAnObjectField("payload")),
        },
        "SUBSCRIBE" => payload
            .and_then(|p| read_topics(p, topics))
            .map(|topics| Request::Subscribe { topics }),
        "UNSUBSCRIBE" => payload
            .and_then(|p| read_topics(p, topics))
            .map(|topics| Request::Unsubscribe { topics }),
        "PUBLISH" => payload.and_then(|p| read_publish(msg, structurals, p)),
        "AUTH" => payload.and_then(read_auth),
        other => Err(ErrorKind::UnknownType(InlineStr::truncating(other))),
    }
    .map_err(fail)?;
    Ok(Envelope {
        request,
        correlation_id,
    })
}

/// `meta`: an object whose `correlationId`, when present, is a string of at most 64 bytes.
fn read_meta<'a>(nodes: &[Node<'a>]) -> Result<Option<&'a str>, EnvelopeError> {
    let (mut id, mut dup) = (None, None);
    members(nodes, |index, key, value| {
        if key == "correlationId" {
            set(
                &mut id,
                &mut dup,
                "meta.correlationId",
                Member { index, value },
            );
        }
    })
    .map_err(|()| ErrorKind::NotAnObjectField("meta"))?;
    if let Some(path) = dup {
        return Err(ErrorKind::DuplicateKey(path).into());
    }
    let Some(id) = id else {
        return Ok(None);
    };
    let id = id
        .as_str()
        .ok_or(ErrorKind::NotAString("meta.correlationId"))?;
    if id.len() > MAX_CORRELATION_ID_LEN {
        return Err(ErrorKind::CorrelationIdTooLong.into());
    }
    Ok(Some(id))
}

/// The payload members the protocol defines; others are ignored.
struct Payload<'t, 'a> {
    topic: Option<Member<'t, 'a>>,
    topics: Option<Member<'t, 'a>>,
    data: Option<Member<'t, 'a>>,
    exclude_self: Option<Member<'t, 'a>>,
    token: Option<Member<'t, 'a>>,
}

fn read_payload<'t, 'a>(nodes: &'t [Node<'a>]) -> Result<Payload<'t, 'a>, ErrorKind> {
    let mut p = Payload {
        topic: None,
        topics: None,
        data: None,
        exclude_self: None,
        token: None,
    };
    let mut dup = None;
    members(nodes, |index, key, value| {
        let m = Member { index, value };
        match key {
            "topic" => set(&mut p.topic, &mut dup, "payload.topic", m),
            "topics" => set(&mut p.topics, &mut dup, "payload.topics", m),
            "data" => set(&mut p.data, &mut dup, "payload.data", m),
            "excludeSelf" => set(&mut p.exclude_self, &mut dup, "payload.excludeSelf", m),
            "token" => set(&mut p.token, &mut dup, "payload.token", m),
            _ => {}
        }
    })
    .map_err(|()| ErrorKind::NotAnObjectField("payload"))?;
    match dup {
        Some(path) => Err(ErrorKind::DuplicateKey(path)),
        None => Ok(p),
    }
}

fn read_topics<'a>(
    payload: Member<'_, 'a>,
    mut out: TopicsBuilder<'a>,
) -> Result<Topics<'a>, ErrorKind> {
    let p = read_payload(payload.value)?;
    match (p.topic, p.topics) {
        (Some(_), Some(_)) => return Err(ErrorKind::BothTopicForms),
        (None, None) => return Err(ErrorKind::Missing("payload.topic")),
        (Some(topic), None) => {
            out.push(
                topic
                    .as_str()
                    .ok_or(ErrorKind::NotAString("payload.topic"))?,
            )?;
        }
        (None, Some(list)) => {
            let Some((Node::Array { len, .. }, mut rest)) = list.value.split_first() else {
                return Err(ErrorKind::TopicsNotAnArray);
            };
            if *len == 0 {
                return Err(ErrorKind::TopicsEmpty);
            }
            if *len > MAX_TOPICS {
                return Err(ErrorKind::TooManyTopics);
            }
            for i in 0..*len {
                let Some((Node::String(topic), after)) = rest.split_first() else {
                    return Err(ErrorKind::TopicsEntryNotAString(i));
                };
                out.push(topic)?;
                rest = after;
            }
        }
    }
    Ok(out.finish())
}

/// `AUTH`: `payload.token`, a string.
fn read_auth<'a>(payload: Member<'_, 'a>) -> Result<Request<'a>, ErrorKind> {
    let p = read_payload(payload.value)?;
    let token = p.token.ok_or(ErrorKind::Missing("payload.token"))?;
    let token = token
        .as_str()
        .ok_or(ErrorKind::NotAString("payload.token"))?;
    Ok(Request::Auth { token })
}

fn read_publish<'a>(
    msg: &'a [u8],
    structurals: &[u32],
    payload: Member<'_, 'a>,
) -> Result<Request<'a>, ErrorKind> {
    let p = read_payload(payload.value)?;
    if p.topics.is_some() {
        return Err(match p.topic {
            Some(_) => ErrorKind::BothTopicForms,
            None => ErrorKind::TopicsNotAllowed,
        });
    }
    let topic = p.topic.ok_or(ErrorKind::Missing("payload.topic"))?;
    let topic = topic
        .as_str()
        .ok_or(ErrorKind::NotAString("payload.topic"))?;
    validate_topic(topic)?;
    let exclude_self = match p.exclude_self.map(|m| m.node()) {
        None => false,
        Some(Some(Node::Static(StaticNode::Bool(b)))) => b,
        Some(_) => return Err(ErrorKind::NotABool("payload.excludeSelf")),
    };
    let data = p.data.ok_or(ErrorKind::Missing("payload.data"))?;
    let data = member_span(msg, structurals, &[payload.index, data.index])
        .and_then(|span| msg.get(span))
        .ok_or(ErrorKind::NotJson {
            reason: "payload.data could not be located",
        })?;
    Ok(Request::Publish {
        topic,
        data,
        exclude_self,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tape(json: &str) -> Vec<Node<'static>> {
        let bytes: &'static mut [u8] = json.as_bytes().to_vec().leak();
        simd_json::to_tape(bytes).expect("valid JSON").0
    }

    #[test]
    fn node_len_counts_subtrees() {
        let t = tape(r#"[{"a":[1,2]},"s",[]]"#);
        assert_eq!(node_len(&t), t.len());
        assert_eq!(node_len(&t[1..]), 5);
        assert_eq!(node_len(&t[6..]), 1);
        assert_eq!(node_len(&t[7..]), 1);
        assert_eq!(node_len(&[]), 1);
    }

    #[test]
    fn members_walks_in_order_and_rejects_non_objects() {
        let t = tape(r#"{"a":{"x":[1]},"b":2,"a":null}"#);
        let mut seen = Vec::new();
        members(&t, |i, k, v| seen.push((i, k, v.len()))).unwrap();
        assert_eq!(seen, [(0, "a", 4), (1, "b", 1), (2, "a", 1)]);
        assert_eq!(members(&tape("[1]"), |_, _, _| ()), Err(()));
        assert_eq!(members(&[], |_, _, _| ()), Err(()));
        // A truncated tape is reported, not indexed out of bounds.
        assert_eq!(members(&t[..3], |_, _, _| ()), Err(()));
    }

    #[test]
    fn type_names() {
        assert_eq!(Request::Ping.type_name(), "PING");
        assert_eq!(Request::Auth { token: "t" }.type_name(), "AUTH");
        let p = Request::Publish {
            topic: "t",
            data: b"1",
            exclude_self: false,
        };
        assert_eq!(p.type_name(), "PUBLISH");
    }
}
