//! TCP transport: an acceptor and one task per connection, each a thin adapter between a socket and
//! the hub. The connection task runs its reader and writer side by side, so a member that does not
//! read only stalls its own writer: the room's ring buffer keeps its place, and it is told how many
//! lines it missed once it catches up.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guard::limits::Admit;
use crate::guard::pacing::Cursor;
use crate::hub::{DirectQueue, Event, Hub, MemberId, Outbox, Transport, SERVER};
use crate::member::{Flow, Member};
use crate::outbox::{Direct, RoomSwitch, WhenFull};
use crate::protocol;
use crate::protocol::codec::{Frame, LineCodec};
use crate::room::{Room, Subscription};

/// With `--sendq off`, bytes of replies (and private messages) that may wait for one member before
/// more are refused whole and counted, so memory stays bounded all the same.
const DIRECT_BUDGET_WITHOUT_SENDQ: usize = 1 << 20;
/// The room's last line, which every member gets last (see [`Hub::announce_shutdown`]).
const SHUTDOWN_NOTICE: &str = "server shutting down";
/// Room bytes the kernel may hold unsent for one member. More waits in the room's ring instead,
/// where it can be skipped: at shutdown this leaves room in the socket for the notice, which then
/// reaches even a member that only reads after the server has gone.
const KERNEL_UNSENT: i32 = 128 * 1024;
/// How much to read from a socket at once.
const READ_CHUNK: usize = 8 * 1024;
/// Stop gathering pending lines into one write past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a goodbye write may take at shutdown before the socket is dropped anyway.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(300);
/// How often a writer stuck on a full socket re-checks its send queue.
const SENDQ_CHECK: Duration = Duration::from_millis(100);
/// Lagging the room this many times within [`LAG_WINDOW`] counts as too slow.
const MAX_LAGS: usize = 3;
const LAG_WINDOW: Duration = Duration::from_secs(60);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest pause between accept retries after resource errors such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A member's reply queue: replies count against `--sendq` like room traffic, and one that does not
/// fit makes the member too slow; without a send queue they are refused whole past a fixed budget,
/// and the member is told how many it missed.
fn direct_queue(sendq: Option<usize>) -> DirectQueue {
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
    Flooding,
    Idle,
}

/// Whose writer this is: room events from this member are skipped, but its chat lines under
/// `--echo`.
struct Recipient {
    id: MemberId,
    echo: bool,
}

/// Why a connection's writer stopped.
enum WriteEnd {
    Io(std::io::Error),
    TooSlow,
    HubClosed,
    /// Server shutdown while the socket was full, this many bytes into the batch.
    Interrupted(usize),
}

/// Per-connection settings taken from the hub's configuration.
struct Limits {
    max_line: usize,
    partial_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    sendq: Option<usize>,
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    // Keepalive finds peers that vanished without a FIN (cable pulled, host gone) in about 90 s.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    if let Some(limit) = hub.config().sendq {
        // Linux grows the send buffer of a peer that does not read up to net.ipv4.tcp_wmem's
        // maximum (4 MiB by default), and the send queue only counts what the kernel would not
        // take: cap the kernel's share at the same limit, so a non-reader is cut off near --sendq
        // instead of pinning megabytes of kernel memory first.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(limit);
    }
    set_unsent_limit(&stream, KERNEL_UNSENT);
    let (reader, mut writer) = stream.into_split();
    let direct = Arc::new(direct_queue(hub.config().sendq));
    let outbox = Outbox::Tcp(Arc::clone(&direct));
    let (mut member, sub) = match Member::join(&hub, Transport::Tcp, addr, outbox) {
        Ok(joined) => joined,
        Err(e) => {
            let line = protocol::error(&e.to_string());
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.write_all(&line)).await;
            return Ok(());
        }
    };
    let me = Recipient {
        id: member.id(),
        echo: hub.config().echo,
    };
    let room = Arc::clone(member.room());
    let config = hub.config();
    let limits = Limits {
        max_line: config.max_line,
        partial_timeout: config.partial_timeout,
        idle_timeout: config.idle_timeout,
        sendq: config.sendq,
    };
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
                Ok(End::Shutdown | End::Quit | End::Eof) => {
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
            // Its socket is full, so this last word is best effort.
            let _ = writer.try_write(&protocol::error("too slow, disconnected"));
        }
        Some(reason @ ("flooding" | "idle timeout")) => {
            let line = protocol::error(&format!("disconnected: {reason}"));
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.write_all(&line)).await;
        }
        _ => {}
    }
    member.leave(reason);
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
    result
}

