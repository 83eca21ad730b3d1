//! Room pacing: keep senders from outrunning the members that are still keeping up.
//!
//! The room is a bounded ring. When senders publish faster than the server itself can copy lines
//! to every reader (a burst from many senders at once, on a busy machine), readers that are merely
//! waiting for CPU would be overtaken and lose lines. Instead, a TCP sender's socket is not read
//! while a reader that is keeping up is far behind: TCP flow control then slows the sender, just as
//! flood pacing does for one member.
//!
//! Readers whose own socket is full (the client does not read fast enough) are exempt until they
//! have caught up again: they must never slow anyone else down; the send-queue limit and the
//! "you missed N messages" notice deal with them. Waiting is bounded, so even a reader that stops
//! advancing for another reason can delay senders by at most [`MAX_WAIT`] per read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Longest a sender's read is held back waiting for readers.
pub const MAX_WAIT: Duration = Duration::from_millis(250);
/// How often a held-back sender looks again.
const POLL: Duration = Duration::from_millis(1);
/// A cursor value meaning "not counted": the reader is held up by its own socket.
const EXEMPT: u64 = u64::MAX;

/// The room readers' positions, shared by every transport.
#[derive(Debug, Default)]
pub struct Pacer {
    cursors: Mutex<HashMap<u64, Arc<AtomicU64>>>,
    next_key: AtomicU64,
}

impl Pacer {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<AtomicU64>>> {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a reader that will next read event `next`; it is counted until the guard drops.
    pub fn track(self: &Arc<Self>, next: u64) -> Cursor {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let position = Arc::new(AtomicU64::new(next));
        self.lock().insert(key, Arc::clone(&position));
        Cursor {
            pacer: Arc::clone(self),
            key,
            position,
        }
    }

    /// How many events the furthest-behind counted reader still has to read, given that the
    /// next event to be published is `head`.
    pub fn behind(&self, head: u64) -> u64 {
        self.lock()
            .values()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|&next| next != EXEMPT)
            .map(|next| head.saturating_sub(next))
            .max()
            .unwrap_or(0)
    }

    /// Waits, at most [`MAX_WAIT`], while a counted reader is `high` or more events behind, until
    /// none is more than `low` behind. `head` gives the next event's position.
    pub async fn wait(&self, head: impl Fn() -> u64, high: u64, low: u64) {
        if self.behind(head()) < high {
            return;
        }
        let give_up = Instant::now() + MAX_WAIT;
        while Instant::now() < give_up {
            tokio::time::sleep(POLL).await;
            if self.behind(head()) <= low {
                return;
            }
        }
    }
}

/// One reader's position in the room; unregisters itself when dropped.
#[derive(Debug)]
pub struct Cursor {
    pacer: Arc<Pacer>,
    key: u64,
    position: Arc<AtomicU64>,
}

impl Cursor {
    /// The reader has taken every event before `next`. Does not count an exempt reader again.
    pub fn advance(&self, next: u64) {
        let _ = self
            .position
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old != EXEMPT).then_some(next)
            });
    }

    /// The reader is held up by its own socket: stop counting it.
    pub fn exempt(&self) {
        self.position.store(EXEMPT, Ordering::Relaxed);
    }

    /// The reader has caught up with the room (nothing left to read before `next`): count it again.
    pub fn caught_up(&self, next: u64) {
        self.position.store(next, Ordering::Relaxed);
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.pacer.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_furthest_counted_reader_sets_the_distance() {
        let pacer = Arc::new(Pacer::default());
        assert_eq!(pacer.behind(100), 0, "no readers, nothing behind");
        let a = pacer.track(90);
        let b = pacer.track(40);
        assert_eq!(pacer.behind(100), 60);
        b.advance(95);
        assert_eq!(pacer.behind(100), 10);
        drop(a);
        assert_eq!(pacer.behind(100), 5);
    }

    #[test]
    fn an_exempt_reader_is_not_counted_until_it_catches_up() {
        let pacer = Arc::new(Pacer::default());
        let slow = pacer.track(0);
        let _fast = pacer.track(99);
        slow.exempt();
        assert_eq!(pacer.behind(100), 1);
        slow.advance(10);
        assert_eq!(
            pacer.behind(100),
            1,
            "advancing alone does not count it again"
        );
        slow.caught_up(100);
        slow.advance(100);
        assert_eq!(pacer.behind(100), 1);
        assert_eq!(pacer.behind(200), 101);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded_even_if_no_reader_moves() {
        let pacer = Arc::new(Pacer::default());
        let _stuck = pacer.track(0);
        let started = Instant::now();
        pacer.wait(|| 1000, 100, 10).await;
        let waited = started.elapsed();
        assert!(waited >= MAX_WAIT && waited < MAX_WAIT + Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_once_readers_are_close_enough() {
        let pacer = Arc::new(Pacer::default());
        let reader = pacer.track(0);
        let started = Instant::now();
        let wait = pacer.wait(|| 1000, 100, 10);
        tokio::pin!(wait);
        tokio::select! {
            _ = &mut wait => panic!("returned while the reader was 1000 behind"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        reader.advance(995);
        wait.await;
        assert!(started.elapsed() < Duration::from_millis(30));
    }
}
