//! Where lines meant for one member go: a TCP connection's bounded queue or a UDP peer's address.
//! Room traffic does not pass through here; it is shared through the room's broadcast ring.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

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
    lines: Mutex<VecDeque<Bytes>>,
    ready: Notify,
    capacity: usize,
}

impl DirectQueue {
    /// An empty queue holding at most `capacity` lines.
    pub fn new(capacity: usize) -> DirectQueue {
        DirectQueue {
            lines: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Bytes>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a line; false when the queue is full (the member is not keeping up).
    pub fn push(&self, line: Bytes) -> bool {
        {
            let mut lines = self.lock();
            if lines.len() >= self.capacity {
                return false;
            }
            lines.push_back(line);
        }
        // Stores a permit if the writer is not waiting yet, so no wake-up is lost.
        self.ready.notify_one();
        true
    }

    /// Takes the oldest line, if any, without waiting.
    pub fn try_pop(&self) -> Option<Bytes> {
        let mut lines = self.lock();
        let line = lines.pop_front();
        if lines.is_empty() && lines.capacity() > 0 {
            // Back to owning nothing once drained.
            *lines = VecDeque::new();
        }
        line
    }

    /// Waits for and takes the oldest line.
    pub async fn pop(&self) -> Bytes {
        loop {
            if let Some(line) = self.try_pop() {
                return line;
            }
            self.ready.notified().await;
        }
    }
}
