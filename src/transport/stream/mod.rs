//! The stream code every stream transport shares (TCP, TLS, and WebSocket for its pacing and
//! writer): a member connection runs its reader and writer side by side, so a member that does not
//! read only stalls its own writer: the room's ring buffer keeps its place, and it is told how many
//! lines it missed once it catches up. [`reader`] and [`writer`] are the two halves; what differs
//! between transports is only how bytes come in and go out ([`reader::LineSource`],
//! [`writer::LineSink`]), so the rules for lines, pacing, rooms and the send queue live here once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

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
/// How long a goodbye write may take at shutdown before the socket is dropped anyway.
pub(in crate::transport) const GOODBYE_TIMEOUT: Duration = Duration::from_millis(300);
/// A member's reply queue: replies count against `--sendq` like room traffic, and one that does not
/// fit makes the member too slow; without a send queue they are refused whole past a fixed budget,
/// and the member is told how many it missed.
pub(in crate::transport) fn direct_queue(sendq: Option<usize>) -> DirectQueue {
    match sendq {
        Some(limit) => DirectQueue::new(limit, WhenFull::Disconnect),
        None => DirectQueue::new(DIRECT_BUDGET_WITHOUT_SENDQ, WhenFull::DropAndCount),
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
    /// `--coalesce`: how long a busy writer gathers lines before its next write.
    pub(in crate::transport) coalesce: Option<Duration>,
    /// Close the connection if its first bytes are a PROXY header (`--proxy-protocol`, from a
    /// peer that is not a trusted proxy).
    pub(in crate::transport) refuse_proxy_header: bool,
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
        coalesce: config.coalesce,
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
