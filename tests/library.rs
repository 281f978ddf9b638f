//! The library API as an embedding program uses it: starting servers from a thread that goes on
//! doing its own blocking I/O.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use wsd::io::Backend;

/// Blocks in a socket read with a 500 ms timeout on the calling thread; returns the error kind.
fn blocking_read_outcome() -> ErrorKind {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _server_side = listener.accept().unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    match client.read(&mut buf) {
        Ok(n) => panic!("read returned {n} bytes from a silent peer"),
        Err(e) => {
            let kind = e.kind();
            if kind != ErrorKind::Interrupted {
                assert!(started.elapsed() >= Duration::from_millis(400), "{e}");
            }
            kind
        }
    }
}

#[test]
fn uring_probe_does_not_interrupt_the_callers_next_blocking_read() {
    if !backends().contains(&Backend::Uring) {
        eprintln!("io_uring unavailable: nothing to check");
        return;
    }
    let kinds = off_thread(|| {
        (0..3)
            .map(|_| {
                wsd::uring::probe().expect("probe");
                blocking_read_outcome()
            })
            .collect::<Vec<_>>()
    });
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "after wsd::uring::probe() the calling thread's blocking reads ended with {kinds:?} \
         (expected timeouts): the probe's ring teardown interrupts the caller (EINTR)"
    );
}

#[test]
fn starting_a_uring_server_does_not_interrupt_the_callers_next_blocking_read() {
    if !backends().contains(&Backend::Uring) {
        eprintln!("io_uring unavailable: nothing to check");
        return;
    }
    let kinds = off_thread(|| {
        (0..3)
            .map(|_| {
                let cfg = wsd::config::Config {
                    host: "127.0.0.1".parse().unwrap(),
                    port: 0,
                    cluster_workers: wsd::config::Workers::Count(1),
                    io: wsd::io::IoMode::Uring,
                    ..Default::default()
                };
                let server = wsd::server::Server::start(&cfg).expect("start");
                let kind = blocking_read_outcome();
                server.shutdown();
                kind
            })
            .collect::<Vec<_>>()
    });
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "after Server::start (WSD_IO=uring) the calling thread's blocking reads ended with \
         {kinds:?} (expected timeouts): an embedding program's own socket calls fail with EINTR"
    );
}

#[test]
fn raise_nofile_limit_reports_the_soft_limit() {
    let limit = wsd::sys::raise_nofile_limit().expect("raise_nofile_limit");
    assert!(limit >= 1024, "soft RLIMIT_NOFILE after raising: {limit}");
    // Idempotent: a second call reports the same limit.
    assert_eq!(wsd::sys::raise_nofile_limit().unwrap(), limit);
}

#[test]
fn a_second_server_on_a_port_in_use_is_refused() {
    // Starting wsd twice on one port by mistake must fail ("address in use"), not silently share
    // the port through SO_REUSEPORT and take half of the first server's new connections.
    for backend in backends() {
        let first = start(backend, |_| {});
        let port = first.local_addr().port();
        let second = off_thread(move || {
            let cfg = wsd::config::Config {
                host: "127.0.0.1".parse().unwrap(),
                port,
                cluster_workers: wsd::config::Workers::Count(1),
                io: io_mode(backend),
                ..Default::default()
            };
            wsd::server::Server::start(&cfg)
        });
        match second {
            Err(wsd::server::StartError::Listen { source, .. }) => {
                assert_eq!(source.kind(), ErrorKind::AddrInUse, "[{backend}] {source}")
            }
            Err(e) => panic!("[{backend}] second server refused for another reason: {e}"),
            Ok(second) => {
                // Show the consequence: new connections are split between the two servers.
                let conns: Vec<_> = (0..32).map(|_| ws_connect(first.local_addr())).collect();
                let on_first = health_info(first.local_addr());
                drop(conns);
                drop(second);
                panic!(
                    "[{backend}] a second server started on port {port} already served by \
                     another; the first one now sees only {} of 33 new connections ({on_first:?})",
                    on_first.workers[0].1.saturating_sub(1)
                );
            }
        }
    }
}

#[test]
fn serves_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: nothing to check");
        return;
    }
    for backend in backends() {
        let server = start(backend, |cfg| cfg.host = "::1".parse().unwrap());
        let addr = server.local_addr();
        assert!(addr.is_ipv6(), "[{backend}] local_addr {addr}");
        let mut ws = ws_connect(addr);
        ws.send(tungstenite::Message::text("over IPv6")).unwrap();
        assert_eq!(
            ws.read().unwrap(),
            tungstenite::Message::text("over IPv6"),
            "[{backend}]"
        );
    }
}
