//! Admission limits (`MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_IP`, `UPGRADE_MAX_CONCURRENT`,
//! `UPGRADE_MAX_CONCURRENT_PER_IP`). At a process-wide limit the server stops accepting: new
//! clients wait in the kernel's backlog (never refused) and get in when a slot frees, on whichever
//! worker it frees. Past a per-address limit a new connection is answered 503 with `Retry-After`
//! and a reason naming the limit, before the server allocates anything for it. Every test runs on
//! each backend.

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

/// Sends an upgrade request on `stream` (connected, not yet answered).
fn send_upgrade(stream: &mut TcpStream) {
    stream
        .write_all(upgrade_request("/ws").as_bytes())
        .expect("the request goes into the socket buffer even while the server waits");
}

/// Checks that nothing is answered on `stream` for a while: the client waits in the backlog.
fn expect_waiting(stream: &mut TcpStream, ctx: &str) {
    stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("{ctx}: a client over the limit must wait, got {other:?}"),
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Reads the 101 a waiting client gets once a slot frees, and checks it is served.
fn expect_admitted(mut stream: TcpStream, ctx: &str) -> RawWs {
    stream.set_read_timeout(Some(FREE_WITHIN)).unwrap();
    let (head, rest) = read_head(&mut stream)
        .unwrap_or_else(|e| panic!("{ctx}: no answer once a slot freed: {e}"));
    assert_eq!(head.status, 101, "{ctx}: {head:?}");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut ws = RawWs::new(stream, rest);
    echo_raw(&mut ws, "admitted from the backlog", ctx);
    ws
}

/// Waits until one of the `waiting` clients is answered, removes it and checks it is served.
fn admit_one(waiting: &mut Vec<TcpStream>, ctx: &str) -> RawWs {
    let i = poll(FREE_WITHIN, || {
        waiting.iter().position(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let mut byte = [0u8; 1];
            matches!(stream.peek(&mut byte), Ok(n) if n > 0)
        })
    })
    .unwrap_or_else(|| panic!("{ctx}: no waiting client admitted within {FREE_WITHIN:?}"));
    expect_admitted(waiting.remove(i), ctx)
}

