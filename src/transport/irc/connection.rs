//! One IRC connection: its lines in, IRC messages out, and the rooms it is in. One task runs it
//! all (reading, its member's replies, every room it sits in, pings), so what it writes is in the
//! order things happened; a client that does not read holds up only itself, and is let go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::future::{select_all, FutureExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message;
use super::session::Session;
use crate::guard::pacing::Cursor;
use crate::hub::{DirectQueue, Hub};
use crate::outbox::Direct;
use crate::room::{Event, Room};
use crate::transport::stream::writer::Coalescer;
use crate::transport::tls::{self, CertStore};
use crate::transport::{stream, tcp};

/// Longest line taken from a client: 8191 bytes of tags and 512 for the rest (IRCv3).
const MAX_LINE: usize = 8191 + 512;
/// Quiet time after which the server pings the client.
const PING_AFTER: Duration = Duration::from_secs(90);
/// Time a pinged client has to answer anything.
const PING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one write may wait on a client that does not read before it is let go.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A write not done within this is the client's doing: its rooms stop pacing senders for it.
const HELD_UP: Duration = Duration::from_millis(100);
/// How long a PING waits for what other clients sent just before it (see `handle_held`).
const PING_FENCE: Duration = Duration::from_millis(3);
/// Lines waiting out flood control (fakelag) before reading stops until they are handled.
const HELD_LINES: usize = 32;

/// Accepts IRC connections until `shutdown` is cancelled (PROXY headers from trusted proxies are
/// honoured, as on the TCP listener).
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    tcp::accept_members(listener, hub, shutdown, tracker, "irc", connection).await
}

/// A room this connection sits in, and how far it has read it.
pub(super) struct Feed {
    pub(super) room: Arc<Room>,
    pub(super) label: String,
    pub(super) events: broadcast::Receiver<Event>,
    /// Events before this one predate the join.
    pub(super) since: u64,
    /// Counts this reader for pacing the room's senders.
    pub(super) cursor: Cursor,
}

impl Feed {
    pub(super) fn new(room: Arc<Room>, events: broadcast::Receiver<Event>, since: u64) -> Feed {
        Feed {
            label: room.label(),
            cursor: room.track_reader(since),
            room,
            events,
            since,
        }
    }
}

/// Accepts IRC connections inside TLS (`--ircs`) until `shutdown` is cancelled: the same PROXY
/// headers, bounded handshakes and certificate (re-read on SIGHUP) as the `--tls` listener.
pub async fn serve_tls(
    listener: TcpListener,
    hub: Hub,
    certs: CertStore,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let client = |tls, addr, hub, shutdown| async move {
        let (reader, writer) = tokio::io::split(tls);
        serve_client(Box::new(reader), Box::new(writer), addr, hub, shutdown).await;
        Ok(())
    };
    tls::accept_tls(listener, hub, certs, (shutdown, tracker), "ircs", client).await
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tcp::tune(&stream, &hub);
    let (reader, writer) = stream.into_split();
    serve_client(Box::new(reader), Box::new(writer), addr, hub, shutdown).await;
    Ok(())
}

/// Serves one IRC client over any byte stream (TCP, TLS, or a WebSocket's lines through
/// [`super::websocket`]) until it quits, is let go, or the server shuts down.
pub(super) async fn serve_client(
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
) {
    let direct = Arc::new(stream::direct_queue(hub.config().sendq));
    let mut conn = Conn {
        coalesce: hub.config().coalesce,
        session: Session::new(hub, addr, Arc::clone(&direct)),
        direct,
        reader,
        writer,
        input: BytesMut::new(),
        discarding: false,
        held: std::collections::VecDeque::new(),
        paced: false,
    };
    let end = conn.run(&shutdown).await;
    conn.finish(end).await;
}

/// Why a connection ends.
enum End {
    /// The client sent QUIT, or the server told it ERROR already.
    Quit,
    /// The client hung up.
    Eof,
    /// Server shutdown.
    Shutdown,
    /// Not reading, or over its send queue.
    TooSlow,
    /// No answer to a ping.
    PingTimeout,
    /// Flooding past `--flood-kick`.
    Flooding,
    /// Kicked off the server (`/kill`, a server ban).
    Killed,
}

struct Conn {
    session: Session,
    direct: Arc<DirectQueue>,
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    input: BytesMut,
    /// Inside an over-long line: everything up to its end is dropped.
    discarding: bool,
    /// Lines waiting for flood control to let them through.
    held: std::collections::VecDeque<BytesMut>,
    /// `--coalesce`, as it was when the client connected.
    coalesce: Option<Duration>,
    /// The next held line has waited for a busy room's readers already (see `handle_held`).
    paced: bool,
}

