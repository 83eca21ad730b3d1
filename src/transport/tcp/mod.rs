//! TCP transport: the accept loop (a PROXY header first, then one task per connection), the socket
//! options, and the plain socket's two halves ([`halves`]); the member connection over them is the
//! stream code every stream transport shares ([`super::stream`]). TLS and IRC accept and tune
//! their TCP sockets here too.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{Hub, Transport};
use crate::transport::{proxy, stream};

mod halves;

/// Room bytes the kernel may hold unsent for one member. More waits in the room's ring instead,
/// where it can be skipped: at shutdown this leaves room in the socket for the notice, which then
/// reaches even a member that only reads after the server has gone.
const KERNEL_UNSENT: i32 = 128 * 1024;
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest pause between accept retries after resource errors such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown` is cancelled, spawning each onto `tracker`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    accept_members(listener, hub, shutdown, tracker, "tcp", connection).await
}

/// The accept loop of the TCP and TLS listeners: each connection first gets its real address (a
/// trusted proxy's PROXY header, read before anything else, TLS included), then `serve` runs it
/// on `tracker`; a failed connection is logged, and accept errors back off instead of spinning.
pub(in crate::transport) async fn accept_members<S, F>(
    listener: TcpListener,
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    listener_name: &'static str,
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr, Hub, CancellationToken) -> F + Clone + Send + 'static,
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((mut stream, peer)) => {
                backoff = Duration::from_millis(1);
                let (hub, shutdown, serve) = (hub.clone(), shutdown.clone(), serve.clone());
                tracker.spawn(async move {
                    let addr = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        real = proxy::real_address(&mut stream, peer, &hub) => match real {
                            Some(addr) => addr,
                            None => return,
                        },
                    };
                    if let Err(e) = serve(stream, addr, hub, shutdown).await {
                        proxy::log_ended(addr, &e);
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: retrying at once would spin; back off and keep serving
                // the connections we already have.
                tracing::warn!(listener = listener_name, error = %e, ?backoff, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tune(&stream, &hub);
    let (reader, writer) = stream.into_split();
    stream::serve_member(reader, writer, (addr, Transport::Tcp), hub, shutdown).await
}

/// Socket options every stream member's connection gets, over plain TCP or under TLS.
pub(in crate::transport) fn tune(stream: &TcpStream, hub: &Hub) {
    let _ = stream.set_nodelay(true);
    // Keepalive finds peers that vanished without a FIN (cable pulled, host gone) in about 90 s.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
    if let Some(limit) = hub.config().sendq {
        // Linux grows the send buffer of a peer that does not read up to net.ipv4.tcp_wmem's
        // maximum (4 MiB by default), and the send queue only counts what the kernel would not
        // take: cap the kernel's share at the same limit, so a non-reader is cut off near --sendq
        // instead of pinning megabytes of kernel memory first.
        let _ = socket2::SockRef::from(stream).set_send_buffer_size(limit);
    }
    set_unsent_limit(stream, KERNEL_UNSENT);
}

/// Caps the bytes the kernel accepts for `stream` beyond what it has sent (TCP_NOTSENT_LOWAT);
/// best effort, where the platform has it.
fn set_unsent_limit(stream: &TcpStream, bytes: i32) {
    use std::os::fd::AsRawFd;
    set_unsent_limit_fd(stream.as_raw_fd(), bytes);
}

/// [`set_unsent_limit`] for a socket known by its descriptor (one under TLS); `fd` must be an open
/// TCP socket.
pub(in crate::transport) fn set_unsent_limit_fd(fd: std::os::fd::RawFd, bytes: i32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from a live local; the
        // caller's socket is open for the duration of the call.
        let _ = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (fd, bytes);
}

/// Binds a TCP listener with address reuse, so a restarted server does not wait out TIME_WAIT.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