#[test]
fn max_connections_leaves_new_clients_in_the_backlog_until_a_slot_frees() {
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
        // Three more clients: whichever worker's backlog each lands in, none is accepted.
        let mut waiting: Vec<TcpStream> = (0..3).map(|_| tcp(addr)).collect();
        for stream in &mut waiting {
            send_upgrade(stream);
        }
        for stream in &mut waiting {
            expect_waiting(stream, &ctx);
        }
        assert_eq!(
            accepted(&server),
            2,
            "{ctx}: the waiting clients were not accepted"
        );
        // The clients inside are untouched.
        a.send(Message::text("still here")).unwrap();
        assert_eq!(a.read().unwrap(), Message::text("still here"), "{ctx}");
        // One leaves: one waiting client gets in (whichever worker's backlog holds it), the
        // others still wait; then another.
        drop(b);
        let mut c = admit_one(&mut waiting, &ctx);
        for stream in &mut waiting {
            expect_waiting(stream, &format!("{ctx}, full again"));
        }
        drop(a);
        let _d = admit_one(&mut waiting, &ctx);
        echo_raw(&mut c, "still served", &ctx);
        assert_eq!(
            rejected(&server, RejectReason::MaxConnections),
            0,
            "{ctx}: nobody was refused"
        );
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
        // A third waits in the backlog, neither accepted nor refused.
        let mut next = tcp(addr);
        send_upgrade(&mut next);
        expect_waiting(&mut next, &ctx);
        assert_eq!(
            accepted(&server),
            5,
            "{ctx}: the waiting client was not accepted"
        );
        echo_raw(&mut upgraded[0], "upgraded clients are untouched", &ctx);
        // One silent connection finishes its upgrade: its slot frees and the waiting one gets in.
        let mut done = silent.remove(0);
        send_upgrade(&mut done);
        let (head, rest) = read_head(&mut done).expect("101");
        assert_eq!(head.status, 101, "{ctx}: {head:?}");
        let mut done = RawWs::new(done, rest);
        echo_raw(&mut done, "upgraded late", &ctx);
        let _next = expect_admitted(next, &ctx);
        // Full again (one silent, one new silent); a client that leaves frees its slot too.
        silent.push(tcp(addr));
        poll(FREE_WITHIN, || (admission.upgrading() == 2).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: the new silent connection not counted"));
        let mut last = tcp(addr);
        send_upgrade(&mut last);
        expect_waiting(&mut last, &ctx);
        drop(silent.remove(0));
        let _last = expect_admitted(last, &ctx);
        // A plain HTTP request is a handshake too, and frees its slot once answered.
        drop(silent);
        poll(FREE_WITHIN, || (admission.upgrading() == 0).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: slots of closed connections not freed"));
        let h = health_info(addr);
        assert_eq!(h.status, "ok", "{ctx}");
        poll(FREE_WITHIN, || (admission.upgrading() == 0).then_some(()))
            .unwrap_or_else(|| panic!("{ctx}: the /health request's slot not freed"));
        assert_eq!(
            rejected(&server, RejectReason::UpgradeConcurrent),
            0,
            "{ctx}: nobody was refused"
        );
    }
}

#[test]
fn a_burst_of_honest_clients_over_the_handshake_limit_all_connect() {
    const CLIENTS: usize = 300;
    for backend in backends() {
        off_thread(move || {
            let ctx = format!("[{backend}] UPGRADE_MAX_CONCURRENT=4, {CLIENTS} clients at once");
            let server = start(backend, |c| {
                c.upgrade_max_concurrent = 4;
                c.cluster_workers = Workers::Count(2);
            });
            let addr = server.local_addr();
            // Every client connects and sends its upgrade at once, then reads its answer.
            let mut streams: Vec<TcpStream> = (0..CLIENTS).map(|_| tcp(addr)).collect();
            for stream in &mut streams {
                send_upgrade(stream);
            }
            let mut clients: Vec<RawWs> = streams
                .into_iter()
                .enumerate()
                .map(|(i, mut stream)| {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let (head, rest) = read_head(&mut stream)
                        .unwrap_or_else(|e| panic!("{ctx}: client {i}: no answer: {e}"));
                    assert_eq!(head.status, 101, "{ctx}: client {i} refused: {head:?}");
                    RawWs::new(stream, rest)
                })
                .collect();
            for (i, ws) in clients.iter_mut().enumerate().step_by(37) {
                echo_raw(ws, &format!("client {i}"), &ctx);
            }
            let refused: u64 = RejectReason::ALL
                .iter()
                .map(|&r| rejected(&server, r))
                .sum();
            assert_eq!(refused, 0, "{ctx}: nobody was refused");
            assert_eq!(accepted(&server), CLIENTS, "{ctx}");
        });
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

/// `GET path` on the admin port; the whole answer.
fn admin_get(admin: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = tcp(admin);
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
        .unwrap_or_else(|e| panic!("no answer to {path} on the admin port: {e}"))
}

/// `/health` and `/metrics` on the admin port answer 200, `count` times each.
fn admin_answers(admin: SocketAddr, count: usize, ctx: &str) -> String {
    let mut metrics = String::new();
    for i in 0..count {
        let h = admin_get(admin, "/health");
        assert_eq!(h.status, 200, "{ctx}: admin /health {i}: {h:?}");
        assert!(h.text().contains(r#""status":"ok""#), "{ctx}: {h:?}");
        let m = admin_get(admin, "/metrics");
        assert_eq!(m.status, 200, "{ctx}: admin /metrics {i}: {m:?}");
        metrics = m.text();
        assert!(metrics.ends_with("# EOF\n"), "{ctx}: {metrics}");
    }
    metrics
}

/// The sum of the samples of `name` (any labels) in an exposition.
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

#[test]
fn health_and_metrics_answer_on_the_admin_port_while_the_limits_are_full() {
    for backend in backends() {
        off_thread(move || {
            let ctx =
                format!("[{backend}] ADMIN_PORT, UPGRADE_MAX_CONCURRENT=4, MAX_CONNECTIONS=6");
            let server = start(backend, |c| {
                c.admin_port = Some(0);
                c.upgrade_max_concurrent = 4;
                c.max_connections = MaxConnections::Count(6);
                c.cluster_workers = Workers::Count(2);
            });
            let addr = server.local_addr();
            let admin = server.admin_addr().expect("the admin listener");
            assert_ne!(admin.port(), addr.port(), "{ctx}");
            let admission = &server.shared().admission;
            // Half-sent upgrades fill every handshake slot.
            let half = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
            let flood: Vec<TcpStream> = (0..4)
                .map(|_| {
                    let mut s = tcp(addr);
                    s.write_all(half).unwrap();
                    s
                })
                .collect();
            poll(FREE_WITHIN, || (admission.upgrading() == 4).then_some(()))
                .unwrap_or_else(|| panic!("{ctx}: the half-sent upgrades are not counted"));
            // The WebSocket port's /health waits in the backlog; the admin port answers.
            let mut waiting = tcp(addr);
            waiting
                .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            expect_waiting(&mut waiting, &ctx);
            admin_answers(admin, 3, &format!("{ctx}, handshakes full"));
            // The flood goes; the waiting /health is answered.
            drop(flood);
            let resp = read_response(&mut waiting).expect("the waiting /health answered");
            assert_eq!(resp.status, 200, "{ctx}: {resp:?}");
            // Now MAX_CONNECTIONS: six WebSocket clients.
            let mut clients: Vec<RawWs> = (0..6)
                .map(|i| upgrade(addr, None).unwrap_or_else(|r| panic!("{ctx}: client {i}: {r:?}")))
                .collect();
            poll(FREE_WITHIN, || (admission.open() == 6).then_some(()))
                .unwrap_or_else(|| panic!("{ctx}: {} open, not 6", admission.open()));
            let mut next = tcp(addr);
            send_upgrade(&mut next);
            expect_waiting(&mut next, &ctx);
            let metrics = admin_answers(admin, 3, &format!("{ctx}, connections full"));
            assert_eq!(
                metric_sum(&metrics, "wsd_connections"),
                6,
                "{ctx}: admin scrapes are not connections: {metrics}"
            );
            assert_eq!(
                metric_sum(&metrics, "wsd_connections_rejected_total"),
                0,
                "{ctx}"
            );
            // The admin port serves nothing else: no WebSocket, no publish.
            for path in ["/publish", "/", "/healthz"] {
                assert_eq!(admin_get(admin, path).status, 404, "{ctx}: admin {path}");
            }
            let mut ws = tcp(admin);
            send_upgrade(&mut ws);
            let (head, _) = read_head(&mut ws).expect("an answer");
            assert_eq!(
                head.status, 404,
                "{ctx}: upgrade on the admin port: {head:?}"
            );
            echo_raw(&mut clients[0], "clients inside are served", &ctx);
            drop(clients.pop());
            let _next = expect_admitted(next, &ctx);
        });
    }
}
