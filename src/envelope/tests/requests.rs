//! Every request kind in both topic forms, every error message, correlation ids on errors.

use super::*;

#[test]
fn subscribe_both_forms() {
    let r = ok(
        r#"{"type": "SUBSCRIBE", "payload": {"topic": "room:42"}, "meta": {"correlationId": "c-17"}}"#,
    );
    assert_eq!(r, (Got::Sub(strs(&["room:42"])), Some("c-17".into())));
    let r = ok(r#"{"type":"SUBSCRIBE","payload":{"topics":["a","b\u00e9","a"]}}"#);
    assert_eq!(r, (Got::Sub(strs(&["a", "bé", "a"])), None));
}

#[test]
fn unsubscribe_both_forms() {
    let r = ok(r#"{"meta":{"correlationId":"x"},"payload":{"topic":"t\"q"},"type":"UNSUBSCRIBE"}"#);
    assert_eq!(r, (Got::Unsub(strs(&["t\"q"])), Some("x".into())));
    let r = ok(r#"{"type":"UNSUBSCRIBE","payload":{"topics":["one"]}}"#);
    assert_eq!(r, (Got::Unsub(strs(&["one"])), None));
}

#[test]
fn publish() {
    let r = ok(r#"{"type":"PUBLISH","payload":{"topic":"t","data":{"a": 1 }}}"#);
    assert_eq!(
        r,
        (Got::Pub("t".into(), b"{\"a\": 1 }".to_vec(), false), None)
    );
    let r = ok(
        r#"{"type":"PUBLISH","payload":{"excludeSelf":true,"data":[],"topic":"t"},"meta":{"correlationId":"c"}}"#,
    );
    assert_eq!(
        r,
        (Got::Pub("t".into(), b"[]".to_vec(), true), Some("c".into()))
    );
    let r = ok(
        r#"{"type":"PUBLISH","payload":{"topic":"t","data":1,"excludeSelf":false,"extra":[1]}}"#,
    );
    assert_eq!(r.0, Got::Pub("t".into(), b"1".to_vec(), false));
}

#[test]
fn ping() {
    assert_eq!(
        ok(r#"{"type":"AUTH","payload":{"token":"a.b.c"},"meta":{"correlationId":"r"}}"#),
        (Got::Auth("a.b.c".into()), Some("r".into()))
    );
    assert!(msg_of(r#"{"type":"AUTH","payload":{}}"#).contains("payload.token"));
    assert!(msg_of(r#"{"type":"AUTH","payload":{"token":1}}"#).contains("payload.token"));
    assert!(
        msg_of(r#"{"type":"AUTH","payload":{"token":"a","token":"b"}}"#).contains("payload.token")
    );
    assert_eq!(ok(r#"{"type":"PING","payload":{}}"#), (Got::Ping, None));
    assert_eq!(ok(r#"{"type":"PING"}"#), (Got::Ping, None));
    assert_eq!(
        ok(r#"{"type":"PING","payload":{"x":1},"meta":{"correlationId":""}}"#),
        (Got::Ping, Some(String::new()))
    );
}

#[test]
fn keys_and_strings_are_unescaped() {
    let r = ok(
        r#"{"typ\u0065":"PUBL\u0049SH","p\u0061yload":{"topic":"a\/b","d\u0061ta":"x"},"meta":{"correlation\u0049d":"\u0063"}}"#,
    );
    assert_eq!(
        r,
        (
            Got::Pub("a/b".into(), b"\"x\"".to_vec(), false),
            Some("c".into())
        )
    );
    assert_eq!(
        msg_of(r#"{"type":"PING","typ\u0065":"PING"}"#),
        "duplicate key \"type\""
    );
}

#[test]
fn unknown_keys_are_ignored() {
    let r = ok(
        r#"{"v":[{"type":1}],"type":"SUBSCRIBE","id":7,"payload":{"topic":"t","x":null,"x":1},"meta":{"ts":1,"ts":2}}"#,
    );
    assert_eq!(r.0, Got::Sub(strs(&["t"])));
}

#[test]
fn error_messages() {
    let long_id = "i".repeat(65);
    let cases: Vec<(String, &str)> = vec![
        (r#"{"type":"PING""#.into(), "not JSON: unexpected end of message"),
        (r#"{"type":"PING",}"#.into(), "not JSON: expected a string key at byte 15"),
        ("".into(), "not JSON: empty message"),
        ("[1]".into(), "message is not a JSON object"),
        ("\"PING\"".into(), "message is not a JSON object"),
        ("null".into(), "message is not a JSON object"),
        (r#"{"payload":{}}"#.into(), "missing type"),
        (r#"{"type":1}"#.into(), "type must be a string"),
        (r#"{"type":null}"#.into(), "type must be a string"),
        (r#"{"type":"FOO"}"#.into(), "unknown type \"FOO\""),
        (r#"{"type":"subscribe"}"#.into(), "unknown type \"subscribe\""),
        (r#"{"type":"SUBSCRIBE"}"#.into(), "payload missing"),
        (r#"{"type":"PUBLISH","payload":[]}"#.into(), "payload must be an object"),
        (r#"{"type":"PING","payload":null}"#.into(), "payload must be an object"),
        (r#"{"type":"PING","meta":[]}"#.into(), "meta must be an object"),
        (r#"{"type":"PING","meta":{"correlationId":5}}"#.into(), "meta.correlationId must be a string"),
        (format!(r#"{{"type":"PING","meta":{{"correlationId":"{long_id}"}}}}"#), "correlationId longer than 64 bytes"),
        (r#"{"type":"SUBSCRIBE","payload":{"topic":7}}"#.into(), "payload.topic must be a string"),
        (r#"{"type":"PUBLISH","payload":{"topic":["t"],"data":1}}"#.into(), "payload.topic must be a string"),
        (r#"{"type":"SUBSCRIBE","payload":{}}"#.into(), "payload.topic missing"),
        (r#"{"type":"PUBLISH","payload":{"data":1}}"#.into(), "payload.topic missing"),
        (r#"{"type":"SUBSCRIBE","payload":{"topics":"t"}}"#.into(), "payload.topics must be an array"),
        (r#"{"type":"SUBSCRIBE","payload":{"topics":["a",["b"]]}}"#.into(), "payload.topics[1] must be a string"),
        (r#"{"type":"UNSUBSCRIBE","payload":{"topics":[]}}"#.into(), "payload.topics is empty"),
        (r#"{"type":"SUBSCRIBE","payload":{"topic":"a","topics":["b"]}}"#.into(), "both topic and topics given"),
        (r#"{"type":"PUBLISH","payload":{"topic":"a","topics":["b"],"data":1}}"#.into(), "both topic and topics given"),
        (r#"{"type":"PUBLISH","payload":{"topics":["b"],"data":1}}"#.into(), "PUBLISH takes payload.topic, not payload.topics"),
        (r#"{"type":"SUBSCRIBE","payload":{"topic":""}}"#.into(), "topic is empty"),
        (format!(r#"{{"type":"SUBSCRIBE","payload":{{"topic":"{}"}}}}"#, "t".repeat(257)), "topic longer than 256 bytes"),
        (r#"{"type":"SUBSCRIBE","payload":{"topics":["ok","a\u0001"]}}"#.into(), "topic contains a control character"),
        ("{\"type\":\"PUBLISH\",\"payload\":{\"topic\":\"a\u{7f}\",\"data\":1}}".into(), "topic contains a control character"),
        (r#"{"type":"PUBLISH","payload":{"topic":"a\n","data":1}}"#.into(), "topic contains a control character"),
        (r#"{"type":"PUBLISH","payload":{"topic":"t"}}"#.into(), "payload.data missing"),
        (r#"{"type":"PUBLISH","payload":{"topic":"t","data":1,"excludeSelf":"yes"}}"#.into(), "payload.excludeSelf must be a boolean"),
        (r#"{"type":"PUBLISH","payload":{"topic":"t","data":1,"excludeSelf":null}}"#.into(), "payload.excludeSelf must be a boolean"),
        (r#"{"type":"PING","type":"PING"}"#.into(), "duplicate key \"type\""),
        (r#"{"type":"PING","payload":{},"payload":{}}"#.into(), "duplicate key \"payload\""),
        (r#"{"type":"PING","meta":{},"meta":{}}"#.into(), "duplicate key \"meta\""),
        (r#"{"type":"PUBLISH","payload":{"topic":"a","data":1,"topic":"b"}}"#.into(), "duplicate key \"payload.topic\""),
        (r#"{"type":"SUBSCRIBE","payload":{"topics":["a"],"topics":["b"]}}"#.into(), "duplicate key \"payload.topics\""),
        (r#"{"type":"PUBLISH","payload":{"topic":"a","data":1,"data":2}}"#.into(), "duplicate key \"payload.data\""),
        (r#"{"type":"PUBLISH","payload":{"topic":"a","data":1,"excludeSelf":true,"excludeSelf":false}}"#.into(), "duplicate key \"payload.excludeSelf\""),
        (r#"{"type":"PING","meta":{"correlationId":"a","correlationId":"b"}}"#.into(), "duplicate key \"meta.correlationId\""),
        (r#"{"type":"PING"} x"#.into(), "trailing characters after the JSON object"),
        (format!(r#"{{"type":"PING","payload":{{"x":{}{}}}}}"#, "[".repeat(63), "]".repeat(63)), "nesting deeper than 64 levels"),
    ];
    for (msg, expected) in &cases {
        let e = err(msg);
        assert_eq!(e.to_string(), *expected, "{msg}");
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }
}

#[test]
fn topics_limit() {
    let list = |n: usize| vec!["\"t\""; n].join(",");
    let ok512 = format!(
        r#"{{"type":"SUBSCRIBE","payload":{{"topics":[{}]}}}}"#,
        list(512)
    );
    assert!(matches!(ok(&ok512).0, Got::Sub(v) if v.len() == 512));
    let over = format!(
        r#"{{"type":"SUBSCRIBE","payload":{{"topics":[{}]}}}}"#,
        list(513)
    );
    assert_eq!(msg_of(over), "payload.topics has more than 512 entries");
    let t256 = "é".repeat(128);
    let r = ok(&format!(
        r#"{{"type":"SUBSCRIBE","payload":{{"topic":"{t256}"}}}}"#
    ));
    assert_eq!(r.0, Got::Sub(vec![t256]));
    let id64 = "i".repeat(64);
    assert_eq!(
        ok(&format!(
            r#"{{"type":"PING","meta":{{"correlationId":"{id64}"}}}}"#
        ))
        .1,
        Some(id64)
    );
}

#[test]
fn errors_carry_the_correlation_id_when_readable() {
    let with_id = [
        r#"{"type":"FOO","meta":{"correlationId":"c-9"}}"#,
        r#"{"meta":{"correlationId":"c-9"}}"#,
        r#"{"type":"PING","type":"PING","meta":{"correlationId":"c-9"}}"#,
        r#"{"meta":{"correlationId":"c-9"},"type":"PUBLISH","payload":{"topic":"t"}}"#,
        r#"{"type":"SUBSCRIBE","payload":{"topic":"a","topic":"b"},"meta":{"correlationId":"c-9","x":1}}"#,
        r#"{"type":"SUBSCRIBE","payload":{"topic":""},"meta":{"correlationId":"c-9"}}"#,
        r#"{"type":"SUBSCRIBE","payload":{"topic":"a"},"meta":{"correlationId":"c\u002d9"},"payload":1}"#,
    ];
    for m in with_id {
        assert_eq!(err(m).correlation_id(), Some("c-9"), "{m}");
    }
    let without = [
        r#"{"type":"FOO","meta":{"correlationId":"c-9"}"#,
        r#"{"type":"FOO","meta":{"correlationId":"c-9"},"meta":{}}"#,
        r#"{"type":"FOO","meta":{"correlationId":"c-9","correlationId":"c-9"}}"#,
        r#"{"type":"FOO","meta":{"correlationId":["c-9"]}}"#,
        r#"[{"type":"FOO","meta":{"correlationId":"c-9"}}]"#,
    ];
    for m in without {
        assert_eq!(err(m).correlation_id(), None, "{m}");
    }
}
