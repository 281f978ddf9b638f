//! One connection's TLS session, sans-IO: ciphertext in, plaintext out, and the reverse.
//!
//! Built on rustls's unbuffered API, so that the session owns no record buffer of its own:
//!
//! - **Receive** ([`TlsSession::receive`]): rustls decrypts the records in place in the slice it
//!   is given, which is the driver's receive buffer whenever no partial record is waiting; only
//!   the tail of a record cut by the read is copied (into [`TlsSession`]'s `incoming`, freed as
//!   soon as the record completes). The plaintext is appended to a buffer the caller owns (one
//!   per worker): rustls 0.23 hands records out as `&[u8]`, and the protocol core unmasks in
//!   place, so this one copy is forced by the API.
//! - **Send** ([`TlsSession::encrypt`]): each plaintext slice is encrypted straight into the
//!   caller's send buffer. The buffered API would encrypt into a `Vec` of its own per record and
//!   copy that out again (`write_tls`), and keep a 4 KiB read buffer per connection even when
//!   idle; here nothing is held between calls.
//! - Records the session makes itself (handshake flights, session tickets, alerts, `close_notify`)
//!   wait in `pending` until the worker's next send takes them ([`TlsSession::take_pending`]),
//!   ahead of any application data encrypted after them.
//!
//! An idle established session holds the rustls connection state and nothing else:
//! [`TlsSession::buffered`] is 0. That state is 1,144 bytes inline plus about 2.2 KiB rustls
//! allocates (TLS 1.3: the AES-GCM keys of both directions, the key schedule kept for key updates,
//! a handshake deframer list and two empty queues it never releases); `tests/tls_idle_memory.rs`
//! lists it by size and fails if it grows.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls_pki_types::CertificateDer;

/// Most ciphertext a session keeps waiting for a record to complete: a handshake message may
/// span records up to 64 KiB (rustls's limit; a client certificate chain), an application data
/// record is at most 16 KiB plus its overhead. A peer that sends more without completing a record
/// is refused.
pub const MAX_INCOMING: usize = 80 * 1024;

/// Room left per record when encrypting: header, inner content type, tag and explicit nonce (29
/// bytes at most for the suites offered), rounded up.
const RECORD_OVERHEAD: usize = 64;
/// Largest plaintext in one record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// What one [`TlsSession::receive`] call found besides plaintext.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The peer sent `close_notify`: it sends nothing more (it may still read).
    pub peer_closed: bool,
}