impl Conn {
    async fn run(&mut self, shutdown: &CancellationToken) -> End {
        let mut last_heard = Instant::now();
        let mut pinged = false;
        let mut controls = None;
        let mut pacer = Coalescer::new(self.coalesce);
        loop {
            if let Some(end) = self.session.ended() {
                return end_of(end);
            }
            if controls.is_none() {
                controls = self.session.take_controls();
            }
            let wait = if pinged { PING_TIMEOUT } else { PING_AFTER };
            let due = self.session.held_until();
            let reading = self.held.len() < HELD_LINES;
            let idle = self.session.idle_timeout();
            // Lines held for nothing else wait for a busy room's readers (see `handle_held`); if
            // the room is no longer busy, they go at once.
            let crowded = if self.held.is_empty() || due.is_some() || self.session.busy() {
                None
            } else {
                Some(self.crowded_room())
            };
            let event = next_event(&mut self.session.feeds);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Shutdown,
                read = self.reader.read_buf(&mut self.input), if reading => match read {
                    Ok(0) | Err(_) => return End::Eof,
                    Ok(_) => {
                        last_heard = Instant::now();
                        pinged = false;
                        self.split_lines();
                    }
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
                _ = pace(crowded.flatten()), if crowded.is_some() => self.paced = true,
                item = self.direct.pop() => match item {
                    Ok(Direct::Reply(reply)) => self.session.reply(&reply),
                    Ok(Direct::Switch(_)) => {}
                    Err(_) => return End::TooSlow,
                },
                (at, event) = event => {
                    self.session.deliver(at, event);
                    // A busy room's lines leave together (`--coalesce`).
                    if pacer.gather(shutdown, shutdown).await {
                        return End::Shutdown;
                    }
                    self.session.drain_feeds();
                }
                checked = super::session::account::wait(&mut self.session.account) => {
                    self.session.checked(checked);
                }
                control = recv_control(&mut controls) => match control {
                    Some(control) => self.session.control(control),
                    None => controls = None,
                },
                _ = tokio::time::sleep_until(last_heard + wait) => {
                    if pinged {
                        return End::PingTimeout;
                    }
                    pinged = true;
                    last_heard = Instant::now();
                    self.session.ping();
                }
                _ = sleep_opt(idle) => return End::PingTimeout,
            }
            if let Some(end) = self.handle_held().await {
                return end;
            }
            match self.flush().await {
                Some(true) => pacer.wrote(),
                Some(false) => {}
                None => return End::TooSlow,
            }
        }
    }

    /// A room of this client's whose senders may have to wait for its readers, if any.
    fn crowded_room(&self) -> Option<Arc<Room>> {
        let feed = self.session.feeds.iter().find(|f| f.room.crowded())?;
        Some(Arc::clone(&feed.room))
    }

    /// Splits complete lines off the input, keeping an over-long one out (with ERR_INPUTTOOLONG).
    fn split_lines(&mut self) {
        loop {
            match memchr::memchr(b'\n', &self.input) {
                Some(end) => {
                    let line = self.input.split_to(end + 1);
                    if std::mem::take(&mut self.discarding) {
                        continue;
                    }
                    if line.len() > MAX_LINE {
                        self.session.too_long();
                        continue;
                    }
                    self.held.push_back(line);
                }
                None => {
                    if self.input.len() > MAX_LINE {
                        if !self.discarding {
                            self.session.too_long();
                        }
                        self.discarding = true;
                        self.input.clear();
                    }
                    return;
                }
            }
        }
    }

