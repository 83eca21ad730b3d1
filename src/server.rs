//! Server assembly: binds the transports, runs them over one hub, and shuts everything down from
//! one signal. [`run`] takes already-bound sockets and a shutdown future, so tests bind port 0 and
//! the binary passes Ctrl-C / SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::reload::Reload;
use crate::config::{Config, ServerArgs};
use crate::store::sqlite::OpenError;
use crate::store::Store;
use crate::transport::tls::{self, CertStore};
use crate::transport::{tcp, udp};
use crate::web;

/// How long shutdown waits for connections to say goodbye before returning anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// The bound sockets a server runs on; either may be absent.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The TCP listener, if serving TCP.
    pub tcp: Option<TcpListener>,
    /// The UDP socket, if serving UDP.
    pub udp: Option<UdpSocket>,
    /// The HTTP listener (page, WebSocket, metrics), if serving HTTP.
    pub http: Option<TcpListener>,
    /// The TLS listener for the line protocol, if serving `--tls`.
    pub tls: Option<TcpListener>,
    /// The certificate for `--tls` and HTTPS: with one, `--http` serves HTTPS.
    pub certs: Option<CertStore>,
}

impl Listeners {
    /// Binds what `args` asks for (`--tcp`, `--udp` on `--bind`). An error names the transport
    /// and address that failed: `cannot bind tcp 127.0.0.1:9001: Address already in use`.
    pub async fn bind(args: &ServerArgs) -> std::io::Result<Listeners> {
        let tcp = match args.tcp {
            Some(port) => {
                let addr = SocketAddr::new(args.bind, port);
                Some(tcp::bind(addr).map_err(|e| bind_error("tcp", addr, e))?)
            }
            None => None,
        };
        let udp = match args.udp {
            Some(port) => {
                let addr = SocketAddr::new(args.bind, port);
                Some(
                    udp::bind(addr)
                        .await
                        .map_err(|e| bind_error("udp", addr, e))?,
                )
            }
            None => None,
        };
        let http = match args.http {
            Some(port) => {
                let addr = SocketAddr::new(args.bind, port);
                Some(tcp::bind(addr).map_err(|e| bind_error("http", addr, e))?)
            }
            None => None,
        };
        let certs = load_certs(args)?;
        let tls = match args.tls {
            Some(_) if certs.is_none() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--tls needs a certificate: --cert PEM --key PEM, or --self-signed",
                ))
            }
            Some(port) => {
                let addr = SocketAddr::new(args.bind, port);
                Some(tcp::bind(addr).map_err(|e| bind_error("tls", addr, e))?)
            }
            None => None,
        };
        Ok(Listeners {
            tcp,
            udp,
            http,
            tls,
            certs,
        })
    }

    /// The TLS address actually bound (useful with port 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TCP address actually bound (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HTTP address actually bound (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The UDP address actually bound (useful with port 0).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }
}

/// The certificate `--cert`/`--key` name, or a new one for `--self-signed`, or none.
fn load_certs(args: &ServerArgs) -> std::io::Result<Option<CertStore>> {
    // Flattened to one message: it already names the file and the cause.
    let invalid =
        |e: tls::CertError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => CertStore::from_files(cert, key).map(Some).map_err(invalid),
        _ if args.self_signed => CertStore::self_signed().map(Some).map_err(invalid),
        _ => Ok(None),
    }
}

/// The same error, saying which transport and address it concerns (the kind is kept for callers).
fn bind_error(transport: &str, addr: SocketAddr, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot bind {transport} {addr}: {e}"))
}

/// Opens the history store the configuration asks for: the SQLite database of `--history-db`, or
/// memory. A database that cannot be opened is an error here, before anyone connects.
pub fn open_store(config: &Config) -> Result<Store, OpenError> {
    match &config.history_db {
        Some(path) => Store::sqlite(path, config.history, config.max_rooms),
        None => Ok(Store::memory(config.max_rooms)),
    }
}

/// Opens the history store, then serves until `shutdown` completes (see [`serve`]).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future,
) -> Result<(), OpenError> {
    let store = open_store(&config)?;
    serve(config, store, listeners, shutdown).await;
    Ok(())
}

/// Serves until `shutdown` completes, then tells every member, closes every socket, stores the
/// last history and returns once all tasks have finished (or after a short grace period).
pub async fn serve(config: Config, store: Store, listeners: Listeners, shutdown: impl Future) {
    serve_reloading(config, store, listeners, shutdown, None).await;
}

