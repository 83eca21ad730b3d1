//! The HTTP listener (`--http`): the chat page at `/`, WebSocket members at `/ws`, `/metrics`,
//! `/healthz` and `/info`. axum routes the requests; hyper serves each connection, over any stream that reads
//! and writes ([`serve_connection`]), so TLS can wrap the same code later.
//!
//! It stops after the other listeners at shutdown, so `/healthz` says 503 while members are told
//! goodbye.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guard::occupancy::Occupancy;
use crate::hub::Hub;
use crate::transport::proxy::is_trusted;
use crate::transport::tls::{CertStore, Handshakes};
use crate::transport::ws;

pub mod origin;

/// How long the web listener's own connections get to finish once it stops.
pub const STOP_GRACE: Duration = Duration::from_millis(300);
/// A connection that has not sent a whole request head in this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections one address may hold beyond `--max-per-ip` (its WebSocket members are HTTP
/// connections too): room for loading the page, a metrics scrape and a health check alongside.
const HTTP_ALLOWANCE: usize = 8;
/// Longest pause between accept retries after resource errors such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The chat page, embedded: one file with its CSS and JavaScript, no build step.
const PAGE: &str = include_str!("page.html");

/// The shutdown signals and task trackers the web listener runs under.
#[derive(Clone)]
pub struct Tasks {
    /// WebSocket members: stopped and awaited with the TCP connections.
    pub members: (CancellationToken, TaskTracker),
    /// The listener and its plain HTTP connections: stopped last.
    pub http: (CancellationToken, TaskTracker),
}

#[derive(Clone)]
struct Web {
    hub: Hub,
    members: (CancellationToken, TaskTracker),
}

/// The routes, over `hub`.
fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(page_or_irc))
        .route("/ws", get(upgrade))
        .route("/healthz", get(healthz))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .with_state(web)
}

