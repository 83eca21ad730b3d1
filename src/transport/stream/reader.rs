//! The reading half of a stream connection (TCP, TLS; WebSocket uses its pacing): frames lines off the socket (a partial line that waits
//! too long counts as complete), paces them through flood control and the room, and hands them to
//! the member.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::{End, Limits};
use crate::guard::limits::Admit;
use crate::member::{Flow, Member};
use crate::protocol;
use crate::protocol::codec::{Frame, LineCodec};
use crate::room::Room;

/// How much to read from a socket at once.
pub(in crate::transport) const READ_CHUNK: usize = 8 * 1024;

/// Where a stream connection's bytes come from: the one part of reading that differs between plain
/// TCP and TLS (their `halves`).
pub(in crate::transport) trait LineSource {
    /// Waits until bytes (or the end of the stream) are there and appends them to `buf`; 0 at the
    /// end. Cancel-safe: nothing is lost when the wait is abandoned.
    async fn read_into(&mut self, buf: &mut BytesMut) -> std::io::Result<usize>;
}

/// Reads, paces and handles the member's lines until it leaves, ends its input or is cut off.
pub(in crate::transport) async fn read_lines(
    reader: impl LineSource,
    member: &mut Member,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> std::io::Result<End> {
    let max_line = limits.max_line;
    let mut frames = LineReader::new(reader, limits);
    // Kicks, kills and finished account commands, between lines; never closed while the member
    // lives (it keeps a sender), so a `None` only means there are none.
    let mut controls = member.take_controls();
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
        let control = async {
            match controls.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            Some(control) = control => {
                if member.control(control) == Flow::Quit {
                    return Ok(End::Quit);
                }
                continue;
            }
            frame = next => match frame {
                Some(frame) => frame,
                None => return Ok(End::Idle),
            },
        };
        let line = match frame {
            Ok(None) => return Ok(End::Eof),
            Err(e) => return Err(e),
            Ok(Some(Frame::TooLong)) => {
                too_long(member, max_line);
                continue;
            }
            Ok(Some(Frame::Line(line))) => line,
        };
        if let Some(end) = take_line(member, &line, shutdown).await {
            return Ok(end);
        }
    }
}

/// Tells the member its line was longer than `--max-line` and dropped.
pub(in crate::transport) fn too_long(member: &Member, max_line: usize) {
    member.reply(protocol::error(&format!(
        "line too long (max {max_line} bytes); discarded"
    )));
}

/// Paces one framed line through flood control and the room, and hands it to the member (chat is
/// gathered: the caller flushes before waiting for more input). `Some` when the connection ends.
pub(in crate::transport) async fn take_line(
    member: &mut Member,
    line: &[u8],
    shutdown: &CancellationToken,
) -> Option<End> {
    // A client that sends faster than it is read would otherwise keep this task in the reader:
    // its writer (and its send-queue check) shares the task and must get its turn.
    tokio::task::consume_budget().await;
    let input = protocol::parse_tcp_line(line);
    if let Some(end) = paced(member, shutdown, |member, now| member.admit(&input, now)).await {
        return Some(end);
    }
    (member.gather(input) == Flow::Quit).then_some(End::Quit)
}

/// Pacing ("fakelag"): while `admit` says the member is over the rate, stop reading its socket.
/// The flooder's kernel buffers fill and its writes block; nobody else waits and nothing is
/// dropped. `None` once admitted.
pub(in crate::transport) async fn paced(
    member: &mut Member,
    shutdown: &CancellationToken,
    mut admit: impl FnMut(&mut Member, Instant) -> Admit,
) -> Option<End> {
    loop {
        match admit(member, Instant::now()) {
            Admit::Now => return None,
            Admit::Later { wait, first } => {
                member.flush();
                if first {
                    member.reply(protocol::error("slow down: your lines are being delayed"));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Some(End::Shutdown),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Admit::Kick => return Some(End::Flooding),
        }
    }
}

/// Frames lines off a socket with a buffer that exists only while bytes are pending, so an idle
/// connection holds no read buffer (tokio-util's `FramedRead` keeps 8 KiB per connection).
///
/// A partial line that waits `--partial-timeout` for its end is taken as complete: some clients
/// (the seed's own) send each message without a newline. One timer is armed per partial line, when
/// the reader first waits for the socket with it pending, and dropped once a line is framed.
///
/// Once the timer has ended a line on a connection that never sent a line end, the connection has
/// shown it sends none: from then on each read is one message at once, as `ncat --chat` takes it,
/// so its messages neither wait for the timer nor merge (`bye` then `/quit` 100 ms later are two
/// messages, the second a quit). The first line end it sends puts it back to lines.
struct LineReader<R> {
    half: R,
    codec: LineCodec,
    buf: BytesMut,
    partial_timeout: Option<Duration>,
    /// The pending partial line's deadline, while one is pending.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The stream has ended: at its end or with `error`, which is returned once every line already
    /// received is framed (a client that resets the connection still has them handled).
    eof: bool,
    error: Option<std::io::Error>,
    /// The first read is still to come and must not be a PROXY header.
    refuse_proxy_header: bool,
    /// A line end (`\n` or `\r`) has been received on this connection.
    seen_line_end: bool,
    /// The connection has shown it sends no line ends: each read is a message.
    read_is_message: bool,
}

impl<R: LineSource> LineReader<R> {
    fn new(half: R, limits: &Limits) -> LineReader<R> {
        LineReader {
            half,
            codec: LineCodec::new(limits.max_line),
            buf: BytesMut::new(),
            partial_timeout: limits.partial_timeout,
            deadline: None,
            eof: false,
            error: None,
            refuse_proxy_header: limits.refuse_proxy_header,
            seen_line_end: false,
            read_is_message: false,
        }
    }

    /// The next frame, or None at end of stream; a read error comes only after every frame read
    /// before it. Cancel-safe, as [`LineSource::read_into`] is.
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
            if self.read_is_message && !self.eof && self.codec.has_partial(&self.buf) {
                if let Some(frame) = self.codec.end_line(&mut self.buf)? {
                    self.deadline = None;
                    return Ok(Some(frame));
                }
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
            let before = self.buf.len();
            let read = match self.deadline.as_mut() {
                Some(deadline) => tokio::select! {
                    // Bytes already there come first: a partial line whose rest has arrived (while
                    // this member was paced, say) is not cut.
                    biased;
                    read = self.half.read_into(&mut self.buf) => Some(read),
                    () = deadline.as_mut() => None,
                },
                None => Some(self.half.read_into(&mut self.buf).await),
            };
            match read {
                None => {
                    self.deadline = None;
                    self.read_is_message = !self.seen_line_end;
                    if let Some(frame) = self.codec.end_line(&mut self.buf)? {
                        return Ok(Some(frame));
                    }
                }
                Some(Ok(0)) => self.end(None),
                Some(Ok(_)) if std::mem::take(&mut self.refuse_proxy_header) => {
                    if crate::transport::proxy::looks_like_header(&self.buf) {
                        // Not one line of it is chat: drop it all before ending.
                        self.buf.clear();
                        self.end(Some(std::io::Error::other(
                            crate::transport::proxy::Refused::Untrusted,
                        )));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => self.end(Some(e)),
            }
            let fresh = self.buf.get(before..).unwrap_or_default();
            if memchr::memchr2(b'\n', b'\r', fresh).is_some() {
                self.seen_line_end = true;
                self.read_is_message = false;
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
