//! Reading `SSL_CERT`, `SSL_KEY` and `SSL_CLIENT_CA` into a rustls [`ServerConfig`], and swapping
//! the certificate at run time.
//!
//! Every failure names the variable (`wsd` prints it and exits 2 at start). A reload
//! ([`Tls::reload`], on `SIGHUP`) reads the same files again; new handshakes get the new
//! certificate, established sessions keep theirs (they never look at it again), and a reload that
//! fails leaves the old certificate in place.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::session::TlsSession;

/// Largest certificate, key or CA file read (a chain is a few KiB; this refuses `/dev/zero`).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// The files TLS is configured from (`SSL_CERT`, `SSL_KEY`, `SSL_CLIENT_CA`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, server certificate first (`SSL_CERT`).
    pub cert: Option<PathBuf>,
    /// PEM private key of the first certificate: PKCS#8, SEC1 or PKCS#1 (`SSL_KEY`).
    pub key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (`SSL_CLIENT_CA`); set, every
    /// client must present one (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up. `Display` is the one line `wsd` prints before exiting 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// One of `SSL_CERT` and `SSL_KEY` is set, the other is not (or `SSL_CLIENT_CA` alone).
    Missing {
        /// The variable that is set.
        set: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// A file that cannot be read or used.
    Invalid {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl TlsError {
    /// The environment variable the error is about.
    pub fn variable(&self) -> &'static str {
        match self {
            TlsError::Missing { missing, .. } => missing,
            TlsError::Invalid { var, .. } => var,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Missing { set, missing } => write!(
                f,
                "{set} is set but {missing} ({}) is not: TLS needs both the certificate \
                 (SSL_CERT) and its key (SSL_KEY)",
                flag(missing)
            ),
            TlsError::Invalid { var, path, why } => write!(
                f,
                "invalid {var} ({}) '{}': {why}",
                flag(var),
                path.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// The flag behind a variable, for error lines.
fn flag(var: &str) -> String {
    format!("--{}", var.to_ascii_lowercase().replace('_', "-"))
}

/// TLS for every listener: the rustls configuration new sessions are made from, and the
/// certificate it serves (replaceable).
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
}

impl Tls {
    /// TLS from `files`: `Ok(None)` when neither `SSL_CERT` nor `SSL_KEY` is set (plain
    /// `ws://`), an error naming the variable when only one is, or a file is unreadable or
    /// unusable, or the key does not belong to the certificate.
    pub fn from_files(files: &TlsFiles) -> Result<Option<Arc<Tls>>, TlsError> {
        let (cert, key) = match (&files.cert, &files.key) {
            (None, None) => {
                return match files.client_ca {
                    Some(_) => Err(TlsError::Missing {
                        set: "SSL_CLIENT_CA",
                        missing: "SSL_CERT",
                    }),
                    None => Ok(None),
                };
            }
            (Some(_), None) => {
                return Err(TlsError::Missing {
                    set: "SSL_CERT",
                    missing: "SSL_KEY",
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Missing {
                    set: "SSL_KEY",
                    missing: "SSL_CERT",
                });
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        let provider = Arc::new(provider());
        let certified = certified_key(cert, key, &provider)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(certified)),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Invalid {
                var: "SSL_CERT",
                path: cert.clone(),
                why: e.to_string(),
            })?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for der in read_certs("SSL_CLIENT_CA", ca)? {
                    roots.add(der).map_err(|e| TlsError::Invalid {
                        var: "SSL_CLIENT_CA",
                        path: ca.clone(),
                        why: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            var: "SSL_CLIENT_CA",
                            path: ca.clone(),
                            why: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The server's order of suites wins ([`by_preference`]: AES-128-GCM first).
        config.ignore_client_order = true;
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Invalid {
            var: "SSL_CERT",
            path: cert.clone(),
            why: format!("cannot make a session ticket key: {e}"),
        })?;
        // One ticket per full handshake (rustls's default is two): a browser resumes with one,
        // and each costs an encryption in the handshake.
        config.send_tls13_tickets = 1;
        Ok(Some(Arc::new(Tls {
            files: files.clone(),
            resolver,
            config: Arc::new(config),
        })))
    }

    /// A new server session for an accepted connection.
    pub fn session(&self) -> Result<TlsSession, rustls::Error> {
        TlsSession::new(self.config.clone())
    }

    /// The rustls configuration sessions are made from.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Reads `SSL_CERT` and `SSL_KEY` again and serves the new certificate to new handshakes;
    /// on an error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (Some(cert), Some(key)) = (&self.files.cert, &self.files.key) else {
            return Err(TlsError::Missing {
                set: "SSL_CERT",
                missing: "SSL_KEY",
            });
        };
        let certified = certified_key(cert, key, &self.config.crypto_provider().clone())?;
        let mut current = self
            .resolver
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(certified);
        Ok(())
    }

    /// The end-entity certificate (DER) new handshakes are served.
    pub fn current_certificate(&self) -> CertificateDer<'static> {
        self.resolver.get().cert[0].clone()
    }
}

/// The crypto provider (ring: the module documentation says why), with its suites in the
/// server's order of preference: AES-128-GCM first (see [`by_preference`]).
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(by_preference);
    provider
}

/// Where a suite stands in the server's preference (lower first): AES-128-GCM, then
/// AES-256-GCM, then ChaCha20-Poly1305 (rustls picks the version first and looks only at its
/// suites; the sort is stable, so ECDSA stays ahead of RSA).
///
/// AES-128 runs 10 AES rounds per block where AES-256 runs 14; at 16 KiB messages the record
/// layer is most of what TLS costs per message (BENCHMARKS.md, "TLS: the cipher suite and the
/// receive copy"). Measured there (a loaded machine, so within its noise): ring seals and opens
/// 16 KiB with AES-128-GCM in 3.59 and 3.30 µs against AES-256-GCM's 3.86 and 4.00 (a second
/// run: 3.71 and 4.60 against 3.72 and 4.68), and a same-run 16 KiB `wss://` echo A/B cost 0.92×
/// (per-repetition median; 0.94× by medians) the server CPU per message; never worse. rustls's
/// order (and that of OpenSSL's and rustls's
/// clients, whose order wins by default) puts AES-256 first; browsers already put AES-128 first.
/// Go's crypto/tls makes the same choice. The cost: a client without AES hardware that lists
/// ChaCha20 first gets AES-128 anyway (Go honours that hint; rustls has no hook for it). Every
/// suite stays accepted: a client that offers only AES-256 or only ChaCha20 gets it.
fn by_preference(suite: &rustls::SupportedCipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite.suite() {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Resolver {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The certificate chain in `cert` with the key in `key`, checked to belong together.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs("SSL_CERT", cert)?;
    let key_pem = read_file("SSL_KEY", key)?;
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        var: "SSL_KEY",
        path: key.to_owned(),
        why: format!(
            "no PEM private key (PKCS#8 \"PRIVATE KEY\", SEC1 \"EC PRIVATE KEY\" or PKCS#1 \
             \"RSA PRIVATE KEY\"): {e}"
        ),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Invalid {
            var: "SSL_KEY",
            path: key.to_owned(),
            why: format!("unsupported private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Invalid {
        var: "SSL_KEY",
        path: key.to_owned(),
        why: format!(
            "does not match the certificate in SSL_CERT '{}': {e}",
            cert.display()
        ),
    })?;
    Ok(certified)
}

/// Every certificate in a PEM file (at least one).
fn read_certs(var: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(var, path)?;
    let invalid = |why: String| TlsError::Invalid {
        var,
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no PEM certificate (\"-----BEGIN CERTIFICATE-----\") in it".to_owned(),
        ));
    }
    Ok(certs)
}

/// A regular file's contents, up to [`MAX_PEM_BYTES`].
fn read_file(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let invalid = |why: String| TlsError::Invalid {
        var,
        path: path.to_owned(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|e| invalid(format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| invalid(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(invalid(format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(bytes)
}