async fn read_lines(
    reader: OwnedReadHalf,
    member: &mut Member,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> std::io::Result<End> {
    let max_line = limits.max_line;
    let mut frames = LineReader::new(reader, limits);
    loop {
        // Chat gathered from one read is published just before waiting for the socket again.
        let room = Arc::clone(member.room());
        let next = async {
            let frame = frames.next(&room, || member.flush());
            match limits.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, frame).await.ok(),
                None => Some(frame.await),
            }
        };
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            frame = next => match frame {
                Some(frame) => frame,
                None => return Ok(End::Idle),
            },
        };
        let line = match frame {
            Ok(None) => return Ok(End::Eof),
            Err(e) => return Err(e),
            Ok(Some(Frame::TooLong)) => {
                member.reply(protocol::error(&format!(
                    "line too long (max {max_line} bytes); discarded"
                )));
                continue;
            }
            Ok(Some(Frame::Line(line))) => line,
        };
        // A client that sends faster than it is read would otherwise keep this task in the reader:
        // its writer (and its send-queue check) shares the task and must get its turn.
        tokio::task::consume_budget().await;
        let input = protocol::parse_tcp_line(&line);
        // Pacing ("fakelag"): while over the rate, stop reading this socket. The flooder's kernel
        // buffers fill and its writes block; nobody else waits and nothing is dropped.
        loop {
            match member.admit(&input, Instant::now()) {
                Admit::Now => break,
                Admit::Later { wait, first } => {
                    member.flush();
                    if first {
                        member.reply(protocol::error("slow down: your lines are being delayed"));
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(End::Shutdown),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Admit::Kick => return Ok(End::Flooding),
            }
        }
        if member.gather(input) == Flow::Quit {
            return Ok(End::Quit);
        }
    }
}

/// Frames lines off a socket with a buffer that exists only while bytes are pending, so an idle
/// connection holds no read buffer (tokio-util's `FramedRead` keeps 8 KiB per connection).
///
/// A partial line that waits `--partial-timeout` for its end is taken as complete: some clients
/// (the seed's own) send each message without a newline. One timer is armed per partial line, when
/// the reader first waits for the socket with it pending, and dropped once a line is framed.
struct LineReader {
    half: OwnedReadHalf,
    codec: LineCodec,
    buf: BytesMut,
    partial_timeout: Option<Duration>,
    /// The pending partial line's deadline, while one is pending.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The stream has ended: at its end or with `error`, which is returned once every line already
    /// received is framed (a client that resets the connection still has them handled).
    eof: bool,
    error: Option<std::io::Error>,
}

impl LineReader {
    fn new(half: OwnedReadHalf, limits: &Limits) -> LineReader {
        LineReader {
            half,
            codec: LineCodec::new(limits.max_line),
            buf: BytesMut::new(),
            partial_timeout: limits.partial_timeout,
            deadline: None,
            eof: false,
            error: None,
        }
    }

