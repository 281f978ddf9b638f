//! The server-side TLS session against arbitrary bytes from a client, cut into arbitrary reads:
//! it must never panic, never hold more than `MAX_INCOMING` bytes waiting for a record, and once
//! it has failed it must stay failed. Encrypting and `close_notify` are tried after every read.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use wsd::tls::session::MAX_INCOMING;
use wsd::tls::{Tls, TlsFiles};

/// The test certificate (fuzz/tls-test.crt, .key: a self-signed P-256 one for `localhost`).
fn tls() -> &'static Arc<Tls> {
    static TLS: OnceLock<Arc<Tls>> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = TlsFiles {
            cert: Some(dir.join("tls-test.crt")),
            key: Some(dir.join("tls-test.key")),
            client_ca: None,
        };
        Tls::from_files(&files)
            .expect("test certificate loads")
            .expect("TLS on")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut session = tls().session().expect("session");
    let mut plaintext = Vec::new();
    let mut out = Vec::new();
    // The first byte picks the read size, so records are cut at every place.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let mut failed = false;
    for piece in rest.chunks(cut) {
        let mut piece = piece.to_vec();
        match session.receive(&mut piece, &mut plaintext) {
            Ok(_) => assert!(!failed, "a failed session came back"),
            Err(_) => failed = true,
        }
        assert!(session.buffered() <= MAX_INCOMING + 2 * cut + 64 * 1024);
        if !session.is_handshaking() {
            let _ = session.encrypt(b"reply", &mut out);
        }
        session.take_pending(&mut out);
        out.clear();
    }
    session.close_notify();
    session.take_pending(&mut out);
});
