//! The writing half of a connection: room events and the member's replies, batched into as few
//! writes as possible, following the member from room to room, and cut off past `--sendq`. The
//! loop is shared by every stream transport; only the last step, getting a batch of whole lines
//! onto the wire, differs ([`LineSink`]: bytes for TCP, one frame per line for WebSocket).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Limits, Recipient, WriteEnd};
use crate::guard::pacing::Cursor;
use crate::hub::{DirectQueue, Event, SERVER};
use crate::outbox::{Direct, RoomSwitch};
use crate::protocol;
use crate::room::{Room, Subscription};

/// The room's last line, which every member gets last (see [`Hub::announce_shutdown`]).
pub(in crate::transport) const SHUTDOWN_NOTICE: &str = "server shutting down";
/// Stop gathering pending lines into one write past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// How often a writer stuck on a full socket re-checks its send queue.
pub(in crate::transport) const SENDQ_CHECK: Duration = Duration::from_millis(100);
/// Lagging the room this many times within [`LAG_WINDOW`] counts as too slow.
const MAX_LAGS: usize = 3;
const LAG_WINDOW: Duration = Duration::from_secs(60);

/// Where a connection's writer puts its batches: the one part of writing that differs between
/// transports.
pub(in crate::transport) trait LineSink {
    /// Writes `batch` (whole lines) out. While the peer does not take it, tells `backlog` it is
    /// held up and checks it every [`SENDQ_CHECK`], ending with [`WriteEnd::TooSlow`] past the
    /// send queue; server shutdown (`server`) interrupts it, saying how many bytes were written.
    async fn write_batch(
        &mut self,
        batch: &[u8],
        backlog: &Backlog<'_>,
        server: &CancellationToken,
    ) -> Result<(), WriteEnd>;

    /// The last words at server shutdown: `rest` (the end of a line cut short), then the notice
    /// unless `told`.
    async fn goodbye(&mut self, rest: &[u8], told: bool) -> Result<(), WriteEnd>;

    /// Waits until the sink wants to prove the peer alive (a WebSocket ping) and does so; TCP
    /// leaves that to the kernel's keepalive and never wakes.
    async fn keepalive(&mut self) -> Result<(), WriteEnd> {
        std::future::pending().await
    }

    /// After a `/quit`, once its goodbye is sent and the stream shut down: makes sure the peer's
    /// program notices the end at once. Only plain TCP needs it (see its implementation).
    async fn hang_up(&mut self) {}
}

/// What a writer stuck on a full socket checks: how far this member is behind.
pub(in crate::transport) struct Backlog<'a> {
    reading: &'a Reading,
    direct: &'a DirectQueue,
    sendq: Option<usize>,
}

impl Backlog<'_> {
    /// The client, not the server, is holding up delivery: never pace senders for it.
    pub(in crate::transport) fn held_up(&self) {
        self.reading.cursor.exempt();
    }

    /// Whether checking makes sense: only with a send queue.
    pub(in crate::transport) fn enforced(&self) -> bool {
        self.sendq.is_some()
    }

    /// Room bytes past what this writer delivered plus its replies not yet written, against
    /// `--sendq`: true when the member is too slow.
    pub(in crate::transport) fn too_slow(&self) -> bool {
        let room = self
            .reading
            .room
            .bytes_produced()
            .saturating_sub(self.reading.delivered);
        let unsent = room.saturating_add(self.direct.pending() as u64);
        let over = self.sendq.is_some_and(|limit| unsent > limit as u64);
        self.direct.overflowed() || over
    }
}

/// Writes room events and direct lines, batching everything already pending into one write, and
/// follows the member from room to room. Stops once `shutdown` is cancelled and what was pending
/// is written; at server shutdown (`server` cancelled) it stops at once, after the line it is
/// writing, with `* server shutting down`.
pub(in crate::transport) async fn write_lines(
    writer: &mut impl LineSink,
    room: Arc<Room>,
    sub: Subscription,
    direct: &DirectQueue,
    me: Recipient,
    limits: &Limits,
    (shutdown, server): (&CancellationToken, &CancellationToken),
) -> Result<(), WriteEnd> {
    let mut batch = Vec::new();
    let mut reading = Reading::new(room, sub, limits.sendq.is_some());
    let mut pacer = Coalescer::new(limits.coalesce);
    // Whether the shutdown notice from the room has been written whole.
    let mut told = false;
    loop {
        if server.is_cancelled() {
            // Past whatever room traffic this member is still behind on.
            return writer.goodbye(&[], told).await;
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
            event = reading.events.recv() => {
                reading.progress.take(&mut batch, event, &me, direct)?;
                // Gather what else the room says before the window since the last write ends.
                closing = pacer.gather(shutdown, server).await;
            }
            _ = shutdown.cancelled() => closing = true,
            alive = writer.keepalive() => alive?,
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
            let backlog = Backlog {
                reading: &reading,
                direct,
                sendq: limits.sendq,
            };
            match writer.write_batch(&batch, &backlog, server).await {
                Ok(()) => me.out.delivered(&batch),
                Err(WriteEnd::Interrupted(at)) => {
                    return writer.goodbye(rest_of_line(&batch, at), false).await;
                }
                Err(e) => return Err(e),
            }
            pacer.wrote();
            direct.written(replies);
            // Give the buffer back: an idle connection should hold no write buffer at all, and
            // one allocation per batch is cheap next to the syscall.
            batch = Vec::new();
        }
        told |= std::mem::take(&mut reading.progress.notice_taken);
        reading.delivered = reading.progress.batch_end;
        if closing {
            if server.is_cancelled() {
                return writer.goodbye(&[], told).await;
            }
            return Ok(());
        }
    }
}

/// `--coalesce`: holds a busy writer's next write until a window has passed since its last, so
/// a room's lines leave in fewer, bigger writes (one system call and one trip through the network
/// stack carry several lines). A writer whose last write is older than the window writes at once:
/// light traffic is never held, and no line waits longer than the window.
pub(in crate::transport) struct Coalescer {
    window: Option<Duration>,
    last_write: Option<Instant>,
}

impl Coalescer {
    /// A coalescer holding writes `window` apart at most (`None`: never holds).
    pub(in crate::transport) fn new(window: Option<Duration>) -> Coalescer {
        Coalescer {
            window,
            last_write: None,
        }
    }

    /// Notes that a batch was just written.
    pub(in crate::transport) fn wrote(&mut self) {
        if self.window.is_some() {
            self.last_write = Some(Instant::now());
        }
    }

    /// Waits out the rest of the window since the last write, if it is still open; true when
    /// `shutdown` or `server` ended the wait (what was gathered is still written).
    pub(in crate::transport) async fn gather(
        &self,
        shutdown: &CancellationToken,
        server: &CancellationToken,
    ) -> bool {
        let (Some(window), Some(last)) = (self.window, self.last_write) else {
            return false;
        };
        let until = last + window;
        if until <= Instant::now() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => false,
            _ = shutdown.cancelled() => true,
            _ = server.cancelled() => true,
        }
    }
}

/// The room a writer reads from and how far it has got.
pub(in crate::transport) struct Reading {
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
            me.out.lags.inc();
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
                    me.out.lags.inc();
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
        Some(first) if show_ids && event.ids => {
            for (id, line) in (first..).zip(event.each_line()) {
                batch.extend_from_slice(&protocol::with_id(id, line));
            }
        }
        _ => batch.extend_from_slice(&event.line),
    }
}
