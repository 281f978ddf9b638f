//! io_uring recovery paths under load: a buffer ring so small that multishot receives run dry
//! (ENOBUFS → re-arm) and a completion queue so small that completions overflow into the kernel's
//! list, with messages spanning many receive buffers. Nothing may be lost, duplicated or reordered.

mod common;

use std::thread;

use common::{backends, off_thread, pseudo_random, ws_connect};
use tungstenite::Message;
use wsd::config::{Config, Workers};
use wsd::io::Backend;
use wsd::server::Server;
use wsd::uring::UringParams;

#[test]
fn enobufs_and_cq_overflow_lose_nothing() {
    if !backends().contains(&Backend::Uring) {
        return; // `backends()` already said why (and panics in CI where io_uring is required)
    }
    wsd::sys::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let config = Config {
        host: "127.0.0.1".parse().expect("address"),
        port: 0,
        cluster_workers: Workers::Count(1),
        io: wsd::io::IoMode::Uring,
        app: wsd::app::AppKind::Echo,
        ..Config::default()
    };
    let tiny = UringParams {
        recv_buffers: 8,
        recv_buf_size: 512,
        sq_entries: 8,
        cq_entries: 16,
        ..UringParams::default()
    };
    let server = off_thread(move || Server::start_tuned(&config, tiny)).expect("server starts");
    let addr = server.local_addr();

    const THREADS: u64 = 4;
    const CONNS: u64 = 50;
    const ROUNDS: u64 = 20;
    const IN_FLIGHT: u64 = 3;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                let mut conns: Vec<_> = (0..CONNS).map(|_| ws_connect(addr)).collect();
                for round in 0..ROUNDS {
                    for (c, ws) in conns.iter_mut().enumerate() {
                        for k in 0..IN_FLIGHT {
                            let seed = (t << 40) | ((c as u64) << 20) | (round << 4) | k;
                            // 1 B to ~3 KiB: up to seven 512-byte receive buffers per message.
                            let len = 1 + (seed.wrapping_mul(2654435761) % 3000) as usize;
                            ws.send(Message::Binary(pseudo_random(len, seed).into()))
                                .expect("send");
                        }
                    }
                    for (c, ws) in conns.iter_mut().enumerate() {
                        for k in 0..IN_FLIGHT {
                            let seed = (t << 40) | ((c as u64) << 20) | (round << 4) | k;
                            let len = 1 + (seed.wrapping_mul(2654435761) % 3000) as usize;
                            let got = ws.read().expect("echo arrives");
                            assert_eq!(
                                got.into_data().as_ref(),
                                pseudo_random(len, seed).as_slice(),
                                "thread {t} conn {c} round {round} message {k}"
                            );
                        }
                    }
                }
                for mut ws in conns {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let stats = &server.worker_stats()[0];
    let enobufs = stats
        .recv_enobufs
        .load(std::sync::atomic::Ordering::Relaxed);
    let overflows = stats
        .cq_overflows
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        enobufs > 0,
        "the 8-buffer ring never ran dry: the ENOBUFS path went untested"
    );
    assert!(
        overflows > 0,
        "the 16-entry CQ never overflowed: the overflow path went untested"
    );
    eprintln!("ENOBUFS re-arms: {enobufs}, CQ overflow flushes: {overflows}");
}
