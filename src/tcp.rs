//! TCP transport: an acceptor and one task per connection, each a thin adapter between a socket and
//! the hub. The connection task runs its reader and writer side by side, so a member that does not
//! read only stalls its own writer: the room's ring buffer keeps its place, and it is told how many
//! lines it missed once it catches up.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{Frame, LineCodec};
use crate::hub::{Event, Hub, JoinError, MemberId, Outbox, Transport};
use crate::member::{Flow, Member};
use crate::protocol;

/// Lines for one member (replies, private messages) that may wait before more are dropped.
const DIRECT_QUEUE: usize = 64;
/// Stop gathering pending lines into one write past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a goodbye write may take at shutdown before the socket is dropped anyway.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(300);
/// Longest pause between accept retries after resource errors such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown` is cancelled, spawning each onto `tracker`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                backoff = Duration::from_millis(1);
                let hub = hub.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    if let Err(e) = connection(stream, addr, hub, shutdown).await {
                        tracing::debug!(%addr, error = %e, "connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: retrying at once would spin; back off and keep serving
                // the connections we already have.
                tracing::warn!(error = %e, ?backoff, "accept failed");
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
enum End {
    Eof,
    Quit,
    Shutdown,
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let events = hub.subscribe();
    let (direct_tx, direct_rx) = mpsc::channel(DIRECT_QUEUE);
    let mut member = match hub.join(Transport::Tcp, addr, Outbox::Tcp(direct_tx)) {
        Ok(member) => member,
        Err(e @ (JoinError::Full | JoinError::ShuttingDown)) => {
            let line = protocol::error(&e.to_string());
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.write_all(&line)).await;
            return Ok(());
        }
    };
    let id = member.id();
    let max_line = hub.config().max_line;
    let result = {
        let read = read_lines(reader, &mut member, max_line, &shutdown);
        let write = write_lines(&mut writer, events, direct_rx, id, &shutdown);
        tokio::pin!(read, write);
        tokio::select! {
            end = &mut read => match end {
                Ok(End::Shutdown) => {
                    // The writer still has the shutdown notice to deliver.
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, &mut write).await;
                    Ok(())
                }
                Ok(End::Quit | End::Eof) => Ok(()),
                Err(e) => Err(e),
            },
            written = &mut write => written,
        }
    };
    drop(member);
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
    result
}

async fn read_lines(
    reader: OwnedReadHalf,
    member: &mut Member,
    max_line: usize,
    shutdown: &CancellationToken,
) -> std::io::Result<End> {
    let mut frames = FramedRead::with_capacity(reader, LineCodec::new(max_line), 1024);
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            frame = frames.next() => frame,
        };
        match frame {
            None => return Ok(End::Eof),
            Some(Err(e)) => return Err(e),
            Some(Ok(Frame::TooLong)) => {
                member.reply(protocol::error(&format!(
                    "line too long (max {max_line} bytes); discarded"
                )));
            }
            Some(Ok(Frame::Line(line))) => {
                if member.handle_raw(&line) == Flow::Quit {
                    return Ok(End::Quit);
                }
            }
        }
    }
}

/// Writes room events and direct lines, batching everything already pending into one write.
async fn write_lines(
    writer: &mut OwnedWriteHalf,
    mut events: broadcast::Receiver<Event>,
    mut direct: mpsc::Receiver<Bytes>,
    id: MemberId,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut batch = Vec::new();
    loop {
        let mut closing = false;
        tokio::select! {
            line = direct.recv() => match line {
                Some(line) => batch.extend_from_slice(&line),
                None => return Ok(()),
            },
            event = events.recv() => push_event(&mut batch, event, id)?,
            _ = shutdown.cancelled() => closing = true,
        }
        // Take whatever else is already waiting, so a burst costs one syscall rather than one each.
        while batch.len() < WRITE_BATCH {
            if let Ok(line) = direct.try_recv() {
                batch.extend_from_slice(&line);
                continue;
            }
            match events.try_recv() {
                Ok(event) => push_event(&mut batch, Ok(event), id)?,
                Err(broadcast::error::TryRecvError::Lagged(missed)) => push_event(
                    &mut batch,
                    Err(broadcast::error::RecvError::Lagged(missed)),
                    id,
                )?,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            writer.write_all(&batch).await?;
            batch.clear();
            if batch.capacity() > WRITE_BATCH * 2 {
                batch = Vec::new();
            }
        }
        if closing {
            return Ok(());
        }
    }
}

fn push_event(
    batch: &mut Vec<u8>,
    event: Result<Event, broadcast::error::RecvError>,
    id: MemberId,
) -> std::io::Result<()> {
    match event {
        Ok(event) if event.from != id => batch.extend_from_slice(&event.line),
        Ok(_) => {}
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            batch.extend_from_slice(&protocol::error(&format!("you missed {missed} messages")));
        }
        Err(broadcast::error::RecvError::Closed) => {
            return Err(std::io::Error::other("hub closed"));
        }
    }
    Ok(())
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
