//! The TLS layer against a real rustls client, in memory: handshakes (1.3 and 1.2), ALPN,
//! resumption, records cut anywhere, close_notify both ways, hostile bytes, configuration errors
//! naming their variable, and reload.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::session::MAX_INCOMING;
use super::*;

/// A scratch directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsd-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A self-signed certificate for `localhost` written to `dir` as `{stem}.crt` and `{stem}.key`.
fn make_cert(dir: &Path, stem: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key, ck.cert.der().clone())
}

fn files(cert: &Path, key: &Path) -> TlsFiles {
    TlsFiles {
        cert: Some(cert.to_owned()),
        key: Some(key.to_owned()),
        client_ca: None,
    }
}

fn client_config(
    trusted: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn client(cfg: &Arc<ClientConfig>) -> ClientConnection {
    let mut c = ClientConnection::new(
        cfg.clone(),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    c.set_buffer_limit(None);
    c
}

/// Moves client records to the server `chunk` bytes at a time, and server records back, until
/// neither has anything to say. Returns the plaintext the server received.
fn pump(c: &mut ClientConnection, s: &mut TlsSession, chunk: usize) -> Vec<u8> {
    let mut plain = Vec::new();
    for _ in 0..1000 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("client write_tls");
        }
        for piece in wire.chunks_mut(chunk) {
            s.receive(piece, &mut plain).expect("server receive");
        }
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
    panic!("no quiescence after 1000 rounds");
}

/// Server → client application data.
fn send(s: &mut TlsSession, c: &mut ClientConnection, data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    s.encrypt(data, &mut wire).expect("encrypt");
    let mut rd = &wire[..];
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !rd.is_empty() {
        c.read_tls(&mut rd).expect("client read_tls");
        c.process_new_packets().expect("client process");
        loop {
            match c.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
    }
    got
}

fn setup(name: &str) -> (Arc<Tls>, CertificateDer<'static>, PathBuf) {
    let dir = scratch(name);
    let (cert, key, der) = make_cert(&dir, "a");
    let tls = Tls::from_files(&files(&cert, &key))
        .expect("valid files")
        .expect("TLS on");
    (tls, der, dir)
}

#[test]
fn handshake_and_data_both_ways_on_tls13_and_tls12() {
    let (tls, der, _dir) = setup("both");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = client_config(&der, &[version]);
        let mut c = client(&cfg);
        let mut s = tls.session().expect("session");
        assert!(s.is_handshaking());
        pump(&mut c, &mut s, usize::MAX);
        assert!(!s.is_handshaking() && !c.is_handshaking());
        assert_eq!(s.protocol_version(), Some(version.version));
        assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
        c.writer().write_all(b"hello server").expect("write");
        assert_eq!(pump(&mut c, &mut s, usize::MAX), b"hello server");
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        assert_eq!(send(&mut s, &mut c, &big), big);
        c.writer().write_all(&big).expect("write");
        assert_eq!(pump(&mut c, &mut s, usize::MAX), big);
        assert_eq!(s.buffered(), 0, "an idle session holds no buffer");
    }
}

#[test]
fn records_cut_at_every_size_reassemble() {
    let (tls, der, _dir) = setup("cut");
    for chunk in [1, 2, 5, 7, 100, 1000] {
        let cfg = client_config(&der, &[&rustls::version::TLS13]);
        let mut c = client(&cfg);
        let mut s = tls.session().expect("session");
        pump(&mut c, &mut s, chunk);
        assert!(!s.is_handshaking(), "chunk {chunk}");
        let msg: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
        c.writer().write_all(&msg).expect("write");
        assert_eq!(pump(&mut c, &mut s, chunk), msg, "chunk {chunk}");
        assert_eq!(s.buffered(), 0, "chunk {chunk}");
    }
}

#[test]
fn sessions_resume_with_tickets() {
    let (tls, der, _dir) = setup("resume");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = client_config(&der, &[version]);
        for round in 0..2 {
            let mut c = client(&cfg);
            let mut s = tls.session().expect("session");
            pump(&mut c, &mut s, usize::MAX);
            // TLS 1.3 tickets arrive after the handshake; one data exchange delivers them.
            c.writer().write_all(b"x").expect("write");
            pump(&mut c, &mut s, usize::MAX);
            let kind = c.handshake_kind();
            if round == 1 {
                assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "{version:?}");
            } else {
                assert_eq!(kind, Some(rustls::HandshakeKind::Full), "{version:?}");
            }
        }
    }
}

