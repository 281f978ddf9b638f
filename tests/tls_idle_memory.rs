//! What an idle TLS session holds once its handshake (and session ticket) is done, counted by
//! the allocator: N sessions handshake in memory with real rustls clients (TLS 1.3 and 1.2),
//! exchange a request and a reply, the clients are dropped, and the bytes still allocated per
//! server session are compared with a budget. A counting global allocator keeps the live bytes
//! and a histogram of live allocations by size, printed so a failure says what is held
//! (`cargo test --release --test tls_idle_memory -- --nocapture`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use wsd::tls::{Tls, TlsFiles, TlsSession};

/// Sizes counted one by one; larger allocations share the last bucket.
const EXACT: usize = 1 << 15;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static BY_SIZE: [AtomicIsize; EXACT + 1] = [const { AtomicIsize::new(0) }; EXACT + 1];

fn count(size: usize, delta: isize) {
    LIVE_BYTES.fetch_add(delta * size as isize, Relaxed);
    BY_SIZE[size.min(EXACT)].fetch_add(delta, Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
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
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
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

/// Live allocations by size, into `into` (allocated beforehand, so taking it allocates nothing).
fn snapshot(into: &mut [isize]) -> isize {
    for (slot, counter) in into.iter_mut().zip(BY_SIZE.iter()) {
        *slot = counter.load(Relaxed);
    }
    LIVE_BYTES.load(Relaxed)
}

fn server(dir: &std::path::Path) -> (Arc<Tls>, CertificateDer<'static>) {
    std::fs::create_dir_all(dir).expect("scratch dir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let cert = dir.join("a.crt");
    let key = dir.join("a.key");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let files = TlsFiles {
        cert: Some(cert),
        key: Some(key),
        client_ca: None,
    };
    let tls = Tls::from_files(&files).expect("valid").expect("TLS on");
    (tls, ck.cert.der().clone())
}

fn client_config(
    trusted: &CertificateDer<'static>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Client records to the server and back until neither has anything to say; returns the
/// plaintext the server received.
fn pump(c: &mut ClientConnection, s: &mut TlsSession) -> Vec<u8> {
    let mut plain = Vec::new();
    for _ in 0..100 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("client write_tls");
        }
        s.receive(&mut wire, &mut plain).expect("server receive");
        let mut back = Vec::new();
        s.take_pending(&mut back);
        if wire.is_empty() && back.is_empty() {
            return plain;
        }
        let mut rd = &back[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read_tls");
            c.process_new_packets().expect("client process");
        }
    }
    panic!("no quiescence after 100 rounds");
}

/// One session taken to idle: handshake, ticket, a request in and a reply out (as an upgrade).
fn idle_session(tls: &Tls, cfg: &Arc<ClientConfig>) -> TlsSession {
    let mut s = tls.session().expect("session");
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(cfg.clone(), name).expect("client");
    std::io::Write::write_all(&mut c.writer(), b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("client write");
    let got = pump(&mut c, &mut s);
    assert!(got.starts_with(b"GET /ws"), "request through: {got:?}");
    assert!(!s.is_handshaking());
    let mut wire = Vec::new();
    s.encrypt(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &mut wire)
        .expect("encrypt");
    let mut rd = &wire[..];
    c.read_tls(&mut rd).expect("client read_tls");
    c.process_new_packets().expect("client process");
    let mut reply = [0u8; 64];
    let n = c.reader().read(&mut reply).expect("client read");
    assert!(reply[..n].starts_with(b"HTTP/1.1 101"));
    assert_eq!(s.buffered(), 0, "an idle session holds no record buffer");
    s
}

/// Bytes a session may hold while idle, inline and allocated. Measured on rustls 0.23.46 with
/// ring, TLS 1.3 (TLS_AES_256_GCM_SHA384): 1,144 B inline (`TlsSession`, almost all of it
/// rustls's `UnbufferedServerConnection`) and 2,193 B allocated: the record layer's AES-GCM keys
/// (2 x 560: ring's key schedule and GHASH table per direction), the handshake deframer's span
/// list (640: `Vec::with_capacity(16)` made with the connection and never released), the traffic
/// key schedule (224: the state kept for key updates), two empty `VecDeque`s of 4 (96 each:
/// rustls's send queue and plaintext queue, never shrunk), the SNI (9) and ALPN (8) names. None of
/// it is wsd's and rustls 0.23 has no call that releases any of it; wsd's own buffers are 0
/// ([`TlsSession::buffered`]). TLS 1.2: 2,089 B allocated (its traffic state is 120 B). A new
/// allocation kept per session fails this.
const IDLE_BUDGET: usize = 3400;

#[test]
fn an_idle_tls_session_holds_only_rustls_state() {
    const N: usize = 200;
    let dir = std::env::temp_dir().join(format!("wsd-tls-idle-{}", std::process::id()));
    let (tls, der) = server(&dir);
    let mut before = vec![0isize; EXACT + 1];
    let mut after = vec![0isize; EXACT + 1];
    for (label, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        let cfg = client_config(&der, version);
        // One session first, so one-time allocations (ring's CPU features, the ticketer's first
        // key) are not charged to the N.
        drop(idle_session(&tls, &cfg));
        let mut sessions: Vec<TlsSession> = Vec::with_capacity(N);
        let start = snapshot(&mut before);
        for _ in 0..N {
            sessions.push(idle_session(&tls, &cfg));
        }
        let end = snapshot(&mut after);
        let per = (end - start) as f64 / N as f64;
        let inline = size_of::<TlsSession>();
        println!(
            "{label}: {per:.0} B allocated per idle session ({inline} B inline in TlsSession)"
        );
        for (size, (a, b)) in after.iter().zip(before.iter()).enumerate() {
            let held = a - b;
            if held.unsigned_abs() >= N / 2 {
                let per_session = held as f64 / N as f64;
                println!("  {size:>6} B x {per_session:.2} per session");
            }
        }
        assert!(
            per + inline as f64 <= IDLE_BUDGET as f64,
            "{label}: an idle session holds {per:.0} B + {inline} B inline, over {IDLE_BUDGET}"
        );
        drop(sessions);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
