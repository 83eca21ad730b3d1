//! WebSocket transport: a browser member, speaking the same protocol as TCP, one text frame per
//! line each way, or with `/ws?batch=1` (what the chat page asks for) every batch of lines waiting
//! for the member in one frame, `\n` between lines. It is a thin adapter over the TCP
//! connection's halves: frames are cut into lines by the same codec and paced by the same reader
//! step, and the same writer loop follows the member from room to room and cuts it off past
//! `--sendq`; only putting lines on the wire differs ([`WsSink`]). A ping every `--heartbeat`
//! proves the browser alive: a tab silent for two intervals and a bit is let go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tungstenite::Error as TError;

use super::stream::reader::{paced, take_line, too_long};
use super::stream::writer::{write_lines, Backlog, LineSink, SENDQ_CHECK, SHUTDOWN_NOTICE};
use super::stream::{direct_queue, End, Limits, Recipient, WriteEnd, GOODBYE_TIMEOUT};
use crate::config::Config;
use crate::hub::{Hub, Outbox, Transport};
use crate::member::{Flow, Member};
use crate::protocol;
use crate::protocol::codec::{Frame, LineCodec};

/// Largest WebSocket message taken at all, for a given `--max-line`: longer lines than the limit
/// are answered and dropped as over TCP, but a message this big ends the connection (its bytes
/// would have to be held whole first).
pub fn max_message(max_line: usize) -> usize {
    max_line.saturating_mul(4).clamp(64 * 1024, 1 << 20)
}

/// The write buffer's working size: frames gather here until a flush (tungstenite's default).
const WRITE_BUFFER: usize = 128 * 1024;
/// What a WebSocket's unsent frames may reach with `--sendq off`: still a bound, never memory's.
const UNLIMITED_SENDQ_WRITE_BUFFER: usize = 64 << 20;

/// Puts chatd's limits for `config` on a WebSocket upgrade: `/ws` uses it, and so does the echo
/// server the Autobahn check runs against (examples/ws_echo.rs), so that check covers the real
/// settings.
pub fn limit(upgrade: WebSocketUpgrade, config: &Config) -> WebSocketUpgrade {
    let max = max_message(config.max_line);
    // Frames the peer is not reading pile up in the WebSocket's write buffer once its socket is
    // full: pongs to its pings above all, one per ping, which is how one never-reading client
    // grew the server by 300 MB a second. The buffer is capped at the send queue plus one
    // message and the buffer's own working size; past it the connection is let go.
    let write_limit = config
        .sendq
        .unwrap_or(UNLIMITED_SENDQ_WRITE_BUFFER)
        .saturating_add(max)
        .saturating_add(WRITE_BUFFER);
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(write_limit)
}

/// How a WebSocket member's outgoing lines are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One text frame per line: the default, what any WebSocket client understands.
    PerLine,
    /// Every batch the writer gathered in one text frame, lines joined by `\n`: a burst costs one
    /// frame instead of one per line (each frame is an allocation, a header and a pass through
    /// the WebSocket library), which is what makes a busy room as cheap over WebSocket as over
    /// TCP. Asked for with `batch=1` in `/ws`'s query; the page splits frames on `\n`.
    Batched,
}

impl Framing {
    /// The framing a `/ws` request's query string asks for: [`Framing::Batched`] when it has
    /// `batch=1` (or a bare `batch`), one frame per line otherwise.
    pub fn from_query(query: Option<&str>) -> Framing {
        let asked = query
            .unwrap_or_default()
            .split('&')
            .any(|pair| matches!(pair, "batch" | "batch=1" | "batch=true"));
        if asked {
            Framing::Batched
        } else {
            Framing::PerLine
        }
    }
}

/// How long past two heartbeats a browser may stay silent (no pong, no line) before it is let go.
const PONG_SLACK: Duration = Duration::from_millis(500);

/// Why a WebSocket's reader stopped, beyond what a TCP reader knows.
enum Stop {
    /// As for TCP.
    End(End),
    /// No pong or anything else for two heartbeats: the tab is gone.
    Unanswered,
    /// The connection broke, or the peer broke the protocol: the close code that says which.
    Broken(u16),
}

