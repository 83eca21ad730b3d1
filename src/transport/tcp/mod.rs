//! TCP transport: an acceptor and one task per connection, each a thin adapter between a socket and
//! the hub. The connection task runs its reader and writer side by side, so a member that does not
//! read only stalls its own writer: the room's ring buffer keeps its place, and it is told how many
//! lines it missed once it catches up. [`reader`] and [`writer`] are the two halves; the WebSocket
//! transport ([`super::ws`]) runs on the same halves, so the rules for lines, pacing, rooms and the
//! send queue live here once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::{DirectQueue, Hub, MemberId, Outbox, Transport};
use crate::member::Member;
use crate::metrics::Delivery;
use crate::outbox::WhenFull;
use crate::protocol;
use crate::transport::proxy;

pub(in crate::transport) mod reader;
pub(in crate::transport) mod writer;

use reader::{read_lines, LineSource};
use writer::{write_lines, LineSink};

/// With `--sendq off`, bytes of replies (and private messages) that may wait for one member before
/// more are refused whole and counted, so memory stays bounded all the same.
const DIRECT_BUDGET_WITHOUT_SENDQ: usize = 1 << 20;
/// Room bytes the kernel may hold unsent for one member. More waits in the room's ring instead,
/// where it can be skipped: at shutdown this leaves room in the socket for the notice, which then
/// reaches even a member that only reads after the server has gone.
const KERNEL_UNSENT: i32 = 128 * 1024;
/// How long a goodbye write may take at shutdown before the socket is dropped anyway.
pub(in crate::transport) const GOODBYE_TIMEOUT: Duration = Duration::from_millis(300);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest pause between accept retries after resource errors such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A member's reply queue: replies count against `--sendq` like room traffic, and one that does not
/// fit makes the member too slow; without a send queue they are refused whole past a fixed budget,
/// and the member is told how many it missed.
pub(in crate::transport) fn direct_queue(sendq: Option<usize>) -> DirectQueue {
    match sendq {
        Some(limit) => DirectQueue::new(limit, WhenFull::Disconnect),
        None => DirectQueue::new(DIRECT_BUDGET_WITHOUT_SENDQ, WhenFull::DropAndCount),
    }
}

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

/// Why a connection's reader stopped.
pub(in crate::transport) enum End {
    Eof,
    Quit,
    Shutdown,
    Flooding,
    Idle,
}

/// Whose writer this is: room events from this member are skipped, but its chat lines under
/// `--echo`.
pub(in crate::transport) struct Recipient {
    pub(in crate::transport) id: MemberId,
    pub(in crate::transport) echo: bool,
    /// What its deliveries count into.
    pub(in crate::transport) out: Delivery,
}

/// Why a connection's writer stopped.
pub(in crate::transport) enum WriteEnd {
    Io(std::io::Error),
    TooSlow,
    HubClosed,
    /// Server shutdown while the socket was full, this many bytes into the batch.
    Interrupted(usize),
}

