//! Per-topic rights, `PUBLISH_KEY` against WebSocket publishes, the `AUTH` refresh and token
//! expiry (close 1008), with PyJWT-made tokens, on both backends.

mod common;

use std::time::{Duration, Instant};

use common::auth::*;
use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::config::Config;
use wsd::io::Backend;

const SECRET: &str = "another-test-secret-for-HS256-32-bytes";

fn hs() -> String {
    format!("hs:{SECRET}")
}

fn server(backend: Backend, tweak: impl FnOnce(&mut Config)) -> wsd::server::Server {
    start(backend, |c| {
        c.app = AppKind::Pubsub;
        c.access.jwt_secret = Some(SECRET.parse().expect("secret"));
        c.access.jwt_leeway = 0;
        tweak(c);
    })
}

/// Sends `kind` on `topic` and returns the reply (ACK or ERROR).
fn try_op(c: &mut PsClient, kind: &str, topic: &str) -> Reply {
    let id = cid(kind);
    let payload = match kind {
        "PUBLISH" => format!(r#"{{"topic":{},"data":1}}"#, json_str(topic)),
        _ => format!(r#"{{"topic":{}}}"#, json_str(topic)),
    };
    c.request(&envelope(kind, &payload, Some(&id)), &id)
}

fn allowed(c: &mut PsClient, kind: &str, topic: &str) {
    let r = try_op(c, kind, topic);
    assert_eq!(r.kind, "ACK", "{}: {kind} {topic}: {}", c.name, r.text);
}

fn denied(c: &mut PsClient, kind: &str, topic: &str) {
    let r = try_op(c, kind, topic);
    assert_eq!(r.kind, "ERROR", "{}: {kind} {topic}: {}", c.name, r.text);
    assert_eq!(r.code(), "PERMISSION_DENIED", "{}: {}", c.name, r.text);
    let message = r.str_field("message");
    assert!(
        message.contains(topic),
        "{}: the error names the topic: {message}",
        c.name
    );
}

#[test]
fn claims_grant_topics_by_pattern() {
    for backend in backends() {
        let server = server(backend, |_| {});
        let addr = server.local_addr();
        let claims =
            r#"{"sub":"alice","subscribe":["chat:*","user:{sub}:>"],"publish":["chat:*"]}"#;
        let t = token(&spec("HS256", &hs(), claims, 300));
        let mut c = connect(
            addr,
            &format!("[{backend}] alice"),
            Some(&t),
            Carrier::Header,
            &[],
        )
        .expect("upgrade");
        allowed(&mut c, "SUBSCRIBE", "chat:1");
        denied(&mut c, "SUBSCRIBE", "chat:1:2");
        denied(&mut c, "SUBSCRIBE", "chat");
        allowed(&mut c, "SUBSCRIBE", "user:alice:inbox");
        allowed(&mut c, "SUBSCRIBE", "user:alice:a:b");
        denied(&mut c, "SUBSCRIBE", "user:alice");
        denied(&mut c, "SUBSCRIBE", "user:bob:inbox");
        allowed(&mut c, "PUBLISH", "chat:2");
        denied(&mut c, "PUBLISH", "user:alice:inbox");
        denied(&mut c, "PUBLISH", "news");
        // A list with one denied topic is refused whole: nothing of it is subscribed.
        let id = cid("multi");
        let r = c.request(
            &envelope("SUBSCRIBE", r#"{"topics":["chat:9","secret"]}"#, Some(&id)),
            &id,
        );
        assert_eq!(r.code(), "PERMISSION_DENIED");
        assert!(r.str_field("message").contains("secret"));
        // Still open and working, and the denied publish reached nobody.
        c.ping();
        let mut other = connect(addr, "bob", Some(&t), Carrier::Query, &[]).expect("upgrade");
        allowed(&mut other, "SUBSCRIBE", "chat:2");
        allowed(&mut c, "PUBLISH", "chat:2");
        assert_eq!(other.next().topic(), "chat:2");
        let (_, ok) = wait_stats(addr, IO_TIMEOUT, |s| total(s, |w| w.subscriptions) == 4);
        assert!(ok, "[{backend}] the refused list subscribed nothing");
    }
}

#[test]
fn server_defaults_apply_to_tokens_without_lists_and_to_anonymous_clients() {
    for backend in backends() {
        let server = server(backend, |c| {
            c.access.auth_required = Some(false);
            c.access.anon_subscribe = Some("lobby:*".parse().expect("list"));
            c.access.default_subscribe = Some("lobby:*,user:{sub}:*".parse().expect("list"));
            c.access.default_publish = Some("user:{sub}:*".parse().expect("list"));
        });
        let addr = server.local_addr();
        let mut anon =
            connect(addr, "anonymous", None, Carrier::Header, &[]).expect("anonymous may connect");
        allowed(&mut anon, "SUBSCRIBE", "lobby:1");
        denied(&mut anon, "SUBSCRIBE", "user::x");
        denied(&mut anon, "PUBLISH", "lobby:1");
        let t = token(&spec("HS256", &hs(), r#"{"sub":"carol"}"#, 300));
        let mut carol =
            connect(addr, "carol", Some(&t), Carrier::Subprotocol, &[]).expect("upgrade");
        allowed(&mut carol, "SUBSCRIBE", "user:carol:feed");
        denied(&mut carol, "SUBSCRIBE", "user:dave:feed");
        allowed(&mut carol, "PUBLISH", "user:carol:feed");
        denied(&mut carol, "PUBLISH", "lobby:1");
        // A token that is given must be valid even where anonymous clients are let in.
        let bad = connect(addr, "bad", Some("x.y.z"), Carrier::Header, &[]).err();
        assert_eq!(bad.map(|e| e.0), Some(401), "[{backend}]");
    }
}

#[test]
fn publish_key_keeps_websocket_publishes_out() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.app = AppKind::Pubsub;
            c.publish_key = Some("backend-key".parse().expect("key"));
        });
        let addr = server.local_addr();
        let mut c = PsClient::connect(addr, format!("[{backend}] client"));
        allowed(&mut c, "SUBSCRIBE", "news");
        denied(&mut c, "PUBLISH", "news");
        // The backend's door still works.
        let body = r#"{"topic":"news","data":"hi"}"#;
        let req = format!(
            "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer backend-key\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (resp, _) = http_exchange(addr, req.as_bytes());
        assert_eq!(resp.status, 200, "[{backend}] {}", resp.text());
        assert_eq!(c.next().data(), "\"hi\"");
    }
}

#[test]
fn auth_refreshes_the_same_identity_only() {
    for backend in backends() {
        let server = server(backend, |_| {});
        let addr = server.local_addr();
        let toks = tokens(&[
            spec("HS256", &hs(), r#"{"sub":"alice","subscribe":["a"]}"#, 300),
            spec("HS256", &hs(), r#"{"sub":"alice","subscribe":["b"]}"#, 600),
            spec(
                "HS256",
                &hs(),
                r#"{"sub":"mallory","subscribe":[">"]}"#,
                600,
            ),
            spec("HS256", &hs(), r#"{"sub":"alice"}"#, -30),
        ]);
        let mut c = connect(
            addr,
            &format!("[{backend}] alice"),
            Some(&toks[0]),
            Carrier::Header,
            &[],
        )
        .expect("upgrade");
        allowed(&mut c, "SUBSCRIBE", "a");
        denied(&mut c, "SUBSCRIBE", "b");
        let auth = |c: &mut PsClient, t: &str| {
            let id = cid("auth");
            c.request(
                &envelope("AUTH", &format!(r#"{{"token":"{t}"}}"#), Some(&id)),
                &id,
            )
        };
        let r = auth(&mut c, &toks[1]);
        assert_eq!(
            (r.kind.as_str(), r.str_field("of").as_str()),
            ("ACK", "AUTH"),
            "{}",
            r.text
        );
        allowed(&mut c, "SUBSCRIBE", "b");
        denied(&mut c, "SUBSCRIBE", "a2");
        let r = auth(&mut c, &toks[2]);
        assert_eq!(r.code(), "PERMISSION_DENIED", "another sub: {}", r.text);
        denied(&mut c, "SUBSCRIBE", "c");
        let r = auth(&mut c, &toks[3]);
        assert_eq!(
            (r.code(), r.str_field("message")),
            ("UNAUTHENTICATED".into(), "expired token".into())
        );
        let r = auth(&mut c, "garbage");
        assert_eq!(r.code(), "UNAUTHENTICATED");
        allowed(&mut c, "SUBSCRIBE", "b");
    }
}

#[test]
fn an_expired_token_closes_the_connection_with_1008_unless_refreshed() {
    for backend in backends() {
        let server = server(backend, |_| {});
        let addr = server.local_addr();
        let toks = tokens(&[
            spec("HS256", &hs(), r#"{"sub":"eve"}"#, 2),
            spec("HS256", &hs(), r#"{"sub":"eve"}"#, 2),
            spec("HS256", &hs(), r#"{"sub":"eve"}"#, 300),
        ]);
        let started = Instant::now();
        let mut stale = connect(
            addr,
            &format!("[{backend}] stale"),
            Some(&toks[0]),
            Carrier::Header,
            &[],
        )
        .expect("upgrade");
        let mut fresh = connect(
            addr,
            &format!("[{backend}] fresh"),
            Some(&toks[1]),
            Carrier::Query,
            &[],
        )
        .expect("upgrade");
        let id = cid("auth");
        let r = fresh.request(
            &envelope("AUTH", &format!(r#"{{"token":"{}"}}"#, toks[2]), Some(&id)),
            &id,
        );
        assert_eq!(r.kind, "ACK", "{}", r.text);
        match stale.event(Duration::from_secs(6)) {
            Event::Close(Some(code)) => assert_eq!(code, 1008, "[{backend}]"),
            other => panic!("[{backend}] expected close 1008, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1),
            "[{backend}] closed too early: {waited:?}"
        );
        // The refreshed one lives on past the first expiry.
        fresh.ping();
        fresh.expect_silence(Duration::from_millis(1500), "refreshed connection");
        fresh.ping();
        let metrics = {
            let (resp, _) = http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            resp.text()
        };
        let line = "wsd_policy_closes_total{worker=\"0\",reason=\"token_expired\"} 1";
        assert!(metrics.contains(line), "[{backend}] {metrics}");
    }
}
