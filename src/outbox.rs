//! Where replies meant for one member go: a TCP connection's byte-bounded queue or a UDP peer's
//! address. Room traffic does not pass through here; it is shared through the room's broadcast ring.
//!
//! A reply is one or more complete lines (`/help`, `/who` are several) and travels as one item, so it
//! arrives whole or not at all: never cut in the middle.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, Semaphore};

use crate::protocol;
use crate::room::{Room, Subscription};
use crate::transport::udp::pktinfo;

/// A TCP member's move to another room, queued in order with its replies so its writer switches
/// rooms exactly between the replies before the move and those after.
#[derive(Debug)]
pub struct RoomSwitch {
    /// The room joined.
    pub room: Arc<Room>,
    /// The reading position there (history included).
    pub sub: Subscription,
    /// The old room's events before this one were still the member's.
    pub left_at: u64,
}

/// One item waiting for a TCP member's writer.
#[derive(Debug)]
pub enum Direct {
    /// A reply: complete lines for this member only.
    Reply(Bytes),
    /// Follow the member into another room.
    Switch(Box<RoomSwitch>),
}

/// Most UDP replies being finished in the background at once, process-wide (see [`Outbox::send`]).
const DEFERRED_UDP_REPLIES: usize = 256;
/// How long a UDP reply may take to finish in the background before the rest is given up.
const DEFERRED_UDP_TIMEOUT: Duration = Duration::from_secs(1);

static DEFERRED_UDP: Semaphore = Semaphore::const_new(DEFERRED_UDP_REPLIES);

/// Where replies meant for one member go.
#[derive(Debug, Clone)]
pub enum Outbox {
    /// A connection's bounded queue, drained by its writer (TCP, and WebSocket, which shares the
    /// TCP writer).
    Tcp(Arc<DirectQueue>),
    /// A UDP peer: replies are sent straight from the shared socket, from the local address the
    /// peer wrote to when the socket is bound to every address (see `transport::udp::pktinfo`).
    Udp(Arc<UdpSocket>, SocketAddr, Option<IpAddr>),
}

impl Outbox {
    /// Queues or sends `reply` (one or more complete lines) whole, without waiting; false when it
    /// was refused, which only ever happens to a member that is not keeping up (TCP) or when the
    /// UDP socket cannot take it.
    ///
    /// Over UDP each line is one datagram. If the socket's buffer fills mid-way, the rest of the
    /// reply is finished by a short background send rather than cut (bounded in number and time);
    /// only when even that is impossible is the rest given up, and logged.
    pub fn send(&self, reply: Bytes) -> bool {
        match self {
            Outbox::Tcp(queue) => queue.push(reply),
            Outbox::Udp(socket, addr, from) => send_udp(socket, (*addr, *from), reply),
        }
    }
}

/// How far sending a reply's lines without waiting got.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Every line went out.
    All,
    /// The socket was full at the line starting at this offset; nothing from there on went out.
    Blocked(usize),
    /// A hard error: this peer cannot be sent to.
    Failed,
}

/// Sends each line of `reply` with `try_send` until one would block.
fn send_lines(reply: &[u8], mut try_send: impl FnMut(&[u8]) -> std::io::Result<usize>) -> Sent {
    let mut offset = 0;
    for line in reply.split_inclusive(|&b| b == b'\n') {
        match try_send(line) {
            Ok(_) => offset += line.len(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Sent::Blocked(offset),
            Err(_) => return Sent::Failed,
        }
    }
    Sent::All
}

fn send_udp(
    socket: &Arc<UdpSocket>,
    (addr, from): (SocketAddr, Option<IpAddr>),
    reply: Bytes,
) -> bool {
    let offset = match send_lines(&reply, |line| pktinfo::try_send(socket, line, addr, from)) {
        Sent::All => return true,
        Sent::Failed => return false,
        Sent::Blocked(offset) => offset,
    };
    let rest = reply.slice(offset..);
    let (Ok(permit), Ok(runtime)) = (
        DEFERRED_UDP.try_acquire(),
        tokio::runtime::Handle::try_current(),
    ) else {
        tracing::warn!(%addr, unsent = rest.len(), "udp socket full; rest of a reply dropped");
        return false;
    };
    let socket = Arc::clone(socket);
    runtime.spawn(async move {
        let _permit = permit;
        let finish = async {
            for line in rest.split_inclusive(|&b| b == b'\n') {
                pktinfo::send(&socket, line, addr, from).await?;
            }
            std::io::Result::Ok(())
        };
        match tokio::time::timeout(DEFERRED_UDP_TIMEOUT, finish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "udp reply not finished"),
            Err(_) => {
                tracing::warn!(%addr, "udp socket full for a second; rest of a reply dropped")
            }
        }
    });
    true
}

