//! `PAYLOAD_LIMIT_POLICY`: a message over `MAX_PAYLOAD` closes the connection with 1009 (`close`)
//! or is discarded with an `ERROR` `RESOURCE_EXHAUSTED` answer while the connection goes on
//! (`send`), on both backends.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::pubsub::*;
use common::*;
use wsd::app::AppKind;
use wsd::config::PayloadLimitPolicy;
use wsd::server::Server;

const LIMIT: usize = 4096;

fn start_with(backend: wsd::io::Backend, app: AppKind, policy: PayloadLimitPolicy) -> Server {
    start(backend, |cfg| {
        cfg.app = app;
        cfg.max_payload = LIMIT;
        cfg.payload_limit_policy = policy;
    })
}

/// Discarded messages counted by the server's workers.
fn discarded(server: &Server) -> u64 {
    server
        .worker_stats()
        .iter()
        .map(|w| w.oversized_discarded.load(Ordering::Relaxed))
        .sum()
}

/// Data messages the server's workers queued for sending.
fn messages_out(server: &Server) -> u64 {
    server
        .worker_stats()
        .iter()
        .map(|w| w.messages_out.load(Ordering::Relaxed))
        .sum()
}

/// Waits until the discard counter reads `want`.
fn expect_discarded(server: &Server, want: u64, ctx: &str) {
    let seen = poll(Duration::from_secs(10), || {
        (discarded(server) == want).then_some(())
    });
    assert!(
        seen.is_some(),
        "{ctx}: oversized_discarded is {}, want {want}",
        discarded(server)
    );
}

/// Checks an ERROR RESOURCE_EXHAUSTED that names the limit.
fn assert_limit_error(reply: &Reply, ctx: &str) {
    assert_eq!(
        (reply.kind.as_str(), reply.code().as_str()),
        ("ERROR", "RESOURCE_EXHAUSTED"),
        "{ctx}: {}",
        reply.text
    );
    let message = reply.str_field("message");
    assert!(
        message.contains(&LIMIT.to_string()),
        "{ctx}: the message should state the limit: {message}"
    );
}

#[test]
fn send_policy_answers_an_oversized_publish_and_keeps_the_connection() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_with(backend, AppKind::Pubsub, PayloadLimitPolicy::Send);
        let addr = server.local_addr();
        let mut sub = PsClient::connect(addr, format!("{ctx} sub"));
        sub.subscribe("news");
        let mut publisher = PsClient::connect(addr, format!("{ctx} publisher"));

        // One byte over the limit, in one frame: discarded, answered, not published.
        let filler = "x".repeat(LIMIT);
        let big = publish_envelope("news", &json_str(&filler), Some("big"));
        assert!(big.len() > LIMIT);
        let sent_before = messages_out(&server);
        publisher.send(&big);
        let reply = publisher.next_reply();
        assert_limit_error(&reply, &ctx);
        assert_eq!(
            messages_out(&server) - sent_before,
            1,
            "{ctx}: the ERROR reply counts as one message sent"
        );
        assert_eq!(
            reply.correlation_id, None,
            "{ctx}: nothing of a discarded message is read, not even its correlationId"
        );
        expect_discarded(&server, 1, &ctx);

        // A message at the limit still goes through.
        let head = publish_envelope("news", "\"\"", None);
        let fit = "y".repeat(LIMIT - head.len());
        let exact = publish_envelope("news", &json_str(&fit), None);
        assert_eq!(exact.len(), LIMIT);
        publisher.send(&exact);

        // The connection is still usable: SUBSCRIBE and PUBLISH work.
        publisher.subscribe("other");
        let c = cid("pub");
        publisher.expect_ack(
            &publish_envelope("news", "\"after\"", Some(&c)),
            &c,
            "PUBLISH",
        );
        let got: Vec<String> = sub
            .messages(2, IO_TIMEOUT)
            .iter()
            .map(|m| m.data().to_owned())
            .collect();
        assert_eq!(
            got,
            [json_str(&fit), "\"after\"".to_owned()],
            "{ctx}: the subscriber gets the message at the limit and the later one, not the \
             discarded one"
        );
        assert_eq!(discarded(&server), 1, "{ctx}");
    }
}

