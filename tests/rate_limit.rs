//! Token-bucket rate limits on both backends: per connection (retryAfterMs, a cost over the
//! capacity, strikes closing with 1008), per identity across two workers, upgrades per address
//! (429 with Retry-After).

mod common;

use std::time::Duration;

use common::auth::*;
use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::config::Workers;

/// Sends a PING and returns the reply (PONG or ERROR).
fn ping(c: &mut PsClient) -> Reply {
    let id = cid("ping");
    c.request(&envelope("PING", "{}", Some(&id)), &id)
}

fn exhausted(r: &Reply, scope: &str) -> Option<u64> {
    assert_eq!(r.kind, "ERROR", "{}", r.text);
    assert_eq!(r.code(), "RESOURCE_EXHAUSTED", "{}", r.text);
    assert!(r.str_field("message").contains(scope), "{}", r.text);
    match r.field("retryAfterMs") {
        Some(Json::Number(n)) => n.as_u64(),
        None => None,
        other => panic!("retryAfterMs is {other:?}: {}", r.text),
    }
}

#[test]
fn a_connection_over_its_rate_gets_retry_after_and_is_closed_after_its_strikes() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.app = AppKind::Pubsub;
            c.access.rate_limit = "5/1".parse().expect("rate");
            c.access.rate_limit_cost = "SUBSCRIBE:10".parse().expect("costs");
            c.access.rate_limit_strikes = 3;
        });
        let addr = server.local_addr();
        let mut c = PsClient::connect(addr, format!("[{backend}] client"));
        for _ in 0..5 {
            assert_eq!(ping(&mut c).kind, "PONG");
        }
        let r = ping(&mut c);
        let retry = exhausted(&r, "connection").expect("retryAfterMs");
        assert!(
            (1..=1000).contains(&retry),
            "[{backend}] retryAfterMs {retry}"
        );
        assert_eq!(r.field("retryable"), Some(Json::Bool(true)));
        // A cost over the capacity can never be paid: no retryAfterMs.
        let id = cid("sub");
        let r = c.request(&envelope("SUBSCRIBE", r#"{"topic":"t"}"#, Some(&id)), &id);
        assert_eq!(exhausted(&r, "connection"), None, "[{backend}] {}", r.text);
        // Refill one token: a success resets the strikes.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(ping(&mut c).kind, "PONG", "[{backend}] refilled");
        for _ in 0..2 {
            exhausted(&ping(&mut c), "connection");
        }
        // The third refusal in a row: the error, then close 1008.
        c.send(&envelope("PING", "{}", None));
        let r = c.next();
        exhausted(&r, "connection");
        match c.event(IO_TIMEOUT) {
            Event::Close(Some(code)) => assert_eq!(code, 1008, "[{backend}]"),
            other => panic!("[{backend}] expected close 1008, got {other:?}"),
        }
        let (resp, _) = http_exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let metrics = resp.text();
        for line in [
            "wsd_rate_limited_total{worker=\"0\",scope=\"connection\"} 5",
            "wsd_policy_closes_total{worker=\"0\",reason=\"rate_limit\"} 1",
        ] {
            assert!(
                metrics.contains(line),
                "[{backend}] no {line:?} in {metrics}"
            );
        }
    }
}

#[test]
fn an_identity_shares_one_budget_across_connections_on_two_workers() {
    for backend in backends() {
        let secret = "identity-rate-limit-secret-32-bytes-long";
        let server = start(backend, |c| {
            c.app = AppKind::Pubsub;
            c.cluster_workers = Workers::Count(2);
            c.access.jwt_secret = Some(secret.parse().expect("secret"));
            c.access.rate_limit_identity = "6/1".parse().expect("rate");
            // The probes that find a connection's worker are free.
            c.access.rate_limit_cost = "SUBSCRIBE:0,UNSUBSCRIBE:0".parse().expect("costs");
        });
        let addr = server.local_addr();
        let toks = tokens(&[
            spec("HS256", &format!("hs:{secret}"), r#"{"sub":"dan"}"#, 300),
            spec("HS256", &format!("hs:{secret}"), r#"{"sub":"erin"}"#, 300),
        ]);
        let mut on = [None, None];
        let mut spare = Vec::new();
        for i in 0..200 {
            let mut c = connect(
                addr,
                &format!("[{backend}] dan {i}"),
                Some(&toks[0]),
                Carrier::Header,
                &[],
            )
            .expect("upgrade");
            let w = worker_of(addr, &mut c);
            if on[w].is_none() {
                on[w] = Some(c);
            } else {
                spare.push(c);
            }
            if on.iter().all(Option::is_some) {
                break;
            }
        }
        let [Some(mut a), Some(mut b)] = on else {
            panic!("[{backend}] no connection landed on one of the workers");
        };
        drop(spare);
        let mut ok = 0;
        for _ in 0..5 {
            if ping(&mut a).kind == "PONG" {
                ok += 1;
            }
        }
        let mut refused = 0;
        for _ in 0..5 {
            let r = ping(&mut b);
            if r.kind == "PONG" {
                ok += 1;
            } else {
                exhausted(&r, "identity").expect("retryAfterMs");
                refused += 1;
            }
        }
        // 6 at once plus at most a refill or two while the test runs.
        assert!((6..=8).contains(&ok), "[{backend}] {ok} of 10 passed");
        assert!(refused >= 2, "[{backend}] only {refused} refused");
        // Another identity on the same workers is not affected.
        let mut erin =
            connect(addr, "erin", Some(&toks[1]), Carrier::Header, &[]).expect("upgrade");
        for _ in 0..5 {
            assert_eq!(ping(&mut erin).kind, "PONG", "[{backend}] erin");
        }
    }
}

#[test]
fn too_many_upgrades_from_one_address_get_429_with_retry_after() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.access.upgrade_rate_per_ip = "3/1".parse().expect("rate");
        });
        let addr = server.local_addr();
        for i in 0..3 {
            let head = raw_upgrade(addr, "/ws", "");
            assert_eq!(head.status, 101, "[{backend}] upgrade {i}");
        }
        let head = raw_upgrade(addr, "/ws", "");
        assert_eq!(head.status, 429, "[{backend}] {head:?}");
        assert_eq!(head.header("retry-after"), Some("1"));
        assert_eq!(head.text(), "too many upgrades from this address\n");
        // Plain requests are not upgrades: not limited.
        assert!(health(addr).contains("\"ok\""));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            raw_upgrade(addr, "/ws", "").status,
            101,
            "[{backend}] refilled"
        );
    }
}