/// What a [`DirectQueue`] does with a reply that does not fit its byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The member is too slow: its writer is told to disconnect it (`--sendq`).
    Disconnect,
    /// Refuse the reply whole and count it; the member is told how many it missed once there is
    /// room again (`--sendq off`).
    DropAndCount,
}

/// A member whose replies did not fit its send queue: it stopped reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

/// Replies for one TCP member, waiting for its writer, bounded by bytes: the bytes queued plus
/// those the writer has taken but not yet written ([`DirectQueue::pending`]). Unlike a tokio mpsc
/// channel, which allocates a block of slots up front, an empty queue owns no heap memory: most
/// members are idle most of the time, and this is per connection.
#[derive(Debug)]
pub struct DirectQueue {
    state: Mutex<State>,
    ready: Notify,
    budget: usize,
    when_full: WhenFull,
    /// `/ids on`: the writer prefixes chat lines with their history ids.
    show_ids: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    replies: VecDeque<Direct>,
    /// Bytes pushed and not yet reported written.
    pending: usize,
    /// Replies refused since the member was last told ([`WhenFull::DropAndCount`]).
    dropped: u64,
    /// A reply did not fit ([`WhenFull::Disconnect`]): nothing more is taken or given.
    overflowed: bool,
}

impl DirectQueue {
    /// An empty queue holding at most `budget` bytes of replies. A reply that arrives while nothing
    /// is pending is always taken, however big, so a member that keeps up gets every reply.
    pub fn new(budget: usize, when_full: WhenFull) -> DirectQueue {
        DirectQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            budget,
            when_full,
            show_ids: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply whole; false when it does not fit (the member is not keeping up).
    pub fn push(&self, reply: Bytes) -> bool {
        let taken = {
            let mut state = self.lock();
            if state.overflowed {
                return false;
            }
            if state.pending > 0 && state.pending.saturating_add(reply.len()) > self.budget {
                match self.when_full {
                    WhenFull::Disconnect => state.overflowed = true,
                    WhenFull::DropAndCount => {
                        state.dropped += 1;
                        return false;
                    }
                }
                false
            } else {
                // The notice goes exactly where the gap is.
                if let Some(notice) = take_missed(&mut state) {
                    state.replies.push_back(Direct::Reply(notice));
                }
                state.pending += reply.len();
                state.replies.push_back(Direct::Reply(reply));
                true
            }
        };
        // Stores a permit if the writer is not waiting yet, so no wake-up is lost; an overflow
        // wakes it too, to disconnect.
        self.ready.notify_one();
        taken
    }

    /// Queues a room switch. Never refused: it is one per `/join`, which flood control paces, and
    /// losing it would leave the writer in the wrong room.
    pub fn push_switch(&self, switch: RoomSwitch) {
        self.lock()
            .replies
            .push_back(Direct::Switch(Box::new(switch)));
        self.ready.notify_one();
    }

    /// Whether the member wants history ids on chat lines.
    pub fn show_ids(&self) -> bool {
        self.show_ids.load(Ordering::Relaxed)
    }

    /// Sets whether the member wants history ids on chat lines.
    pub fn set_show_ids(&self, on: bool) {
        self.show_ids.store(on, Ordering::Relaxed);
    }

    /// Takes the oldest item, if any, without waiting; `Err` once a reply did not fit.
    pub fn try_pop(&self) -> Result<Option<Direct>, TooSlow> {
        let mut state = self.lock();
        if state.overflowed {
            return Err(TooSlow);
        }
        let reply = match state.replies.pop_front() {
            Some(reply) => Some(reply),
            // Caught up after losing some: say so now rather than with the next reply.
            None => take_missed(&mut state).map(Direct::Reply),
        };
        if state.replies.is_empty() && state.replies.capacity() > 0 {
            // Back to owning nothing once drained.
            state.replies = VecDeque::new();
        }
        Ok(reply)
    }

    /// Waits for and takes the oldest item; `Err` once a reply did not fit.
    pub async fn pop(&self) -> Result<Direct, TooSlow> {
        loop {
            if let Some(reply) = self.try_pop()? {
                return Ok(reply);
            }
            self.ready.notified().await;
        }
    }

    /// The writer wrote `bytes` of what it took: they no longer count against the budget.
    pub fn written(&self, bytes: usize) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(bytes);
    }

    /// Bytes of replies queued or taken and not yet written: this member's share of its send queue.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// True once a reply did not fit and the member must be let go ([`WhenFull::Disconnect`]).
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }
}

