//! Where lines meant for one member go: a TCP connection's bounded queue or a UDP peer's address.
//! Room traffic does not pass through here; it is shared through the room's broadcast ring.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::room::{Room, Subscription};

/// A TCP member's move to another room, queued in order with its direct lines so its writer
/// switches rooms exactly between the replies before the move and those after.
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
    /// Complete lines for this member only.
    Line(Bytes),
    /// Follow the member into another room.
    Switch(Box<RoomSwitch>),
}

/// Where lines meant for one member go.
#[derive(Debug, Clone)]
pub enum Outbox {
    /// A TCP connection's bounded queue, drained by its writer.
    Tcp(Arc<DirectQueue>),
    /// A UDP peer: lines are sent straight from the shared socket.
    Udp(Arc<UdpSocket>, SocketAddr),
}

impl Outbox {
    /// Queues or sends `line` without waiting; false when it had to be dropped (a full queue or a
    /// full socket buffer), which only ever happens to a member that is not keeping up.
    pub fn send(&self, line: Bytes) -> bool {
        match self {
            Outbox::Tcp(queue) => queue.push(line),
            Outbox::Udp(socket, addr) => socket.try_send_to(&line, *addr).is_ok(),
        }
    }
}

/// Lines for one TCP member, waiting for its writer. Unlike a tokio mpsc channel, which allocates
/// a block of slots up front, an empty queue owns no heap memory: most members are idle most of the
/// time, and this is per connection.
#[derive(Debug)]
pub struct DirectQueue {
    lines: Mutex<VecDeque<Direct>>,
    ready: Notify,
    capacity: usize,
    /// `/ids on`: the writer prefixes chat lines with their history ids.
    show_ids: AtomicBool,
}

impl DirectQueue {
    /// An empty queue holding at most `capacity` lines.
    pub fn new(capacity: usize) -> DirectQueue {
        DirectQueue {
            lines: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity,
            show_ids: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Direct>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a line; false when the queue is full (the member is not keeping up).
    pub fn push(&self, line: Bytes) -> bool {
        {
            let mut lines = self.lock();
            if lines.len() >= self.capacity {
                return false;
            }
            lines.push_back(Direct::Line(line));
        }
        // Stores a permit if the writer is not waiting yet, so no wake-up is lost.
        self.ready.notify_one();
        true
    }

    /// Whether the member wants history ids on chat lines.
    pub fn show_ids(&self) -> bool {
        self.show_ids.load(Ordering::Relaxed)
    }

    /// Sets whether the member wants history ids on chat lines.
    pub fn set_show_ids(&self, on: bool) {
        self.show_ids.store(on, Ordering::Relaxed);
    }

    /// Queues a room switch. Never refused: it is one per `/join`, which flood control paces,
    /// and losing it would leave the writer in the wrong room.
    pub fn push_switch(&self, switch: RoomSwitch) {
        self.lock().push_back(Direct::Switch(Box::new(switch)));
        self.ready.notify_one();
    }

    /// Takes the oldest item, if any, without waiting.
    pub fn try_pop(&self) -> Option<Direct> {
        let mut lines = self.lock();
        let line = lines.pop_front();
        if lines.is_empty() && lines.capacity() > 0 {
            // Back to owning nothing once drained.
            *lines = VecDeque::new();
        }
        line
    }

    /// Waits for and takes the oldest item.
    pub async fn pop(&self) -> Direct {
        loop {
            if let Some(line) = self.try_pop() {
                return line;
            }
            self.ready.notified().await;
        }
    }
}
