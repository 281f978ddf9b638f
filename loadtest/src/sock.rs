//! A client socket, plain or TLS (`wss://`): non-blocking `send`/`recv` with the system calls'
//! meaning (`AGAIN` when the socket is full or empty, `Ok(0)` at the end), so every scenario drives
//! either the same way.
//!
//! With TLS, `send` hands plaintext to a rustls client session and writes what ciphertext the
//! socket takes; what it does not take waits in the session ([`Sock::flush_tls`], called on every
//! writable event). `recv` drains the socket into the session and returns plaintext; it always
//! reads the socket until it is empty before returning a short count, so edge-triggered callers
//! that stop at a short read never miss an edge.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, recv, send};

use crate::upgrade::open_socket;
use crate::url::Target;

/// The TLS client configuration (`--ca`), set once at start.
static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts the certificates in the PEM file `ca` (the test certificate) for `wss://` targets.
pub fn set_ca(ca: &Path) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection does a full handshake (the connect scenario measures handshakes).
    cfg.resumption = rustls::client::Resumption::disabled();
    let _ = CLIENT.set(Arc::new(cfg));
    Ok(())
}

/// One client connection's socket.
pub struct Sock {
    fd: OwnedFd,
    tls: Option<Box<Tls>>,
}

struct Tls {
    conn: rustls::ClientConnection,
    /// Plaintext received and not yet returned by `recv`.
    plain: Vec<u8>,
    taken: usize,
    eof: bool,
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Sock {
    /// Starts connecting to `target` (with a TLS session for `wss://`).
    pub fn open(target: &Target) -> Result<Sock, String> {
        let fd = open_socket(target.addr)?;
        let tls = if target.tls {
            let cfg = CLIENT
                .get()
                .ok_or("wss:// needs --ca FILE (the server's certificate)")?;
            let name = rustls::pki_types::ServerName::try_from(target.host_name())
                .map_err(|e| format!("server name {}: {e}", target.host_name()))?
                .to_owned();
            let mut conn = rustls::ClientConnection::new(cfg.clone(), name)
                .map_err(|e| format!("TLS client: {e}"))?;
            conn.set_buffer_limit(None);
            Some(Box::new(Tls {
                conn,
                plain: Vec::new(),
                taken: 0,
                eof: false,
            }))
        } else {
            None
        };
        Ok(Sock { fd, tls })
    }

    /// The socket.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends `data` (plaintext); `Err(AGAIN)` when nothing could be taken now.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Errno> {
        if self.tls.is_none() {
            return send(&self.fd, data, SendFlags::NOSIGNAL);
        }
        self.flush_tls()?;
        let tls = self.tls.as_mut().ok_or(Errno::INVAL)?;
        let n = tls.conn.writer().write(data).map_err(|_| Errno::IO)?;
        match self.flush_tls() {
            Ok(()) | Err(Errno::AGAIN) => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !data.is_empty() {
            return Err(Errno::AGAIN);
        }
        Ok(n)
    }

    /// Writes the TLS records waiting in the session; `Err(AGAIN)` if some still wait.
    pub fn flush_tls(&mut self) -> Result<(), Errno> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        while tls.conn.wants_write() {
            let mut out = FdWriter(&self.fd);
            match tls.conn.write_tls(&mut out) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Errno::AGAIN),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO)),
            }
        }
        Ok(())
    }

    /// Receives plaintext into `buf`; `Err(AGAIN)` when none is available, `Ok(0)` at the end.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        if self.tls.is_none() {
            return recv(&self.fd, buf, RecvFlags::empty()).map(|(n, _)| n);
        }
        loop {
            let tls = self.tls.as_mut().ok_or(Errno::INVAL)?;
            if tls.taken < tls.plain.len() {
                let n = (tls.plain.len() - tls.taken).min(buf.len());
                buf[..n].copy_from_slice(&tls.plain[tls.taken..tls.taken + n]);
                tls.taken += n;
                if tls.taken == tls.plain.len() {
                    tls.plain.clear();
                    tls.taken = 0;
                }
                return Ok(n);
            }
            if tls.eof {
                return Ok(0);
            }
            let mut progress = false;
            loop {
                match recv(&self.fd, &mut *buf, RecvFlags::empty()) {
                    Ok((0, _)) => {
                        tls.eof = true;
                        break;
                    }
                    Ok((n, _)) => {
                        tls.feed(&buf[..n])?;
                        progress = true;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            let idle = !progress && !tls.eof && tls.plain.is_empty();
            // The handshake's answers (and the request written before it finished).
            match self.flush_tls() {
                Ok(()) | Err(Errno::AGAIN) => {}
                Err(e) => return Err(e),
            }
            if idle {
                return Err(Errno::AGAIN);
            }
        }
    }
}

impl Tls {
    fn feed(&mut self, mut data: &[u8]) -> Result<(), Errno> {
        while !data.is_empty() {
            self.conn.read_tls(&mut data).map_err(|_| Errno::PROTO)?;
            let state = self.conn.process_new_packets().map_err(|_| Errno::PROTO)?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let old = self.plain.len();
                self.plain.resize(old + n, 0);
                self.conn
                    .reader()
                    .read_exact(&mut self.plain[old..])
                    .map_err(|_| Errno::PROTO)?;
            }
            if state.peer_has_closed() {
                self.eof = true;
            }
        }
        Ok(())
    }
}

/// `io::Write` over a non-blocking socket (for `write_tls`).
struct FdWriter<'a>(&'a OwnedFd);

impl Write for FdWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        send(self.0, buf, SendFlags::NOSIGNAL).map_err(std::io::Error::from)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
