//! UDP presence: who has been heard from recently, and who is overdue.
//!
//! A pure table with no clock of its own: callers pass `now`, so tests drive it with any instants.
//! Deadlines live in an ordered map next to the per-peer entry, so a refresh moves one entry
//! (O(log n)) and an expiry pass touches only the peers that are actually overdue, however many
//! others are present.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Deadline bookkeeping for UDP peers keyed by `K` (a socket address in the server).
#[derive(Debug)]
pub struct Presence<K> {
    timeout: Duration,
    /// Ordered by deadline; the sequence number keeps equal deadlines distinct.
    queue: BTreeMap<(Instant, u64), K>,
    deadlines: HashMap<K, (Instant, u64)>,
    seq: u64,
}

impl<K: Hash + Eq + Clone> Presence<K> {
    /// A table that considers a peer gone after `timeout` of silence.
    pub fn new(timeout: Duration) -> Self {
        Presence {
            timeout,
            queue: BTreeMap::new(),
            deadlines: HashMap::new(),
            seq: 0,
        }
    }

    /// Records that `key` was heard from at `now`; returns true if it was not present before.
    pub fn touch(&mut self, key: &K, now: Instant) -> bool {
        self.seq += 1;
        let slot = (deadline_after(now, self.timeout), self.seq);
        match self.deadlines.get_mut(key) {
            Some(old) => {
                self.queue.remove(old);
                *old = slot;
                self.queue.insert(slot, key.clone());
                false
            }
            None => {
                self.deadlines.insert(key.clone(), slot);
                self.queue.insert(slot, key.clone());
                true
            }
        }
    }

    /// Forgets `key` (it left on its own); returns true if it was present.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.deadlines.remove(key) {
            Some(slot) => {
                self.queue.remove(&slot);
                true
            }
            None => false,
        }
    }

    /// True if `key` is present.
    pub fn contains(&self, key: &K) -> bool {
        self.deadlines.contains_key(key)
    }

    /// The earliest deadline, for the eviction task to sleep until.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns every peer whose deadline is at or before `now`, oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut expired = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.deadlines.remove(&key);
            expired.push(key);
        }
        expired
    }

    /// How many peers are present.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// True when no peer is present.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

/// About 30 years: "never" for a deadline, yet far from overflowing any clock.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + after`, saturating at [`FAR_FUTURE`] from now instead of panicking on overflow.
pub fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after.min(FAR_FUTURE)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn silent_peers_expire_and_active_ones_stay() {
        let start = Instant::now();
        let mut table = Presence::new(T);
        assert!(table.touch(&"a", start));
        assert!(table.touch(&"b", start));
        assert!(!table.touch(&"b", start + Duration::from_secs(6)));
        assert_eq!(table.next_deadline(), Some(start + T));
        assert!(table.expire(start + Duration::from_secs(9)).is_empty());
        assert_eq!(table.expire(start + T), vec!["a"]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.next_deadline(), Some(start + Duration::from_secs(16)));
        assert_eq!(table.expire(start + Duration::from_secs(16)), vec!["b"]);
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn a_huge_timeout_saturates_instead_of_panicking() {
        // `--heartbeat 4611686018427387904s` used to panic here on the first datagram.
        let start = Instant::now();
        let mut table = Presence::new(Duration::MAX);
        assert!(table.touch(&"a", start));
        assert!(table.next_deadline().expect("deadline") > start + T * 1000);
        assert!(table.expire(start + T * 1000).is_empty());
        assert_eq!(
            deadline_after(start, Duration::from_secs(1)),
            start + Duration::from_secs(1)
        );
    }

    #[test]
    fn removed_peers_never_expire() {
        let start = Instant::now();
        let mut table = Presence::new(T);
        table.touch(&1, start);
        assert!(table.remove(&1));
        assert!(!table.remove(&1));
        assert!(table.expire(start + T * 2).is_empty());
    }

    #[test]
    fn expiry_is_in_deadline_order() {
        let start = Instant::now();
        let mut table = Presence::new(T);
        for i in 0..5u64 {
            table.touch(&i, start + Duration::from_millis(10 * (5 - i)));
        }
        assert_eq!(table.expire(start + T * 2), vec![4, 3, 2, 1, 0]);
    }
}