/// A server-side TLS session (see the module documentation).
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext of records not yet complete (no allocation when there is none).
    incoming: Vec<u8>,
    /// Records the session made, to be sent before anything encrypted later.
    pending: Vec<u8>,
    peer_closed: bool,
    close_notify_sent: bool,
    /// A call failed: the session is dead and rustls is not called again (its positions in the
    /// input dropped with it would be out of range).
    failed: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .field("incoming", &self.incoming.len())
            .field("pending", &self.pending.len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A new session waiting for a ClientHello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            pending: Vec::new(),
            peer_closed: false,
            close_notify_sent: false,
            failed: false,
        })
    }

    /// Takes `ciphertext` (which rustls decrypts in place), appends the application data it
    /// carried to `plaintext` and queues whatever the session answers (handshake, tickets,
    /// alerts) for [`TlsSession::take_pending`]. On an error the session is dead: an alert may be
    /// pending; send it and close.
    pub fn receive(
        &mut self,
        ciphertext: &mut [u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Received, rustls::Error> {
        if self.failed {
            return Err(dead());
        }
        if self.peer_closed {
            // Nothing may follow close_notify; what does is ignored, not buffered.
            return Ok(Received { peer_closed: true });
        }
        let result = if self.incoming.is_empty() {
            let (used, result) = process(
                &mut self.conn,
                ciphertext,
                plaintext,
                &mut self.pending,
                &mut self.peer_closed,
            );
            if let Some(rest) = ciphertext.get(used..)
                && !rest.is_empty()
            {
                self.incoming.extend_from_slice(rest);
            }
            result
        } else {
            let mut buf = std::mem::take(&mut self.incoming);
            buf.extend_from_slice(ciphertext);
            let (used, result) = process(
                &mut self.conn,
                &mut buf,
                plaintext,
                &mut self.pending,
                &mut self.peer_closed,
            );
            buf.drain(..used.min(buf.len()));
            self.incoming = buf;
            result
        };
        if self.incoming.len() > MAX_INCOMING {
            self.failed = true;
            self.incoming = Vec::new();
            return Err(too_much());
        }
        if result.is_err() {
            self.failed = true;
            self.incoming = Vec::new();
        } else if self.incoming.is_empty() {
            // Idle: give the record buffer back.
            self.incoming = Vec::new();
        }
        result.map(|()| Received {
            peer_closed: self.peer_closed,
        })
    }

    /// Keeps `ciphertext` for a later [`TlsSession::receive`] (with an empty slice), when the
    /// worker puts off a handshake's work to a later turn.
    pub fn stash(&mut self, ciphertext: &[u8]) -> Result<(), rustls::Error> {
        if self.failed {
            return Err(dead());
        }
        if self.incoming.len() + ciphertext.len() > MAX_INCOMING {
            self.failed = true;
            self.incoming = Vec::new();
            return Err(too_much());
        }
        self.incoming.extend_from_slice(ciphertext);
        Ok(())
    }

    /// Encrypts `plaintext` into records appended to `out` (after any pending records the
    /// session made meanwhile, which go first). Only once the handshake is complete.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), rustls::Error> {
        if plaintext.is_empty() {
            return Ok(());
        }
        self.with_write_traffic(out, |w, out| {
            let start = out.len();
            let room = plaintext.len() + plaintext.len().div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD;
            out.resize(start + room, 0);
            let written = match w.encrypt(plaintext, &mut out[start..]) {
                Ok(n) => n,
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    out.resize(start + required_size, 0);
                    w.encrypt(plaintext, &mut out[start..])
                        .map_err(|e| rustls::Error::General(e.to_string()))?
                }
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            };
            out.truncate(start + written);
            Ok(())
        })
    }

    /// Queues `close_notify` (once) for [`TlsSession::take_pending`]: the session sends nothing
    /// after it. Does nothing before the handshake is complete or after a failure.
    pub fn close_notify(&mut self) {
        if self.failed || self.close_notify_sent || self.conn.is_handshaking() {
            return;
        }
        self.close_notify_sent = true;
        let mut pending = std::mem::take(&mut self.pending);
        let _ = self.with_write_traffic(&mut pending, |w, out| {
            let start = out.len();
            out.resize(start + RECORD_OVERHEAD, 0);
            let written = w
                .queue_close_notify(&mut out[start..])
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            out.truncate(start + written);
            Ok(())
        });
        self.pending = pending;
    }

    /// Whether `close_notify` was queued.
    pub fn close_notify_sent(&self) -> bool {
        self.close_notify_sent
    }

    /// Bytes of records waiting for [`TlsSession::take_pending`].
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Moves the pending records to the end of `out` (by swapping buffers when `out` is empty,
    /// so a handshake flight is not copied).
    pub fn take_pending(&mut self, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            return;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut self.pending);
            self.pending = Vec::new();
        } else {
            out.extend_from_slice(&self.pending);
            self.pending = Vec::new();
        }
    }

    /// Whether the handshake is still going on (no application data yet either way).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether ciphertext is waiting for its record to complete (or was stashed).
    pub fn has_incoming(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Bytes of buffer the session holds outside rustls's own state (0 when idle).
    pub fn buffered(&self) -> usize {
        self.incoming.capacity() + self.pending.capacity()
    }

    /// The client's certificate chain, end entity first (mutual TLS; `None` without it).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The subject of the client's certificate (mutual TLS), RFC 4514 style (`CN=alice, O=Example`):
    /// the connection's TLS identity. `None` without a client certificate.
    pub fn peer_subject(&self) -> Option<String> {
        let der = self.conn.peer_certificates()?.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(cert.subject().to_string())
    }

    /// The negotiated protocol version (`None` during the handshake).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The negotiated ALPN protocol, if the client offered ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Brings the session to the state where application data may be encrypted (sending any
    /// records it made first, into `out`) and runs `f` there.
    fn with_write_traffic(
        &mut self,
        out: &mut Vec<u8>,
        f: impl FnOnce(
            &mut WriteTraffic<'_, ServerConnectionData>,
            &mut Vec<u8>,
        ) -> Result<(), rustls::Error>,
    ) -> Result<(), rustls::Error> {
        if self.failed {
            return Err(dead());
        }
        // The session's own records (a key update answered, say) go before this data.
        self.take_pending(out);
        let mut f = Some(f);
        let mut incoming = std::mem::take(&mut self.incoming);
        let mut result = Err(rustls::Error::General(
            "TLS session cannot send application data".to_owned(),
        ));
        // Each step makes progress (a record encoded or marked sent), so this ends; the bound
        // keeps a rustls surprise from spinning.
        for _ in 0..64 {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut incoming);
            let done = match state {
                Err(e) => {
                    result = Err(e);
                    true
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    if let Some(f) = f.take() {
                        result = f(&mut w, out);
                    }
                    true
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => match encode(&mut e, out) {
                    Ok(()) => false,
                    Err(err) => {
                        result = Err(err);
                        true
                    }
                },
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // What was encoded is in `out`, which is sent before anything later.
                    t.done();
                    false
                }
                Ok(_) => true,
            };
            incoming.drain(..discard.min(incoming.len()));
            if done {
                break;
            }
        }
        self.incoming = incoming;
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

fn dead() -> rustls::Error {
    rustls::Error::General("TLS session already failed".to_owned())
}

fn too_much() -> rustls::Error {
    rustls::Error::General(format!(
        "more than {MAX_INCOMING} bytes without a complete TLS record"
    ))
}

/// Runs the session over `buf` until it needs more input: plaintext to `plaintext`, records to
/// send to `pending`. Returns how many bytes of `buf` were used up, and whether it failed.
fn process(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    plaintext: &mut Vec<u8>,
    pending: &mut Vec<u8>,
    peer_closed: &mut bool,
) -> (usize, Result<(), rustls::Error>) {
    let mut start = 0;
    loop {
        let rest = buf.get_mut(start..).unwrap_or_default();
        let UnbufferedStatus { discard, state } = conn.process_tls_records(rest);
        let mut done = false;
        let mut failed = None;
        match state {
            Err(e) => failed = Some(e),
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => plaintext.extend_from_slice(record.payload),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            Ok(ConnectionState::ReadEarlyData(mut records)) => {
                // Not offered (max_early_data_size 0), so never reached; dropped if it were.
                while let Some(Ok(_)) = records.next_record() {}
            }
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                if let Err(e) = encode(&mut e, pending) {
                    failed = Some(e);
                }
            }
            Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
            Ok(ConnectionState::PeerClosed) => *peer_closed = true,
            Ok(ConnectionState::Closed) => {
                *peer_closed = true;
                done = true;
            }
            // Needs more input (or may send: nothing more to read).
            Ok(_) => done = true,
        }
        start += discard;
        if let Some(e) = failed {
            flush_alert(conn, buf.get_mut(start..).unwrap_or_default(), pending);
            return (start, Err(e));
        }
        if done {
            return (start, Ok(()));
        }
    }
}

/// After a failure, moves the alert rustls queued (if any) to `pending`.
///
/// `rest` must be the input not yet used up: rustls keeps positions in it from call to call (a
/// handshake message joined from several records), so any other slice may be out of its range.
fn flush_alert(conn: &mut UnbufferedServerConnection, rest: &mut [u8], pending: &mut Vec<u8>) {
    // Only while records are queued (what came before the failure, then the alert): with none,
    // rustls would go over the bad input again (and alert twice).
    for _ in 0..16 {
        if !conn.wants_write() {
            return;
        }
        let UnbufferedStatus { state, .. } = conn.process_tls_records(rest);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                if encode(&mut e, pending).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Appends one record the session made to `out`.
fn encode(
    e: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    let written = match e.encode(&mut []) {
        Ok(n) => n,
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            out.resize(start + required_size, 0);
            e.encode(&mut out[start..])
                .map_err(|e| rustls::Error::General(e.to_string()))?
        }
        Err(e) => return Err(rustls::Error::General(e.to_string())),
    };
    out.truncate(start + written);
    Ok(())
}