/// Per-connection settings taken from the hub's configuration.
pub(in crate::transport) struct Limits {
    pub(in crate::transport) max_line: usize,
    pub(in crate::transport) partial_timeout: Option<Duration>,
    pub(in crate::transport) idle_timeout: Option<Duration>,
    pub(in crate::transport) sendq: Option<usize>,
    /// Close the connection if its first bytes are a PROXY header (`--proxy-protocol`, from a
    /// peer that is not a trusted proxy).
    pub(in crate::transport) refuse_proxy_header: bool,
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tune(&stream, &hub);
    let (reader, writer) = stream.into_split();
    serve_member(reader, writer, (addr, Transport::Tcp), hub, shutdown).await
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

/// Serves one stream connection, already split into its halves, as a member from `addr` over
/// `transport` until it leaves, is cut off, or the server shuts down. Plain TCP and TLS differ
/// only in the halves ([`reader::LineSource`], [`writer::LineSink`]).
pub(in crate::transport) async fn serve_member<W>(
    reader: impl LineSource,
    mut writer: W,
    (addr, transport): (SocketAddr, Transport),
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    W: LineSink + AsyncWrite + Unpin,
{
    let direct = Arc::new(direct_queue(hub.config().sendq));
    let outbox = Outbox::Tcp(Arc::clone(&direct));
    let (mut member, sub) = match Member::join(&hub, transport, addr, outbox) {
        Ok(joined) => joined,
        Err(e) => {
            let line = protocol::error(&e.to_string());
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, say(&mut writer, &line)).await;
            return Ok(());
        }
    };
    let me = Recipient {
        id: member.id(),
        echo: hub.config().echo,
        out: hub.metrics().delivery(transport),
    };
    let room = Arc::clone(member.room());
    let config = hub.config();
    let limits = Limits {
        max_line: config.max_line,
        partial_timeout: config.partial_timeout,
        idle_timeout: config.idle_timeout,
        sendq: config.sendq,
        refuse_proxy_header: config.proxy_protocol
            && !proxy::is_trusted(&config.trusted_proxies, addr.ip()),
    };
    let mut quit = false;
    let (reason, result) = {
        // Cancelled by server shutdown, or by this connection's reader when it is done, so the
        // writer drains what is already queued (the shutdown notice, replies to a last command
        // from `echo /who | nc`) and stops.
        let finish = shutdown.child_token();
        let read = read_lines(reader, &mut member, &limits, &shutdown);
        let write = write_lines(
            &mut writer,
            room,
            sub,
            &direct,
            me,
            &limits,
            (&finish, &shutdown),
        );
        tokio::pin!(read, write);
        tokio::select! {
            end = &mut read => match end {
                Ok(end @ (End::Shutdown | End::Quit | End::Eof)) => {
                    quit = matches!(end, End::Quit);
                    finish.cancel();
                    match tokio::time::timeout(GOODBYE_TIMEOUT, &mut write).await {
                        // Its replies overflowed before it hung up (`nc -N < commands`).
                        Ok(Err(WriteEnd::TooSlow)) => (Some("too slow"), Ok(())),
                        _ => (None, Ok(())),
                    }
                }
                Ok(End::Flooding) => (Some("flooding"), Ok(())),
                Ok(End::Idle) => (Some("idle timeout"), Ok(())),
                Err(e) => (Some("connection error"), Err(e)),
            },
            written = &mut write => match written {
                Ok(()) => (None, Ok(())),
                Err(WriteEnd::TooSlow) => (Some("too slow"), Ok(())),
                Err(WriteEnd::Io(e)) => {
                    // The peer is gone, often with a reset, but what it sent before going may be
                    // unread: handle that first (a pending `/quit` is a quit), boundedly.
                    match tokio::time::timeout(GOODBYE_TIMEOUT, &mut read).await {
                        Ok(Ok(End::Quit)) => (None, Ok(())),
                        _ => (Some("connection error"), Err(e)),
                    }
                }
                Err(WriteEnd::HubClosed | WriteEnd::Interrupted(_)) => (None, Ok(())),
            },
        }
    };
    match reason {
        Some("too slow") => {
            // Its socket is full, so this last word is best effort: never wait for it.
            let _ = say(&mut writer, &protocol::error("too slow, disconnected")).now_or_never();
        }
        Some(reason @ ("flooding" | "idle timeout")) => {
            let line = protocol::error(&format!("disconnected: {reason}"));
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, say(&mut writer, &line)).await;
        }
        _ => {}
    }
    member.leave(reason);
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
    if quit {
        writer.hang_up().await;
    }
    result
}

/// Writes `line` out whole (through any buffer the stream keeps, such as TLS's).
async fn say(writer: &mut (impl AsyncWrite + Unpin), line: &[u8]) -> std::io::Result<()> {
    writer.write_all(line).await?;
    writer.flush().await
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