    /// The next frame, or None at end of stream; a read error comes only after every frame read
    /// before it. Cancel-safe: bytes are only taken off the socket synchronously, after readiness.
    /// `before_wait` runs each time no whole line is buffered, just before waiting for more bytes;
    /// `room` is asked before every socket read, so a burst is paced to what the room can absorb.
    async fn next(
        &mut self,
        room: &Room,
        mut before_wait: impl FnMut(),
    ) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                // Whatever is left is a new partial line, with its own deadline.
                self.deadline = None;
                return Ok(Some(frame));
            }
            if self.eof {
                if let Some(frame) = self.codec.end_line(&mut self.buf)? {
                    return Ok(Some(frame));
                }
                return match self.error.take() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
            if self.buf.is_empty() {
                self.buf = BytesMut::new();
            }
            before_wait();
            room.pace_sender().await;
            if !self.codec.has_partial(&self.buf) {
                self.deadline = None;
            } else if self.deadline.is_none() {
                // A deadline too far away to represent is no deadline.
                let at = self
                    .partial_timeout
                    .and_then(|timeout| Instant::now().checked_add(timeout));
                self.deadline = at.map(|at| Box::pin(tokio::time::sleep_until(at)));
            }
            let ready = match self.deadline.as_mut() {
                Some(deadline) => tokio::select! {
                    // Bytes already there come first: a partial line whose rest has arrived (while
                    // this member was paced, say) is not cut.
                    biased;
                    ready = self.half.readable() => Some(ready),
                    () = deadline.as_mut() => None,
                },
                None => Some(self.half.readable().await),
            };
            match ready {
                None => {
                    self.deadline = None;
                    if let Some(frame) = self.codec.end_line(&mut self.buf)? {
                        return Ok(Some(frame));
                    }
                    continue;
                }
                Some(Err(e)) => self.end(Some(e)),
                Some(Ok(())) => {}
            }
            if self.eof {
                continue;
            }
            self.buf.reserve(READ_CHUNK);
            match self.half.try_read_buf(&mut self.buf) {
                Ok(0) => self.end(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => self.end(Some(e)),
            }
        }
    }

    /// Marks the end of the stream; the lines already received are still framed.
    fn end(&mut self, error: Option<std::io::Error>) {
        self.eof = true;
        self.error = error;
        self.deadline = None;
    }
}

/// Writes room events and direct lines, batching everything already pending into one write, and
/// follows the member from room to room. Stops once `shutdown` is cancelled and what was pending
/// is written; at server shutdown (`server` cancelled) it stops at once, after the line it is
/// writing, with `* server shutting down`.
async fn write_lines(
    writer: &mut OwnedWriteHalf,
    room: Arc<Room>,
    sub: Subscription,
    direct: &DirectQueue,
    me: Recipient,
    limits: &Limits,
    (shutdown, server): (&CancellationToken, &CancellationToken),
) -> Result<(), WriteEnd> {
    let mut batch = Vec::new();
    let mut reading = Reading::new(room, sub, limits.sendq.is_some());
    // Whether the shutdown notice from the room has been written whole.
    let mut told = false;
    loop {
        if server.is_cancelled() {
            // Past whatever room traffic this member is still behind on.
            return goodbye(writer, &[], told).await;
        }
        let mut closing = false;
        // Reply bytes in this batch: they count against the send queue until written.
        let mut replies = 0;
        tokio::select! {
            // Direct lines first: the welcome must precede any room traffic.
            biased;
            item = direct.pop() => {
                let item = item.map_err(|_| WriteEnd::TooSlow)?;
                replies += reading.direct(&mut batch, item, &me, direct)?;
            }
            event = reading.events.recv() => reading.progress.take(&mut batch, event, &me, direct)?,
            _ = shutdown.cancelled() => closing = true,
        }
        // Take whatever else is already waiting, so a burst costs one syscall rather than one each.
        let mut caught_up = false;
        while batch.len() < WRITE_BATCH {
            if let Some(item) = direct.try_pop().map_err(|_| WriteEnd::TooSlow)? {
                replies += reading.direct(&mut batch, item, &me, direct)?;
                continue;
            }
            let event = match reading.events.try_recv() {
                Ok(event) => Ok(event),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    Err(broadcast::error::RecvError::Lagged(missed))
                }
                Err(broadcast::error::TryRecvError::Empty) => {
                    caught_up = true;
                    break;
                }
                Err(broadcast::error::TryRecvError::Closed) => break,
            };
            reading.progress.take(&mut batch, event, &me, direct)?;
        }
        if caught_up {
            reading.cursor.caught_up(reading.progress.next);
        } else {
            reading.cursor.advance(reading.progress.next);
        }
        if !batch.is_empty() {
            match write_batch(writer, &batch, &reading, direct, limits.sendq, server).await {
                Ok(()) => {}
                Err(WriteEnd::Interrupted(at)) => {
                    return goodbye(writer, rest_of_line(&batch, at), false).await;
                }
                Err(e) => return Err(e),
            }
            direct.written(replies);
            // Give the buffer back: an idle connection should hold no write buffer at all, and
            // one allocation per batch is cheap next to the syscall.
            batch = Vec::new();
        }
        told |= std::mem::take(&mut reading.progress.notice_taken);
        reading.delivered = reading.progress.batch_end;
        if closing {
            if server.is_cancelled() {
                return goodbye(writer, &[], told).await;
            }
            return Ok(());
        }
    }
}

