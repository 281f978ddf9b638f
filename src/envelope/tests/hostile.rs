//! Hostile input: deep nesting, invalid UTF-8, garbage, truncations, random bytes; scratch reuse.

use super::data::Rng;
use super::*;

#[test]
fn hostile_nesting_is_a_clean_error() {
    for n in [1_000, 1_000_000] {
        let m = format!(
            r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":{}{}}}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        );
        assert_eq!(msg_of(&m), "nesting deeper than 64 levels");
        assert_eq!(msg_of("{\"a\":".repeat(n)), "nesting deeper than 64 levels");
        let open = format!("{{\"type\":\"PING\",\"payload\":{}", "[{\"a\":".repeat(n));
        assert_eq!(msg_of(open), "nesting deeper than 64 levels");
    }
}

#[test]
fn invalid_utf8_and_garbage() {
    for m in [
        &b"\xff\xfe"[..],
        b"{\"type\":\"PI\xc0NG\"}",
        b"{\"type\":\"PING\",\"payload\":{\"\xf8\":1}}",
        b"\0",
        b"{\0}",
    ] {
        assert!(msg_of(m).starts_with("not JSON"), "{m:?}");
    }
    assert_eq!(
        msg_of(b"{\"type\":\"PING\"}\xff"),
        "not JSON: invalid UTF-8"
    );
    for m in [
        "{\"type\":\"PING\"}}",
        "{\"type\":\"PING\"},",
        "{\"type\":\"PING\"} {}",
        "{\"type\":\"PING\"}\n\"x\"",
    ] {
        assert_eq!(
            msg_of(m),
            "trailing characters after the JSON object",
            "{m}"
        );
    }
}

/// Every prefix of valid envelopes (and every single-byte corruption of one) is an error or a
/// valid parse, never a panic; every proper prefix is an error.
#[test]
fn truncations_and_corruptions_never_panic() {
    let full = [
        r#"{"type":"PUBLISH","payload":{"topic":"r\u00e9","data":{"a":[1,2.5e400,"x\"y"],"b":null},"excludeSelf":true},"meta":{"correlationId":"c-1"}}"#,
        r#" { "type" : "SUBSCRIBE" , "payload" : { "topics" : [ "a" , "b" ] } } "#,
    ];
    let mut scratch = Scratch::new();
    for msg in full {
        assert!(parse_with(&mut scratch, msg.as_bytes()).is_ok());
        let trimmed = msg.trim_end().len();
        for cut in 0..trimmed {
            let r = parse_with(&mut scratch, &msg.as_bytes()[..cut]);
            assert!(r.is_err(), "prefix {cut} of {msg} parsed: {r:?}");
        }
        for i in 0..msg.len() {
            for b in [
                b'"', b'\\', b'{', b']', b',', b':', b'0', b'e', b' ', 0x80, 0x00, 0xff,
            ] {
                let mut bad = msg.as_bytes().to_vec();
                bad[i] = b;
                let _ = parse_with(&mut scratch, &bad);
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    let alphabet = b"{}[]:,\"\\ 0123456789.eE+-tfnul\x00\x1f\x7f\xc3\xa9\xff";
    let mut scratch = Scratch::new();
    for _ in 0..20_000 {
        let len = rng.below(64);
        let m: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = parse_with(&mut scratch, &m);
    }
}

#[test]
fn scratch_is_reusable_across_sizes_and_paths() {
    let mut scratch = Scratch::with_capacity(128);
    let small = r#"{"type":"PUBLISH","payload":{"topic":"a","data":[1]}}"#;
    let big = format!(
        r#"{{"type":"PUBLISH","payload":{{"topic":"b","data":"{}"}}}}"#,
        "z".repeat(100_000)
    );
    let huge_num = r#"{"type":"PUBLISH","payload":{"topic":"c","data":1e999}}"#;
    for _ in 0..3 {
        for (m, topic) in [
            (small, "a"),
            (big.as_str(), "b"),
            (huge_num, "c"),
            ("{", ""),
            (small, "a"),
        ] {
            match parse_with(&mut scratch, m.as_bytes()) {
                Ok((Got::Pub(t, _, _), _)) => assert_eq!(t, topic),
                Ok(other) => panic!("{other:?}"),
                Err(e) => assert!(topic.is_empty(), "{e}"),
            }
        }
    }
    assert!(format!("{scratch:?}").starts_with("Scratch"));
    let dense = format!(
        r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":[{}1]}}}}"#,
        "1,".repeat(1 << 19)
    );
    assert!(parse_with(&mut scratch, dense.as_bytes()).is_ok());
    let held = scratch.retained_bytes();
    assert!(held > 10 << 20, "{held}");
    scratch.shrink();
    assert!(scratch.retained_bytes() < 1024);
    assert!(parse_with(&mut scratch, small.as_bytes()).is_ok());
}

#[test]
fn too_deep_messages_still_echo_their_correlation_id() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let first = format!(
        r#"{{"meta":{{"correlationId":"c-1"}},"type":"PUBLISH","payload":{{"topic":"t","data":{deep}}}}}"#
    );
    let last = format!(
        r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":{deep}}},"meta":{{"correlationId":"c-2"}}}}"#
    );
    let escaped = format!(
        r#"{{"type":"PUBLISH","payload":{{"topic":"t","data":{deep}}},"meta":{{"correlationId":"c\u0031"}}}}"#
    );
    for (msg, want) in [(first, Some("c-1")), (last, Some("c-2")), (escaped, None)] {
        let mut scratch = crate::envelope::Scratch::default();
        let err = crate::envelope::parse(msg.as_bytes(), &mut scratch).expect_err("too deep");
        assert_eq!(err.kind(), crate::envelope::ErrorKind::TooDeep);
        assert_eq!(err.correlation_id(), want, "{msg:.60}");
    }
}
