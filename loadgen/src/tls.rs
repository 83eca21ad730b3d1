//! TLS members for the TLS cases: each connection to chatd's `--tls` port is bridged to a local
//! TCP socket pair, as [`crate::ws`] does for WebSocket members, so the receive loop and the
//! senders run unchanged while the server does the TLS work of real members. The bridge and the
//! client side's own TLS cost the load generator CPU, not the server; latencies include one extra
//! loopback hop on each side. Certificates are not checked: the bench's chatd runs
//! `--self-signed`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::conn;
use super::server::ServerKind;

/// Opens a TLS connection to `tls` and returns the local end of its bridge once the server's
/// greeting has come through it.
pub async fn connect_greeted_tls(
    tls: SocketAddr,
    kind: ServerKind,
    timeout: Duration,
) -> Result<TcpStream> {
    tokio::time::timeout(timeout, async {
        let tcp = TcpStream::connect(tls).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost")?;
        let mut stream = connector()?.connect(name, tcp).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mine, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut mine, (mut theirs, _)) = (mine?, theirs?);
        mine.set_nodelay(true)?;
        theirs.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut theirs).await;
        });
        conn::wait_greeting(&mut mine, kind).await?;
        Ok::<_, anyhow::Error>(mine)
    })
    .await
    .map_err(|_| anyhow!("no greeting within {timeout:?}"))?
}

fn connector() -> Result<TlsConnector> {
    let provider = Arc::new(ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Takes the self-signed certificate of the chatd under test; handshake signatures are checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
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
