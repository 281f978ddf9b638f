//! What an idle connection costs the server in heap, counted by the allocator: a real server (one
//! worker, both backends, ws:// and wss://) in this process, N clients upgraded in batches as
//! the load generator's `connect` does and then held idle (the clients keep only their sockets),
//! and the bytes the server's allocations grew by, per connection, against a budget. A counting
//! global allocator keeps live bytes and a histogram of live allocations by size, printed so a
//! failure (or `-- --nocapture`) says what is held.
//!
//! This counts what wsd asks the allocator for; RSS (BENCHMARKS.md, `wsd-loadtest connect`) adds
//! the allocator's rounding and pages, and the driver's fixed buffers as they are touched.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use common::*;
use wsd::io::Backend;

/// Sizes counted one by one; larger allocations share the last bucket.
const EXACT: usize = 1 << 17;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static BY_SIZE: [AtomicIsize; EXACT + 1] = [const { AtomicIsize::new(0) }; EXACT + 1];

fn count(size: usize, delta: isize) {
    LIVE_BYTES.fetch_add(delta * size as isize, Relaxed);
    BY_SIZE[size.min(EXACT)].fetch_add(delta, Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; only counters are added.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: `ptr` came from `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live allocations by size into `into` (allocated beforehand, so taking it allocates nothing);
/// returns the live bytes.
fn snapshot(into: &mut [isize]) -> isize {
    for (slot, counter) in into.iter_mut().zip(BY_SIZE.iter()) {
        *slot = counter.load(Relaxed);
    }
    LIVE_BYTES.load(Relaxed)
}

/// Connections held per measurement: two table chunks' worth, so chunk growth is charged as
/// it is with many connections.
const N: usize = 512;
/// Upgrades in flight at once (the load generator's `--concurrency`).
const BATCH: usize = 64;

/// A self-signed certificate for localhost: (cert, key) files in `dir`.
fn make_cert(dir: &Path) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    std::fs::create_dir_all(dir).expect("scratch dir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let cert = dir.join("a.crt");
    let key = dir.join("a.key");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key, ck.cert.der().clone())
}

fn client_config(
    trusted: &rustls::pki_types::CertificateDer<'static>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One client upgraded (over TLS with `tls`), reduced to its socket.
fn open(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> TcpStream {
    let request = upgrade_request("/ws");
    let mut tcp = tcp(addr);
    let Some(cfg) = tls else {
        tcp.write_all(request.as_bytes()).expect("request");
        let (head, _) = read_head(&mut tcp).expect("101");
        assert_eq!(head.status, 101);
        return tcp;
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(request.as_bytes()).expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    // The session ticket came with the handshake; the client's TLS state goes, its socket stays.
    s.sock
}

/// Live bytes per idle connection on `backend` (TLS with `tls`), printing what they are made of.
fn per_connection(
    backend: Backend,
    tls: Option<(&Path, &Path, &Arc<rustls::ClientConfig>)>,
) -> f64 {
    let server = start(backend, |c| {
        c.upgrade_max_concurrent_per_ip = 0;
        if let Some((cert, key, _)) = tls {
            c.ssl_cert = Some(cert.to_owned());
            c.ssl_key = Some(key.to_owned());
        }
    });
    let addr = server.local_addr();
    let cfg = tls.map(|t| t.2);
    let stats = &server.worker_stats()[0];
    // A first batch, kept open and not counted: one-time allocations (pools, the ticket key,
    // ring's tables, the tables' first chunks) are made before counting, and the counted
    // connections take slots of their own, so the tables' chunks are charged in full, as they are
    // with many connections.
    let warm: Vec<TcpStream> = (0..BATCH).map(|_| open(addr, cfg)).collect();
    let opened = poll(Duration::from_secs(10), || {
        (stats.connections.load(Relaxed) == BATCH).then_some(())
    });
    assert!(opened.is_some(), "[{backend}] warm-up connections not open");
    std::thread::sleep(Duration::from_millis(200));
    let mut held: Vec<TcpStream> = Vec::with_capacity(N);
    let mut before = vec![0isize; EXACT + 1];
    let mut after = vec![0isize; EXACT + 1];
    let start = snapshot(&mut before);
    while held.len() < N {
        let batch: Vec<_> = (0..BATCH.min(N - held.len()))
            .map(|_| {
                let cfg = cfg.cloned();
                std::thread::spawn(move || open(addr, cfg.as_ref()))
            })
            .collect();
        for t in batch {
            held.push(t.join().expect("client thread"));
        }
    }
    let all = poll(Duration::from_secs(10), || {
        (stats.connections.load(Relaxed) == BATCH + N).then_some(())
    });
    assert!(all.is_some(), "[{backend}] not every connection is open");
    // The worker's pool of output buffers (filled by the upgrades' sends) is the worker's, not
    // the connections': it goes at the worker's first quiet turn (`trim.rs`, within 1-2 s).
    std::thread::sleep(QUIET);
    let end = snapshot(&mut after);
    let per = (end - start) as f64 / N as f64;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("[{backend}] {scheme}: {per:.0} B per idle connection");
    for (size, (a, b)) in after.iter().zip(before.iter()).enumerate() {
        let n = a - b;
        if n != 0 && (n.unsigned_abs() * 8 >= N || size >= 4096) {
            let share = (n * size as isize) as f64 / N as f64;
            println!("  {size:>7} B x {n:>5} ({share:>6.1} B per connection)");
        }
    }
    drop(held);
    drop(warm);
    drop(server);
    per
}

/// How long the held connections stay idle before counting: past the worker's first quiet turn.
const QUIET: Duration = Duration::from_millis(2500);

/// Heap per idle ws:// connection on epoll. Measured 180 B (2026-12-03; io_uring 243 B): two
/// 28,672 B chunks of the connection slab (112 B a slot) and two 6,144 B chunks of the driver's
/// sockets (24 B a slot; io_uring's: 22,528 B, 88 B a slot); two 8,192 B and one 4,096 B
/// vectors, 40 B a connection together: the idle wheel's token (8 B, in doubling vectors: the
/// slot it waits in, and the expiry list that handed it over) and the handshake deadline (16 B,
/// in 4 KiB blocks freed once due, `HANDSHAKE_TIMEOUT` after the accept); the queued-bytes slot
/// (4 B, in 1 KiB chunks, not printed). Before (main at d17a95d) the same parts were 160 + 72 +
/// 24 + 8 + 4 B, the deadlines and the queued bytes in doubling vectors, and every wheel slot a
/// burst went through kept its capacity: over this budget by layout (not run).
const PLAIN_BUDGET_EPOLL: f64 = 208.0;
/// The same on io_uring, whose socket slot is 88 B (an inline send in flight).
const PLAIN_BUDGET_URING: f64 = 272.0;
/// Heap per idle wss:// connection: the above and the TLS session (1,152 B in the worker's
/// session table, 2.1-2.2 KiB rustls allocates for it: `tests/tls_idle_memory.rs`).
const TLS_BUDGET: f64 = 4096.0;

#[test]
fn idle_connections_hold_little_heap() {
    let dir = std::env::temp_dir().join(format!("wsd-idle-memory-{}", std::process::id()));
    let (cert, key, der) = make_cert(&dir);
    let cfg = client_config(&der);
    for backend in backends() {
        let plain = per_connection(backend, None);
        let budget = match backend {
            Backend::Epoll => PLAIN_BUDGET_EPOLL,
            Backend::Uring => PLAIN_BUDGET_URING,
        };
        assert!(
            plain <= budget,
            "[{backend}] ws: {plain:.0} B per idle connection, over {budget}"
        );
        let tls = per_connection(backend, Some((&cert, &key, &cfg)));
        assert!(
            tls <= TLS_BUDGET,
            "[{backend}] wss: {tls:.0} B per idle connection, over {TLS_BUDGET}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