#[test]
fn send_policy_discards_a_fragmented_message_and_answers_pings_meanwhile() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_with(backend, AppKind::Pubsub, PayloadLimitPolicy::Send);
        let mut raw = RawWs::connect(server.local_addr());
        // 3000 bytes kept, then a ping, then 3000 more cross the limit, then a ping, then the
        // final fragment (not JSON, not even UTF-8: it is skipped unread), then a valid request.
        let mut stream = frame(OP_TEXT, false, 0, true, &[b'a'; 3000]);
        stream.extend(client_frame(OP_PING, b"one"));
        stream.extend(frame(OP_CONT, false, 0, true, &[b'b'; 3000]));
        stream.extend(client_frame(OP_PING, b"two"));
        stream.extend(frame(OP_CONT, true, 0, true, b"\xff\xfe"));
        stream.extend(client_frame(
            OP_TEXT,
            envelope("PING", "{}", Some("p")).as_bytes(),
        ));
        raw.send(&stream);

        let f = raw.server_frame();
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (OP_PONG, &b"one"[..]),
            "{ctx}"
        );
        let f = raw.server_frame();
        assert_eq!(f.opcode, OP_TEXT, "{ctx}: {f:?}");
        let reply = Reply::parse(String::from_utf8(f.payload).expect("UTF-8")).expect("envelope");
        assert_limit_error(&reply, &ctx);
        let f = raw.server_frame();
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (OP_PONG, &b"two"[..]),
            "{ctx}"
        );
        let f = raw.server_frame();
        let reply = Reply::parse(String::from_utf8(f.payload).expect("UTF-8")).expect("envelope");
        assert_eq!(
            (reply.kind.as_str(), reply.correlation_id.as_deref()),
            ("PONG", Some("p")),
            "{ctx}: {}",
            reply.text
        );
        expect_discarded(&server, 1, &ctx);

        // A claim of 2^40 bytes: the header alone is answered, nothing is buffered, and closing
        // the connection normally in the middle of it is not possible (the frame never ends), so
        // the client just goes away.
        let mut huge = RawWs::connect(server.local_addr());
        huge.send(&client_header(OP_BINARY, true, 1 << 40));
        huge.send(&[0u8; 64 << 10]);
        let f = huge.server_frame();
        let reply = Reply::parse(String::from_utf8(f.payload).expect("UTF-8")).expect("envelope");
        assert_limit_error(&reply, &ctx);
        expect_discarded(&server, 2, &ctx);
    }
}

#[test]
fn close_policy_closes_with_1009() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_with(backend, AppKind::Pubsub, PayloadLimitPolicy::Close);
        let mut raw = RawWs::connect(server.local_addr());
        let big = publish_envelope("news", &json_str(&"x".repeat(LIMIT)), None);
        raw.send(&client_frame(OP_TEXT, big.as_bytes()));
        assert_eq!(raw.expect_close(&ctx), Some(1009), "{ctx}");
        assert_eq!(discarded(&server), 0, "{ctx}: a close is not a discard");
    }
}

#[test]
fn echo_sends_nothing_for_a_discarded_message() {
    for backend in backends() {
        let ctx = format!("[{backend}]");
        let server = start_with(backend, AppKind::Echo, PayloadLimitPolicy::Send);
        let mut raw = RawWs::connect(server.local_addr());
        let mut stream = client_frame(OP_BINARY, &[7; LIMIT + 1]);
        stream.extend(client_frame(OP_TEXT, b"still here"));
        raw.send(&stream);
        let f = raw.server_frame();
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (OP_TEXT, &b"still here"[..]),
            "{ctx}: the first answer is the echo of the next message"
        );
        expect_discarded(&server, 1, &ctx);
    }
}
