//! Authentication at upgrade, against tokens made by PyJWT (an implementation independent of the
//! crate that verifies them), on both backends: every key kind through every carrier, every kind
//! of bad token refused with 401, the subprotocol a browser offers, `ALLOWED_ORIGINS`, the
//! counters in `/metrics`.

mod common;

use std::net::SocketAddr;

use common::auth::*;
use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::config::Config;
use wsd::io::Backend;

const SECRET: &str = "a-test-secret-for-HS256-of-32-bytes-or-more";

fn pubsub_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> wsd::server::Server {
    start(backend, |c| {
        c.app = AppKind::Pubsub;
        c.access.jwt_secret = Some(SECRET.parse().expect("secret"));
        tweak(c);
    })
}

fn hs() -> String {
    format!("hs:{SECRET}")
}

/// The client works as the identity: a SUBSCRIBE is acknowledged.
fn works(client: &mut PsClient) {
    let id = cid("sub");
    client.expect_ack(
        &envelope("SUBSCRIBE", r#"{"topic":"chat:1"}"#, Some(&id)),
        &id,
        "SUBSCRIBE",
    );
}

#[test]
fn tokens_of_every_key_kind_pass_through_every_carrier() {
    for backend in backends() {
        for (alg, private, public) in [
            ("RS256", "rsa.key", "rsa.pub"),
            ("ES256", "ec.key", "ec.pub"),
            ("EdDSA", "ed.key", "ed.pub"),
        ] {
            let server = pubsub_with(backend, |c| {
                c.access.jwt_public_key = Some(key(public).parse().expect("public key"));
            });
            let addr = server.local_addr();
            let claims = r#"{"sub":"alice"}"#;
            let toks = tokens(&[
                spec(alg, &key(private), claims, 300),
                spec("HS256", &hs(), claims, 300),
            ]);
            for token in &toks {
                for carrier in CARRIERS {
                    let name = format!("[{backend}] {alg}/{carrier:?}");
                    let mut c = connect(addr, &name, Some(token), carrier, &[])
                        .unwrap_or_else(|e| panic!("{name}: refused: {e:?}"));
                    works(&mut c);
                }
            }
            // Without a token: 401 missing.
            let refused = connect(addr, "anonymous", None, Carrier::Header, &[]).err();
            assert_eq!(
                refused,
                Some((401, "missing token\n".to_owned())),
                "[{backend}]"
            );
        }
    }
}

#[test]
fn bad_tokens_are_refused_with_401() {
    for backend in backends() {
        let server = pubsub_with(backend, |c| {
            c.access.jwt_public_key = Some(key("rsa.pub").parse().expect("public key"));
            c.access.jwt_audience = Some("wsd".into());
            c.access.jwt_issuer = Some("https://issuer.test".into());
            c.access.jwt_leeway = 0;
        });
        let addr = server.local_addr();
        let good = r#"{"sub":"alice","aud":"wsd","iss":"https://issuer.test"}"#;
        let rsa = key("rsa.key");
        let cases = [
            ("valid", spec("RS256", &rsa, good, 300), 101, ""),
            (
                "expired",
                spec("RS256", &rsa, good, -60),
                401,
                "expired token\n",
            ),
            (
                "not yet valid",
                format!(
                    r#"{{"alg":"RS256","key":"{rsa}","claims":{good},"exp_in":300,"nbf_in":120}}"#
                ),
                401,
                "invalid token\n",
            ),
            (
                "wrong audience",
                spec(
                    "RS256",
                    &rsa,
                    r#"{"sub":"a","aud":"other","iss":"https://issuer.test"}"#,
                    300,
                ),
                401,
                "invalid token\n",
            ),
            (
                "wrong issuer",
                spec(
                    "RS256",
                    &rsa,
                    r#"{"sub":"a","aud":"wsd","iss":"https://evil.test"}"#,
                    300,
                ),
                401,
                "invalid token\n",
            ),
            (
                "forged",
                spec("RS256", &key("rsa-other.key"), good, 300),
                401,
                "invalid token\n",
            ),
            (
                "wrong secret",
                spec("HS256", "hs:not the secret at all, 32 bytes!", good, 300),
                401,
                "invalid token\n",
            ),
            (
                "alg none",
                format!(r#"{{"mode":"none","claims":{good},"exp_in":300}}"#),
                401,
                "invalid token\n",
            ),
            (
                "algorithm confusion",
                format!(
                    r#"{{"mode":"confused","key":"{}","claims":{good},"exp_in":300}}"#,
                    key("rsa.pub")
                ),
                401,
                "invalid token\n",
            ),
            (
                "no exp",
                format!(r#"{{"alg":"RS256","key":"{rsa}","claims":{good}}}"#),
                401,
                "invalid token\n",
            ),
        ];
        let specs: Vec<String> = cases.iter().map(|c| c.1.clone()).collect();
        let toks = tokens(&specs);
        for ((what, _, status, body), token) in cases.iter().zip(&toks) {
            for carrier in CARRIERS {
                let got = connect(addr, what, Some(token), carrier, &[]);
                match (status, got) {
                    (101, Ok(mut c)) => works(&mut c),
                    (401, Err((s, b))) => {
                        assert_eq!(
                            (s, b.as_str()),
                            (401, *body),
                            "[{backend}] {what} via {carrier:?}"
                        )
                    }
                    (_, Ok(_)) => panic!("[{backend}] {what} via {carrier:?}: accepted"),
                    (_, Err(e)) => panic!("[{backend}] {what} via {carrier:?}: {e:?}"),
                }
            }
        }
        let garbage = connect(addr, "garbage", Some("not.a.jwt"), Carrier::Header, &[]).err();
        assert_eq!(
            garbage,
            Some((401, "invalid token\n".into())),
            "[{backend}]"
        );
        let metrics = metrics_text(addr);
        for (reason, n) in [("expired", 3), ("missing", 0)] {
            let line = format!("wsd_auth_failures_total{{worker=\"0\",reason=\"{reason}\"}} {n}");
            assert!(
                metrics.contains(&line),
                "[{backend}] no {line:?} in\n{metrics}"
            );
        }
        let invalid = format!(
            "wsd_auth_failures_total{{worker=\"0\",reason=\"invalid\"}} {}",
            8 * 3 + 1
        );
        assert!(
            metrics.contains(&invalid),
            "[{backend}] no {invalid:?} in\n{metrics}"
        );
    }
}

fn metrics_text(addr: SocketAddr) -> String {
    let req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let (resp, _) = http_exchange(addr, req.as_bytes());
    assert_eq!(resp.status, 200);
    resp.text()
}

#[test]
fn the_subprotocol_a_browser_offers_is_answered_without_the_token() {
    for backend in backends() {
        let server = pubsub_with(backend, |_| {});
        let addr = server.local_addr();
        let t = token(&spec("HS256", &hs(), r#"{"sub":"alice"}"#, 300));
        let head = raw_upgrade(
            addr,
            "/ws",
            &format!("Sec-WebSocket-Protocol: wsd.v1, bearer.{t}\r\n"),
        );
        assert_eq!(head.status, 101, "[{backend}] {head:?}");
        assert_eq!(
            head.header("sec-websocket-protocol"),
            Some("wsd.v1"),
            "[{backend}]"
        );
        // The token first, as some clients order it: still answered wsd.v1, never the token.
        let head = raw_upgrade(
            addr,
            "/ws",
            &format!("Sec-WebSocket-Protocol: bearer.{t}, wsd.v1\r\n"),
        );
        assert_eq!(
            head.header("sec-websocket-protocol"),
            Some("wsd.v1"),
            "[{backend}]"
        );
        for (name, value) in &head.headers {
            assert!(
                !value.contains(&t),
                "[{backend}] the token is echoed in {name}"
            );
        }
        // Only a token offered: nothing to answer (a browser would then fail the connection).
        let head = raw_upgrade(
            addr,
            "/ws",
            &format!("Sec-WebSocket-Protocol: bearer.{t}\r\n"),
        );
        assert_eq!(
            (head.status, head.header("sec-websocket-protocol")),
            (101, None)
        );
    }
}

#[test]
fn subprotocols_are_negotiated_without_auth_too() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let head = raw_upgrade(addr, "/ws", "Sec-WebSocket-Protocol: chat, wsd.v1\r\n");
        assert_eq!(
            head.header("sec-websocket-protocol"),
            Some("wsd.v1"),
            "[{backend}]"
        );
        let head = raw_upgrade(addr, "/ws", "Sec-WebSocket-Protocol: chat\r\n");
        assert_eq!(
            (head.status, head.header("sec-websocket-protocol")),
            (101, None)
        );
        let head = raw_upgrade(addr, "/ws", "");
        assert_eq!(
            (head.status, head.header("sec-websocket-protocol")),
            (101, None)
        );
    }
}

#[test]
fn origins_outside_the_allowlist_get_403() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.access.allowed_origins = Some(
                "https://app.example.com,https://*.example.org"
                    .parse()
                    .expect("origins"),
            );
        });
        let addr = server.local_addr();
        for (origin, status) in [
            (Some("https://app.example.com"), 101),
            (Some("https://a.b.example.org"), 101),
            (Some("https://example.org"), 403),
            (Some("https://evil.example"), 403),
            (Some("http://app.example.com"), 403),
            (Some("null"), 403),
            (None, 101),
        ] {
            let extra = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
            let head = raw_upgrade(addr, "/ws", &extra);
            assert_eq!(
                head.status, status,
                "[{backend}] Origin {origin:?}: {head:?}"
            );
            if status == 403 {
                assert_eq!(head.text(), "origin not allowed\n");
            }
        }
        let metrics = metrics_text(addr);
        let line = "wsd_auth_failures_total{worker=\"0\",reason=\"origin\"} 4";
        assert!(metrics.contains(line), "[{backend}] {metrics}");
    }
}
