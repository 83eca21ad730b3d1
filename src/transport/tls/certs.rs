//! The server's certificate and key: read from PEM files (or generated with `--self-signed`), and
//! swapped in place by [`CertStore::reload`], so new handshakes present the new certificate while
//! sessions already established go on with theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::crypto::ring as provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{Error, InconsistentKeys, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The names a `--self-signed` certificate is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a certificate could not be loaded; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file holds no usable PEM block of the kind needed.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key is of a type rustls cannot sign with, or not the certificate's.
    #[error("{}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        source: tokio_rustls::rustls::Error,
    },
    /// The key is not the one the certificate was issued for.
    #[error("{} is not the private key of {}", key.display(), cert.display())]
    Mismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// rustls refused the configuration (no protocol version in common with the provider).
    #[error("cannot set up TLS: {0}")]
    Setup(tokio_rustls::rustls::Error),
    /// `--self-signed` could not make its certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// The current certificate, handed to every new handshake.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    fn get(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        match self.0.read() {
            Ok(key) => Arc::clone(&key),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        match self.0.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The server's TLS identity, shared by the line-protocol listener (`--tls`) and HTTPS. Cheap to
/// clone; every clone sees a reload.
#[derive(Clone)]
pub struct CertStore {
    source: Source,
    current: Arc<Current>,
    line: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("source", &self.source)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl CertStore {
    /// Reads the certificate chain (`cert`, leaf first) and its private key (`key`), both PEM.
    pub fn from_files(cert: &Path, key: &Path) -> Result<CertStore, CertError> {
        let loaded = load(cert, key)?;
        CertStore::new(
            Source::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            loaded,
        )
    }

    /// Generates a throwaway certificate for [`SELF_SIGNED_NAMES`], for development and tests.
    pub fn self_signed() -> Result<CertStore, CertError> {
        let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names)?;
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let signer = provider::sign::any_supported_type(&key).map_err(|source| CertError::Key {
            path: PathBuf::from("(generated)"),
            source,
        })?;
        let certified = CertifiedKey::new(vec![generated.cert.der().clone()], signer);
        CertStore::new(Source::SelfSigned, certified)
    }

    fn new(source: Source, key: CertifiedKey) -> Result<CertStore, CertError> {
        let current = Arc::new(Current(RwLock::new(Arc::new(key))));
        let config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, CertError> {
            let mut config =
                ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(CertError::Setup)?
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        // The line protocol has no ALPN name (openssl s_client and ncat send none); HTTPS says
        // HTTP/1.1, the only HTTP the web listener speaks.
        let line = config(&[])?;
        let http = config(&[b"http/1.1"])?;
        Ok(CertStore {
            source,
            current,
            line,
            http,
        })
    }

    /// Re-reads the certificate and key files and, if both are good, makes them the ones new
    /// handshakes get; established sessions are not touched. On an error the certificate in use
    /// is kept. A `--self-signed` certificate has no files and stays as it is (clients may have
    /// pinned its fingerprint). Returns the fingerprint now in use. Called on SIGHUP (see
    /// [`super::reload_on_hangup`]) and by whatever else reloads the configuration.
    pub fn reload(&self) -> Result<String, CertError> {
        if let Source::Files { cert, key } = &self.source {
            self.current.set(Arc::new(load(cert, key)?));
        }
        Ok(self.fingerprint())
    }

    /// The SHA-256 fingerprint of the certificate in use, as `openssl x509 -fingerprint -sha256`
    /// prints it (upper-case hex pairs joined by colons).
    pub fn fingerprint(&self) -> String {
        let current = self.current.get();
        match current.cert.first() {
            Some(leaf) => fingerprint(leaf),
            None => String::new(),
        }
    }

    /// Whether the certificate came from `--self-signed`.
    pub fn is_self_signed(&self) -> bool {
        matches!(self.source, Source::SelfSigned)
    }

    /// An acceptor for the line protocol (`--tls`) and IRC (`--ircs`).
    pub fn line_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.line))
    }

    /// An acceptor for HTTPS (`--http` with a certificate).
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.http))
    }
}

/// The SHA-256 fingerprint of a DER certificate, `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Reads a chain and its key, checking that the key is the leaf certificate's.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let pem_error = |path: &Path, what: String| CertError::Pem {
        path: path.to_path_buf(),
        what,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE block in it".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| pem_error(key, format!("no usable PEM private key in it: {e}")))?;
    let key_error = |source| CertError::Key {
        path: key.to_path_buf(),
        source,
    };
    let signer = provider::sign::any_supported_type(&private).map_err(key_error)?;
    let certified = CertifiedKey::new(chain, signer);
    // Caught here rather than as a failed handshake for every client later.
    match certified.keys_match() {
        // A key type whose public half rustls cannot tell is taken on trust, as rustls does.
        Ok(()) | Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertError::Mismatch {
                key: key.to_path_buf(),
                cert: cert.to_path_buf(),
            })
        }
    }
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, tag: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("generate");
        let cert = dir.join(format!("{tag}.crt"));
        let key = dir.join(format!("{tag}.key"));
        std::fs::write(&cert, generated.cert.pem()).expect("write cert");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
        (cert, key)
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chatd-certs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_certificate_on_a_bad_file() {
        let dir = temp_dir("reload");
        let (cert, key) = write_pair(&dir, "a", &["localhost"]);
        let store = CertStore::from_files(&cert, &key).expect("load");
        let first = store.fingerprint();
        assert_eq!(first.len(), 32 * 3 - 1);
        let (cert_b, key_b) = write_pair(&dir, "b", &["localhost"]);
        std::fs::copy(&cert_b, &cert).expect("copy");
        std::fs::copy(&key_b, &key).expect("copy");
        let second = store.reload().expect("reload");
        assert_ne!(first, second);
        assert_eq!(store.clone().fingerprint(), second);
        std::fs::write(&cert, "not a certificate").expect("write");
        let err = store.reload().expect_err("a bad file is refused");
        assert!(err.to_string().contains("a.crt"), "{err}");
        assert_eq!(store.fingerprint(), second, "the old certificate is kept");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = temp_dir("mismatch");
        let (cert, _) = write_pair(&dir, "a", &["localhost"]);
        let (_, other_key) = write_pair(&dir, "b", &["localhost"]);
        let err = CertStore::from_files(&cert, &other_key).expect_err("mismatch");
        assert!(
            err.to_string().contains("b.key is not the private key of"),
            "{err}"
        );
        let missing = CertStore::from_files(&dir.join("none.crt"), &other_key).expect_err("none");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn self_signed_certificates_are_new_each_time_and_survive_reload() {
        let a = CertStore::self_signed().expect("generate");
        let b = CertStore::self_signed().expect("generate");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.reload().expect("no files to reload"), a.fingerprint());
        assert!(a.is_self_signed());
    }
}