/// Serves one upgraded WebSocket from `addr` as a member, its lines framed as `framing` says,
/// until it leaves, is cut off, or the server shuts down (`shutdown`): then it gets
/// `* server shutting down` and a close frame.
pub async fn connection(
    socket: WebSocket,
    addr: SocketAddr,
    framing: Framing,
    hub: Hub,
    shutdown: CancellationToken,
) {
    let (sink, stream) = socket.split();
    let config = hub.config();
    let mut sink = WsSink::new(sink, config.heartbeat, framing);
    let direct = Arc::new(direct_queue(config.sendq));
    let outbox = Outbox::Tcp(Arc::clone(&direct));
    let (mut member, sub) = match Member::join(&hub, Transport::Web, addr, outbox) {
        Ok(joined) => joined,
        Err(e) => {
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, sink.last_words(&e.to_string())).await;
            return;
        }
    };
    let me = Recipient {
        id: member.id(),
        echo: config.echo,
        out: hub.metrics().delivery(Transport::Web),
    };
    let room = Arc::clone(member.room());
    let limits = Limits {
        max_line: config.max_line,
        partial_timeout: None,
        idle_timeout: config.idle_timeout,
        sendq: config.sendq,
        coalesce: config.coalesce,
        refuse_proxy_header: false,
    };
    let alive = config.heartbeat.saturating_mul(2) + PONG_SLACK;
    let mut broken = close_code::NORMAL;
    let reason = {
        let finish = shutdown.child_token();
        let read = read_frames(stream, &mut member, &limits, alive, &shutdown);
        let write = write_lines(
            &mut sink,
            room,
            sub,
            &direct,
            me,
            &limits,
            (&finish, &shutdown),
        );
        tokio::pin!(read, write);
        tokio::select! {
            stop = &mut read => match stop {
                Stop::End(End::Shutdown | End::Quit | End::Eof) => {
                    finish.cancel();
                    match tokio::time::timeout(GOODBYE_TIMEOUT, &mut write).await {
                        Ok(Err(WriteEnd::TooSlow)) => Some("too slow"),
                        _ => None,
                    }
                }
                Stop::End(End::Flooding) => Some("flooding"),
                Stop::End(End::Idle) => Some("idle timeout"),
                Stop::Unanswered => Some("ping timeout"),
                Stop::Broken(code) => {
                    broken = code;
                    Some("connection error")
                }
            },
            written = &mut write => match written {
                Ok(()) | Err(WriteEnd::HubClosed | WriteEnd::Interrupted(_)) => None,
                Err(WriteEnd::TooSlow) => Some("too slow"),
                Err(WriteEnd::Io(_)) => Some("connection error"),
            },
        }
    };
    let last = match reason {
        Some("too slow") => Some("too slow, disconnected".to_string()),
        Some(reason @ ("flooding" | "idle timeout" | "ping timeout")) => {
            Some(format!("disconnected: {reason}"))
        }
        _ => None,
    };
    member.leave(reason);
    // A member too slow to read has a full socket: its last words are best effort, like TCP's.
    let goodbye = match &last {
        Some(words) => sink.last_words(words).boxed(),
        None => sink.close(broken).boxed(),
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
}