/// The room a writer reads from and how far it has got.
struct Reading {
    room: Arc<Room>,
    events: broadcast::Receiver<Event>,
    /// Counts this reader for pacing the room's senders.
    cursor: Cursor,
    progress: Progress,
    /// Room bytes this writer has delivered (or skipped) so far; the gap to the room's total is
    /// its send queue.
    delivered: u64,
}

impl Reading {
    fn new(room: Arc<Room>, sub: Subscription, enforce_lags: bool) -> Reading {
        let cursor = room.track_reader(sub.since);
        Reading {
            cursor,
            delivered: sub.bytes,
            progress: Progress {
                batch_end: sub.bytes,
                next: sub.since,
                since: sub.since,
                line_next: None,
                lagged: None,
                notice_taken: false,
                lags: LagHistory {
                    enforce: enforce_lags,
                    recent: Default::default(),
                },
            },
            events: sub.events,
            room,
        }
    }

    /// Appends a direct item: a reply as it is, a room switch by finishing the old room's lines up
    /// to where the member left and then reading the new room from where it joined. Returns the
    /// reply bytes taken, which count against the send queue until written.
    fn direct(
        &mut self,
        batch: &mut Vec<u8>,
        item: Direct,
        me: &Recipient,
        direct: &DirectQueue,
    ) -> Result<usize, WriteEnd> {
        let switch = match item {
            Direct::Reply(reply) => {
                batch.extend_from_slice(&reply);
                return Ok(reply.len());
            }
            Direct::Switch(switch) => switch,
        };
        let RoomSwitch { room, sub, left_at } = *switch;
        loop {
            let event = match self.events.try_recv() {
                Ok(event) if event.seq >= left_at => break,
                Ok(event) => Ok(event),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    Err(broadcast::error::RecvError::Lagged(missed))
                }
                Err(_) => break,
            };
            self.progress.take(batch, event, me, direct)?;
        }
        if let Some(missed) = self.progress.lagged.take() {
            batch.extend_from_slice(&protocol::error(&format!(
                "you missed {missed} messages in {}",
                self.room.label()
            )));
        }
        let lags = std::mem::take(&mut self.progress.lags.recent);
        *self = Reading::new(room, sub, self.progress.lags.enforce);
        // Lagging is about the member, not the room: its record follows it.
        self.progress.lags.recent = lags;
        Ok(0)
    }
}

/// The last words at server shutdown: the rest of a line cut short (so the notice starts a line of
/// its own), then the notice unless the member already has it.
async fn goodbye(writer: &mut OwnedWriteHalf, rest: &[u8], told: bool) -> Result<(), WriteEnd> {
    // The room the unsent limit kept free in the socket is for these last words.
    set_unsent_limit(writer.as_ref(), i32::MAX);
    let mut last = rest.to_vec();
    if !told {
        last.extend_from_slice(&protocol::notice(SHUTDOWN_NOTICE));
    }
    // Bounded by the connection's goodbye timeout: a member that still does not read loses it.
    writer.write_all(&last).await.map_err(WriteEnd::Io)
}

/// What is left of the line being written at byte `at` of `batch` (empty at a line boundary).
fn rest_of_line(batch: &[u8], at: usize) -> &[u8] {
    if at == 0 || batch.get(at - 1) == Some(&b'\n') {
        return &[];
    }
    let rest = batch.get(at..).unwrap_or_default();
    match memchr::memchr(b'\n', rest) {
        Some(end) => &rest[..=end],
        None => rest,
    }
}