/// Serves like [`serve`], and swaps in each configuration `reloads` delivers (the binary's SIGHUP
/// reload) without touching a connection.
pub async fn serve_reloading(
    mut config: Config,
    store: Store,
    listeners: Listeners,
    shutdown: impl Future,
    reloads: Option<mpsc::UnboundedReceiver<Reload>>,
) {
    if listeners.tcp.is_some() {
        config.transports.push("tcp");
    }
    if listeners.udp.is_some() {
        config.transports.push("udp");
    }
    if listeners.http.is_some() {
        config.transports.push("web");
    }
    if listeners.tls.is_some() {
        config.transports.push("tls");
    }
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let hub = crate::cluster::relay::join(config, store.clone(), &token, &tracker).await;
    if let Some(mut reloads) = reloads {
        let (hub, token) = (hub.clone(), token.clone());
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    next = reloads.recv() => match next {
                        Some(next) => {
                            hub.reconfigure(next.config);
                            crate::config::reload::log(&next.changes);
                        }
                        None => return,
                    },
                }
            }
        });
    }
    let (tcp_addr, udp_addr) = (listeners.tcp_addr(), listeners.udp_addr());
    let (http_addr, tls_addr) = (listeners.http_addr(), listeners.tls_addr());
    let certs = listeners.certs;
    // The web listener outlives the others during shutdown, so `/healthz` answers 503 while
    // members are told goodbye; WebSocket members are on `tracker` like TCP connections.
    let (web_stop, web_tracker) = (CancellationToken::new(), TaskTracker::new());
    if let Some(listener) = listeners.http {
        web_tracker.spawn(web::serve(
            listener,
            hub.clone(),
            web::Tasks {
                members: (token.clone(), tracker.clone()),
                http: (web_stop.clone(), web_tracker.clone()),
            },
            certs.clone(),
        ));
    }
    if let Some(listener) = listeners.tcp {
        tracker.spawn(tcp::serve(
            listener,
            hub.clone(),
            token.clone(),
            tracker.clone(),
        ));
    }
    if let Some(socket) = listeners.udp {
        udp::start(socket, hub.clone(), token.clone(), &tracker);
    }
    if let Some(certs) = &certs {
        if let Some(listener) = listeners.tls {
            tracker.spawn(tls::serve(
                listener,
                hub.clone(),
                certs.clone(),
                token.clone(),
                tracker.clone(),
            ));
        }
        match tls::reload_on_hangup(certs.clone(), token.clone()) {
            Ok(reload) => drop(tracker.spawn(reload)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; certificates will not reload")
            }
        }
        let names = tls::certs::SELF_SIGNED_NAMES.join(", ");
        match certs.is_self_signed() {
            true => {
                tracing::info!(sha256 = %certs.fingerprint(), "self-signed certificate for {names}")
            }
            false => tracing::info!(sha256 = %certs.fingerprint(), "TLS certificate loaded"),
        }
    }
    // Logged once everything is subscribed: tools wait for these lines before connecting.
    if let Some(addr) = tcp_addr {
        tracing::info!("listening tcp={addr}");
    }
    if let Some(addr) = udp_addr {
        tracing::info!("listening udp={addr}");
    }
    if let Some(addr) = http_addr {
        match certs {
            Some(_) => tracing::info!("listening https={addr}"),
            None => tracing::info!("listening http={addr}"),
        }
    }
    if let Some(addr) = tls_addr {
        tracing::info!("listening tls={addr}");
    }
    shutdown.await;
    tracing::info!(members = hub.member_count(), "shutting down");
    hub.announce_shutdown();
    token.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time; dropping them");
    }
    web_stop.cancel();
    web_tracker.close();
    let _ = tokio::time::timeout(web::STOP_GRACE, web_tracker.wait()).await;
    drop(hub);
    store.close(SHUTDOWN_GRACE).await;
    let (written, dropped) = crate::store::counts(store.stats());
    tracing::info!(written, dropped, "history stored");
}

/// Raises the open-file soft limit to the hard limit, so the server can hold as many connections as
/// the system allows; returns the (old, new) soft limits.
pub fn raise_fd_limit() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let old = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((old, limit.rlim_cur))
    }
}