#[test]
fn close_notify_both_ways() {
    let (tls, der, _dir) = setup("close");
    let cfg = client_config(&der, &[&rustls::version::TLS13]);
    let mut c = client(&cfg);
    let mut s = tls.session().expect("session");
    pump(&mut c, &mut s, usize::MAX);
    s.close_notify();
    assert!(s.close_notify_sent());
    let mut wire = Vec::new();
    s.take_pending(&mut wire);
    assert!(!wire.is_empty());
    let mut rd = &wire[..];
    c.read_tls(&mut rd).expect("read");
    let state = c.process_new_packets().expect("process");
    assert!(state.peer_has_closed(), "client saw close_notify");

    let mut c = client(&cfg);
    let mut s = tls.session().expect("session");
    pump(&mut c, &mut s, usize::MAX);
    c.send_close_notify();
    let mut wire = Vec::new();
    c.write_tls(&mut wire).expect("write");
    let got = s.receive(&mut wire, &mut Vec::new()).expect("receive");
    assert!(got.peer_closed);
    // Bytes after close_notify are ignored, not kept.
    let got = s.receive(&mut [1, 2, 3], &mut Vec::new()).expect("receive");
    assert!(got.peer_closed);
    assert_eq!(s.buffered(), 0);
}

#[test]
fn garbage_is_refused_with_an_alert_and_no_panic() {
    let (tls, _der, _dir) = setup("garbage");
    let mut s = tls.session().expect("session");
    let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert!(s.receive(&mut junk, &mut Vec::new()).is_err());
    assert!(s.pending_len() > 0, "an alert is queued");
    assert!(
        s.receive(&mut [0x16], &mut Vec::new()).is_err(),
        "dead stays dead"
    );
    // A record header claiming more than a record may hold.
    let mut s = tls.session().expect("session");
    let mut huge = vec![0x16, 0x03, 0x01, 0xff, 0xff, 0];
    assert!(s.receive(&mut huge, &mut Vec::new()).is_err());
    // A handshake message that never completes stops at MAX_INCOMING.
    let mut s = tls.session().expect("session");
    let mut head = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    let mut result = s.receive(&mut head, &mut Vec::new());
    let mut fed = head.len();
    while result.is_ok() && fed < 4 * MAX_INCOMING {
        let mut more = vec![0x16; 0x4000];
        result = s.receive(&mut more, &mut Vec::new());
        fed += more.len();
    }
    assert!(result.is_err(), "fed {fed} bytes");
    assert!(s.buffered() <= MAX_INCOMING + 0x4000);
}

#[test]
fn missing_or_bad_files_name_their_variable() {
    let dir = scratch("bad");
    let (cert, key, _) = make_cert(&dir, "a");
    let (_cert_b, key_b, _) = make_cert(&dir, "b");
    let none = TlsFiles::default();
    assert!(matches!(Tls::from_files(&none), Ok(None)));
    let cases: Vec<(TlsFiles, &str, &str)> = vec![
        (
            TlsFiles {
                cert: Some(cert.clone()),
                ..TlsFiles::default()
            },
            "SSL_KEY",
            "SSL_CERT is set but SSL_KEY",
        ),
        (
            TlsFiles {
                key: Some(key.clone()),
                ..TlsFiles::default()
            },
            "SSL_CERT",
            "SSL_KEY is set but SSL_CERT",
        ),
        (
            TlsFiles {
                client_ca: Some(cert.clone()),
                ..TlsFiles::default()
            },
            "SSL_CERT",
            "SSL_CLIENT_CA is set",
        ),
        (
            files(&dir.join("nope.crt"), &key),
            "SSL_CERT",
            "cannot open",
        ),
        (
            files(&cert, &dir.join("nope.key")),
            "SSL_KEY",
            "cannot open",
        ),
        (files(&dir, &key), "SSL_CERT", "not a regular file"),
        (files(&key, &key), "SSL_CERT", "no PEM certificate"),
        (files(&cert, &cert), "SSL_KEY", "no PEM private key"),
        (files(&cert, &key_b), "SSL_KEY", "does not match"),
        (
            TlsFiles {
                client_ca: Some(key.clone()),
                ..files(&cert, &key)
            },
            "SSL_CLIENT_CA",
            "no PEM certificate",
        ),
    ];
    for (files, var, text) in cases {
        let err = Tls::from_files(&files).expect_err("refused");
        assert_eq!(err.variable(), var, "{err}");
        let line = err.to_string();
        assert!(line.contains(text), "{line}");
        assert!(line.contains(var), "{line}");
    }
}

