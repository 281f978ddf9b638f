//! End-to-end tests of [`parse()`](super::parse()), split by theme; the helpers they share.

mod data;
mod hostile;
mod requests;
mod speed;

use super::*;

/// An owned copy of a parse result, so tests can keep it past the scratch.
#[derive(Debug, PartialEq)]
pub(super) enum Got {
    Sub(Vec<String>),
    Unsub(Vec<String>),
    Pub(String, Vec<u8>, bool),
    Ping,
    Auth(String),
}

pub(super) fn owned(env: &Envelope<'_>) -> (Got, Option<String>) {
    let list = |t: &Topics<'_>| t.iter().map(str::to_owned).collect();
    let got = match env.request {
        Request::Subscribe { topics } => Got::Sub(list(&topics)),
        Request::Unsubscribe { topics } => Got::Unsub(list(&topics)),
        Request::Publish {
            topic,
            data,
            exclude_self,
        } => Got::Pub(topic.to_owned(), data.to_vec(), exclude_self),
        Request::Ping => Got::Ping,
        Request::Auth { token } => Got::Auth(token.to_owned()),
    };
    (got, env.correlation_id.map(str::to_owned))
}

pub(super) fn parse_with(
    scratch: &mut Scratch,
    msg: &[u8],
) -> Result<(Got, Option<String>), EnvelopeError> {
    parse(msg, scratch).map(|env| owned(&env))
}

pub(super) fn ok(msg: &str) -> (Got, Option<String>) {
    parse_with(&mut Scratch::new(), msg.as_bytes()).unwrap_or_else(|e| panic!("{msg}: {e}"))
}

pub(super) fn err(msg: impl AsRef<[u8]>) -> EnvelopeError {
    let msg = msg.as_ref();
    match parse_with(&mut Scratch::new(), msg) {
        Ok(got) => panic!("{:?} parsed as {got:?}", String::from_utf8_lossy(msg)),
        Err(e) => e,
    }
}

/// The error message for `msg`.
pub(super) fn msg_of(msg: impl AsRef<[u8]>) -> String {
    err(msg).to_string()
}

pub(super) fn data_of(msg: &str) -> Vec<u8> {
    match ok(msg).0 {
        Got::Pub(_, data, _) => data,
        other => panic!("{other:?}"),
    }
}

pub(super) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}