/// Writes one batch. While the peer's socket is full it checks the send queue: room bytes past what
/// this writer delivered plus its replies not yet written. Past `sendq` the member is too slow and
/// is let go. Server shutdown (`server`) interrupts the wait, saying how much was written.
async fn write_batch(
    writer: &mut OwnedWriteHalf,
    batch: &[u8],
    reading: &Reading,
    direct: &DirectQueue,
    sendq: Option<usize>,
    server: &CancellationToken,
) -> Result<(), WriteEnd> {
    let mut written = 0;
    while written < batch.len() {
        match writer.try_write(&batch[written..]) {
            Ok(0) => return Err(WriteEnd::Io(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Held up by the client, not by the server: never pace senders for it.
                reading.cursor.exempt();
                loop {
                    tokio::select! {
                        ready = writer.writable() => {
                            ready.map_err(WriteEnd::Io)?;
                            break;
                        }
                        _ = server.cancelled() => return Err(WriteEnd::Interrupted(written)),
                        _ = tokio::time::sleep(SENDQ_CHECK), if sendq.is_some() => {
                            let room = reading
                                .room
                                .bytes_produced()
                                .saturating_sub(reading.delivered);
                            let unsent = room.saturating_add(direct.pending() as u64);
                            let over = sendq.is_some_and(|limit| unsent > limit as u64);
                            if direct.overflowed() || over {
                                return Err(WriteEnd::TooSlow);
                            }
                        }
                    }
                }
            }
            Err(e) => return Err(WriteEnd::Io(e)),
        }
    }
    Ok(())
}

/// Remembers recent lags, to tell a reader that falls behind once from one that always does.
struct LagHistory {
    /// False with `--sendq off`: lagging readers are then only told what they missed.
    enforce: bool,
    recent: std::collections::VecDeque<Instant>,
}

impl LagHistory {
    /// Records a lag; true when this makes too many within the window.
    fn record(&mut self, now: Instant) -> bool {
        if !self.enforce {
            return false;
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > LAG_WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() >= MAX_LAGS
    }
}

/// Where a writer is in its room's channel.
struct Progress {
    /// Room bytes up to the last event taken (see [`Event::end`]).
    batch_end: u64,
    /// The next event to take, for pacing senders (see `crate::guard::pacing`).
    next: u64,
    /// Events before this one predate the member's arrival in the room.
    since: u64,
    /// The line number just past the last event taken, to count lines missed in a lag.
    line_next: Option<u64>,
    /// Set by a lag: events overtaken, until the next event tells how many lines that was.
    lagged: Option<u64>,
    /// Set when the room's shutdown notice goes into the batch.
    notice_taken: bool,
    lags: LagHistory,
}

impl Progress {
    /// Appends what `event` means for this member to `batch`.
    fn take(
        &mut self,
        batch: &mut Vec<u8>,
        event: Result<Event, broadcast::error::RecvError>,
        me: &Recipient,
        direct: &DirectQueue,
    ) -> Result<(), WriteEnd> {
        match event {
            Ok(event) => {
                if let Some(events) = self.lagged.take() {
                    // Events can hold several lines: count the lines between the last one taken
                    // and this one, so the member learns exactly how much it lost.
                    let missed = match self.line_next {
                        Some(line) => event.line_no.saturating_sub(line),
                        None => events,
                    };
                    batch.extend_from_slice(&protocol::error(&format!(
                        "you missed {missed} messages"
                    )));
                }
                self.batch_end = event.end;
                self.next = event.seq + 1;
                self.line_next = Some(event.line_end());
                // Not our own lines (but our chat under --echo), and nothing from before we arrived
                // (we subscribed just before).
                let own = event.from == me.id && !(me.echo && event.is_chat());
                if !own && event.seq >= self.since {
                    append_event(batch, &event, direct.show_ids());
                }
                if event.from == SERVER && event.line == protocol::notice(SHUTDOWN_NOTICE) {
                    self.notice_taken = true;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                if self.lags.record(Instant::now()) {
                    return Err(WriteEnd::TooSlow);
                }
                self.lagged = Some(missed);
            }
            Err(broadcast::error::RecvError::Closed) => return Err(WriteEnd::HubClosed),
        }
        Ok(())
    }
}

/// Appends an event's lines, each chat line prefixed with its history id for `/ids on`.
fn append_event(batch: &mut Vec<u8>, event: &Event, show_ids: bool) {
    match event.first_id {
        Some(first) if show_ids => {
            for (id, line) in (first..).zip(event.each_line()) {
                batch.extend_from_slice(&protocol::with_id(id, line));
            }
        }
        _ => batch.extend_from_slice(&event.line),
    }
}

/// Caps the bytes the kernel accepts for `stream` beyond what it has sent (TCP_NOTSENT_LOWAT);
/// best effort, where the platform has it.
fn set_unsent_limit(stream: &TcpStream, bytes: i32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from a live local; the fd
        // belongs to `stream`, which outlives the call.
        let _ = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, bytes);
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