#[test]
fn reload_serves_the_new_certificate_and_keeps_the_old_on_error() {
    let dir = scratch("reload");
    let (cert, key, der_a) = make_cert(&dir, "a");
    let tls = Tls::from_files(&files(&cert, &key))
        .expect("ok")
        .expect("on");
    // A session established before the reload keeps working after it.
    let cfg_a = client_config(&der_a, &[&rustls::version::TLS13]);
    let mut c_old = client(&cfg_a);
    let mut s_old = tls.session().expect("session");
    pump(&mut c_old, &mut s_old, usize::MAX);

    let (cert_b, key_b, der_b) = make_cert(&dir, "b");
    std::fs::copy(&cert_b, &cert).expect("copy");
    std::fs::copy(&key_b, &key).expect("copy");
    tls.reload().expect("reload");
    assert_eq!(tls.current_certificate(), der_b);
    let cfg_b = client_config(&der_b, &[&rustls::version::TLS13]);
    let mut c_new = client(&cfg_b);
    let mut s_new = tls.session().expect("session");
    pump(&mut c_new, &mut s_new, usize::MAX);
    assert!(!c_new.is_handshaking());
    assert_eq!(
        c_new.peer_certificates().map(|c| c[0].clone()),
        Some(der_b.clone())
    );
    c_old.writer().write_all(b"still here").expect("write");
    assert_eq!(pump(&mut c_old, &mut s_old, usize::MAX), b"still here");

    // A key that does not match: the reload fails, the current certificate stays.
    let (_cert_c, key_c, _) = make_cert(&dir, "c");
    std::fs::copy(&key_c, &key).expect("copy");
    let err = tls.reload().expect_err("mismatch refused");
    assert_eq!(err.variable(), "SSL_KEY");
    assert_eq!(tls.current_certificate(), der_b);
    std::fs::write(&cert, b"junk").expect("write");
    assert_eq!(tls.reload().expect_err("junk").variable(), "SSL_CERT");
    assert_eq!(tls.current_certificate(), der_b);
}

#[test]
fn stashed_ciphertext_is_processed_later() {
    let (tls, der, _dir) = setup("stash");
    let cfg = client_config(&der, &[&rustls::version::TLS13]);
    let mut c = client(&cfg);
    let mut s = tls.session().expect("session");
    let mut hello = Vec::new();
    c.write_tls(&mut hello).expect("hello");
    s.stash(&hello).expect("stash");
    assert!(s.has_incoming());
    s.receive(&mut [], &mut Vec::new()).expect("receive");
    assert!(!s.has_incoming());
    assert!(s.pending_len() > 0, "the server flight is ready");
    let mut back = Vec::new();
    s.take_pending(&mut back);
    let mut rd = &back[..];
    c.read_tls(&mut rd).expect("read");
    c.process_new_packets().expect("process");
    pump(&mut c, &mut s, usize::MAX);
    assert!(!s.is_handshaking());
}

#[test]
fn session_state_is_small() {
    let size = std::mem::size_of::<TlsSession>();
    eprintln!("TlsSession: {size} bytes inline");
    assert!(size <= 2048, "{size}");
}

#[test]
fn the_client_certificate_subject_is_the_tls_identity() {
    let dir = scratch("mtls");
    let (cert, key, der) = make_cert(&dir, "server");
    let ca = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca).expect("ca");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write");
    let issuer = rcgen::Issuer::new(ca_params, ca);
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    let client_cert = params.signed_by(&client_key, &issuer).expect("client");
    let tls = Tls::from_files(&TlsFiles {
        client_ca: Some(ca_file),
        ..files(&cert, &key)
    })
    .expect("ok")
    .expect("on");
    let mut roots = RootCertStore::empty();
    roots.add(der).expect("root");
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![client_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
            )
            .expect("client auth");
    let mut c = client(&Arc::new(cfg));
    let mut s = tls.session().expect("session");
    pump(&mut c, &mut s, usize::MAX);
    assert!(!s.is_handshaking());
    let subject = s.peer_subject().expect("a subject");
    assert!(subject.contains("CN=alice"), "{subject}");
    assert!(subject.contains("O=Example"), "{subject}");
}