/// The `! you missed N replies` notice owed, if any, counted as pending like any reply.
fn take_missed(state: &mut State) -> Option<Bytes> {
    if state.dropped == 0 {
        return None;
    }
    let notice = protocol::error(&format!(
        "you missed {} replies or private messages",
        std::mem::take(&mut state.dropped)
    ));
    state.pending += notice.len();
    Some(notice)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next reply, for tests that queue no switches.
    fn popped(queue: &DirectQueue) -> Result<Option<Bytes>, TooSlow> {
        queue.try_pop().map(|item| {
            item.map(|item| match item {
                Direct::Reply(reply) => reply,
                Direct::Switch(_) => panic!("unexpected switch"),
            })
        })
    }

    fn reply(len: usize) -> Bytes {
        let mut line = vec![b'x'; len - 1];
        line.push(b'\n');
        Bytes::from(line)
    }

    #[test]
    fn replies_are_taken_whole_in_order_until_the_byte_budget() {
        let queue = DirectQueue::new(100, WhenFull::Disconnect);
        assert!(queue.push(reply(60)));
        assert!(queue.push(reply(40)));
        assert_eq!(queue.pending(), 100);
        assert_eq!(popped(&queue), Ok(Some(reply(60))));
        // Taken is not written: still pending until the writer says so.
        assert_eq!(queue.pending(), 100);
        queue.written(60);
        assert_eq!(queue.pending(), 40);
        assert_eq!(popped(&queue), Ok(Some(reply(40))));
        assert_eq!(popped(&queue), Ok(None));
    }

    #[test]
    fn a_reply_past_the_budget_makes_the_member_too_slow() {
        let queue = DirectQueue::new(100, WhenFull::Disconnect);
        assert!(queue.push(reply(90)));
        assert!(!queue.push(reply(20)));
        assert!(queue.overflowed());
        // Nothing more is taken or handed out: the writer disconnects.
        assert!(!queue.push(reply(1)));
        assert_eq!(popped(&queue), Err(TooSlow));
    }

    #[test]
    fn a_reply_bigger_than_the_budget_still_reaches_a_member_that_keeps_up() {
        let queue = DirectQueue::new(10, WhenFull::Disconnect);
        assert!(queue.push(reply(500)));
        assert_eq!(popped(&queue), Ok(Some(reply(500))));
        queue.written(500);
        assert!(queue.push(reply(500)));
    }

    #[test]
    fn without_sendq_refused_replies_are_counted_where_they_were_lost() {
        let queue = DirectQueue::new(100, WhenFull::DropAndCount);
        assert!(queue.push(reply(90)));
        assert!(!queue.push(reply(20)));
        assert!(!queue.push(reply(20)));
        assert!(!queue.overflowed());
        assert_eq!(popped(&queue), Ok(Some(reply(90))));
        queue.written(90);
        // The next reply that fits comes after the notice, which sits where the gap was.
        assert!(queue.push(reply(5)));
        assert_eq!(
            popped(&queue),
            Ok(Some(protocol::error(
                "you missed 2 replies or private messages"
            )))
        );
        assert_eq!(popped(&queue), Ok(Some(reply(5))));
        assert_eq!(popped(&queue), Ok(None));
    }

    #[test]
    fn without_sendq_a_member_that_catches_up_is_told_at_once() {
        let queue = DirectQueue::new(10, WhenFull::DropAndCount);
        assert!(queue.push(reply(10)));
        assert!(!queue.push(reply(10)));
        assert_eq!(popped(&queue), Ok(Some(reply(10))));
        let notice = protocol::error("you missed 1 replies or private messages");
        assert_eq!(popped(&queue), Ok(Some(notice.clone())));
        assert_eq!(queue.pending(), 10 + notice.len());
        assert_eq!(popped(&queue), Ok(None));
    }

    #[test]
    fn udp_lines_go_one_by_one_and_a_full_socket_stops_at_a_line_boundary() {
        let reply = b"* one\n* two\n* three\n";
        let mut sent = Vec::new();
        let all = send_lines(reply, |line| {
            sent.push(line.to_vec());
            Ok(line.len())
        });
        assert_eq!(all, Sent::All);
        assert_eq!(sent, [&b"* one\n"[..], b"* two\n", b"* three\n"]);

        let mut calls = 0;
        let blocked = send_lines(reply, |line| {
            calls += 1;
            if calls == 2 {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(line.len())
            }
        });
        assert_eq!(blocked, Sent::Blocked(6));
        assert_eq!(&reply[6..], b"* two\n* three\n");

        let failed = send_lines(reply, |_| Err(std::io::ErrorKind::InvalidInput.into()));
        assert_eq!(failed, Sent::Failed);
    }
}
