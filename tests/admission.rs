//! Admission limits (`MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_IP`, `UPGRADE_MAX_CONCURRENT`,
//! `UPGRADE_MAX_CONCURRENT_PER_IP`): past each, a new connection is answered 503 with `Retry-After`
//! and a reason naming the limit, before the server allocates anything for it; clients under the
//! limit still connect, and a slot frees when a client leaves. Every test runs on each backend.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use tungstenite::Message;
use wsd::config::{MaxConnections, Workers};
use wsd::metrics::RejectReason;
use wsd::server::Server;

/// How long a freed slot may take to show (the server must see the client's FIN and release).
const FREE_WITHIN: Duration = Duration::from_secs(5);

/// A TCP connection to `addr` from the local address `from` (any loopback address works on Linux).
fn tcp_from(addr: SocketAddr, from: IpAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr} from {from}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends an upgrade request on a new connection (from `from`, or the default source address).
/// `Ok` with a working raw client after a 101; `Err` with the whole answer otherwise.
fn upgrade(addr: SocketAddr, from: Option<IpAddr>) -> Result<RawWs, HttpResponse> {
    let mut stream = match from {
        Some(ip) => tcp_from(addr, ip),
        None => tcp(addr),
    };
    // A refused connection may already be closed by the time the request goes out; the answer
    // is in the receive queue all the same, so a failed write is not the verdict.
    let _ = stream.write_all(upgrade_request("/ws").as_bytes());
    let (mut head, mut rest) =
        read_head(&mut stream).unwrap_or_else(|e| panic!("no answer to an upgrade: {e}"));
    if head.status == 101 {
        return Ok(RawWs::new(stream, rest));
    }
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("refusal without Content-Length: {head:?}"));
    let mut chunk = [0u8; 1024];
    while rest.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
        }
    }
    head.body = rest;
    Err(head)
}

/// Checks a refusal: 503, `Retry-After` of 1 to 5 seconds, `Connection: close`, the body naming
/// `limit`, and the connection closed after it.
fn check_refusal(resp: &HttpResponse, limit: &str, ctx: &str) {
    assert_eq!(resp.status, 503, "{ctx}: {resp:?}");
    let retry: u32 = resp
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{ctx}: no numeric Retry-After: {resp:?}"));
    assert!((1..=5).contains(&retry), "{ctx}: Retry-After {retry}");
    assert_eq!(resp.header("connection"), Some("close"), "{ctx}: {resp:?}");
    let body = resp.text();
    assert!(
        body.starts_with(&format!("{limit} reached")),
        "{ctx}: the reason must name {limit}: {body:?}"
    );
}

/// The refused upgrade must be refused for `limit`.
fn expect_refused(addr: SocketAddr, from: Option<IpAddr>, limit: &str, ctx: &str) {
    match upgrade(addr, from) {
        Ok(_) => panic!("{ctx}: upgraded past {limit}"),
        Err(resp) => check_refusal(&resp, limit, ctx),
    }
}

/// An upgraded raw client echoes a message (the echo app), i.e. it is fully served.
fn echo_raw(ws: &mut RawWs, text: &str, ctx: &str) {
    ws.send(&client_frame(OP_TEXT, text.as_bytes()));
    let f = ws.server_frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_TEXT, text.as_bytes()),
        "{ctx}: echo"
    );
}

/// Polls until an upgrade (from `from`) succeeds; the slot a client left must free.
fn upgrade_when_free(addr: SocketAddr, from: Option<IpAddr>, ctx: &str) -> RawWs {
    poll(FREE_WITHIN, || upgrade(addr, from).ok())
        .unwrap_or_else(|| panic!("{ctx}: no slot freed within {FREE_WITHIN:?}"))
}