/// Reads frames until the member leaves, ends its input or is cut off. Every text (or binary)
/// message is one line, framed by the TCP codec so that line endings, `--max-line` and control
/// characters follow the same rules; a message with line breaks in it is several lines.
async fn read_frames(
    mut stream: SplitStream<WebSocket>,
    member: &mut Member,
    limits: &Limits,
    alive: Duration,
    shutdown: &CancellationToken,
) -> Stop {
    let mut codec = LineCodec::new(limits.max_line);
    let mut buf = BytesMut::new();
    let mut heard = Instant::now();
    let mut last_line = Instant::now();
    // Kicks, kills and finished account commands, between frames, as for TCP.
    let mut controls = member.take_controls();
    loop {
        let next = match stream.next().now_or_never() {
            Some(next) => next,
            None => {
                // Chat gathered from what was waiting is published before waiting again.
                member.flush();
                let idle = limits.idle_timeout.map(|idle| last_line + idle);
                let control = async {
                    match controls.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return Stop::End(End::Shutdown),
                    Some(control) = control => {
                        if member.control(control) == Flow::Quit {
                            return Stop::End(End::Quit);
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(heard + alive) => return Stop::Unanswered,
                    _ = sleep_until_some(idle) => return Stop::End(End::Idle),
                    next = stream.next() => next,
                }
            }
        };
        heard = Instant::now();
        let data: Bytes = match next {
            None | Some(Ok(Message::Close(_))) => return Stop::End(End::Eof),
            Some(Err(e)) => return Stop::Broken(close_code_for(&e)),
            // Each ping owes a pong: a ping flood is paced like a line flood (a browser answers
            // our pings with a pong a heartbeat, far under any rate).
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                if let Some(end) = paced(member, shutdown, Member::admit_message).await {
                    return Stop::End(end);
                }
                continue;
            }
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Binary(data))) => data,
        };
        last_line = heard;
        buf.extend_from_slice(&data);
        buf.put_u8(b'\n');
        // Bounded: every frame consumes bytes of a message no longer than `max_message`.
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let line = match frame {
                Frame::TooLong => {
                    too_long(member, limits.max_line);
                    continue;
                }
                Frame::Line(line) => line,
            };
            if let Some(end) = take_line(member, &line, shutdown).await {
                return Stop::End(end);
            }
        }
        if buf.is_empty() {
            // Keep no read buffer while idle.
            buf = BytesMut::new();
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The sending half of a WebSocket: a batch goes out as one text frame per line or as one frame
/// ([`Framing`]), flushed in one write, and a ping goes out every heartbeat.
pub struct WsSink {
    sink: SplitSink<WebSocket, Message>,
    ping: Interval,
    framing: Framing,
}

impl WsSink {
    fn new(sink: SplitSink<WebSocket, Message>, heartbeat: Duration, framing: Framing) -> WsSink {
        let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        WsSink {
            sink,
            ping,
            framing,
        }
    }

    /// Sends `! words` and closes the socket.
    async fn last_words(&mut self, words: &str) -> Result<(), axum::Error> {
        self.sink.feed(text_frame(&protocol::error(words))).await?;
        self.close(close_code::NORMAL).await
    }

    /// Ends the closing handshake (see [`close`]).
    async fn close(&mut self, code: u16) -> Result<(), axum::Error> {
        close(&mut self.sink, code).await
    }
}

/// Closes a WebSocket with `code`, or, when the peer closed first, sends the answer to its close
/// frame that tungstenite has queued (another close frame would be refused, and the answer never
/// sent: browsers saw every close as abnormal, 1006). Public for the Autobahn echo server
/// (examples/ws_echo.rs), which checks this handshake.
pub async fn close(sink: &mut SplitSink<WebSocket, Message>, code: u16) -> Result<(), axum::Error> {
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    match sink.send(Message::Close(Some(frame))).await {
        Err(e) if matches!(tungstenite_error(&e), Some(TError::Protocol(_))) => {
            match sink.flush().await {
                // The handshake is over: the server's side may drop the connection.
                Err(e) if matches!(tungstenite_error(&e), Some(TError::ConnectionClosed)) => Ok(()),
                flushed => flushed,
            }
        }
        sent => sent,
    }
}

/// The close code RFC 6455 gives what broke a connection: a protocol error (1002), text that is
/// not UTF-8 (1007), a message over [`max_message`] (1009); otherwise a normal close. Public for
/// the Autobahn echo server (examples/ws_echo.rs).
pub fn close_code_for(error: &axum::Error) -> u16 {
    match tungstenite_error(error) {
        Some(TError::Protocol(_)) => close_code::PROTOCOL,
        Some(TError::Utf8(_)) => close_code::INVALID,
        Some(TError::Capacity(_)) => close_code::SIZE,
        _ => close_code::NORMAL,
    }
}

/// The tungstenite error under axum's.
fn tungstenite_error(error: &axum::Error) -> Option<&TError> {
    std::error::Error::source(error).and_then(|inner| inner.downcast_ref::<TError>())
}

/// One line (with or without its `\n`) as a text frame; bytes that are not UTF-8 (the server only
/// ever sends UTF-8) would be replaced rather than break the frame.
fn text_frame(line: &[u8]) -> Message {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    Message::Text(String::from_utf8_lossy(line).into_owned().into())
}

/// A batch of whole lines as the text frames `framing` asks for, in order: one per line, or one
/// for all (without the last line's `\n`). The batch is copied once; per-line frames share
/// that copy rather than each owning one.
fn batch_frames(batch: &[u8], framing: Framing) -> Vec<Message> {
    let Ok(text) = std::str::from_utf8(batch) else {
        // Never from chatd's own lines; kept whole line by line all the same.
        return batch
            .split_inclusive(|&b| b == b'\n')
            .map(text_frame)
            .collect();
    };
    let text = text.strip_suffix('\n').unwrap_or(text);
    let shared = Bytes::copy_from_slice(text.as_bytes());
    let frame =
        |range: std::ops::Range<usize>| match Utf8Bytes::try_from(shared.slice(range.clone())) {
            Ok(line) => Message::Text(line),
            // Unreachable: `text` is UTF-8 and every range ends at a line break or at its end.
            Err(_) => text_frame(&shared[range]),
        };
    match framing {
        Framing::Batched => vec![frame(0..shared.len())],
        Framing::PerLine => {
            let mut frames = Vec::new();
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &shared) {
                frames.push(frame(start..end));
                start = end + 1;
            }
            frames.push(frame(start..shared.len()));
            frames
        }
    }
}

