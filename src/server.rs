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
use crate::transport::{info_port, tcp, udp};
use crate::web;

/// How long shutdown waits for connections to say goodbye before returning anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// The bound sockets a server runs on: one of each kind asked for per `--bind` address (none of
/// a kind not asked for).
#[derive(Debug, Default)]
pub struct Listeners {
    /// The TCP listeners, if serving TCP.
    pub tcp: Vec<TcpListener>,
    /// The UDP sockets, if serving UDP.
    pub udp: Vec<UdpSocket>,
    /// The HTTP listeners (page, WebSocket, metrics), if serving HTTP.
    pub http: Vec<TcpListener>,
    /// The TLS listeners for the line protocol, if serving `--tls`.
    pub tls: Vec<TcpListener>,
    /// The seed's info service (`--info-port`).
    pub info: Vec<TcpListener>,
    /// The IRC listeners (`--irc`).
    pub irc: Vec<TcpListener>,
    /// The IRC-inside-TLS listeners (`--ircs`).
    pub ircs: Vec<TcpListener>,
    /// The certificate for `--tls`, `--ircs` and HTTPS: with one, `--http` serves HTTPS.
    pub certs: Option<CertStore>,
}

impl Listeners {
    /// Binds what `args` asks for (`--tcp`, `--udp`, ... on each `--bind` address). An error
    /// names the transport and address that failed: `cannot bind tcp 127.0.0.1:9001: Address
    /// already in use`.
    pub async fn bind(args: &ServerArgs) -> std::io::Result<Listeners> {
        let stream = |name: &str, port: Option<u16>| -> std::io::Result<Vec<TcpListener>> {
            let addrs = port.map(|port| args.bind.iter().map(move |ip| SocketAddr::new(*ip, port)));
            addrs
                .into_iter()
                .flatten()
                .map(|addr| tcp::bind(addr).map_err(|e| bind_error(name, addr, e)))
                .collect()
        };
        let tcp = stream("tcp", args.tcp)?;
        let mut udp = Vec::new();
        for ip in args.udp.map(|_| &args.bind).into_iter().flatten() {
            let addr = SocketAddr::new(*ip, args.udp.unwrap_or(0));
            udp.push(
                udp::bind(addr)
                    .await
                    .map_err(|e| bind_error("udp", addr, e))?,
            );
        }
        let http = stream("http", args.http)?;
        let info = stream("info", args.info_port)?;
        let irc = stream("irc", args.irc)?;
        let certs = load_certs(args)?;
        for (flag, port) in [("--tls", args.tls), ("--ircs", args.ircs)] {
            if port.is_some() && certs.is_none() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{flag} needs a certificate: --cert PEM --key PEM, or --self-signed"),
                ));
            }
        }
        let tls = stream("tls", args.tls)?;
        let ircs = stream("ircs", args.ircs)?;
        Ok(Listeners {
            tcp,
            udp,
            http,
            tls,
            info,
            irc,
            ircs,
            certs,
        })
    }

    /// The (first) TLS address actually bound (useful with port 0).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.first().and_then(|l| l.local_addr().ok())
    }

    /// The (first) TCP address actually bound (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.first().and_then(|l| l.local_addr().ok())
    }

    /// The (first) HTTP address actually bound (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.first().and_then(|l| l.local_addr().ok())
    }

    /// The (first) IRC address actually bound (useful with port 0).
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc.first().and_then(|l| l.local_addr().ok())
    }

    /// The (first) `--ircs` address actually bound (useful with port 0).
    pub fn ircs_addr(&self) -> Option<SocketAddr> {
        self.ircs.first().and_then(|l| l.local_addr().ok())
    }

    /// The (first) `--info-port` address actually bound (useful with port 0).
    pub fn info_addr(&self) -> Option<SocketAddr> {
        self.info.first().and_then(|l| l.local_addr().ok())
    }

    /// The (first) UDP address actually bound (useful with port 0).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.first().and_then(|s| s.local_addr().ok())
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
    if !listeners.tcp.is_empty() {
        config.transports.push("tcp");
    }
    if !listeners.udp.is_empty() {
        config.transports.push("udp");
    }
    if !listeners.http.is_empty() {
        config.transports.push("web");
    }
    if !listeners.tls.is_empty() {
        config.transports.push("tls");
    }
    if !listeners.irc.is_empty() || !listeners.ircs.is_empty() {
        config.transports.push("irc");
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
    // Logged at the end, once everything is subscribed.
    let web = if listeners.certs.is_some() {
        "https"
    } else {
        "http"
    };
    let streams = [
        ("tcp", &listeners.tcp),
        (web, &listeners.http),
        ("tls", &listeners.tls),
        ("info", &listeners.info),
        ("irc", &listeners.irc),
        ("ircs", &listeners.ircs),
    ];
    let mut listening: Vec<(&str, SocketAddr)> = streams
        .iter()
        .flat_map(|(kind, all)| all.iter().flat_map(|l| l.local_addr()).map(|a| (*kind, a)))
        .collect();
    let udp_addrs = listeners.udp.iter().flat_map(|s| s.local_addr());
    listening.extend(udp_addrs.map(|a| ("udp", a)));
    let certs = listeners.certs;
    // The web listener outlives the others during shutdown, so `/healthz` answers 503 while
    // members are told goodbye; WebSocket members are on `tracker` like TCP connections.
    let (web_stop, web_tracker) = (CancellationToken::new(), TaskTracker::new());
    for listener in listeners.http {
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
    for listener in listeners.tcp {
        tracker.spawn(tcp::serve(
            listener,
            hub.clone(),
            token.clone(),
            tracker.clone(),
        ));
    }
    for listener in listeners.irc {
        tracker.spawn(crate::transport::irc::serve(
            listener,
            hub.clone(),
            token.clone(),
            tracker.clone(),
        ));
    }
    for listener in listeners.info {
        let (hub, token) = (hub.clone(), token.clone());
        tracker.spawn(info_port::serve(listener, hub, token, tracker.clone()));
    }
    for socket in listeners.udp {
        udp::start(socket, hub.clone(), token.clone(), &tracker);
    }
    if let Some(certs) = &certs {
        for listener in listeners.tls {
            tracker.spawn(tls::serve(
                listener,
                hub.clone(),
                certs.clone(),
                token.clone(),
                tracker.clone(),
            ));
        }
        for listener in listeners.ircs {
            tracker.spawn(crate::transport::irc::serve_tls(
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
    for (kind, addr) in listening {
        tracing::info!("listening {kind}={addr}");
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