fn rejected(server: &Server, reason: RejectReason) -> u64 {
    server
        .worker_stats()
        .iter()
        .map(|w| w.rejected[reason as usize].load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

fn accepted(server: &Server) -> usize {
    server
        .worker_stats()
        .iter()
        .map(|w| w.accepted.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

#[test]
fn max_connections_is_process_wide_and_answers_503() {
    for backend in backends() {
        let ctx = format!("[{backend}] MAX_CONNECTIONS=2, 2 workers");
        let server = start(backend, |c| {
            c.max_connections = MaxConnections::Count(2);
            c.cluster_workers = Workers::Count(2);
        });
        let addr = server.local_addr();
        let mut a = ws_connect(addr);
        let mut b = ws_connect(addr);
        for (i, ws) in [&mut a, &mut b].into_iter().enumerate() {
            ws.send(Message::text(format!("in {i}"))).unwrap();
            assert_eq!(
                ws.read().unwrap(),
                Message::text(format!("in {i}")),
                "{ctx}"
            );
        }
        assert_eq!(server.shared().admission.open(), 2, "{ctx}");
        for _ in 0..3 {
            // Whichever worker takes it, the process-wide count refuses it.
            expect_refused(addr, None, "MAX_CONNECTIONS", &ctx);
        }
        assert_eq!(
            rejected(&server, RejectReason::MaxConnections),
            3,
            "{ctx}: refusals counted"
        );
        assert_eq!(
            accepted(&server),
            2,
            "{ctx}: refused connections never became connections"
        );
        // The clients inside are untouched.
        a.send(Message::text("still here")).unwrap();
        assert_eq!(a.read().unwrap(), Message::text("still here"), "{ctx}");
        drop(b);
        let mut c = upgrade_when_free(addr, None, &ctx);
        echo_raw(&mut c, "in the freed slot", &ctx);
        expect_refused(addr, None, "MAX_CONNECTIONS", &format!("{ctx}, full again"));
    }
}

#[test]
fn max_connections_per_ip_refuses_only_the_crowded_address() {
    let crowded = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for backend in backends() {
        let ctx = format!("[{backend}] MAX_CONNECTIONS_PER_IP=2");
        let server = start(backend, |c| c.max_connections_per_ip = 2);
        let addr = server.local_addr();
        let mut first = upgrade(addr, Some(crowded)).expect("first from 127.0.0.1");
        let _second = upgrade(addr, Some(crowded)).expect("second from 127.0.0.1");
        expect_refused(addr, Some(crowded), "MAX_CONNECTIONS_PER_IP", &ctx);
        assert_eq!(rejected(&server, RejectReason::PerIp), 1, "{ctx}");
        assert_eq!(accepted(&server), 2, "{ctx}: the refusal allocated nothing");
        // Another address has its own count.
        let mut elsewhere: Vec<RawWs> = (0..2)
            .map(|i| {
                upgrade(addr, Some(other))
                    .unwrap_or_else(|r| panic!("{ctx}: client {i} from 127.0.0.2 refused: {r:?}"))
            })
            .collect();
        echo_raw(&mut elsewhere[1], "from elsewhere", &ctx);
        expect_refused(addr, Some(other), "MAX_CONNECTIONS_PER_IP", &ctx);
        echo_raw(&mut first, "still served", &ctx);
        drop(first);
        let mut back = upgrade_when_free(addr, Some(crowded), &ctx);
        echo_raw(&mut back, "in the freed slot", &ctx);
        expect_refused(addr, Some(crowded), "MAX_CONNECTIONS_PER_IP", &ctx);
    }
}

#[test]
fn upgrade_max_concurrent_counts_connections_that_have_not_upgraded() {
    for backend in backends() {
        let ctx = format!("[{backend}] UPGRADE_MAX_CONCURRENT=2");
        let server = start(backend, |c| c.upgrade_max_concurrent = 2);
        let addr = server.local_addr();
        let admission = &server.shared().admission;
        // Upgraded clients hold no handshake slot.
        let mut upgraded: Vec<RawWs> = (0..3)
            .map(|_| upgrade(addr, None).expect("upgrade while no handshake is pending"))
            .collect();
        assert_eq!(admission.upgrading(), 0, "{ctx}");
        // Two connections that send nothing hold both handshake slots.
        let mut silent: Vec<TcpStream> = (0..2).map(|_| tcp(addr)).collect();
        poll(FREE_WITHIN, || (admission.upgrading() == 2).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: silent connections not counted"));
        expect_refused(addr, None, "UPGRADE_MAX_CONCURRENT", &ctx);
        assert_eq!(
            rejected(&server, RejectReason::UpgradeConcurrent),
            1,
            "{ctx}"
        );
        assert_eq!(accepted(&server), 5, "{ctx}: the refusal allocated nothing");
        echo_raw(&mut upgraded[0], "upgraded clients are untouched", &ctx);
        // One silent connection finishes its upgrade: its slot frees.
        let mut done = silent.remove(0);
        done.write_all(upgrade_request("/ws").as_bytes()).unwrap();
        let (head, rest) = read_head(&mut done).expect("101");
        assert_eq!(head.status, 101, "{ctx}: {head:?}");
        let mut done = RawWs::new(done, rest);
        echo_raw(&mut done, "upgraded late", &ctx);
        let mut next = upgrade_when_free(addr, None, &ctx);
        echo_raw(&mut next, "after the upgrade freed a slot", &ctx);
        // Full again (one silent, one new silent); a client that leaves frees its slot too.
        silent.push(tcp(addr));
        poll(FREE_WITHIN, || (admission.upgrading() == 2).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: the new silent connection not counted"));
        expect_refused(addr, None, "UPGRADE_MAX_CONCURRENT", &ctx);
        drop(silent.remove(0));
        let mut last = upgrade_when_free(addr, None, &ctx);
        echo_raw(&mut last, "after a silent client left", &ctx);
        // A plain HTTP request is a handshake too, and frees its slot once answered.
        drop(silent);
        poll(FREE_WITHIN, || (admission.upgrading() == 0).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: slots of closed connections not freed"));
        let h = health_info(addr);
        assert_eq!(h.status, "ok", "{ctx}");
        poll(FREE_WITHIN, || (admission.upgrading() == 0).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: the /health request's slot not freed"));
    }
}

/// `GET /health` on a new connection from `from`; the whole answer.
fn health_from(addr: SocketAddr, from: IpAddr) -> HttpResponse {
    let mut stream = tcp_from(addr, from);
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    read_response(&mut stream).unwrap_or_else(|e| panic!("no answer to /health from {from}: {e}"))
}

#[test]
fn half_sent_upgrades_from_one_address_do_not_lock_out_another_address() {
    const FLOOD: usize = 1024;
    for backend in backends() {
        off_thread(move || {
            // The defaults: UPGRADE_MAX_CONCURRENT 1024, UPGRADE_MAX_CONCURRENT_PER_IP 256.
            let ctx = format!("[{backend}] defaults");
            let server = start(backend, |_| {});
            let addr = server.local_addr();
            let admission = &server.shared().admission;
            let flooder = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
            let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
            // As many half-sent upgrade requests as the process-wide limit, from one address.
            let half = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
            let flood: Vec<TcpStream> = (0..FLOOD)
                .map(|_| {
                    let mut s = tcp_from(addr, flooder);
                    let _ = s.write_all(half);
                    s
                })
                .collect();
            let per_ip = wsd::config::DEFAULT_UPGRADE_MAX_CONCURRENT_PER_IP;
            poll(FREE_WITHIN, || {
                (rejected(&server, RejectReason::UpgradePerIp) == (FLOOD - per_ip) as u64)
                    .then_some(())
            })
            .unwrap_or_else(|| {
                panic!(
                    "{ctx}: expected {} refusals for UPGRADE_MAX_CONCURRENT_PER_IP, got {} \
                     (handshakes pending {})",
                    FLOOD - per_ip,
                    rejected(&server, RejectReason::UpgradePerIp),
                    admission.upgrading()
                )
            });
            assert_eq!(admission.upgrading(), per_ip, "{ctx}: the flooder's share");
            assert_eq!(
                rejected(&server, RejectReason::UpgradeConcurrent),
                0,
                "{ctx}: the process-wide limit was never reached"
            );
            // The flooding address is refused, naming the per-address limit...
            expect_refused(addr, Some(flooder), "UPGRADE_MAX_CONCURRENT_PER_IP", &ctx);
            // ...while another address is served: /health, and a WebSocket client.
            for i in 0..3 {
                let h = health_from(addr, other);
                assert_eq!(h.status, 200, "{ctx}: /health {i} from {other}: {h:?}");
            }
            let mut ws = upgrade(addr, Some(other))
                .unwrap_or_else(|r| panic!("{ctx}: upgrade from {other} refused: {r:?}"));
            echo_raw(&mut ws, "served during the flood", &ctx);
            // The flood's slots free when it goes.
            drop(flood);
            poll(FREE_WITHIN, || (admission.upgrading() == 0).then_some(()))
                .unwrap_or_else(|| panic!("{ctx}: the flood's handshake slots were not freed"));
            let mut again = upgrade_when_free(addr, Some(flooder), &ctx);
            echo_raw(&mut again, "the flooder's address after the flood", &ctx);
        });
    }
}