fn io_error(e: axum::Error) -> WriteEnd {
    WriteEnd::Io(std::io::Error::other(e))
}

impl LineSink for WsSink {
    async fn write_batch(
        &mut self,
        batch: &[u8],
        backlog: &Backlog<'_>,
        server: &CancellationToken,
    ) -> Result<(), WriteEnd> {
        // A ping that fell due while the room kept the writer busy goes out with this batch: the
        // writer's own wait for the ping timer loses to traffic that is always ready.
        let due = self.ping.tick().now_or_never().is_some();
        let frames = batch_frames(batch, self.framing);
        let sink = &mut self.sink;
        // Every frame is fed into the write buffer, then one flush: one write for the batch.
        let send = async move {
            if due {
                sink.feed(Message::Ping(Bytes::new())).await?;
            }
            for frame in frames {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        tokio::pin!(send);
        if let Poll::Ready(sent) = futures::poll!(&mut send) {
            return sent.map_err(io_error);
        }
        backlog.held_up();
        loop {
            tokio::select! {
                sent = &mut send => return sent.map_err(io_error),
                // Frames are whole lines: what was fed is sent whole or not at all, so the notice
                // after this always starts a line of its own.
                _ = server.cancelled() => return Err(WriteEnd::Interrupted(batch.len())),
                _ = tokio::time::sleep(SENDQ_CHECK), if backlog.enforced() => {
                    if backlog.too_slow() {
                        return Err(WriteEnd::TooSlow);
                    }
                }
            }
        }
    }

    async fn goodbye(&mut self, _rest: &[u8], told: bool) -> Result<(), WriteEnd> {
        if !told {
            self.sink
                .feed(text_frame(&protocol::notice(SHUTDOWN_NOTICE)))
                .await
                .map_err(io_error)?;
        }
        self.sink.flush().await.map_err(io_error)
    }

    async fn keepalive(&mut self) -> Result<(), WriteEnd> {
        self.ping.tick().await;
        // Never wait for a full socket here: a member that does not read is the send queue's
        // business, and its silence the reader's.
        match self.sink.send(Message::Ping(Bytes::new())).now_or_never() {
            Some(Err(e)) => Err(io_error(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: Vec<Message>) -> Vec<String> {
        frames
            .into_iter()
            .map(|frame| match frame {
                Message::Text(text) => text.to_string(),
                other => panic!("a text frame expected, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_is_one_frame_per_line_or_one_frame_for_all() {
        let batch = b"* one\n<a> two\n<b> three \xc3\xa9\n";
        assert_eq!(
            texts(batch_frames(batch, Framing::PerLine)),
            ["* one", "<a> two", "<b> three é"]
        );
        assert_eq!(
            texts(batch_frames(batch, Framing::Batched)),
            ["* one\n<a> two\n<b> three é"]
        );
        // A lone line is one frame either way, without its line break.
        assert_eq!(texts(batch_frames(b"x\n", Framing::Batched)), ["x"]);
        assert_eq!(texts(batch_frames(b"x\n", Framing::PerLine)), ["x"]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_line_by_line() {
        let batch = b"ok\nbad \xff\n";
        for framing in [Framing::PerLine, Framing::Batched] {
            assert_eq!(texts(batch_frames(batch, framing)), ["ok", "bad \u{fffd}"]);
        }
    }

    #[test]
    fn only_batch_in_the_query_asks_for_batched_frames() {
        for query in ["batch=1", "batch", "x=2&batch=true", "batch=1&x"] {
            assert_eq!(
                Framing::from_query(Some(query)),
                Framing::Batched,
                "{query}"
            );
        }
        for query in [
            None,
            Some(""),
            Some("batch=0"),
            Some("nobatch=1"),
            Some("batch=2"),
        ] {
            assert_eq!(Framing::from_query(query), Framing::PerLine, "{query:?}");
        }
    }
}
