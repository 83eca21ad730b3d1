//! TLS transport (`--tls`): the line protocol inside TLS. It is a thin adapter over the TCP
//! connection: once the handshake is done, the decrypted stream gets the same reader, writer,
//! member and limits as a plain TCP member ([`super::stream::serve_member`]); only the halves
//! ([`halves`]) differ. A handshake is bounded in time (`--tls-handshake-timeout`) and in number
//! (per address and in total) and takes no member slot: a member joins only once it is done.
//!
//! Under `--proxy-protocol` a trusted proxy's PROXY header is read before the handshake, as on the
//! TCP listener ([`super::proxy`]). The certificate ([`CertStore`]) is re-read on SIGHUP
//! ([`reload_on_hangup`]); sessions already established keep theirs.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{stream, tcp};
use crate::hub::{Hub, Transport};

pub mod certs;
mod halves;

pub use certs::{CertError, CertStore};

use crate::guard::occupancy::{handshake_share, Occupancy};

/// Most TLS handshakes in progress at once, over all addresses (each listener counts its own).
/// Past it, new connections are closed at accept until some finish or time out.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Default for `--tls-handshake-timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshake limits for one listener: how long one may take, and how many may be in progress
/// (`per_ip` from one address, [`MAX_PENDING_HANDSHAKES`] in all).
#[derive(Clone)]
pub struct Handshakes {
    hub: Hub,
    pending: Occupancy,
}

impl Handshakes {
    /// Limits from the hub's configuration: `--tls-handshake-timeout` (read for each handshake, so
    /// a reload changes it, and shortened while most slots are taken), and `--max-per-ip`
    /// handshakes from one address (likewise; at most [`crate::guard::occupancy::HANDSHAKE_SHARE`]).
    pub fn new(hub: &Hub) -> Handshakes {
        Handshakes {
            hub: hub.clone(),
            pending: Occupancy::new(MAX_PENDING_HANDSHAKES),
        }
    }

    /// Completes the handshake on `stream` from `ip`, or gives up (closing it): over the limits,
    /// past the timeout, on a TLS error, or at `stop`. Failures are logged at debug level only;
    /// scanners and port probes make them common.
    pub async fn accept<S>(
        &self,
        acceptor: &TlsAcceptor,
        stream: S,
        ip: IpAddr,
        stop: &CancellationToken,
    ) -> Option<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.hub.config();
        let from = crate::guard::share::share_of(ip, config.ipv6_prefix);
        let Some(_ticket) = self.pending.start(from, handshake_share(config.max_per_ip)) else {
            tracing::debug!(%ip, "too many TLS handshakes in progress; connection closed");
            return None;
        };
        // Shorter while the slots fill up, so stalled handshakes make room for real clients.
        let timeout = self.pending.timeout(config.tls_handshake_timeout);
        let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
        tokio::select! {
            _ = stop.cancelled() => None,
            done = handshake => match done {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(e)) => {
                    tracing::debug!(%ip, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%ip, "TLS handshake timed out");
                    None
                }
            },
        }
    }
}

/// Accepts TLS connections until `shutdown` is cancelled, spawning each onto `tracker`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    certs: CertStore,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let handshakes = Handshakes::new(&hub);
    let serve = move |stream, addr, hub, shutdown| {
        let handshakes = handshakes.clone();
        // Taken per connection, so one accepted after a reload gets the new certificate.
        let acceptor = certs.line_acceptor();
        async move { connection(stream, addr, (&handshakes, &acceptor), hub, shutdown).await }
    };
    tcp::accept_members(listener, hub, shutdown, tracker, "tls", serve).await
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    (handshakes, acceptor): (&Handshakes, &TlsAcceptor),
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tcp::tune(&stream, &hub);
    let Some(tls) = handshakes
        .accept(acceptor, stream, addr.ip(), &shutdown)
        .await
    else {
        return Ok(());
    };
    let (reader, writer) = halves::split(tls);
    stream::serve_member(reader, writer, (addr, Transport::Tls), hub, shutdown).await
}

/// Re-reads `certs` on every SIGHUP until `stop`: a good pair is used from the next handshake on,
/// a bad one is logged and the certificate in use kept. The handler is installed before this
/// returns, so a SIGHUP right after start is not lost; it listens alongside any other SIGHUP
/// handler (the configuration reload's), each getting every signal.
pub fn reload_on_hangup(
    certs: CertStore,
    stop: CancellationToken,
) -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        #[cfg(unix)]
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hangup.recv() => {
                    if got.is_none() {
                        return;
                    }
                }
            }
            match certs.reload() {
                Ok(fingerprint) if certs.is_self_signed() => {
                    tracing::info!(sha256 = %fingerprint, "SIGHUP: self-signed certificate kept")
                }
                Ok(fingerprint) => {
                    tracing::info!(sha256 = %fingerprint, "SIGHUP: TLS certificate reloaded")
                }
                Err(e) => tracing::error!(
                    error = %e,
                    sha256 = %certs.fingerprint(),
                    "SIGHUP: TLS certificate not reloaded; keeping the one in use"
                ),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (certs, stop.cancelled().await);
        }
    })
}