    /// Handles the held lines that flood control lets through now.
    async fn handle_held(&mut self) -> Option<End> {
        while !self.held.is_empty() {
            // A password check answers first: the lines after it wait (they may depend on it).
            if self.session.busy() || self.session.held_until().is_some() {
                return None;
            }
            // A busy room's senders are paced, as on the line protocol (see `Room::pace_sender`):
            // while a reader that keeps up is far behind, the next line waits (in `run`, which
            // goes on delivering meanwhile), so a burst slows its sender instead of overtaking
            // the readers. Per line, not per read: one read can bring a whole burst.
            if !std::mem::take(&mut self.paced) && self.crowded_room().is_some() {
                return None;
            }
            match self.session.admit() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(()) => return Some(End::Flooding),
            }
            let line = self.held.pop_front()?;
            if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"PING") {
                // Clients (and test suites) fence with PING: give the lines other clients sent
                // just before it (read by other tasks, maybe on another core) a moment to land
                // here first, so what they send this client comes before the PONG. A real
                // client pings every minute or two, so the moment costs nothing.
                tokio::time::sleep(PING_FENCE).await;
            }
            // Whatever reached this client before its line comes before the line's answer.
            self.session.drain_replies();
            self.session.drain_feeds();
            let raw = held_line_bytes(line);
            match message::parse(&raw) {
                Ok(msg) if msg.command.is_empty() => {}
                Ok(msg) => self.session.handle(msg),
                Err(message::ParseError::Empty) => {}
                // Over 512 bytes without tags, or over 4096 of tags: 417, as for a line over
                // the whole limit.
                Err(message::ParseError::TooLong | message::ParseError::TagsTooLong) => {
                    self.session.too_long()
                }
                Err(message::ParseError::NotUtf8) => {
                    self.session.invalid_utf8(&command_of(&raw));
                }
                Err(e) => self.session.bad_line(&e.to_string()),
            }
            // What the line did in its rooms (a topic, a kick) comes before the answer to the
            // next line: clients fence on PING/PONG.
            self.session.drain_feeds();
            if let Some(end) = self.session.ended() {
                return Some(end_of(end));
            }
        }
        None
    }

    /// Writes what the session has to say: whether there was anything, or `None` when the client
    /// does not take it in time.
    async fn flush(&mut self) -> Option<bool> {
        let out = self.session.take_output();
        if out.is_empty() {
            return Some(false);
        }
        let write = stream::say(&mut self.writer, &out);
        tokio::pin!(write);
        let done = match tokio::time::timeout(HELD_UP, &mut write).await {
            Ok(done) => done,
            Err(_) => {
                // The client is not reading: it must not hold the rooms' senders back (it is
                // counted again once it has caught up, see `Session::drain_feeds`).
                for feed in &self.session.feeds {
                    feed.cursor.exempt();
                }
                tokio::time::timeout(WRITE_TIMEOUT - HELD_UP, write)
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            }
        };
        done.is_ok().then_some(true)
    }

    async fn finish(mut self, end: End) {
        let reason = match end {
            End::Quit | End::Killed => None,
            End::Eof => Some("connection closed"),
            End::Shutdown => Some("server shutting down"),
            End::TooSlow => Some("too slow"),
            End::PingTimeout => Some("ping timeout"),
            End::Flooding => Some("flooding"),
        };
        if let Some(reason) = reason {
            self.session.error(reason);
        }
        let out = self.session.take_output();
        let _ = tokio::time::timeout(stream::GOODBYE_TIMEOUT, stream::say(&mut self.writer, &out))
            .await;
        let departure = match end {
            End::Eof => None,
            End::Quit | End::Killed => None,
            End::Shutdown => None,
            _ => reason,
        };
        self.session.leave(departure);
        let _ = tokio::time::timeout(stream::GOODBYE_TIMEOUT, self.writer.shutdown()).await;
        self.input.advance(self.input.len());
    }
}

/// The command word of a line that could not be parsed (after tags and source), upper-cased.
fn command_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let mut word = words.next().unwrap_or("*");
    if word.starts_with('@') {
        word = words.next().unwrap_or("*");
    }
    if word.starts_with(':') {
        word = words.next().unwrap_or("*");
    }
    let word: String = word.chars().filter(char::is_ascii_alphanumeric).collect();
    if word.is_empty() {
        "*".to_string()
    } else {
        word.to_ascii_uppercase()
    }
}

/// A line without its CR LF.
fn held_line_bytes(mut line: BytesMut) -> BytesMut {
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

/// The next event of any of the rooms, with its room's index; never ready without rooms.
async fn next_event(feeds: &mut [Feed]) -> (usize, Result<Event, broadcast::error::RecvError>) {
    match feeds {
        [] => return std::future::pending().await,
        // The common case, without the boxed futures a choice among several costs each wake-up.
        [feed] => return (0, feed.events.recv().await),
        _ => {}
    }
    let (event, at, _) = select_all(feeds.iter_mut().map(|f| f.events.recv().boxed())).await;
    (at, event)
}

/// Waits as [`Room::pace_sender`] does, if there is a room to wait for.
async fn pace(room: Option<Arc<Room>>) {
    if let Some(room) = room {
        room.pace_sender().await;
    }
}

async fn recv_control(
    controls: &mut Option<crate::control::ControlRx>,
) -> Option<crate::control::Control> {
    match controls {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(idle: Option<Instant>) {
    match idle {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn end_of(end: super::session::Ended) -> End {
    match end {
        super::session::Ended::Quit => End::Quit,
        super::session::Ended::Killed => End::Killed,
    }
}
