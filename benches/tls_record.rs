//! Criterion bench of the TLS record layer at the size of a 16 KiB echo: the crypto floor under
//! the `wss://` 16 KiB row of BENCHMARKS.md ("TLS: the cipher suite and the receive copy").
//!
//! Per suite (TLS 1.3 AES-128-GCM and AES-256-GCM, ring):
//!
//! - `aead seal`/`aead open`: ring's AEAD alone over one 16 KiB record in place, the floor no TLS
//!   stack goes under.
//! - `session open`: what wsd's [`TlsSession::receive`] costs for one client message of
//!   16 KiB (a 16,392-byte frame: a 16,384-byte record and an 8-byte one, as rustls's client
//!   sends it): decryption, rustls's copy of the plaintext into a `Vec` of its own, the record
//!   bookkeeping, and wsd's copy of it into a reused buffer (the worker's).
//! - `session seal`: [`TlsSession::encrypt`] of one 16 KiB echo reply (a 16,388-byte frame,
//!   two records) into a reused buffer.
//!
//! One 16 KiB echo costs the server one `session open` and one `session seal`.
//!
//! `cargo bench --bench tls_record`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, Algorithm, LessSafeKey, Nonce, UnboundKey};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CipherSuite, ClientConfig, ClientConnection, RootCertStore};
use wsd::tls::{Tls, TlsFiles, TlsSession};

/// The frame of a 16 KiB client message (masked, 64-bit length form: 2 + 2 + 4 bytes header)
/// and of the server's echo (2 + 2).
const CLIENT_FRAME: usize = 16384 + 8;
const SERVER_FRAME: usize = 16384 + 4;

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

/// A client that offers only `suite`.
fn client(trusted: &CertificateDer<'static>, suite: CipherSuite) -> ClientConnection {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").expect("name");
    ClientConnection::new(Arc::new(cfg), name).expect("client")
}

/// Records between client and server until neither has anything to say.
fn pump(c: &mut ClientConnection, s: &mut TlsSession) {
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
            return;
        }
        let mut rd = &back[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read_tls");
            c.process_new_packets().expect("client process");
        }
    }
    panic!("no quiescence after 100 rounds");
}

fn aead(c: &mut Criterion, name: &str, alg: &'static Algorithm) {
    let key = LessSafeKey::new(UnboundKey::new(alg, &[7u8; 32][..alg.key_len()]).expect("key"));
    let mut record = vec![0x5au8; 16384];
    let mut g = c.benchmark_group(format!("{name} aead"));
    g.throughput(Throughput::Bytes(record.len() as u64));
    g.bench_function("seal 16 KiB", |b| {
        b.iter(|| {
            let nonce = Nonce::assume_unique_for_key([1; 12]);
            key.seal_in_place_separate_tag(nonce, Aad::from([23u8, 3, 3, 64, 17]), &mut record)
                .expect("seal")
        });
    });
    let mut sealed = record.clone();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([2; 12]),
            Aad::empty(),
            &mut sealed,
        )
        .expect("seal");
    sealed.extend_from_slice(tag.as_ref());
    g.bench_function("open 16 KiB", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |buf| {
                let nonce = Nonce::assume_unique_for_key([2; 12]);
                black_box(
                    key.open_in_place(nonce, Aad::empty(), buf)
                        .expect("open")
                        .len(),
                )
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn session(c: &mut Criterion, name: &str, suite: CipherSuite) {
    let dir = std::env::temp_dir().join(format!("wsd-bench-tls-{}", std::process::id()));
    let (tls, der) = server(&dir);
    let mut s = tls.session().expect("session");
    let mut cl = client(&der, suite);
    pump(&mut cl, &mut s);
    assert!(!s.is_handshaking());
    let mut g = c.benchmark_group(format!("{name} session"));
    g.throughput(Throughput::Bytes(16384));
    let reply = vec![0x5au8; SERVER_FRAME];
    let mut out = Vec::with_capacity(2 * SERVER_FRAME);
    g.bench_function("seal 16 KiB echo reply", |b| {
        b.iter(|| {
            out.clear();
            s.encrypt(black_box(&reply), &mut out).expect("encrypt");
            out.len()
        });
    });
    let message = vec![0xa5u8; CLIENT_FRAME];
    let mut plain = Vec::with_capacity(2 * CLIENT_FRAME);
    g.bench_function("open 16 KiB client message", |b| {
        b.iter_batched_ref(
            || {
                // The client's records, in sequence (untimed).
                std::io::Write::write_all(&mut cl.writer(), &message).expect("client write");
                let mut wire = Vec::with_capacity(CLIENT_FRAME + 64);
                while cl.wants_write() {
                    cl.write_tls(&mut wire).expect("client write_tls");
                }
                wire
            },
            |wire| {
                plain.clear();
                s.receive(wire, &mut plain).expect("receive");
                assert_eq!(plain.len(), CLIENT_FRAME);
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn record_layer(c: &mut Criterion) {
    aead(c, "AES-128-GCM", &AES_128_GCM);
    aead(c, "AES-256-GCM", &AES_256_GCM);
    session(c, "AES-128-GCM", CipherSuite::TLS13_AES_128_GCM_SHA256);
    session(c, "AES-256-GCM", CipherSuite::TLS13_AES_256_GCM_SHA384);
}

criterion_group!(benches, record_layer);
criterion_main!(benches);
