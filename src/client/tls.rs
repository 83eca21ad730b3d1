//! `chatc --tls`: the TCP session inside TLS. The server's certificate is checked against the
//! system's trust store (rustls-native-certs: the roots an operator already manages, their own CA
//! included), against one CA file (`--ca`), or not at all (`--insecure`, for `--self-signed`
//! servers; `chatc` says so loudly).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring as provider, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::ClientError;

/// How `chatc --tls` checks the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the system's trust store.
    SystemRoots,
    /// Against the CA certificates in this PEM file only.
    Ca(PathBuf),
    /// Not at all: anyone on the path can read and change the chat.
    Insecure,
}

/// The warning `chatc --insecure` prints before connecting.
pub const INSECURE_WARNING: &str = "chatc: WARNING: --insecure: the server's certificate is NOT \
     checked; anyone on the network path can read and change this chat";

/// Wraps a connected `stream` in TLS for `server` (`HOST:PORT`, the host naming the certificate
/// expected). A certificate that does not check out is an error that says why (expired, wrong
/// host, unknown issuer).
pub async fn connect(
    stream: TcpStream,
    server: &str,
    verify: &Verify,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let tls_error = |source: io::Error| ClientError::Tls {
        server: server.to_owned(),
        source,
    };
    let config = client_config(verify).map_err(tls_error)?;
    let host = host_of(server);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        tls_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a host name or address: {e}"),
        ))
    })?;
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(tls_error)
}

/// The host part of `HOST:PORT` (`[::1]:9001` gives `::1`).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(provider::default_provider())
}

fn client_config(verify: &Verify) -> io::Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let roots = match verify {
        Verify::Insecure => {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth())
        }
        Verify::SystemRoots => system_roots()?,
        Verify::Ca(path) => ca_roots(path)?,
    };
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

fn system_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping part of the system trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no usable certificates in the system trust store (give --ca PEM)",
        ));
    }
    Ok(roots)
}

fn ca_roots(path: &std::path::Path) -> io::Result<RootCertStore> {
    let pem = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not PEM certificates: {e}", path.display()),
            )
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no usable CA certificate in it", path.display()),
        ));
    }
    Ok(roots)
}

/// `--insecure`: takes any certificate, but still checks that the server holds its key (the
/// handshake signatures), so the session is at least encrypted to whoever answered.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_what_the_certificate_must_name() {
        assert_eq!(host_of("localhost:9001"), "localhost");
        assert_eq!(host_of("127.0.0.1:9001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9001"), "::1");
        assert_eq!(host_of("chat.example"), "chat.example");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let missing =
            client_config(&Verify::Ca("/nonexistent/ca.pem".into())).expect_err("missing file");
        assert!(missing
            .to_string()
            .contains("cannot read /nonexistent/ca.pem"));
        let path = std::env::temp_dir().join(format!("chatc-empty-ca-{}", std::process::id()));
        std::fs::write(&path, "nothing here").expect("write");
        let empty = client_config(&Verify::Ca(path.clone())).expect_err("empty");
        assert!(empty.to_string().contains("no usable CA"), "{empty}");
        std::fs::remove_file(&path).ok();
    }
}