/// Accepts HTTP connections until `tasks.http` is cancelled; at most `--max-clients` at once
/// (WebSocket members count against the hub's limit once upgraded instead). With `certs` it is
/// HTTPS: each connection's handshake is bounded like `--tls`'s before any HTTP is read.
pub async fn serve(listener: TcpListener, hub: Hub, tasks: Tasks, certs: Option<CertStore>) {
    let handshakes = Handshakes::new(&hub);
    let slots = Arc::new(Semaphore::new(
        hub.config().max_clients.min(Semaphore::MAX_PERMITS),
    ));
    let held = Occupancy::new(usize::MAX);
    let web = Web {
        hub,
        members: tasks.members.clone(),
    };
    let routes = router(web.clone());
    let (stop, tracker) = tasks.http;
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                backoff = Duration::from_millis(1);
                // Over the limit the newcomer is dropped at once: holding it would be unbounded.
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    continue;
                };
                // One address cannot take every connection (idle ones included) and with them
                // the page, `/healthz` and everyone's joins; a trusted proxy speaks for many.
                let config = web.hub.config();
                let share = if is_trusted(&config.trusted_proxies, addr.ip()) {
                    usize::MAX
                } else {
                    config.max_per_ip.saturating_add(HTTP_ALLOWANCE)
                };
                let from = crate::guard::share::share_of(addr.ip(), config.ipv6_prefix);
                let Some(ticket) = held.start(from, share) else {
                    tracing::debug!(ip = %addr.ip(), "too many HTTP connections from one address");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                if let Some(limit) = config.sendq {
                    // As for TCP members: the kernel's share of a non-reader's backlog is capped
                    // at the send queue, so the send-queue rule sees it.
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(limit);
                }
                let routes = routes.clone();
                let stop = stop.clone();
                // Taken per connection, so one accepted after a reload gets the new certificate.
                let tls = certs
                    .as_ref()
                    .map(|certs| (certs.http_acceptor(), handshakes.clone()));
                tracker.spawn(async move {
                    let _slot = (slot, ticket);
                    match tls {
                        None => serve_connection(stream, addr, routes, stop).await,
                        Some((acceptor, handshakes)) => {
                            let ip = addr.ip();
                            if let Some(tls) = handshakes.accept(&acceptor, stream, ip, &stop).await
                            {
                                serve_connection(tls, addr, routes, stop).await;
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "http accept failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Serves HTTP/1.1 on one connection (with upgrades to WebSocket) until it ends or `stop`:
/// generic over the stream, so a TLS stream serves the same routes.
pub async fn serve_connection<S>(
    stream: S,
    addr: SocketAddr,
    routes: Router,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        let mut routes = routes.clone();
        async move {
            let response: Result<Response, Infallible> =
                tower_service::Service::call(&mut routes, request).await;
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(%addr, error = %e, "http connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(STOP_GRACE, conn).await;
        }
    }
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

/// 200 `ok` while serving, 503 once shutdown has begun.
async fn healthz(State(web): State<Web>) -> impl IntoResponse {
    if web.hub.is_closing() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// The same JSON document as the `/info` command (see [`crate::info`]).
async fn info(State(web): State<Web>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::info::json(&web.hub),
    )
}

/// The counters in the Prometheus text format.
async fn metrics(State(web): State<Web>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&web.hub),
    )
}

/// Whether the page that asks for a WebSocket is the server's own or an allowed one (a client
/// that names no origin is not a browser page, and may).
fn origin_allowed(headers: &HeaderMap, web: &Web) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    origin::allowed(
        text(header::ORIGIN),
        text(header::HOST),
        &web.hub.config().allow_origins,
    )
}

/// Who a WebSocket member is: behind a trusted reverse proxy whoever the proxy says (its port is
/// unknown), otherwise the peer.
fn member_address(
    headers: &HeaderMap,
    peer: SocketAddr,
    config: &crate::config::Config,
) -> SocketAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    crate::transport::proxy::forwarded_for(&config.trusted_proxies, peer, forwarded)
        .map_or(peer, |ip| SocketAddr::new(ip, 0))
}

/// The page, or at `/` a WebSocket upgrade that asks for an IRC subprotocol (IRCv3's
/// `text.ircv3.net` or `binary.ircv3.net`): an IRC client, as on `--irc`.
async fn page_or_irc(
    State(web): State<Web>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    // The IRC subprotocols the client offers, in its order of preference.
    let offered: Vec<&'static str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| {
            crate::transport::irc::websocket::SUBPROTOCOLS
                .into_iter()
                .find(|known| *known == p.trim())
        })
        .collect();
    if offered.is_empty() {
        return page().await.into_response();
    }
    if !origin_allowed(request.headers(), &web) {
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let config = web.hub.config();
    let addr = member_address(&parts.headers, addr, &config);
    let (shutdown, tracker) = web.members;
    let tracked = tracker.token();
    let hub = web.hub;
    // The client's first choice: the server has no preference between text and binary.
    let chosen = offered[0];
    ws::limit(upgrade, &config)
        .protocols([chosen])
        .on_upgrade(move |socket| async move {
            let _tracked = tracked;
            crate::transport::irc::websocket::serve(socket, chosen, addr, hub, shutdown).await;
        })
}

/// Upgrades `/ws` to a WebSocket member, unless the page asking is from another site; `batch=1`
/// in the query asks for several lines per frame ([`ws::Framing`]).
async fn upgrade(
    State(web): State<Web>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &web) {
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let config = web.hub.config();
    let addr = member_address(&headers, addr, &config);
    let framing = ws::Framing::from_query(query.as_deref());
    let (shutdown, tracker) = web.members;
    // Counted with the TCP connections, so shutdown waits for its goodbye.
    let tracked = tracker.token();
    let hub = web.hub;
    ws::limit(upgrade, &config).on_upgrade(move |socket| async move {
        let _tracked = tracked;
        ws::connection(socket, addr, framing, hub, shutdown).await;
    })
}
